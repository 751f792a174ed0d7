"""xfmr: an MLIR-based ahead-of-time compiler for transformer language models.

This package holds the pure-Python parts: a safetensors reader/writer
(`xfmr.safetensors`), a float64 NumPy reference implementation of the supported
architectures (`xfmr.reference`) and a synthetic checkpoint generator (`xfmr.synth`).
Nothing here imports the native extension; it is loaded lazily by the modules that need it.
"""

__version__ = "0.1.0"
