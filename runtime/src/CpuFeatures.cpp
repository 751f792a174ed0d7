//===- CpuFeatures.cpp - the ISA extensions this CPU and OS enable --------===//
//
// x86-64: reads CPUID (and XCR0, for the register state the OS saves) to
// tell which of LLVM's x86 feature names this host can run. AArch64: the
// kernel's HWCAP words, for the extensions the compiler records (those the
// kernels may use: NEON, FP16, dot products, int8 and bf16 matrix multiply,
// SVE). The table covers every
// feature llvm::X86::getFeaturesForCPU reports for any CPU LLVM 22 knows, so
// an artifact compiled for any named CPU is checked completely; a unit test
// of the compiler keeps the two lists in step.
//
//===----------------------------------------------------------------------===//

#include "xfmr/runtime/Host.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__x86_64__)
#include <asm/prctl.h>
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

using namespace xfmr::runtime;

#if defined(__x86_64__)
namespace {

enum Reg { EAX, EBX, ECX, EDX };

/// Where CPUID reports a feature. Leaf 0 means "always present on x86-64";
/// `minimum` > 0 compares the whole register with it instead of a bit
/// (AVX10's version number).
struct CpuidBit {
  const char *name;
  uint32_t leaf, subleaf;
  Reg reg;
  int bit;
  uint32_t minimum = 0;
};

// Intel SDM vol. 2A (CPUID), AMD APM vol. 3 appendix E, LLVM's
// X86TargetParser.def and llvm::sys::getHostCPUFeatures.
const CpuidBit kFeatures[] = {
    // Architectural on every x86-64 CPU.
    {"64bit", 0, 0, EDX, 0},
    {"x87", 0, 0, EDX, 0},
    {"cx8", 0, 0, EDX, 0},
    {"cmov", 0, 0, EDX, 0},
    {"mmx", 0, 0, EDX, 0},
    {"fxsr", 0, 0, EDX, 0},
    {"sse", 0, 0, EDX, 0},
    {"sse2", 0, 0, EDX, 0},
    // Leaf 1.
    {"sse3", 1, 0, ECX, 0},
    {"pclmul", 1, 0, ECX, 1},
    {"ssse3", 1, 0, ECX, 9},
    {"fma", 1, 0, ECX, 12},
    {"cx16", 1, 0, ECX, 13},
    {"sse4.1", 1, 0, ECX, 19},
    {"sse4.2", 1, 0, ECX, 20},
    {"crc32", 1, 0, ECX, 20},
    {"movbe", 1, 0, ECX, 22},
    {"popcnt", 1, 0, ECX, 23},
    {"aes", 1, 0, ECX, 25},
    {"xsave", 1, 0, ECX, 26},
    {"avx", 1, 0, ECX, 28},
    {"f16c", 1, 0, ECX, 29},
    {"rdrnd", 1, 0, ECX, 30},
    // Leaf 7, subleaf 0.
    {"fsgsbase", 7, 0, EBX, 0},
    {"sgx", 7, 0, EBX, 2},
    {"bmi", 7, 0, EBX, 3},
    {"avx2", 7, 0, EBX, 5},
    {"bmi2", 7, 0, EBX, 8},
    {"invpcid", 7, 0, EBX, 10},
    {"rtm", 7, 0, EBX, 11},
    {"avx512f", 7, 0, EBX, 16},
    {"evex512", 7, 0, EBX, 16},
    {"avx512dq", 7, 0, EBX, 17},
    {"rdseed", 7, 0, EBX, 18},
    {"adx", 7, 0, EBX, 19},
    {"avx512ifma", 7, 0, EBX, 21},
    {"clflushopt", 7, 0, EBX, 23},
    {"clwb", 7, 0, EBX, 24},
    {"avx512cd", 7, 0, EBX, 28},
    {"sha", 7, 0, EBX, 29},
    {"avx512bw", 7, 0, EBX, 30},
    {"avx512vl", 7, 0, EBX, 31},
    {"avx512vbmi", 7, 0, ECX, 1},
    {"pku", 7, 0, ECX, 4}, // OSPKE: enabled by the OS.
    {"waitpkg", 7, 0, ECX, 5},
    {"avx512vbmi2", 7, 0, ECX, 6},
    {"shstk", 7, 0, ECX, 7},
    {"gfni", 7, 0, ECX, 8},
    {"vaes", 7, 0, ECX, 9},
    {"vpclmulqdq", 7, 0, ECX, 10},
    {"avx512vnni", 7, 0, ECX, 11},
    {"avx512bitalg", 7, 0, ECX, 12},
    {"avx512vpopcntdq", 7, 0, ECX, 14},
    {"rdpid", 7, 0, ECX, 22},
    {"kl", 7, 0, ECX, 23},
    {"cldemote", 7, 0, ECX, 25},
    {"movdiri", 7, 0, ECX, 27},
    {"movdir64b", 7, 0, ECX, 28},
    {"enqcmd", 7, 0, ECX, 29},
    {"avx5124vnniw", 7, 0, EDX, 2},
    {"avx5124fmaps", 7, 0, EDX, 3},
    {"uintr", 7, 0, EDX, 5},
    {"avx512vp2intersect", 7, 0, EDX, 8},
    {"serialize", 7, 0, EDX, 14},
    {"tsxldtrk", 7, 0, EDX, 16},
    {"pconfig", 7, 0, EDX, 18},
    {"amx-bf16", 7, 0, EDX, 22},
    {"avx512fp16", 7, 0, EDX, 23},
    {"amx-tile", 7, 0, EDX, 24},
    {"amx-int8", 7, 0, EDX, 25},
    // Leaf 7, subleaf 1.
    {"sha512", 7, 1, EAX, 0},
    {"sm3", 7, 1, EAX, 1},
    {"sm4", 7, 1, EAX, 2},
    {"raoint", 7, 1, EAX, 3},
    {"avxvnni", 7, 1, EAX, 4},
    {"avx512bf16", 7, 1, EAX, 5},
    {"cmpccxadd", 7, 1, EAX, 7},
    {"amx-fp16", 7, 1, EAX, 21},
    {"hreset", 7, 1, EAX, 22},
    {"avxifma", 7, 1, EAX, 23},
    {"movrs", 7, 1, EAX, 31},
    {"avxvnniint8", 7, 1, EDX, 4},
    {"avxneconvert", 7, 1, EDX, 5},
    {"amx-complex", 7, 1, EDX, 8},
    {"avxvnniint16", 7, 1, EDX, 10},
    {"prefetchi", 7, 1, EDX, 14},
    {"prefetchi", 0x80000021, 0, EAX, 20}, // AMD's location
    {"usermsr", 7, 1, EDX, 15},
    // APX and its parts.
    {"apxf", 7, 1, EDX, 21},
    {"egpr", 7, 1, EDX, 21},
    {"push2pop2", 7, 1, EDX, 21},
    {"ppx", 7, 1, EDX, 21},
    {"ndd", 7, 1, EDX, 21},
    {"ccmp", 7, 1, EDX, 21},
    {"nf", 7, 1, EDX, 21},
    {"cf", 7, 1, EDX, 21},
    {"zu", 7, 1, EDX, 21},
    // XSAVE variants (leaf 0xD, subleaf 1).
    {"xsaveopt", 0xD, 1, EAX, 0},
    {"xsavec", 0xD, 1, EAX, 1},
    {"xsaves", 0xD, 1, EAX, 3},
    {"ptwrite", 0x14, 0, EBX, 4},
    {"widekl", 0x19, 0, EBX, 2},
    // AMX extensions (leaf 0x1E, subleaf 1).
    {"amx-fp8", 0x1E, 1, EAX, 4},
    {"amx-tf32", 0x1E, 1, EAX, 6},
    {"amx-avx512", 0x1E, 1, EAX, 7},
    {"amx-movrs", 0x1E, 1, EAX, 8},
    // AVX10 version (leaf 0x24, EBX[7:0]).
    {"avx10.1", 0x24, 0, EBX, -1, 1},
    {"avx10.2", 0x24, 0, EBX, -1, 2},
    // Extended leaves (AMD and Intel).
    {"sahf", 0x80000001, 0, ECX, 0},
    {"lzcnt", 0x80000001, 0, ECX, 5},
    {"sse4a", 0x80000001, 0, ECX, 6},
    {"prfchw", 0x80000001, 0, ECX, 8},
    {"xop", 0x80000001, 0, ECX, 11},
    {"lwp", 0x80000001, 0, ECX, 15},
    {"fma4", 0x80000001, 0, ECX, 16},
    {"tbm", 0x80000001, 0, ECX, 21},
    {"mwaitx", 0x80000001, 0, ECX, 29},
    {"clzero", 0x80000008, 0, EBX, 0},
    {"rdpru", 0x80000008, 0, EBX, 4},
    {"wbnoinvd", 0x80000008, 0, EBX, 9},
};

uint32_t cpuidRegister(uint32_t leaf, uint32_t subleaf, Reg reg) {
  uint32_t max = __get_cpuid_max(leaf & 0x80000000u, nullptr);
  if (leaf > max)
    return 0;
  uint32_t r[4] = {0, 0, 0, 0};
  __cpuid_count(leaf, subleaf, r[0], r[1], r[2], r[3]);
  return r[reg];
}

/// The register state the OS saves (XCR0), 0 without OSXSAVE.
uint64_t enabledState() {
  if (!(cpuidRegister(1, 0, ECX) & (1u << 27)))
    return 0;
  uint32_t low, high;
  __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
  return (uint64_t(high) << 32) | low;
}

/// The XCR0 bits a feature's registers need: AVX (ymm), AVX-512 (opmask,
/// zmm), AMX (tile config and data).
uint64_t stateNeeded(const std::string &name) {
  const uint64_t ymm = 0x6, zmm = 0xE6, tiles = 0x60000;
  if (name.rfind("amx", 0) == 0)
    return tiles;
  if (name.rfind("avx512", 0) == 0 || name == "evex512" ||
      name.rfind("avx10", 0) == 0)
    return zmm;
  if (name.rfind("avx", 0) == 0 || name == "fma" || name == "fma4" ||
      name == "f16c" || name == "xop" || name == "vaes" ||
      name == "vpclmulqdq")
    return ymm;
  return 0;
}

} // namespace

