"""A small safetensors reader and streaming writer (NumPy only).

File layout: an 8-byte little-endian header length N, N bytes of JSON
(`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`),
then the tensor bytes, little-endian, offsets relative to the end of the header.

Reading maps the file (`np.memmap`) so a tensor costs memory only when it is touched.
`BF16`, `F8_E4M3` (the "FN" variant: bias 7, max 448, S.1111.111 is NaN, no infinities) and
`F8_E5M2` are decoded exactly to float32 (or float64) through bit manipulation or 256-entry
tables. Writing streams: the header is computed from (name, dtype, shape) alone, then each
tensor's bytes are written as they are produced, in header order, possibly in several pieces.

A checkpoint folder holds either `model.safetensors` or shards listed by
`model.safetensors.index.json` (`{"metadata": {...}, "weight_map": {tensor: file}}`);
`open_checkpoint` reads both the same way.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "DTYPES",
    "TensorInfo",
    "SafetensorsFile",
    "SafetensorsFolder",
    "SafetensorsWriter",
    "open_checkpoint",
    "save_file",
    "build_header",
    "INDEX_NAME",
    "SINGLE_NAME",
    "decode",
    "encode",
    "decode_bf16",
    "encode_bf16",
    "decode_f8_e4m3",
    "encode_f8_e4m3",
    "decode_f8_e5m2",
    "encode_f8_e5m2",
    "E4M3_MAX",
    "E5M2_MAX",
]

#: safetensors dtype name -> little-endian storage dtype. Reduced-precision floats are stored
#: as their raw bit patterns (uint16 for BF16, uint8 for the FP8 formats).
DTYPES: Dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F8_E4M3": np.dtype("u1"),
    "F8_E5M2": np.dtype("u1"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

_FLOAT_CODED = ("BF16", "F8_E4M3", "F8_E5M2")

#: Largest finite magnitudes.
E4M3_MAX = 448.0
E5M2_MAX = 57344.0

_MAX_HEADER = 100 * 1024 * 1024
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


# ----------------------------------------------------------------------------------------
# Reduced-precision float codecs
# ----------------------------------------------------------------------------------------


def _e4m3fn_table() -> np.ndarray:
    """Value of every E4M3FN code as float64: sign, 4 exponent bits (bias 7), 3 mantissa bits.

    Exponent field 0 is subnormal (m/8 * 2^-6); S.1111.111 is NaN; there are no infinities.
    """
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exp = (codes >> 3) & 0xF
    man = codes & 0x7
    mag = np.where(exp == 0, np.ldexp(man / 8.0, -6), np.ldexp(1.0 + man / 8.0, exp - 7))
    table = sign * mag
    nan = (exp == 0xF) & (man == 0x7)
    table[nan] = np.copysign(np.nan, sign[nan])
    return table


def _e5m2_table() -> np.ndarray:
    """Value of every E5M2 code as float64 (IEEE-like: bias 15, inf and NaN at exponent 31)."""
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exp = (codes >> 2) & 0x1F
    man = codes & 0x3
    with np.errstate(over="ignore"):
        mag = np.where(exp == 0, np.ldexp(man / 4.0, -14), np.ldexp(1.0 + man / 4.0, exp - 15))
    table = sign * mag
    table[(exp == 0x1F) & (man == 0)] = sign[(exp == 0x1F) & (man == 0)] * np.inf
    nan = (exp == 0x1F) & (man != 0)
    table[nan] = np.copysign(np.nan, sign[nan])
    return table


_E4M3_TABLE = _e4m3fn_table()
_E5M2_TABLE = _e5m2_table()


def decode_bf16(bits: np.ndarray, dtype=np.float32) -> np.ndarray:
    """BF16 bit patterns (uint16) -> float32 (exact: BF16 is the top half of a float32)."""
    bits = np.asarray(bits, dtype=np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(dtype, copy=False)


def encode_bf16(x: np.ndarray) -> np.ndarray:
    """float -> BF16 bit patterns (uint16), rounding to nearest even; NaN stays NaN.

    float64 input is rounded once, straight to BF16's 8 significant bits (going through
    float32 first could round twice).
    """
    x = np.asarray(x)
    if x.dtype == np.float64:
        m, e = np.frexp(x)  # x = m * 2^e, 0.5 <= |m| < 1
        # Quantum: 2^(e-8) for normals; BF16 subnormals share float32's 2^-133 spacing.
        q = np.maximum(e - 8, -133)
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.ldexp(np.rint(np.ldexp(m, e - q)), q).astype(np.float32)  # exact or inf
    x = np.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    rounding = np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))
    out = ((bits + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = ((bits[nan] >> 16) & 0x8000).astype(np.uint16) | np.uint16(0x7FC0)
    return out


def decode_f8_e4m3(bits: np.ndarray, dtype=np.float32) -> np.ndarray:
    """F8_E4M3 (FN) bit patterns (uint8) -> float32/float64, exactly."""
    return _E4M3_TABLE.astype(dtype)[np.asarray(bits, dtype=np.uint8)]


def decode_f8_e5m2(bits: np.ndarray, dtype=np.float32) -> np.ndarray:
    """F8_E5M2 bit patterns (uint8) -> float32/float64, exactly."""
    return _E5M2_TABLE.astype(dtype)[np.asarray(bits, dtype=np.uint8)]


def _round_to_codes(x: np.ndarray, values: np.ndarray, nan_code: int,
                    overflow: Optional[Tuple[float, int]] = None) -> np.ndarray:
    """Round to the nearest of `values` (positive, increasing, code = index), ties to even code.

    `overflow=(value, code)` adds one more candidate above the largest (infinity for E5M2).
    Magnitudes beyond the last candidate take the last candidate's code.
    """
    x = np.asarray(x, dtype=np.float64)
    cand = np.asarray(values, dtype=np.float64)
    codes = np.arange(len(cand), dtype=np.int64)
    if overflow is not None:
        cand = np.append(cand, overflow[0])
        codes = np.append(codes, overflow[1])
    nan = np.isnan(x)
    mag = np.where(nan, 0.0, np.abs(x))
    hi = np.clip(np.searchsorted(cand, mag, side="left"), 1, len(cand) - 1)
    lo = hi - 1
    with np.errstate(invalid="ignore"):
        d_lo = mag - cand[lo]
        d_hi = cand[hi] - mag
    take_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (codes[hi] % 2 == 0)) | (mag >= cand[-1])
    out = np.where(take_hi, codes[hi], codes[lo])
    out = np.where(nan, nan_code, out) | np.where(np.signbit(x), 0x80, 0)
    return out.astype(np.uint8)


def encode_f8_e4m3(x: np.ndarray) -> np.ndarray:
    """float -> F8_E4M3 (FN) bit patterns: round to nearest even, saturate to +-448, NaN->0x7F
    (sign kept). Infinities saturate too (E4M3FN has none).
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        a = np.minimum(np.abs(x), E4M3_MAX)  # saturate; NaN stays NaN
        # Grid spacing: 2^(E-3) for normals in [2^E, 2^(E+1)), 2^-9 for subnormals (E < -6).
        _, e = np.frexp(a)
        quantum = np.maximum(e - 4, -9)
        r = np.ldexp(np.rint(np.ldexp(a, -quantum)), quantum)  # np.rint: ties to even
        _, e = np.frexp(r)
        normal = r >= 2.0 ** -6
        field = np.where(normal, (e + 6) * 8 + np.ldexp(r, 4 - e) - 8, np.ldexp(r, 9))
        code = np.where(np.isnan(a), 0x7F, np.nan_to_num(field)).astype(np.uint8)
    return code | np.where(np.signbit(x), np.uint8(0x80), np.uint8(0))


