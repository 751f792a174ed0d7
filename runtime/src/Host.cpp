//===- Host.cpp - what this machine can run -------------------------------===//

#include "xfmr/runtime/Host.h"

#include <cctype>
#include <sys/utsname.h>
#include <vector>

using namespace xfmr::runtime;

static std::vector<std::string> split(const std::string &text, char sep) {
  std::vector<std::string> parts;
  size_t begin = 0;
  while (true) {
    size_t end = text.find(sep, begin);
    parts.push_back(text.substr(begin, end - begin));
    if (end == std::string::npos)
      return parts;
    begin = end + 1;
  }
}

/// Spellings of one architecture that differ between uname and LLVM.
static std::string normalizeArch(std::string arch) {
  if (arch == "amd64")
    return "x86_64";
  if (arch == "arm64")
    return "aarch64";
  return arch;
}

static bool isOsName(const std::string &part) {
  static const char *const kNames[] = {
      "linux",   "darwin", "macos", "windows", "freebsd", "netbsd",
      "openbsd", "none",   "cuda",  "amdhsa",  "android"};
  for (const char *name : kNames)
    if (part.rfind(name, 0) == 0)
      return true;
  return false;
}

/// The OS component: triples may omit the vendor ("x86_64-linux-gnu").
static std::string osOf(const std::vector<std::string> &parts) {
  for (size_t i = 1; i < parts.size(); ++i)
    if (isOsName(parts[i]))
      return parts[i];
  return "";
}

std::string xfmr::runtime::hostTriple() {
  struct utsname info;
  if (uname(&info) != 0)
    return "unknown-unknown-unknown";
  std::string os = info.sysname;
  for (char &c : os)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string triple = normalizeArch(info.machine) + "-unknown-" + os;
#if defined(__linux__) && defined(__GLIBC__)
  triple += "-gnu";
#elif defined(__linux__)
  triple += "-musl";
#endif
  return triple;
}

std::string xfmr::runtime::tripleMismatch(const std::string &triple) {
  std::string host = hostTriple();
  std::vector<std::string> want = split(triple, '-');
  std::vector<std::string> have = split(host, '-');
  std::string prefix = "target triple '" + triple +
                       "' does not match this host '" + host + "': ";
  if (want.size() < 2 || want[0].empty())
    return prefix + "the triple is malformed";
  std::string wantArch = normalizeArch(want[0]), haveArch = have[0];
  if (wantArch != haveArch)
    return prefix + "architecture '" + wantArch + "' is not '" + haveArch + "'";
  std::string wantOs = osOf(want), haveOs = osOf(have);
  if (wantOs.empty())
    return prefix + "the triple names no known operating system";
  // "linux" and "linux-gnu"-style suffixes compare on the OS name only.
  if (wantOs != haveOs)
    return prefix + "operating system '" + wantOs + "' is not '" + haveOs + "'";
  return "";
}

namespace {
struct Feature {
  const char *name;
  bool supported;
};
} // namespace

/// __builtin_cpu_supports only takes literals, hence the table.
static const std::vector<Feature> &x86Features() {
  static const std::vector<Feature> features = {
#if defined(__x86_64__)
    {"x86-64-v2", bool(__builtin_cpu_supports("x86-64-v2"))},
    {"x86-64-v3", bool(__builtin_cpu_supports("x86-64-v3"))},
    {"x86-64-v4", bool(__builtin_cpu_supports("x86-64-v4"))},
    {"sse3", bool(__builtin_cpu_supports("sse3"))},
    {"ssse3", bool(__builtin_cpu_supports("ssse3"))},
    {"sse4.1", bool(__builtin_cpu_supports("sse4.1"))},
    {"sse4.2", bool(__builtin_cpu_supports("sse4.2"))},
    {"popcnt", bool(__builtin_cpu_supports("popcnt"))},
    {"avx", bool(__builtin_cpu_supports("avx"))},
    {"avx2", bool(__builtin_cpu_supports("avx2"))},
    {"fma", bool(__builtin_cpu_supports("fma"))},
    {"bmi", bool(__builtin_cpu_supports("bmi"))},
    {"bmi2", bool(__builtin_cpu_supports("bmi2"))},
    {"avx512f", bool(__builtin_cpu_supports("avx512f"))},
    {"avx512bw", bool(__builtin_cpu_supports("avx512bw"))},
    {"avx512cd", bool(__builtin_cpu_supports("avx512cd"))},
    {"avx512dq", bool(__builtin_cpu_supports("avx512dq"))},
    {"avx512vl", bool(__builtin_cpu_supports("avx512vl"))},
    {"avx512vnni", bool(__builtin_cpu_supports("avx512vnni"))},
    {"avx512bf16", bool(__builtin_cpu_supports("avx512bf16"))},
#endif
  };
  return features;
}

/// -1: unknown to the runtime, else whether the host has it.
static int hasFeature(const std::string &name) {
  for (const Feature &f : x86Features())
    if (name == f.name)
      return f.supported ? 1 : 0;
  return -1;
}

std::string xfmr::runtime::cpuMismatch(const std::string &cpu,
                                       const std::string &features) {
  if (hasFeature(cpu) == 0)
    return "target cpu '" + cpu + "' is not supported by this host's CPU";
  if (features.empty())
    return "";
  for (const std::string &feature : split(features, ',')) {
    if (feature.size() < 2 || feature[0] != '+')
      continue;
    std::string name = feature.substr(1);
    if (hasFeature(name) == 0)
      return "target feature '" + name + "' (of cpu '" + cpu +
             "') is not supported by this host's CPU";
  }
  return "";
}
