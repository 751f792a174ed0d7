//===- xfmr-pack.cpp - bind a checkpoint's weights to compiled code -------===//
//
//   xfmr-pack ARTIFACT CHECKPOINT_DIR -o FULL.xfmr
//
// ARTIFACT is a weights-stripped artifact (xfmr-compile --strip-weights) or a
// full one whose weights are replaced (fine-tuned weights, no recompile).
// Links only the runtime: it runs where MLIR and LLVM are not installed.
// Progress goes to stderr. Exit codes: 0 ok, 1 error, 2 bad command line.
//
//===----------------------------------------------------------------------===//

#include "xfmr/runtime/ArtifactPacker.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/OutputFile.h"
#include "xfmr/runtime/Version.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

using namespace xfmr::runtime;

namespace {

const char kUsage[] =
    "usage: xfmr-pack ARTIFACT CHECKPOINT_DIR -o FULL.xfmr [--quiet]\n"
    "\n"
    "Binds the weights of a Hugging Face checkpoint folder to the code of a\n"
    "compiled artifact: a weights-stripped one (xfmr-compile --strip-weights)\n"
    "or a full one whose weights it replaces. The checkpoint must have the\n"
    "architecture and shapes the artifact was compiled for; tensors are\n"
    "copied, FP8-quantized or MLA-folded as the artifact's packing plan says,\n"
    "exactly as xfmr-compile does. F32, BF16 and F16 tensors convert into\n"
    "the compiled dtype (rounding to nearest even).\n"
    "\n"
    "options:\n"
    "  -o FILE      the artifact to write (required; written atomically)\n"
    "  --quiet      no progress on stderr\n"
    "  --version    print the version\n"
    "  -h, --help   show this help\n";

int usage(const std::string &message) {
  std::fprintf(stderr, "xfmr-pack: error: %s\n(see xfmr-pack --help)\n",
               message.c_str());
  return 2;
}

} // namespace

int main(int argc, char **argv) {
  std::vector<std::string> positional;
  std::string output;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--version") {
      std::printf("%s\n", versionString());
      return 0;
    }
    if (arg == "--quiet") {
      quiet = true;
    } else if (arg == "-o") {
      if (i + 1 >= argc)
        return usage("-o requires a file name");
      if (!output.empty())
        return usage("-o given twice");
      output = argv[++i];
      if (output.empty())
        return usage("-o requires a file name");
    } else if (arg.size() > 1 && arg[0] == '-') {
      return usage("unknown option '" + arg + "'");
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2)
    return usage(positional.size() < 2
                     ? "expected an artifact and a checkpoint folder"
                     : "too many arguments ('" + positional[2] + "')");
  if (output.empty())
    return usage("no output file given: -o FILE is required");
  // Ctrl-C or a kill leaves no temporary file behind.
  removeOutputsOnSignals(/*onlyDefault=*/false);
  auto progress = [&](const std::string &line) {
    if (!quiet)
      std::fprintf(stderr, "xfmr-pack: %s\n", line.c_str());
  };
  auto start = std::chrono::steady_clock::now();
  try {
    progress("reading " + positional[0] + " and " + positional[1]);
    PackResult result =
        packArtifact(positional[0], positional[1], output, progress);
    for (const std::string &tensor : result.summary.converted)
      progress("converted " + tensor);
    double seconds = std::chrono::duration<double>(
                         std::chrono::steady_clock::now() - start)
                         .count();
    char line[256];
    std::snprintf(line, sizeof(line),
                  "wrote %s (%llu KiB, %zu tensors, %llu MiB of weights) in "
                  "%.1f s",
                  output.c_str(),
                  static_cast<unsigned long long>(result.bytesWritten >> 10),
                  result.tensors,
                  static_cast<unsigned long long>(result.weightsBytes >> 20),
                  seconds);
    progress(line);
  } catch (const Error &error) {
    std::fprintf(stderr, "xfmr-pack: error: %s\n", error.what());
    return 1;
  }
  return 0;
}