def encode_f8_e5m2(x: np.ndarray) -> np.ndarray:
    """float -> F8_E5M2 bit patterns: round to nearest even, overflow to +-inf, NaN -> 0x7E/0xFE."""
    # Finite positive codes are 0x00..0x7B; +inf (0x7C) stands where 2^16 would be, so
    # magnitudes from max + half an ulp (61440, a tie that goes to the even code) round to inf.
    return _round_to_codes(x, _E5M2_TABLE[:0x7C], nan_code=0x7E, overflow=(65536.0, 0x7C))


def decode(raw: np.ndarray, dtype_name: str, out_dtype=np.float32) -> np.ndarray:
    """Raw storage array of safetensors dtype `dtype_name` -> NumPy values.

    Reduced-precision floats become `out_dtype` (float32 or float64; exact either way); other
    dtypes are returned as stored.
    """
    if dtype_name == "BF16":
        return decode_bf16(raw, out_dtype)
    if dtype_name == "F8_E4M3":
        return decode_f8_e4m3(raw, out_dtype)
    if dtype_name == "F8_E5M2":
        return decode_f8_e5m2(raw, out_dtype)
    return raw


def encode(values: np.ndarray, dtype_name: str) -> np.ndarray:
    """NumPy values -> storage array for safetensors dtype `dtype_name`.

    Arrays already in a reduced-precision format's storage dtype (uint16 for BF16, uint8 for
    the FP8 formats) are taken as raw bit patterns.
    """
    if dtype_name not in DTYPES:
        raise ValueError(f"unknown safetensors dtype {dtype_name!r}")
    storage = DTYPES[dtype_name]
    values = np.asarray(values)
    if dtype_name in _FLOAT_CODED:
        if values.dtype == storage:
            return values
        if dtype_name == "BF16":
            return encode_bf16(values)
        if dtype_name == "F8_E4M3":
            return encode_f8_e4m3(values)
        return encode_f8_e5m2(values)
    return values.astype(storage, copy=False)


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """Where a tensor lives and what it is."""

    name: str
    dtype: str
    shape: Tuple[int, ...]
    begin: int  # byte offset from the start of the data section
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def _nbytes(dtype: str, shape: Sequence[int]) -> int:
    return DTYPES[dtype].itemsize * int(math.prod(shape))