int xfmr::runtime::hostHasFeature(const std::string &name) {
  // A feature may be reported in more than one place (Intel's and AMD's).
  int known = -1;
  for (const CpuidBit &f : kFeatures) {
    if (name != f.name)
      continue;
    bool present;
    if (f.leaf == 0)
      present = true;
    else if (f.minimum > 0)
      present = (cpuidRegister(f.leaf, f.subleaf, f.reg) & 0xFF) >= f.minimum;
    else
      present = cpuidRegister(f.leaf, f.subleaf, f.reg) & (1u << f.bit);
    uint64_t needed = stateNeeded(name);
    if (present && needed && (enabledState() & needed) != needed)
      present = false;
    known = present ? 1 : std::max(known, 0);
    if (present)
      break;
  }
  return known;
}

bool xfmr::runtime::isSystemFeature(const std::string &name) {
  // Instructions for the OS, virtualization, security, crypto and
  // diagnostics: LLVM emits them only for intrinsics, and xfmr's kernels use
  // none, so code compiled for a CPU that has them runs where they are
  // missing (typically hidden by a hypervisor). Compute extensions (SSE,
  // AVX*, AMX, FMA, BMI, F16C, ...) are never in this list.
  static const char *const kSystem[] = {
      "aes",      "cldemote", "clflushopt", "clwb",     "clzero",
      "cmpccxadd", "crc32",   "enqcmd",     "fsgsbase", "hreset",
      "invpcid",  "kl",       "lwp",        "movdir64b", "movdiri",
      "movrs",    "mwaitx",   "pclmul",     "pconfig",  "pku",
      "prefetchi", "ptwrite", "raoint",     "rdpid",    "rdpru",
      "rdrnd",    "rdseed",   "rtm",        "serialize", "sgx",
      "sha",      "sha512",   "shstk",      "sm3",      "sm4",
      "tsxldtrk", "uintr",    "usermsr",    "vaes",     "vpclmulqdq",
      "waitpkg",  "wbnoinvd", "widekl",     "xsave",    "xsavec",
      "xsaveopt", "xsaves"};
  for (const char *system : kSystem)
    if (name == system)
      return true;
  return false;
}

