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

#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

using namespace xfmr::runtime;

static const char kUsage[] =
    "usage: xfmr-run ARTIFACT --prompt-ids \"IDS\" -n N [options]\n"
    "\n"
    "  --prompt-ids IDS     prompt token ids, separated by spaces (required)\n"
    "  -n N                 number of tokens to generate (required, >= 0)\n"
    "  --temperature T      sampling temperature; 0 (default) is greedy\n"
    "  --top-k K            sample from the K most likely tokens (0: all)\n"
    "  --top-p P            nucleus sampling threshold in (0, 1] (default 1)\n"
    "  --seed S             random seed (default 0)\n"
    "  --threads N          threads for the model code (0: all cores)\n"
    "  --stats              print timings and memory as JSON on stderr\n"
    "  --dump-logits FILE   write each generated token's logits as a\n"
    "                       float32 .npy of shape [N, vocab]\n"
    "  -h, --help           show this help\n";

namespace {

/// A bad command line: exit code 2 with the usage text.
struct UsageError {
  std::string message;
};

struct Options {
  std::string artifact;
  std::vector<int32_t> promptIds;
  bool havePrompt = false;
  std::optional<int> numTokens;
  SamplingOptions sampling;
  SessionOptions session;
  bool stats = false;
  std::string dumpLogits;
  bool help = false;
};

template <typename T>
T parseNumber(const std::string &flag, const std::string &text) {
  T value{};
  const char *first = text.data(), *last = first + text.size();
  auto [end, err] = std::from_chars(first, last, value);
  if (text.empty() || err != std::errc() || end != last)
    throw UsageError{"invalid value '" + text + "' for " + flag};
  return value;
}

std::vector<int32_t> parseIds(const std::string &text) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (true) {
    pos = text.find_first_not_of(" \t\n,", pos);
    if (pos == std::string::npos)
      break;
    size_t end = text.find_first_of(" \t\n,", pos);
    std::string word = text.substr(pos, end - pos);
    int32_t id{};
    auto [p, err] = std::from_chars(word.data(), word.data() + word.size(), id);
    if (err != std::errc() || p != word.data() + word.size())
      throw UsageError{"--prompt-ids: '" + word +
                       "' is not a token id (expected 32-bit integers "
                       "separated by spaces)"};
    ids.push_back(id);
    pos = end;
  }
  return ids;
}

Options parseArgs(int argc, char **argv) {
  Options opts;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg == "-h" || arg == "--help") {
      opts.help = true;
      return opts;
    }
    if (arg.empty() || arg[0] != '-' || arg == "-") {
      if (!opts.artifact.empty())
        throw UsageError{"more than one artifact given ('" + opts.artifact +
                         "' and '" + arg + "')"};
      opts.artifact = arg;
      continue;
    }
    // "--flag=value" or "--flag value".
    std::optional<std::string> inlineValue;
    if (size_t eq = arg.find('=');
        arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      inlineValue = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    auto value = [&]() -> std::string {
      if (inlineValue)
        return *inlineValue;
      if (i + 1 >= args.size())
        throw UsageError{arg + " requires a value"};
      return args[++i];
    };
    if (arg == "--stats" && !inlineValue) {
      opts.stats = true;
    } else if (arg == "--prompt-ids") {
      opts.promptIds = parseIds(value());
      opts.havePrompt = true;
    } else if (arg == "-n") {
      opts.numTokens = parseNumber<int>(arg, value());
    } else if (arg == "--temperature") {
      opts.sampling.temperature = parseNumber<float>(arg, value());
    } else if (arg == "--top-k") {
      opts.sampling.topK = parseNumber<int>(arg, value());
    } else if (arg == "--top-p") {
      opts.sampling.topP = parseNumber<float>(arg, value());
    } else if (arg == "--seed") {
      opts.sampling.seed = parseNumber<uint64_t>(arg, value());
    } else if (arg == "--threads") {
      opts.session.threads = parseNumber<int>(arg, value());
    } else if (arg == "--dump-logits") {
      opts.dumpLogits = value();
      if (opts.dumpLogits.empty())
        throw UsageError{"--dump-logits needs a file name"};
    } else {
      throw UsageError{"unknown option '" + args[i] + "'"};
    }
  }
  if (opts.artifact.empty())
    throw UsageError{"no artifact given"};
  if (!opts.havePrompt)
    throw UsageError{"--prompt-ids is required"};
  if (opts.promptIds.empty())
    throw UsageError{"--prompt-ids: no token ids given"};
  if (!opts.numTokens)
    throw UsageError{"-n is required"};
  if (*opts.numTokens < 0)
    throw UsageError{"-n must be >= 0, got " + std::to_string(*opts.numTokens)};
  if (opts.session.threads < 0)
    throw UsageError{"--threads must be >= 0, got " +
                     std::to_string(opts.session.threads)};
  try {
    opts.sampling.validate();
  } catch (const Error &e) {
    throw UsageError{e.what()};
  }
  return opts;
}

volatile std::sig_atomic_t interrupted = 0;

extern "C" void onSigint(int) { interrupted = 1; }

void printStats(const Stats &s) {
  std::fprintf(stderr,
               "{\"prefill_tokens\": %lld, \"prefill_seconds\": %.9g, "
               "\"prefill_tokens_per_s\": %.9g, \"decode_tokens\": %lld, "
               "\"decode_seconds\": %.9g, \"decode_tokens_per_s\": %.9g, "
               "\"weights_bytes\": %llu, \"kv_cache_bytes\": %llu, "
               "\"kv_cache_bytes_per_token\": %llu, \"parameter_count\": %llu, "
               "\"peak_rss_bytes\": %llu, \"threads\": %d",
               static_cast<long long>(s.prefillTokens), s.prefillSeconds,
               s.prefillTokensPerSecond(),
               static_cast<long long>(s.decodeTokens), s.decodeSeconds,
               s.decodeTokensPerSecond(),
               static_cast<unsigned long long>(s.weightsBytes),
               static_cast<unsigned long long>(s.kvCacheBytes),
               static_cast<unsigned long long>(s.kvCacheBytesPerToken),
               static_cast<unsigned long long>(s.parameterCount),
               static_cast<unsigned long long>(s.peakRssBytes), s.threads);
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

int run(const Options &opts) {
  bool printedAny = false;
  try {
    // Before generating: the logits file must be writable.
    if (!opts.dumpLogits.empty())
      if (std::string error = checkOutputPath(opts.dumpLogits); !error.empty())
        throw Error(error);
    auto artifact = Artifact::open(opts.artifact);
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
      printStats(session.stats());
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
  Options opts;
  try {
    opts = parseArgs(argc, argv);
  } catch (const UsageError &e) {
    std::fprintf(stderr, "xfmr-run: error: %s\n%s", e.message.c_str(), kUsage);
    return 2;
  }
  if (opts.help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  return run(opts);
}