def _parse_header(header: dict, data_len: int,
                  path: str) -> Tuple[Dict[str, TensorInfo], Dict[str, str]]:
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: __metadata__ must be an object")
    infos: Dict[str, TensorInfo] = {}
    for name, entry in header.items():
        try:
            dtype = entry["dtype"]
            shape = tuple(int(s) for s in entry["shape"])
            begin, end = (int(v) for v in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: malformed header entry for {name!r}: {entry!r}") from e
        if dtype not in DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
        if any(s < 0 for s in shape):
            raise ValueError(f"{path}: tensor {name!r} has negative shape {shape}")
        if not 0 <= begin <= end <= data_len:
            raise ValueError(f"{path}: tensor {name!r} offsets [{begin}, {end}] outside data "
                             f"section of {data_len} bytes")
        if end - begin != _nbytes(dtype, shape):
            raise ValueError(f"{path}: tensor {name!r} ({dtype}, {list(shape)}) needs "
                             f"{_nbytes(dtype, shape)} bytes but offsets span {end - begin}")
        infos[name] = TensorInfo(name, dtype, shape, begin, end)
    # Tensors must tile the data section without holes or overlaps.
    pos = 0
    for info in sorted(infos.values(), key=lambda i: (i.begin, i.end)):
        if info.begin != pos:
            raise ValueError(f"{path}: tensor {info.name!r} starts at {info.begin}, expected {pos} "
                             "(overlapping or non-contiguous data)")
        pos = info.end
    if pos != data_len:
        raise ValueError(f"{path}: tensors cover {pos} bytes, data section has {data_len}")
    return infos, {str(k): str(v) for k, v in metadata.items()}


class SafetensorsFile:
    """One memory-mapped `.safetensors` file."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise ValueError(f"{self.path}: too short for a safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or 8 + n > size:
                raise ValueError(f"{self.path}: header length {n} does not fit a {size}-byte file")
            try:
                header = json.loads(f.read(n).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ValueError(f"{self.path}: header is not valid JSON: {e}") from e
        if not isinstance(header, dict):
            raise ValueError(f"{self.path}: header must be a JSON object")
        self._data_start = 8 + n
        data_len = size - self._data_start
        self._infos, self.metadata = _parse_header(header, data_len, self.path)
        self._map = (np.memmap(self.path, dtype=np.uint8, mode="r", offset=self._data_start,
                               shape=(data_len,)) if data_len > 0 else None)

    def keys(self) -> List[str]:
        return list(self._infos)

    def __contains__(self, name: str) -> bool:
        return name in self._infos

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def info(self, name: str) -> TensorInfo:
        try:
            return self._infos[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None

    def raw(self, name: str) -> np.ndarray:
        """The stored array (read-only view of the mapping): raw bits for BF16/FP8."""
        info = self.info(name)
        storage = DTYPES[info.dtype]
        if info.nbytes == 0:
            return np.zeros(info.shape, dtype=storage)
        count = info.nbytes // storage.itemsize
        arr = np.frombuffer(self._map, dtype=storage, count=count, offset=info.begin)
        return arr.reshape(info.shape)

    def get(self, name: str, float_dtype=np.float32) -> np.ndarray:
        """The tensor's values: BF16/FP8 decoded to `float_dtype`, others as stored."""
        return decode(self.raw(name), self.info(name).dtype, float_dtype)


class SafetensorsFolder:
    """All tensors of a checkpoint folder (single file or index + shards), by name."""

    def __init__(self, folder: str):
        self.folder = os.fspath(folder)
        index_path = os.path.join(self.folder, INDEX_NAME)
        single_path = os.path.join(self.folder, SINGLE_NAME)
        self._files: Dict[str, SafetensorsFile] = {}
        self._where: Dict[str, str] = {}
        if os.path.exists(index_path):
            with open(index_path) as f:
                index = json.load(f)
            weight_map = index.get("weight_map")
            if not isinstance(weight_map, dict):
                raise ValueError(f"{index_path}: missing 'weight_map' object")
            self.metadata = dict(index.get("metadata") or {})
            for fname in sorted(set(weight_map.values())):
                self._files[fname] = SafetensorsFile(os.path.join(self.folder, fname))
            for name, fname in weight_map.items():
                if name not in self._files[fname]:
                    raise ValueError(f"{index_path}: {name!r} is mapped to {fname} which lacks it")
                self._where[name] = fname
        elif os.path.exists(single_path):
            f = SafetensorsFile(single_path)
            self._files[SINGLE_NAME] = f
            self._where = {name: SINGLE_NAME for name in f.keys()}
            self.metadata = dict(f.metadata)
        else:
            raise FileNotFoundError(f"{self.folder}: neither {SINGLE_NAME} nor {INDEX_NAME} found")

    def file_of(self, name: str) -> SafetensorsFile:
        try:
            return self._files[self._where[name]]
        except KeyError:
            raise KeyError(f"{self.folder}: no tensor named {name!r}") from None

    def keys(self) -> List[str]:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def info(self, name: str) -> TensorInfo:
        return self.file_of(name).info(name)

    def raw(self, name: str) -> np.ndarray:
        return self.file_of(name).raw(name)

    def get(self, name: str, float_dtype=np.float32) -> np.ndarray:
        return self.file_of(name).get(name, float_dtype)


def open_checkpoint(path: str):
    """A `SafetensorsFolder` for a folder, or a `SafetensorsFile` for a single file."""
    return SafetensorsFolder(path) if os.path.isdir(path) else SafetensorsFile(path)


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------


def build_header(specs: Iterable[Tuple[str, str, Sequence[int]]],
                 metadata: Optional[Mapping[str, str]] = None) -> Tuple[bytes, List[TensorInfo]]:
    """Header bytes (length prefix + JSON padded with spaces to 8 bytes) and the layout.

    Tensors are laid out contiguously in the order given.
    """
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    layout: List[TensorInfo] = []
    pos = 0
    for name, dtype, shape in specs:
        if dtype not in DTYPES:
            raise ValueError(f"tensor {name!r}: unknown safetensors dtype {dtype!r}")
        if name in header or name == "__metadata__":
            raise ValueError(f"duplicate tensor name {name!r}")
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"tensor {name!r}: negative shape {shape}")
        n = _nbytes(dtype, shape)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, pos + n]}
        layout.append(TensorInfo(name, dtype, shape, pos, pos + n))
        pos += n
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text, layout


