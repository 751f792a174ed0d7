"""Calls a compiled artifact's entry points directly through their C ABI
(runtime/include/xfmr/runtime/ArtifactFormat.h), with ctypes. Tests use it to
check the generated code independently of the runtime library."""

import ctypes
import json
import mmap
import os
import struct
import tempfile

import numpy as np


class _MemRef1(ctypes.Structure):
    _fields_ = [("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p),
                ("offset", ctypes.c_int64), ("sizes", ctypes.c_int64 * 1),
                ("strides", ctypes.c_int64 * 1)]


class _MemRef2(ctypes.Structure):
    _fields_ = [("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p),
                ("offset", ctypes.c_int64), ("sizes", ctypes.c_int64 * 2),
                ("strides", ctypes.c_int64 * 2)]


def _memref1(array):
    pointer = array.ctypes.data
    return _MemRef1(pointer, pointer, 0, (ctypes.c_int64 * 1)(array.size),
                    (ctypes.c_int64 * 1)(1))


class CompiledModel:
    """The code, weights and a fresh KV cache of one artifact."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        header = struct.unpack("<8sIIQQQQQQQ", self._map[:72])
        assert header[0] == b"XFMRART\0", "not an xfmr artifact"
        _, _, _, manifest_at, manifest_size, weights_at, weights_size, code_at, code_size, _ = header
        self.manifest = json.loads(self._map[manifest_at:manifest_at + manifest_size])
        self.vocab = self.manifest["model"]["vocab_size"]
        fd, so_path = tempfile.mkstemp(suffix=".so")
        with os.fdopen(fd, "wb") as so:
            so.write(self._map[code_at:code_at + code_size])
        self._lib = ctypes.CDLL(so_path)
        os.unlink(so_path)
        self._weights = np.frombuffer(self._map, np.uint8, max(weights_size, 1), weights_at)
        self.cache = np.zeros(self.manifest["kv_cache"]["bytes"], np.uint8)

    @property
    def bf16_inputs(self):
        """Weights whose linear layers round their input to bf16: those the manifest stores
        in panels (CPU-only artifacts), unless compiled with --precise."""
        if self.manifest.get("compile_options", {}).get("precise"):
            return []
        return [t["name"] for t in self.manifest["weights"]["tensors"] if t.get("panel")]

    def _call(self, entry, ids, start):
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        logits = np.zeros((len(ids), self.vocab), np.float32)
        out = _MemRef2(logits.ctypes.data, logits.ctypes.data, 0,
                       (ctypes.c_int64 * 2)(*logits.shape), (ctypes.c_int64 * 2)(self.vocab, 1))
        args = [_memref1(ids), _memref1(self._weights), _memref1(self.cache)]
        getattr(self._lib, self.manifest["entry_points"][entry])(
            ctypes.byref(args[0]), ctypes.c_int64(start), ctypes.byref(args[1]),
            ctypes.byref(args[2]), ctypes.byref(out))
        return logits

    def prefill(self, ids, start=0):
        """float32 logits [len(ids), vocab] for ids at positions start..."""
        return self._call("prefill", ids, start)

    def decode(self, token, position):
        """float32 logits [vocab] of one token at `position`."""
        return self._call("decode", [token], position)[0]
