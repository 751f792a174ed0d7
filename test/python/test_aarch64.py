"""ARM64 (issue 19): artifacts cross-compiled with `--target cpu:aarch64` run in the runtime
and xfmr-run cross-built by `scripts/build-runtime.sh --arch aarch64`, under QEMU user-mode
emulation (qemu-aarch64-static with Debian's arm64 glibc). Greedy ids and logits match the
float64 reference (f32) or its emulation of each compressed KV cache and of int8 and int4
weights, as on x86-64; a tiny
DeepSeek-V3 MoE runs; the CPU extensions an artifact was compiled for are checked against
the (emulated) CPU's HWCAP; an artifact for the other architecture is refused by name.
Emulated timings mean nothing: nothing here is timed."""

import json
import os
import platform
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import BUILD_DIR, REPO, tool
from test_e2e_cpu import relative_row_error
from xfmr import reference
from xfmr.reference.kv_cache import use_kv_cache

SYSROOT = Path(os.environ.get("XFMR_AARCH64_SYSROOT", "/opt/xfmr/sysroot-aarch64"))
GLIBC = "/usr/aarch64-linux-gnu"


@pytest.fixture(scope="module")
def arm_run():
    """xfmr-run for aarch64 (built once into the build folder), run under QEMU:
    arm_run(args, cpu="max") -> CompletedProcess."""
    for needed in ("aarch64-linux-gnu-g++", "qemu-aarch64-static"):
        if not shutil.which(needed):
            pytest.skip(f"{needed} is missing (scripts/setup.sh installs it)")
    if not (SYSROOT / "usr/include/pcre2.h").exists():
        pytest.skip(f"no arm64 sysroot at {SYSROOT} (scripts/setup.sh unpacks it)")
    out = BUILD_DIR / "aarch64"
    built = subprocess.run(["bash", str(REPO / "scripts" / "build-runtime.sh"), "--arch",
                            "aarch64", "--build-dir", str(out)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    binary = out / "bin" / "xfmr-run"
    assert (out / "lib" / "libstdc++.so.6").exists()

    def run(args, cpu="max", strace=False):
        return subprocess.run(qemu(cpu, strace) + [str(binary), *map(str, args)],
                              capture_output=True, text=True, timeout=600)

    return run


def qemu(cpu="max", strace=False):
    """The command that runs an aarch64 program under QEMU with the cross toolchain's
    glibc: its own loader, told to ignore /etc/ld.so.cache, so that an arm64 libc6 of
    another version installed on the host (multiarch) never pairs with it (a mismatched
    loader and libc hang in pthread_create)."""
    loader = f"{GLIBC}/lib/ld-linux-aarch64.so.1"
    return (["qemu-aarch64-static", "-cpu", cpu] + (["-strace"] if strace else [])
            + ["-L", GLIBC, loader, "--inhibit-cache", "--library-path", f"{GLIBC}/lib"])


def compile_for(checkpoint, path, *extra):
    subprocess.run([tool("xfmr-compile"), str(checkpoint), "-o", str(path), "--target",
                    "cpu:aarch64", *extra], check=True, capture_output=True, text=True)
    return path


def greedy(run, artifact, prompt, n, tmp_path, cpu="max", threads=None):
    """(ids, logit rows) of n greedy tokens through the emulated xfmr-run."""
    logits = tmp_path / f"logits-{artifact.stem}-{cpu}.npy"
    out = run([artifact, "--prompt-ids", " ".join(map(str, prompt)), "-n", n, "--ignore-eos",
               "--dump-logits", logits, *(["--threads", threads] if threads else [])],
              cpu=cpu)
    assert out.returncode == 0, out.stderr
    return [int(t) for t in out.stdout.split()], np.load(logits)


def assert_matches_emulation(run, artifact, checkpoint, apply, prompt, n, tmp_path,
                             cpu="max", threads=None):
    """The emulated xfmr-run's n greedy ids equal those of the float64 reference with
    `apply` (an emulation such as apply_int8) applied, and its logits are within 1e-3."""
    ids, rows = greedy(run, artifact, prompt, n, tmp_path, cpu=cpu, threads=threads)
    model = reference.load(str(checkpoint))
    apply(model)
    expected_ids, expected_rows = model.generate_greedy(prompt, n)
    assert ids == list(expected_ids)
    assert relative_row_error(rows, expected_rows) < 1e-3


def test_built_binary_needs_only_glibc_besides_what_it_ships(arm_run):
    binary = BUILD_DIR / "aarch64" / "bin" / "xfmr-run"
    dynamic = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True,
                             check=True).stdout
    assert "$ORIGIN/../lib" in dynamic
    assert "AArch64" in subprocess.run(["readelf", "-h", str(binary)], capture_output=True,
                                       text=True, check=True).stdout
    shipped = {p.name for p in (BUILD_DIR / "aarch64" / "lib").iterdir()}
    for line in dynamic.splitlines():
        if "(NEEDED)" in line:
            name = line.split("[")[1].rstrip("]")
            assert name in shipped or name.startswith(("libc.so", "libm.so")), name
    out = arm_run(["--version"])
    assert out.returncode == 0 and out.stdout.startswith("xfmr ")


def test_stories260k_f32_matches_the_reference(arm_run, stories260k_dir, tmp_path):
    artifact = compile_for(stories260k_dir, tmp_path / "model.xfmr")
    ids, rows = greedy(arm_run, artifact, [1], 40, tmp_path)
    expected_ids, expected_rows = reference.load(str(stories260k_dir)).generate_greedy([1], 40)
    assert ids == list(expected_ids)
    assert relative_row_error(rows, expected_rows) < 1e-4
    # The same ids as the x86-64 build.
    native = tmp_path / "native.xfmr"
    subprocess.run([tool("xfmr-compile"), str(stories260k_dir), "-o", str(native)], check=True,
                   capture_output=True)
    x86 = subprocess.run([tool("xfmr-run"), str(native), "--prompt-ids", "1", "-n", "40",
                          "--ignore-eos"], capture_output=True, text=True, check=True)
    assert [int(t) for t in x86.stdout.split()] == ids


@pytest.mark.parametrize("element", ["bf16", "f16", "fp8", "int8"])
def test_compressed_kv_caches_match_their_emulation(element, arm_run, stories260k_dir,
                                                    tmp_path):
    artifact = compile_for(stories260k_dir, tmp_path / "model.xfmr", "--kv-cache", element)
    ids, rows = greedy(arm_run, artifact, [1], 24, tmp_path)
    model = reference.load(str(stories260k_dir))
    use_kv_cache(model, element)
    expected_ids, expected_rows = model.generate_greedy([1], 24)
    assert ids == list(expected_ids)
    assert relative_row_error(rows, expected_rows) < 1e-3


def test_deepseek_v3_moe_runs(arm_run, synth_checkpoint, tmp_path):
    checkpoint = synth_checkpoint("deepseek_v3")
    artifact = compile_for(checkpoint, tmp_path / "model.xfmr")
    prompt = list(range(3, 19))
    ids, rows = greedy(arm_run, artifact, prompt, 8, tmp_path)
    expected_ids, expected_rows = reference.load(str(checkpoint)).generate_greedy(prompt, 8)
    assert ids == list(expected_ids)
    assert relative_row_error(rows, expected_rows) < 1e-4


def test_threads(arm_run, synth_checkpoint, tmp_path):
    """AArch64 code runs its parallel loops on the runtime's own OpenMP entry points
    (runtime/src/backends/cpu/ForkJoin.cpp, no libomp): --threads 2 and 3 start that many
    threads less one (clone under -strace) and give the ids and logits of one thread."""
    checkpoint = synth_checkpoint("llama", preset="small", dtype="bf16")
    artifact = compile_for(checkpoint, tmp_path / "model.xfmr", "--quantize", "int4")
    prompt = "3 4 5 6 7 8 9 10 11 12"
    results = {}
    for threads in (1, 2, 3):
        logits = tmp_path / f"logits-{threads}.npy"
        out = arm_run([artifact, "--prompt-ids", prompt, "-n", 8, "--ignore-eos",
                       "--threads", threads, "--dump-logits", logits], strace=True)
        assert out.returncode == 0, out.stderr[-2000:]
        clones = out.stderr.count(" clone(")
        assert clones == threads - 1, (threads, clones)
        results[threads] = (out.stdout.split(), np.load(logits))
    for threads in (2, 3):
        assert results[threads][0] == results[1][0]
        assert np.array_equal(results[threads][1], results[1][1])


# Extensions and the QEMU CPU models that have them (cortex-a53 is ARMv8.0: none of them).
VARIANTS = [("generic+dotprod", "neoverse-n1"), ("generic+i8mm", "max"),
            ("generic+bf16", "max"), ("generic+sve", "max"), ("neoverse-v1", "max")]


@pytest.mark.parametrize("cpu,qemu_cpu", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_cpu_extensions(cpu, qemu_cpu, arm_run, stories260k_dir, tmp_path):
    """Code for a CPU with an extension runs where the CPU has it (same ids as the
    baseline) and is refused, naming the extension, where it does not."""
    artifact = compile_for(stories260k_dir, tmp_path / "model.xfmr", "--cpu", cpu)
    extension = cpu.split("+")[1] if "+" in cpu else "sve"
    ids, _ = greedy(arm_run, artifact, [1], 12, tmp_path, cpu=qemu_cpu)
    expected_ids, _ = reference.load(str(stories260k_dir)).generate_greedy([1], 12)
    assert ids == list(expected_ids)
    refused = arm_run([artifact, "--prompt-ids", "1", "-n", "1"], cpu="cortex-a53")
    assert refused.returncode == 1
    assert "which needs" in refused.stderr and extension in refused.stderr, refused.stderr


def test_architecture_mismatch_and_bad_cpus(arm_run, stories260k_dir, tmp_path):
    arm = compile_for(stories260k_dir, tmp_path / "arm.xfmr")
    out = subprocess.run([tool("xfmr-run"), str(arm), "--prompt-ids", "1", "-n", "1"],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "target triple 'aarch64-unknown-linux-gnu' does not match this host" in out.stderr
    native = tmp_path / "native.xfmr"
    subprocess.run([tool("xfmr-compile"), str(stories260k_dir), "-o", str(native)], check=True,
                   capture_output=True)
    out = arm_run([native, "--prompt-ids", "1", "-n", "1"])
    assert out.returncode == 1 and "architecture 'x86_64' is not 'aarch64'" in out.stderr
    for cpu, words in (("native", "--cpu native names this machine's CPU"),
                       ("cortex-z9", "unknown CPU 'cortex-z9'"),
                       ("generic+warp", "unknown AArch64 extension 'warp'")):
        out = subprocess.run([tool("xfmr-compile"), str(stories260k_dir), "-o",
                              str(tmp_path / "bad.xfmr"), "--target", "cpu:aarch64", "--cpu",
                              cpu], capture_output=True, text=True)
        assert out.returncode != 0 and words in out.stderr, out.stderr
        assert not (tmp_path / "bad.xfmr").exists()
    out = subprocess.run([tool("xfmr-compile"), str(stories260k_dir), "-o",
                          str(tmp_path / "bad.xfmr"), "--target", "cpu:riscv64"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "cpu:aarch64" in out.stderr
    # Naming this machine's own architecture is the plain CPU target.
    host = tmp_path / "host.xfmr"
    subprocess.run([tool("xfmr-compile"), str(stories260k_dir), "-o", str(host), "--target",
                    f"cpu:{platform.machine()}"], check=True, capture_output=True)
    assert artifact_manifest(host)["target"]["triple"] == artifact_manifest(native)["target"][
        "triple"]


def artifact_manifest(artifact):
    """The artifact's JSON manifest, read from its header (artifact_abi's layout)."""
    data = Path(artifact).read_bytes()
    header = struct.unpack("<8sIIQQQQQQQ", data[:72])
    at, size = header[3], header[4]
    return json.loads(data[at:at + size])


def code_of(artifact):
    """The artifact's model code (the shared object after the header and weights)."""
    data = Path(artifact).read_bytes()
    return data[data.index(b"\x7fELF"):]


def instructions(artifact, tmp_path):
    """(mnemonic, first operand) of each instruction in the artifact's model code."""
    objdump = shutil.which("llvm-objdump-22") or "/usr/lib/llvm-22/bin/llvm-objdump"
    code = tmp_path / f"{Path(artifact).stem}.so"
    code.write_bytes(code_of(artifact))
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn",
                              "--mattr=+bf16,+dotprod,+i8mm,+sve", str(code)],
                             capture_output=True, text=True, check=True).stdout
    found = []
    for line in listing.splitlines():
        fields = line.split("\t")
        if len(fields) > 2 and fields[1].strip():
            found.append((fields[1].strip(), fields[2].split(",")[0].strip()))
    return found


def mnemonics(artifact, tmp_path):
    """The instruction mnemonics in the artifact's model code."""
    return {mnemonic for mnemonic, _ in instructions(artifact, tmp_path)}


@pytest.mark.parametrize("cpu,qemu_cpu,instruction", [
    ("generic", "max", None),
    ("generic+dotprod", "neoverse-n1", "sdot"),
    ("generic+i8mm", "max", "usdot"),
], ids=["generic", "dotprod", "i8mm"])
def test_int8_weights_with_arm_dot_products(cpu, qemu_cpu, instruction, arm_run,
                                            stories260k_dir, synth_checkpoint, tmp_path):
    """W8A8 linears (--quantize int8) on AArch64: with dotprod each quad of a panel goes
    through `sdot`, with i8mm through `usdot` for a lone token and `usmmla` for pairs of
    tokens (two quads of two rows zipped), and either way the model matches the float64
    emulation of the int8 scheme (as the x86 VNNI kernels do, test_e2e_int8.py), for
    prompts of 1 and 7 tokens (tiles of 4, 2 and 1)."""
    from xfmr.reference.int8 import apply_int8

    for checkpoint, prompt in ((stories260k_dir, [1]),
                               (synth_checkpoint("deepseek_v3"), list(range(3, 10)))):
        artifact = compile_for(checkpoint, tmp_path / "model.xfmr", "--quantize", "int8",
                               "--cpu", cpu)
        found = mnemonics(artifact, tmp_path)
        if instruction:
            assert instruction in found
        else:
            assert not {"sdot", "usdot", "usmmla"} & found
        assert ("usmmla" in found) == (instruction == "usdot")
        assert_matches_emulation(arm_run, artifact, checkpoint, apply_int8, prompt, 16,
                                 tmp_path, cpu=qemu_cpu)


@pytest.mark.parametrize("cpu,qemu_cpu,instruction", [
    ("generic", "max", None),
    ("generic+dotprod", "neoverse-n1", "sdot"),
    ("generic+i8mm", "max", "usmmla"),
], ids=["generic", "dotprod", "i8mm"])
def test_int4_weights_with_arm_dot_products(cpu, qemu_cpu, instruction, arm_run,
                                            stories260k_dir, synth_checkpoint, tmp_path):
    """Int4 linears (--quantize int4) on AArch64: the nibbles of each octet go through
    `sdot` (dotprod: unsigned nibbles are valid signed bytes) or, with i8mm, `usmmla` for
    pairs of tokens (2 rows x 8 inputs by 8 inputs x 2 tokens) and `usdot` for a lone
    one, and the
    model matches the float64 emulation of the int4 scheme, stories260K (its tied head
    int8) and a DeepSeek-V3 MoE (an int8 LM head, int4 routed and shared experts)
    alike."""
    from xfmr.reference.int4 import apply_int4

    # Prompts of 1, 7 (tiles of 4, 2 and 1 tokens) and 16 tokens.
    deepseek = synth_checkpoint("deepseek_v3")
    for checkpoint, prompt in ((stories260k_dir, [1]), (deepseek, list(range(3, 10))),
                               (deepseek, list(range(3, 19)))):
        artifact = compile_for(checkpoint, tmp_path / "model.xfmr", "--quantize", "int4",
                               "--cpu", cpu)
        tensors = artifact_manifest(artifact)["weights"]["tensors"]
        assert any(t["dtype"] == "i4" and t.get("panel") for t in tensors)
        found = mnemonics(artifact, tmp_path)
        if instruction:
            assert instruction in found
        else:
            assert not {"sdot", "usdot", "usmmla"} & found
        if instruction == "usmmla":
            assert "usdot" in found
        assert_matches_emulation(arm_run, artifact, checkpoint, apply_int4, prompt, 16,
                                 tmp_path, cpu=qemu_cpu)


@pytest.mark.parametrize("cpu", ["generic", "generic+bf16"])
def test_bf16_weights_with_bfdot(cpu, arm_run, synth_checkpoint, tmp_path):
    """bf16 panel linears on AArch64: with the bf16 extension `bfdot` multiplies the bf16
    pairs of a lone token (as vdpbf16ps on x86) and `bfmmla` pairs of tokens (2 rows x 4
    inputs by 4 inputs x 2 tokens); either way the model matches the float64 reference that
    rounds those linears' inputs to bf16, as on x86-64 (test_e2e_cpu.py)."""
    from test_e2e_cpu import assert_rows_match

    checkpoint = synth_checkpoint("llama", dtype="bf16")
    artifact = compile_for(checkpoint, tmp_path / "model.xfmr", "--cpu", cpu)
    found = mnemonics(artifact, tmp_path)
    assert ("bfdot" in found) == cpu.endswith("+bf16")
    assert ("bfmmla" in found) == cpu.endswith("+bf16")
    panels = [t["name"] for t in artifact_manifest(artifact)["weights"]["tensors"]
              if t.get("panel")]
    assert panels
    # 16 tokens: tiles of 4 through bfmmla; 7: tiles of 4, 2 (bfmmla) and 1 (bfdot).
    for prompt in (list(range(3, 19)), list(range(3, 10))):
        ids, rows = greedy(arm_run, artifact, prompt, 8, tmp_path)
        expected = reference.load(str(checkpoint), bf16_inputs=panels)
        expected_ids, expected_rows = expected.generate_greedy(prompt, 8)
        assert ids == list(expected_ids)
        assert_rows_match(rows, expected_rows, bf16_inputs=True)


def host_has(flag):
    return flag in Path("/proc/cpuinfo").read_text().split()


@pytest.mark.parametrize("cpu,x86_cpu", [("generic", "x86-64-v3"),
                                         ("generic+bf16", "native")],
                         ids=["fma", "bfdot"])
def test_fp8_weights_as_on_x86(cpu, x86_cpu, arm_run, stories260k_dir, tmp_path):
    """FP8 weights (--quantize fp8) with bf16 activations: the AArch64 code computes what
    the x86 code of the same kernel variant computes (FMA tiles: x86-64-v3; dot products:
    bfdot as vdpbf16ps, a native AVX512-BF16 build), ids equal and logits within 1e-5. The
    two variants differ from each other by bf16 rounding ties (0.14 of a row's max-abs on
    stories260K, on x86 alike), so each is compared with its own kind."""
    if x86_cpu == "native" and not host_has("avx512_bf16"):
        pytest.skip("this host has no AVX512-BF16 to build the x86 dot-product variant")
    arm = compile_for(stories260k_dir, tmp_path / "arm.xfmr", "--quantize", "fp8", "--cpu", cpu)
    ids, rows = greedy(arm_run, arm, [1], 30, tmp_path)
    x86 = tmp_path / "x86.xfmr"
    subprocess.run([tool("xfmr-compile"), str(stories260k_dir), "-o", str(x86), "--quantize",
                    "fp8", "--cpu", x86_cpu], check=True, capture_output=True)
    logits = tmp_path / "x86.npy"
    out = subprocess.run([tool("xfmr-run"), str(x86), "--prompt-ids", "1", "-n", "30",
                          "--ignore-eos", "--dump-logits", str(logits)], capture_output=True,
                         text=True, check=True)
    assert [int(t) for t in out.stdout.split()] == ids
    assert relative_row_error(rows, np.load(logits)) < 1e-5


# SVE kernels: code for one SVE vector length, from --sve-bits or the CPU's own
# (neoverse-v1: 256 bits, a64fx: 512). QEMU's max CPU starts processes at 512 bits and
# supports every length up to 2048; its a64fx model 128, 256 and 512.
SVE = [("neoverse-v1", (), "max", 256),
       ("generic+sve+i8mm+bf16", ("--sve-bits", "512"), "max", 512),
       ("a64fx", (), "a64fx", 512)]


@pytest.mark.parametrize("cpu,extra,qemu_cpu,bits", SVE, ids=[v[0] for v in SVE])
def test_sve_kernels(cpu, extra, qemu_cpu, bits, arm_run, synth_checkpoint, tmp_path):
    """With a fixed SVE length the panel kernels' dot and matrix products are SVE's (z
    registers: `usmmla`/`usdot` with i8mm, SVE's own `sdot` without, as on a64fx, which
    lacks NEON's dotprod; `bfmmla`/`bfdot` with bf16), each on a register of 128-bit
    segments, and no NEON forms are left. The runtime sets the length (prctl), on its
    worker threads too (--threads 2), and int8, int4 and bf16 models match their
    emulations as the NEON kernels do."""
    from test_e2e_cpu import assert_rows_match
    from xfmr.reference.int4 import apply_int4
    from xfmr.reference.int8 import apply_int8

    i8mm = cpu != "a64fx"
    deepseek = synth_checkpoint("deepseek_v3")
    prompt = list(range(3, 10))  # tiles of 4, 2 and 1 tokens
    for quantize, apply in (("int8", apply_int8), ("int4", apply_int4)):
        artifact = compile_for(deepseek, tmp_path / f"{quantize}.xfmr", "--quantize", quantize,
                               "--cpu", cpu, *extra)
        assert artifact_manifest(artifact)["target"]["sve_bits"] == bits
        found = instructions(artifact, tmp_path)
        expected = {"usmmla", "usdot"} if i8mm else {"sdot"}
        assert expected <= {m for m, first in found if first.startswith("z")}
        assert not {m for m, first in found
                    if m in ("sdot", "usdot", "usmmla") and first.startswith("v")}
        assert_matches_emulation(arm_run, artifact, deepseek, apply, prompt, 12, tmp_path,
                                 cpu=qemu_cpu, threads=2)
    if not i8mm:
        return
    checkpoint = synth_checkpoint("llama", dtype="bf16")
    artifact = compile_for(checkpoint, tmp_path / "bf16.xfmr", "--cpu", cpu, *extra)
    found = instructions(artifact, tmp_path)
    assert {"bfmmla", "bfdot"} <= {m for m, first in found if first.startswith("z")}
    assert not {m for m, first in found if m in ("bfmmla", "bfdot") and first.startswith("v")}
    panels = [t["name"] for t in artifact_manifest(artifact)["weights"]["tensors"]
              if t.get("panel")]
    ids, rows = greedy(arm_run, artifact, prompt, 8, tmp_path, cpu=qemu_cpu)
    expected_ids, expected_rows = reference.load(
        str(checkpoint), bf16_inputs=panels).generate_greedy(prompt, 8)
    assert ids == list(expected_ids)
    assert_rows_match(rows, expected_rows, bf16_inputs=True)


def test_sve_length_checks(arm_run, stories260k_dir, tmp_path):
    """Code for a length the CPU does not support is refused by name (QEMU's sve-max-vq
    caps the length); --sve-bits takes 256, 512 or 0 (NEON kernels: no vector length in
    the manifest) for an AArch64 CPU with SVE, and refuses the rest by name."""
    artifact = compile_for(stories260k_dir, tmp_path / "v1.xfmr", "--quantize", "int8",
                           "--cpu", "neoverse-v1")
    for qemu_cpu, longest in (("max,sve-max-vq=1", 128), ("max,sve-max-vq=2", None)):
        out = arm_run([artifact, "--prompt-ids", "1", "-n", "2"], cpu=qemu_cpu)
        if longest is None:
            assert out.returncode == 0, out.stderr
            continue
        assert out.returncode == 1
        assert ("256-bit SVE vectors (--sve-bits 256), a length this CPU does not support "
                f"(its longest: {longest} bits)") in out.stderr, out.stderr
    neon = compile_for(stories260k_dir, tmp_path / "neon.xfmr", "--quantize", "int8",
                       "--cpu", "neoverse-v1", "--sve-bits", "0")
    assert "sve_bits" not in artifact_manifest(neon)["target"]
    assert not {m for m, first in instructions(neon, tmp_path)
                if m == "usmmla" and first.startswith("z")}
    out = arm_run([neon, "--prompt-ids", "1", "-n", "2"], cpu="max,sve-max-vq=1")
    assert out.returncode == 0, out.stderr
    # One artifact for Graviton3 and Graviton4: the 256-bit variant where the CPU has that
    # length, the NEON kernels of neoverse-v2 (128-bit SVE) where it does not.
    both = compile_for(stories260k_dir, tmp_path / "both.xfmr", "--quantize", "int8",
                       "--cpu", "neoverse-v1,neoverse-v2")
    targets = artifact_manifest(both)["targets"]
    assert [t.get("sve_bits", 0) for t in targets] == [256, 0]
    for qemu_cpu in ("max,sve-max-vq=1", "max"):
        out = arm_run([both, "--prompt-ids", "1", "-n", "2"], cpu=qemu_cpu)
        assert out.returncode == 0, out.stderr
    for args, words in (
            (["--target", "cpu:aarch64", "--cpu", "neoverse-v1", "--sve-bits", "384"],
             "--sve-bits 384: the kernels take SVE vectors of 256 or 512 bits"),
            (["--target", "cpu:aarch64", "--cpu", "neoverse-n1", "--sve-bits", "256"],
             "--sve-bits 256: cpu 'neoverse-n1' has no SVE"),
            (["--cpu", "x86-64-v3", "--sve-bits", "256"],
             "--sve-bits applies to code for AArch64 CPUs"),
            (["--target", "cpu:aarch64", "--cpu", "a64fx", "--sve-bits=-1"],
             "--sve-bits: expected 256, 512 or 0, got -1")):
        out = subprocess.run([tool("xfmr-compile"), str(stories260k_dir), "-o",
                              str(tmp_path / "bad.xfmr"), *args], capture_output=True, text=True)
        assert out.returncode != 0 and words in out.stderr, out.stderr
        assert not (tmp_path / "bad.xfmr").exists()
    # The Python API's sve_bits is --sve-bits.
    import xfmr
    path = xfmr.compile(str(stories260k_dir), str(tmp_path / "api.xfmr"), target="cpu:aarch64",
                        cpu="a64fx", sve_bits=256, strip_weights=True)
    manifest = artifact_manifest(path)
    assert manifest["target"]["sve_bits"] == 256
    assert manifest["compile_options"]["sve_bits"] == 256
    with pytest.raises(xfmr.InvalidArgumentError, match="--sve-bits 384: the kernels take"):
        xfmr.compile(str(stories260k_dir), str(tmp_path / "bad.xfmr"), target="cpu:aarch64",
                     cpu="a64fx", sve_bits=384)
    with pytest.raises(TypeError, match="sve_bits must be an integer"):
        xfmr.compile(str(stories260k_dir), str(tmp_path / "bad.xfmr"), target="cpu:aarch64",
                     sve_bits="256")
    assert not (tmp_path / "bad.xfmr").exists()