class SafetensorsWriter:
    """Streams tensors into a safetensors file whose header is fixed up front.

        specs = [("a", "F32", (2, 3)), ("b", "BF16", (4,))]
        with SafetensorsWriter(path, specs) as w:
            w.write("a", a_rows_0_1)   # a tensor may arrive in several pieces (row chunks)
            w.write("a", a_row_2)
            w.write("b", b)

    Tensors must be written in `specs` order; `write` encodes float data to the declared
    dtype (BF16/FP8 round to nearest even). Closing checks that every byte was written.
    """

    def __init__(self, path: str, specs: Iterable[Tuple[str, str, Sequence[int]]],
                 metadata: Optional[Mapping[str, str]] = None):
        self.path = os.fspath(path)
        header, self._layout = build_header(specs, metadata)
        self._index = {info.name: i for i, info in enumerate(self._layout)}
        self._current = 0  # index of the tensor being written
        self._written = 0  # bytes of the current tensor written so far
        self._file = open(self.path, "wb")
        self._file.write(header)
        self._closed = False
        self._skip_empty()

    def _skip_empty(self) -> None:
        while self._current < len(self._layout) and self._layout[self._current].nbytes == 0:
            self._current += 1

    @property
    def layout(self) -> List[TensorInfo]:
        return list(self._layout)

    def write(self, name: str, data: np.ndarray) -> None:
        """Append `data` (values or raw bits) to tensor `name`."""
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        if name not in self._index:
            raise ValueError(f"{self.path}: unknown tensor {name!r}")
        info = self._layout[self._index[name]]
        payload = np.ascontiguousarray(encode(data, info.dtype))
        n = payload.nbytes
        if n == 0:
            return  # nothing to append (empty tensors need no bytes)
        if self._current >= len(self._layout) or self._layout[self._current].name != name:
            nxt = (self._layout[self._current].name if self._current < len(self._layout)
                   else "nothing (all written)")
            raise ValueError(f"{self.path}: tensor {name!r} written out of order; "
                             f"next expected is {nxt}")
        if self._written + n > info.nbytes:
            raise ValueError(f"{self.path}: tensor {name!r} gets {self._written + n} bytes, "
                             f"declared {info.dtype} {list(info.shape)} = {info.nbytes} bytes")
        self._file.write(payload.reshape(-1).view(np.uint8).data)
        self._written += n
        if self._written == info.nbytes:
            self._current += 1
            self._written = 0
            self._skip_empty()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._file.close()
        if self._current < len(self._layout):
            info = self._layout[self._current]
            raise ValueError(f"{self.path}: incomplete: tensor {info.name!r} has {self._written} "
                             f"of {info.nbytes} bytes")

    def abort(self) -> None:
        """Close without checking and delete the partial file."""
        self._closed = True
        self._file.close()
        try:
            os.remove(self.path)
        except OSError:
            pass

    def __enter__(self) -> "SafetensorsWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


_NUMPY_TO_ST = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


def save_file(path: str, tensors: Mapping[str, object],
              metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write a dict of tensors. Each value is an array (dtype inferred) or `(dtype, array)`."""
    specs, arrays = [], []
    for name, value in tensors.items():
        if isinstance(value, tuple):
            dtype, arr = value
            arr = np.asarray(arr)
        else:
            arr = np.asarray(value)
            if arr.dtype not in _NUMPY_TO_ST:
                raise ValueError(f"tensor {name!r}: no safetensors dtype for {arr.dtype}; "
                                 "pass (dtype, array)")
            dtype = _NUMPY_TO_ST[arr.dtype]
        specs.append((name, dtype, arr.shape))
        arrays.append(arr)
    with SafetensorsWriter(path, specs, metadata) as w:
        for (name, _, _), arr in zip(specs, arrays):
            w.write(name, arr)
