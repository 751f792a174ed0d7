"""Argument checks shared by the compiler and runtime wrappers.

They reject what cannot reach C++ at all (wrong types, numbers outside the C++ type, missing
files); everything else is checked by the C++ code, whose messages are the documented ones.
"""

import errno
import operator
import os
from typing import Iterable, List, Union

from .errors import InvalidArgumentError

PathLike = Union[str, "os.PathLike[str]"]

INT32_MAX = 2**31 - 1


def path(value, what: str) -> str:
    """`value` as a str path (TypeError for non-paths)."""
    try:
        return os.fspath(value)
    except TypeError:
        raise TypeError(f"{what} must be a path (str or os.PathLike), "
                        f"got {type(value).__name__}") from None


def existing(value, what: str, kind: str = "any") -> str:
    """A path that exists (FileNotFoundError) and is a file or folder as `kind` says."""
    text = path(value, what)
    if not os.path.exists(text):
        raise FileNotFoundError(errno.ENOENT, f"{what} not found", text)
    if kind == "file" and os.path.isdir(text):
        raise IsADirectoryError(errno.EISDIR, f"{what} is a folder, expected a file", text)
    if kind == "dir" and not os.path.isdir(text):
        raise NotADirectoryError(errno.ENOTDIR, f"{what} is not a folder", text)
    return text


def integer(value, name: str, minimum: int, maximum: int) -> int:
    """An int (anything with __index__, not bool) in [minimum, maximum]."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if not minimum <= number <= maximum:
        raise InvalidArgumentError(f"{name} must be in [{minimum}, {maximum}], got {number}")
    return number


def real(value, name: str) -> float:
    """A float (TypeError for non-numbers); range checks are the runtime's."""
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None


def token_ids(ids: Iterable[int], vocab_size: int, name: str = "ids") -> List[int]:
    """A list of Python ints from a sequence or 1-D NumPy array of integers.

    Ids outside int32 cannot reach the runtime, so they are rejected here with the runtime's
    message; the runtime checks everything else (empty input, ids outside [0, vocab)).
    """
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of integer token ids, got {type(ids).__name__}")
    if hasattr(ids, "dtype") and hasattr(ids, "ndim"):  # NumPy arrays, without importing NumPy
        if ids.ndim != 1:
            raise InvalidArgumentError(f"{name} must be one-dimensional, got shape {ids.shape}")
        if ids.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers, got dtype {ids.dtype}")
        ids = ids.tolist()
    try:
        values = list(ids)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of integer token ids, "
                        f"got {type(ids).__name__}") from None
    result = []
    for index, value in enumerate(values):
        if isinstance(value, bool):
            raise TypeError(f"{name}[{index}] must be an integer token id, got bool")
        try:
            token = operator.index(value)
        except TypeError:
            raise TypeError(f"{name}[{index}] must be an integer token id, "
                            f"got {type(value).__name__}") from None
        if not -INT32_MAX - 1 <= token <= INT32_MAX:
            raise InvalidArgumentError(f"token id {token} at index {index} is out of range "
                                       f"[0, {vocab_size})")
        result.append(token)
    return result
