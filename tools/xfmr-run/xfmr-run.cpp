//===- xfmr-run.cpp - run a compiled model.xfmr ---------------------------===//
//
// Prints the generated token ids on one line of stdout and nothing else, so
// scripts and tests can compare outputs. Diagnostics and --stats go to
// stderr. Exit codes: 0 ok, 1 runtime error, 2 bad command line, 130 when
// interrupted (the tokens generated so far are still printed).
//
//===----------------------------------------------------------------------===//

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Npy.h"
#include "xfmr/runtime/OutputFile.h"
#include "xfmr/runtime/Session.h"
#include "xfmr/runtime/Version.h"

#include "RunOptions.h"

#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

using namespace xfmr::runtime;
using namespace xfmr::run;

namespace {

volatile std::sig_atomic_t interrupted = 0;

extern "C" void onSigint(int) { interrupted = 1; }

void printStats(const Stats &s, double verifySeconds) {
  std::fprintf(stderr,
               "{\"prefill_tokens\": %lld, \"prefill_seconds\": %.9g, "
               "\"prefill_tokens_per_s\": %.9g, \"decode_tokens\": %lld, "
               "\"decode_seconds\": %.9g, \"decode_tokens_per_s\": %.9g, "
               "\"weights_bytes\": %llu, \"kv_cache_bytes\": %llu, "
               "\"kv_cache_bytes_per_token\": %llu, \"parameter_count\": %llu, "
               "\"peak_rss_bytes\": %llu, \"threads\": %d, "
               "\"generations\": %lld, \"verify_seconds\": %.9g",
               static_cast<long long>(s.prefillTokens), s.prefillSeconds,
               s.prefillTokensPerSecond(),
               static_cast<long long>(s.decodeTokens), s.decodeSeconds,
               s.decodeTokensPerSecond(),
               static_cast<unsigned long long>(s.weightsBytes),
               static_cast<unsigned long long>(s.kvCacheBytes),
               static_cast<unsigned long long>(s.kvCacheBytesPerToken),
               static_cast<unsigned long long>(s.parameterCount),
               static_cast<unsigned long long>(s.peakRssBytes), s.threads,
               static_cast<long long>(s.generations), verifySeconds);
  // The device name is a driver string: escape it for JSON.
  std::string device;
  for (char c : s.device) {
    if (c == '"' || c == '\\')
      device += '\\';
    if (static_cast<unsigned char>(c) >= 0x20)
      device += c;
  }
  std::fprintf(stderr,
               ", \"device\": \"%s\", \"device_memory_bytes\": %llu, "
               "\"weights_upload_seconds\": %.9g",
               device.c_str(),
               static_cast<unsigned long long>(s.deviceMemoryBytes),
               s.weightsUploadSeconds);
  // MoE models: tokens routed to each expert, per layer ({} for dense ones).
  {
    std::fprintf(stderr, ", \"expert_tokens\": {");
    for (size_t i = 0; i < s.expertTokens.size(); ++i) {
      std::string name;
      for (char c : s.expertTokens[i].layer) {
        if (c == '"' || c == '\\')
          name += '\\';
        if (static_cast<unsigned char>(c) >= 0x20)
          name += c;
      }
      std::fprintf(stderr, "%s\"%s\": [", i ? ", " : "", name.c_str());
      const std::vector<int64_t> &counts = s.expertTokens[i].counts;
      for (size_t e = 0; e < counts.size(); ++e)
        std::fprintf(stderr, "%s%lld", e ? ", " : "",
                     static_cast<long long>(counts[e]));
      std::fprintf(stderr, "]");
    }
    std::fprintf(stderr, "}");
  }
  std::fprintf(stderr, "}\n");
}

int run(const RunOptions &opts) {
  bool printedAny = false;
  try {
    // Before generating: the logits file must be writable.
    if (!opts.dumpLogits.empty())
      if (std::string error = checkOutputPath(opts.dumpLogits); !error.empty())
        throw Error(error);
    auto artifact = Artifact::open(opts.artifact, opts.open);
    Session session(artifact, opts.session);
    int64_t vocab = artifact->vocabSize();

    // The first Ctrl-C stops after the current token; a second one kills.
    struct sigaction action = {};
    action.sa_handler = onSigint;
    action.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &action, nullptr);

    std::vector<float> logits;
    std::vector<int32_t> tokens =
        session.generate(opts.promptIds, *opts.numTokens, opts.sampling,
                         [&](int32_t token, const float *row) {
                           std::printf(printedAny ? " %d" : "%d", token);
                           std::fflush(stdout);
                           printedAny = true;
                           if (!opts.dumpLogits.empty())
                             logits.insert(logits.end(), row, row + vocab);
                           return !interrupted;
                         });
    std::printf("\n");
    printedAny = false;
    if (std::fflush(stdout) != 0 || std::ferror(stdout))
      throw Error("cannot write the generated ids to stdout");

    // A kill while writing leaves no temporary file; Ctrl-C keeps the
    // handler above when it was not pressed yet.
    removeOutputsOnSignals(/*onlyDefault=*/true);
    if (!opts.dumpLogits.empty())
      writeNpyFloat32(opts.dumpLogits, logits.data(),
                      {static_cast<int64_t>(tokens.size()), vocab});
    if (opts.stats)
      printStats(session.stats(), artifact->verifySeconds());
    if (interrupted) {
      std::fprintf(stderr, "xfmr-run: interrupted after %zu token(s)\n",
                   tokens.size());
      return 130;
    }
    return 0;
  } catch (const std::exception &e) {
    // Keep stdout one (possibly short) line.
    if (printedAny)
      std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr, "xfmr-run: error: %s\n", e.what());
    return 1;
  }
}

} // namespace

int main(int argc, char **argv) {
  RunOptions opts;
  try {
    opts = parseRunOptions(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const UsageError &e) {
    std::fprintf(stderr, "xfmr-run: error: %s\n(see xfmr-run --help)\n",
                 e.message.c_str());
    return 2;
  }
  if (opts.help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (opts.version) {
    std::printf("%s\n", versionString());
    return 0;
  }
  return run(opts);
}
