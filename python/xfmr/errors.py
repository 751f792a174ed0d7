"""The exceptions of the xfmr API.

Every failure reported by the compiler or the runtime is an `Error` (a `RuntimeError`) whose
message is the C++ message. Bad arguments (an option, a value, a token id the model does not
have) raise `InvalidArgumentError`, which is also a `ValueError`; missing files raise the
built-in `FileNotFoundError` before any C++ code runs. Pure Python, so the classes exist even
when the native extension is not built.
"""

__all__ = ["Error", "CompileError", "CompileWarning", "InvalidArgumentError"]


class Error(RuntimeError):
    """A failure reported by xfmr's compiler or runtime (the message is the C++ one)."""


class CompileError(Error):
    """Importing, parsing, verifying, transforming or compiling a model failed."""


class InvalidArgumentError(Error, ValueError):
    """A bad option or value: rejected before any work was done (also a ValueError)."""


class CompileWarning(UserWarning):
    """The compiler's warnings (an option without effect on this model, a context past the
    model's max_position_embeddings), issued through `warnings.warn`."""
