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

std::string xfmr::runtime::cpuMismatch(const std::string &cpu,
                                       const std::string &features,
                                       int64_t sveBits) {
  std::vector<std::string> missing, unknown;
  bool tiles = false;
  for (const std::string &feature : split(features, ',')) {
    // "-name" entries (disabled features) need nothing.
    if (feature.size() < 2 || feature[0] != '+')
      continue;
    std::string name = feature.substr(1);
    if (isSystemFeature(name))
      continue;
    int has = hostHasFeature(name);
    if (has < 0)
      unknown.push_back(name);
    else if (has == 0)
      missing.push_back(name);
    tiles |= name.rfind("amx", 0) == 0;
  }
  auto list = [](const std::vector<std::string> &names) {
    std::string text;
    for (const std::string &name : names)
      text += (text.empty() ? "" : ", ") + name;
    return text;
  };
  std::string target = "the code was compiled for cpu '" + cpu + "'";
  if (!missing.empty())
    return target + ", which needs " + list(missing) +
           ": this host's CPU (or OS) does not support " +
           (missing.size() == 1 ? "it" : "them") +
           "; recompile with --cpu native or an older CPU";
  if (!unknown.empty())
    return target + ", which needs " + list(unknown) + ", which this " +
           "runtime cannot check on this host; recompile for this machine";
  if (tiles && !enableAmxTiles())
    return target + ", which uses AMX tiles, and the OS refused them to " +
           "this process (arch_prctl ARCH_REQ_XCOMP_PERM)";
  if (sveBits) {
    int64_t before = sveVectorBits();
    bool supported = setSveVectorBits(sveBits);
    setSveVectorBits(before);
    if (!supported) {
      int64_t longest = longestSveVectorBits();
      // The compiler takes 256 and 512 (and 0: NEON kernels).
      return target + " with " + std::to_string(sveBits) +
             "-bit SVE vectors (--sve-bits " + std::to_string(sveBits) +
             "), a length this CPU does not support (its longest: " +
             std::to_string(longest) + " bits); recompile with --sve-bits 0" +
             (longest >= 256 && sveBits > 256 ? " or 256" : "");
    }
  }
  return "";
}
