"""`xfmr.compile`: a checkpoint folder or .mlir file in, a loaded `xfmr.Artifact` out."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
import weakref
from typing import Callable, Optional, Union

from . import _args
from ._native import native
from .errors import CompileWarning, InvalidArgumentError
from .runtime import Artifact

__all__ = ["compile", "pack"]


def compile(model: _args.PathLike, output: Optional[_args.PathLike] = None,
            target: str = "cpu", cpu: Optional[str] = None, context: int = 0,
            weights: Optional[_args.PathLike] = None, opt_level: int = 3,
            quantize: Optional[str] = None, quantize_options: Optional[dict] = None,
            kv_cache: Optional[str] = None, mla_cache: Optional[str] = None,
            kv_window: int = 0, kv_sinks: int = 0, moe: Optional[str] = None,
            mla_absorb: Optional[str] = None,
            progress: Optional[Callable[[str], None]] = None,
            dump_ir_after: Optional[str] = None,
            strip_weights: bool = False, precise: bool = False,
            tokenizer: Optional[_args.PathLike] = None,
            sve_bits: Optional[int] = None) -> Union[Artifact, str]:
    """Compiles `model` into an artifact and returns it loaded, like `xfmr-compile`.

    model: a Hugging Face checkpoint folder, or an .mlir file of xfmr IR whose weights come
        from the checkpoint folder `weights`.
    output: the artifact file to write (atomically). None writes it into a new temporary
        folder that is deleted when the returned Artifact is garbage-collected (or at exit);
        `artifact.save(path)` keeps a copy.
    target: "cpu" (default), "cuda:sm_80|sm_89|sm_90|sm_90a", "rocm:gfx90a|gfx942",
        "vulkan", or a comma list of them for one artifact that runs on each (docs/gpu.md).
    cpu: None (this machine's CPU and features: the fastest code here, refused with a
        message naming the missing features elsewhere), an LLVM CPU name ("x86-64-v2",
        "x86-64-v3", "znver4", ...), "native", or a comma list of them, best first, for one
        artifact with a variant each: the runtime runs the first the machine supports
        ("znver4,x86-64-v3,x86-64-v2"). GPU targets' host code takes the last entry
        (default x86-64-v2).
    context: KV-cache capacity in tokens, at most 2**31 - 1; 0 takes the model's
        max_position_embeddings (a larger context than that warns: `xfmr.CompileWarning`).
    opt_level: LLVM optimization level, 0 to 3.
    sve_bits: for target "cpu:aarch64" with an SVE CPU, the SVE vector length in bits the
        code is specialized for, like `--sve-bits`: 256 or 512 (SVE kernels; the runtime
        sets that length, or refuses a CPU without it), 0 (NEON kernels, any length), or
        None for the CPU's own (256 for neoverse-v1, 512 for a64fx, else 0).
    quantize: None, "fp8" for the DeepSeek-V3 recipe (E4M3 weights in 128x128 blocks,
        activations per token in groups of 128), like `xfmr-compile --quantize fp8`, or
        "int8" (W8A8 for CPUs: int8 weights with a scale per output channel, int8
        activations with a scale per token), or "int4" (for CPUs: int4 weights with an f16
        scale per output channel and group of 32 inputs, int8 activations per token).
    quantize_options: with quantize="fp8", a dict of the pass options: "granularity"
        ("block", "channel", "tensor"), "block" ((rows, cols) or an int), "activations"
        (bool), "keep" (weight-name substrings kept in high precision); with "int8",
        "keep" only; with "int4", "group" (inputs per weight scale, a multiple of 8),
        "head" ("int8", the default, "int4" or "keep": the LM head), "experts" ("int4",
        the default, or "int8": routed MoE experts) and "keep" (default the embedding
        only).
    kv_cache: None (f32) or the KV-cache element type: "bf16", "f16", "fp8" (E4M3 with a
        scale per token and head) or "int8" (likewise), like `xfmr-compile --kv-cache`.
    mla_cache: None/"expanded" or "latent" (DeepSeek MLA caches only c_KV and k_pe and
        attends in latent space), like `xfmr-compile --mla-cache`.
    kv_window, kv_sinks: an evicting KV cache (StreamingLLM): keep the first kv_sinks and
        the last kv_window positions, so generation runs past the context length in
        constant memory, like `xfmr-compile --kv-window --kv-sinks`. 0: no eviction.
    mla_absorb: with mla_cache="latent", where W_UK/W_UV are applied: None/"runtime" (per
        token) or "compile-time" (folded into the query projection and o_proj), like
        `xfmr-compile --mla-absorb`.
    moe: how Mixture-of-Experts layers run, like `xfmr-compile --moe`: None/"sparse"
        (decode runs each token's top-k experts, prefill one grouped GEMM per selected
        expert), "sparse-prefill" (token-by-token dispatch in prefill too) or "dense"
        (every expert on every token, for comparison).
    progress: called with one line per compilation stage (e.g. "[  0.01s] importing ...").
    dump_ir_after: print the IR to stderr after this pass of the compilation ("all": after
        every pass); a name that is not a pass of the compilation is an error.
    tokenizer: the tokenizer the artifact carries (a tokenizer.json or tokenizer.model, or a
        folder with one), like `--tokenizer`; default: the checkpoint folder's, with its
        tokenizer_config.json and generation_config.json (`Artifact.tokenizer`).
    strip_weights: write the code, manifest and packing plan without the weights, like
        `xfmr-compile --strip-weights`; needs `output` and returns its path (a stripped
        artifact does not load). `xfmr.pack` binds a checkpoint's weights to it.
    precise: keep f32 activations in linear layers, like `xfmr-compile --precise`. By
        default CPU-only artifacts store bf16 linear weights in panels and multiply them by
        activations rounded to bf16 (AVX512-BF16 dot products where the CPU has them).

    Every option is checked before any work: a bad value, or an option the model has no use
    for (mla_cache="latent" without MLA) raises `xfmr.InvalidArgumentError`; an option
    without effect (moe= on a dense model) issues an `xfmr.CompileWarning`. The output is
    written like every xfmr output: atomically, never through or over a symbolic link.

    The GIL is released while compiling (progress calls take it back briefly); compiler
    calls from several threads run one at a time. Raises FileNotFoundError for missing
    inputs, `xfmr.InvalidArgumentError` (a ValueError) for bad options (an unknown CPU,
    target or chip) and `xfmr.CompileError` with the compiler's message otherwise.
    """
    if quantize not in (None, "fp8", "int8", "int4"):
        raise InvalidArgumentError(f"quantize must be None, 'fp8', 'int8' or 'int4', "
                                   f"got {quantize!r}")
    pass_options = []
    for key, value in (quantize_options or {}).items():
        if quantize is None:
            raise InvalidArgumentError("quantize_options need quantize='fp8', 'int8' or "
                                       "'int4'")
        if quantize == "int8" and key != "keep":
            raise InvalidArgumentError(f"quantize='int8' takes only the 'keep' option (its "
                                       f"scales are per output channel and per token), "
                                       f"got {key!r}")
        if quantize == "int4" and key not in ("group", "head", "experts", "keep"):
            raise InvalidArgumentError(f"quantize='int4' takes only the 'group', 'head', "
                                       f"'experts' and 'keep' options, got {key!r}")
        if key == "experts":
            if quantize != "int4" or value not in ("int4", "int8"):
                raise InvalidArgumentError(f"quantize_options experts is for quantize='int4' "
                                           f"and must be 'int4' or 'int8', got {value!r}")
            pass_options.append(f"experts={value}")
            continue
        if key == "head":
            if quantize != "int4" or value not in ("int8", "int4", "keep"):
                raise InvalidArgumentError(f"quantize_options head is for quantize='int4' "
                                           f"and must be 'int8', 'int4' or 'keep', got "
                                           f"{value!r}")
            pass_options.append(f"head={value}")
            continue
        if key == "group":
            if quantize != "int4":
                raise InvalidArgumentError("the 'group' option is for quantize='int4'")
            if not isinstance(value, int) or value < 8 or value % 8 or value > 65536:
                raise InvalidArgumentError(f"quantize_options group must be a multiple of 8 "
                                           f"in [8, 65536], got {value!r}")
            pass_options.append(f"group={value}")
        elif key == "block":
            rows, cols = (value, value) if isinstance(value, int) else tuple(value)
            pass_options += [f"block-rows={int(rows)}", f"block-cols={int(cols)}"]
        elif key == "activations":
            pass_options.append(f"activations={'true' if value else 'false'}")
        elif key == "granularity":
            if value not in ("block", "channel", "tensor"):
                raise InvalidArgumentError(f"quantize_options granularity must be 'block', "
                                           f"'channel' or 'tensor', got {value!r}")
            pass_options.append(f"granularity={value}")
        elif key == "keep":
            pass_options.append("keep=" + ",".join(value))
        else:
            raise InvalidArgumentError(f"unknown quantize option {key!r} (expected granularity, "
                                       "block, activations, keep)")
    if mla_cache not in (None, "expanded", "latent"):
        raise InvalidArgumentError(f"mla_cache must be None, 'expanded' or 'latent', "
                                   f"got {mla_cache!r}")
    if kv_cache not in (None, "f32", "bf16", "f16", "fp8", "int8"):
        raise InvalidArgumentError(f"kv_cache must be None, 'f32', 'bf16', 'f16', 'fp8' or "
                                   f"'int8', got {kv_cache!r}")
    if mla_absorb not in (None, "runtime", "compile-time"):
        raise InvalidArgumentError(f"mla_absorb must be None, 'runtime' or 'compile-time', "
                                   f"got {mla_absorb!r}")
    if moe not in (None, "sparse", "sparse-prefill", "dense"):
        raise InvalidArgumentError(f"moe must be None, 'sparse', 'sparse-prefill' or 'dense', "
                                   f"got {moe!r}")
    model = _args.existing(model, "model")
    is_mlir = model.endswith(".mlir")
    if is_mlir and os.path.isdir(model):
        raise InvalidArgumentError(f"model {model!r} is a folder: an .mlir model must be a file")
    if not is_mlir and not os.path.isdir(model):
        raise InvalidArgumentError(f"model {model!r} must be a checkpoint folder or an .mlir "
                                   "file")
    if weights is not None:
        if not is_mlir:
            raise InvalidArgumentError("weights is only used with an .mlir model (a checkpoint "
                                       "folder holds its own weights)")
        weights = _args.existing(weights, "weights checkpoint folder", kind="dir")
    if not isinstance(target, str):
        raise TypeError(f"target must be a str, got {type(target).__name__}")
    if cpu is not None and (not isinstance(cpu, str) or not cpu):
        raise InvalidArgumentError(f"cpu must be an LLVM CPU name, 'native' or a comma list "
                                   f"of them, got {cpu!r}")
    context = _args.integer(context, "context", 0, _args.INT32_MAX)
    kv_window = _args.integer(kv_window, "kv_window", 0, 2**31 - 1)
    kv_sinks = _args.integer(kv_sinks, "kv_sinks", 0, 2**31 - 1)
    if kv_sinks and not kv_window:
        raise InvalidArgumentError("kv_sinks needs kv_window (the sinks of an evicting cache)")
    opt_level = _args.integer(opt_level, "opt_level", 0, 3)
    sve_bits = -1 if sve_bits is None else _args.integer(sve_bits, "sve_bits", 0, 2048)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, got {type(progress).__name__}")
    if dump_ir_after is not None and not isinstance(dump_ir_after, str):
        raise TypeError(f"dump_ir_after must be a pass name or 'all', "
                        f"got {type(dump_ir_after).__name__}")

    if not isinstance(strip_weights, bool):
        raise TypeError(f"strip_weights must be a bool, got {type(strip_weights).__name__}")
    if not isinstance(precise, bool):
        raise TypeError(f"precise must be a bool, got {type(precise).__name__}")
    if strip_weights and output is None:
        raise InvalidArgumentError("strip_weights needs an output path (a stripped artifact "
                                   "cannot be loaded, so there is nothing to return)")

    temporary = None
    if output is None:
        temporary = tempfile.mkdtemp(prefix="xfmr-")
        output = os.path.join(temporary, "model.xfmr")
    else:
        output = _args.path(output, "output")
        if os.path.isdir(output):
            raise IsADirectoryError(21, "output is a folder, expected a file name", output)
        folder = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(folder):
            raise FileNotFoundError(2, "output folder not found", folder)
    try:
        native().compile(model, output, target, cpu or "", context, weights or "", opt_level,
                         dump_ir_after or "", quantize or "", " ".join(pass_options),
                         "" if kv_cache in (None, "f32") else kv_cache, mla_cache or "",
                         kv_window, kv_sinks, moe or "", mla_absorb or "", strip_weights,
                         precise, "" if tokenizer is None else _args.path(tokenizer, "tokenizer"),
                         sve_bits, progress,
                         lambda line: warnings.warn(line, CompileWarning, stacklevel=3))
        if strip_weights:
            return output
        artifact = Artifact(output)
    except BaseException:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
        raise
    if temporary:
        artifact._cleanup = weakref.finalize(artifact, shutil.rmtree, temporary, True)
    return artifact


def pack(artifact: _args.PathLike, checkpoint: _args.PathLike, output: _args.PathLike,
         progress: Optional[Callable[[str], None]] = None) -> Artifact:
    """Binds a checkpoint's weights to compiled code and returns the result loaded, like
    `xfmr-pack ARTIFACT CHECKPOINT -o OUTPUT`.

    artifact: a weights-stripped artifact (`compile(..., strip_weights=True)`) or a full one
        whose weights are replaced (fine-tuned weights without recompiling).
    checkpoint: a Hugging Face checkpoint folder of the architecture and shapes the artifact
        was compiled for. Tensors are copied, FP8-quantized or MLA-folded as the artifact's
        packing plan says, exactly as `compile` does: packing the checkpoint a model was
        compiled from gives the same bytes. F32, BF16 and F16 tensors convert into the
        compiled dtype (each conversion is reported through `progress`).
    output: the artifact to write (atomically, never through a symbolic link).

    Runs in the runtime (no compiler needed). Raises FileNotFoundError for missing inputs
    and `xfmr.Error` naming the file, tensor or field at fault otherwise.
    """
    artifact = _args.existing(artifact, "artifact", kind="file")
    checkpoint = _args.existing(checkpoint, "checkpoint folder", kind="dir")
    output = _args.path(output, "output")
    if os.path.isdir(output):
        raise IsADirectoryError(21, "output is a folder, expected a file name", output)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, got {type(progress).__name__}")
    converted = native().pack(artifact, checkpoint, output, progress)
    if progress is not None:
        for tensor in converted:
            progress(f"converted {tensor}")
    return Artifact(output)