bool xfmr::runtime::enableAmxTiles() {
  // Linux hands out the 8 KiB tile state per process on request; without
  // it the first tile instruction raises SIGILL.
  constexpr unsigned long kTileData = 18;
  return ::syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, kTileData) == 0;
}

#elif defined(__aarch64__)

#include <asm/hwcap.h>
#include <sys/auxv.h>
#include <sys/prctl.h>

namespace {
/// Where Linux reports an AArch64 extension (asm/hwcap.h), by LLVM's name.
struct HwcapBit {
  const char *name;
  int word; // 1: AT_HWCAP, 2: AT_HWCAP2
  int bit;
};
const HwcapBit kFeatures[] = {
    {"fp-armv8", 1, 0}, {"neon", 1, 1},  {"fullfp16", 1, 10},
    {"dotprod", 1, 20}, {"sve", 1, 22},  {"sve2", 2, 1},
    {"i8mm", 2, 13},    {"bf16", 2, 14},
};
} // namespace

int xfmr::runtime::hostHasFeature(const std::string &name) {
  for (const HwcapBit &f : kFeatures)
    if (name == f.name) {
      unsigned long word = getauxval(f.word == 1 ? AT_HWCAP : AT_HWCAP2);
      return (word >> f.bit) & 1 ? 1 : 0;
    }
  return -1;
}

