//===- Host.h - what this machine can run -----------------------*- C++ -*-===//
//
// An artifact's code is native code for one target triple and CPU. Loading it
// elsewhere would fail in dlopen with an obscure message, or crash on the
// first unsupported instruction, so the runtime checks the manifest's target
// against the host first and says what differs.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_HOST_H
#define XFMR_RUNTIME_HOST_H

#include <string>

namespace xfmr::runtime {

/// This machine's target triple from uname(2), e.g.
/// "x86_64-unknown-linux-gnu".
std::string hostTriple();

/// Why code for `triple` cannot run on this host (architecture or operating
/// system differ), or an empty string when it can. The vendor and
/// environment components are not compared.
std::string tripleMismatch(const std::string &triple);

/// Why code compiled for `cpu` (e.g. "x86-64-v3") with LLVM `features`
/// (e.g. "+avx2,+fma", every ISA extension the code may use) cannot run on
/// this CPU, or an empty string. Names every missing feature; a feature this
/// runtime cannot check counts as missing. System features
/// (isSystemFeature) are not required. Enables AMX tile state for the
/// process when the code may use it. Code for one SVE vector length
/// (`sveBits`, 0: any) needs a CPU that supports that length (the check
/// leaves this thread's length as it was).
std::string cpuMismatch(const std::string &cpu, const std::string &features,
                        int64_t sveBits = 0);

/// Whether this host's CPU and OS support the LLVM x86 feature `name`
/// ("avx512bf16", "amx-tile", ...): 1 or 0, or -1 for a name the runtime
/// does not know (and on non-x86 hosts).
int hostHasFeature(const std::string &name);

/// Whether `name` is a system, security or crypto extension (pku, sgx,
/// rdseed, aes, ...) that xfmr's code never uses, so a host may lack it.
bool isSystemFeature(const std::string &name);

/// Asks Linux for the AMX tile register state (required before the first
/// tile instruction); false when refused or not x86.
bool enableAmxTiles();

/// Sets this thread's SVE vector length to `bits` (prctl PR_SVE_SET_VL;
/// threads it starts later inherit it) and returns true, or returns false,
/// leaving the length as it was, where the CPU cannot. AArch64 code for one
/// length needs it on every thread that runs the code.
bool setSveVectorBits(int64_t bits);

/// This thread's SVE vector length in bits (read without a system call); 0
/// without SVE.
int64_t sveVectorBits();

/// The longest SVE vector length this CPU supports, in bits; 0 without SVE.
int64_t longestSveVectorBits();

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_HOST_H