bool xfmr::runtime::isSystemFeature(const std::string &) { return false; }

bool xfmr::runtime::enableAmxTiles() { return false; }

int64_t xfmr::runtime::sveVectorBits() {
  static const bool hasSVE = getauxval(AT_HWCAP) & HWCAP_SVE;
  if (!hasSVE)
    return 0;
  // One instruction (the vector's bytes), no system call: cheap enough to
  // check before every step and parallel region.
  uint64_t bytes;
  asm volatile(".arch_extension sve\n\tcntb %0" : "=r"(bytes));
  return 8 * int64_t(bytes);
}

bool xfmr::runtime::setSveVectorBits(int64_t bits) {
  int64_t before = sveVectorBits();
  if (before == bits)
    return true;
  if (before == 0)
    return false;
  // Linux takes the longest length the CPU supports up to the one asked
  // for: anything else is put back.
  ::prctl(PR_SVE_SET_VL, bits / 8);
  if (sveVectorBits() == bits)
    return true;
  ::prctl(PR_SVE_SET_VL, before / 8);
  return false;
}

int64_t xfmr::runtime::longestSveVectorBits() {
  int64_t before = sveVectorBits();
  if (before == 0)
    return 0;
  ::prctl(PR_SVE_SET_VL, 2048 / 8); // the architecture's longest
  int64_t longest = sveVectorBits();
  ::prctl(PR_SVE_SET_VL, before / 8);
  return longest;
}

#else

int xfmr::runtime::hostHasFeature(const std::string &) { return -1; }

bool xfmr::runtime::isSystemFeature(const std::string &) { return false; }

bool xfmr::runtime::enableAmxTiles() { return false; }

#endif

#if !defined(__aarch64__)

int64_t xfmr::runtime::sveVectorBits() { return 0; }

bool xfmr::runtime::setSveVectorBits(int64_t) { return false; }

int64_t xfmr::runtime::longestSveVectorBits() { return 0; }

#endif
