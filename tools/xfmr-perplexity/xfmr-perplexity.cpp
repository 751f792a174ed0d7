//===- xfmr-perplexity.cpp - perplexity of a model on a text --------------===//
//
//   xfmr-perplexity ARTIFACT --text-file F [--context N] [--stride S]
//                   [--tokenizer FILE] [--kl-base BASE.xfmr] [--threads N]
//
// Encodes the text (the artifact's tokenizer, or --tokenizer), slides a
// window of `context` tokens over it by `stride` tokens, prefills each
// window in a fresh context and scores every token not scored before (the
// first token of the text has no prediction), as Hugging Face's perplexity
// guide does. With --kl-base, the same windows run through a second artifact
// (say the bf16 model, for an FP8 one) and the mean KL divergence of this
// model's next-token distributions from the base's, and how often their top
// tokens agree, are reported too (llama-perplexity --kl-divergence).
// Prints one JSON object on stdout; progress on stderr.
// Exit codes: 0 ok, 1 error, 2 bad command line.
//
//===----------------------------------------------------------------------===//

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Session.h"
#include "xfmr/runtime/Tokenizer.h"
#include "xfmr/runtime/Version.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace xfmr::runtime;

namespace {

const char kUsage[] =
    "usage: xfmr-perplexity ARTIFACT --text-file F [options]\n"
    "\n"
    "Perplexity of the model on the text of F, scored over windows of\n"
    "--context tokens that slide by --stride; one JSON object on stdout.\n"
    "\n"
    "options:\n"
    "  --text-file F      the text (required)\n"
    "  --context N        tokens per window (default: the artifact's context,\n"
    "                     at most 1024)\n"
    "  --stride S         tokens between window starts, 1 to N (default N)\n"
    "  --tokenizer FILE   tokenizer.json or tokenizer.model (default: the\n"
    "                     artifact's)\n"
    "  --kl-base BASE     also report the mean KL divergence from BASE's "
    "next-\n"
    "                     token distributions and their top-1 agreement\n"
    "  --threads N        threads for the model code (0: all cores)\n"
    "  --no-verify        skip the artifacts' checksum verification\n"
    "  --version          print the version\n"
    "  -h, --help         show this help\n";

int usage(const std::string &message) {
  std::fprintf(stderr,
               "xfmr-perplexity: error: %s\n(see xfmr-perplexity --help)\n",
               message.c_str());
  return 2;
}

/// log-softmax of one logits row, in double.
std::vector<double> logSoftmax(const float *row, int64_t vocab) {
  double top = *std::max_element(row, row + vocab);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i)
    sum += std::exp(double(row[i]) - top);
  double logSum = top + std::log(sum);
  std::vector<double> out(vocab);
  for (int64_t i = 0; i < vocab; ++i)
    out[i] = double(row[i]) - logSum;
  return out;
}

struct Options {
  std::string artifact, textFile, tokenizer, klBase;
  int64_t context = 0, stride = 0;
  int threads = 0;
  bool verify = true;
};

} // namespace

int main(int argc, char **argv) {
  Options opts;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string &arg = args[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size())
        return std::nullopt;
      return args[++i];
    };
    auto number = [&](int64_t &out, int64_t low) -> bool {
      std::optional<std::string> text = value();
      if (!text)
        return false;
      auto [end, err] =
          std::from_chars(text->data(), text->data() + text->size(), out);
      return err == std::errc() && end == text->data() + text->size() &&
             out >= low;
    };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--version") {
      std::printf("%s\n", versionString());
      return 0;
    }
    if (arg == "--text-file" || arg == "--tokenizer" || arg == "--kl-base") {
      std::optional<std::string> text = value();
      if (!text || text->empty())
        return usage(arg + " requires a file name");
      (arg == "--text-file"   ? opts.textFile
       : arg == "--tokenizer" ? opts.tokenizer
                              : opts.klBase) = *text;
    } else if (arg == "--context") {
      if (!number(opts.context, 2))
        return usage("--context must be an integer >= 2");
    } else if (arg == "--stride") {
      if (!number(opts.stride, 1))
        return usage("--stride must be an integer >= 1");
    } else if (arg == "--threads") {
      int64_t threads = 0;
      if (!number(threads, 0) || threads > Artifact::kMaxThreads)
        return usage("--threads must be in [0, " +
                     std::to_string(Artifact::kMaxThreads) + "]");
      opts.threads = int(threads);
    } else if (arg == "--no-verify") {
      opts.verify = false;
    } else if (!arg.empty() && arg[0] == '-') {
      return usage("unknown option '" + arg + "'");
    } else if (!opts.artifact.empty()) {
      return usage("too many arguments ('" + arg + "')");
    } else {
      opts.artifact = arg;
    }
  }
  if (opts.artifact.empty())
    return usage("no artifact given");
  if (opts.textFile.empty())
    return usage("--text-file is required");
  if (opts.stride && opts.context && opts.stride > opts.context)
    return usage("--stride must not exceed --context");

  try {
    OpenOptions open;
    open.verifyChecksums = opts.verify;
    auto artifact = Artifact::open(opts.artifact, open);
    std::unique_ptr<Tokenizer> tokenizer =
        opts.tokenizer.empty() ? Tokenizer::fromArtifact(*artifact)
                               : Tokenizer::load(opts.tokenizer);
    if (!tokenizer)
      throw Error(opts.artifact + " carries no tokenizer: give --tokenizer "
                                  "FILE");
    int64_t vocab = artifact->vocabSize();
    if (tokenizer->vocabSize() > vocab)
      throw Error("the tokenizer has " +
                  std::to_string(tokenizer->vocabSize()) +
                  " tokens, more than the model's vocabulary of " +
                  std::to_string(vocab));
    std::shared_ptr<Artifact> base;
    if (!opts.klBase.empty()) {
      base = Artifact::open(opts.klBase, open);
      if (base->vocabSize() != vocab)
        throw Error(opts.klBase + " has a vocabulary of " +
                    std::to_string(base->vocabSize()) + ", " + opts.artifact +
                    " of " + std::to_string(vocab));
    }
    std::ifstream file(opts.textFile, std::ios::binary);
    if (!file)
      throw Error(opts.textFile + ": cannot open the text file");
    std::string text((std::istreambuf_iterator<char>(file)),
                     std::istreambuf_iterator<char>());
    std::vector<int32_t> ids = tokenizer->encode(text, /*addSpecial=*/false);
    if (ids.size() < 2)
      throw Error(opts.textFile + " encodes to " + std::to_string(ids.size()) +
                  " token(s): perplexity needs at least 2");

    int64_t context = opts.context
                          ? opts.context
                          : std::min<int64_t>(artifact->contextLength(), 1024);
    int64_t limit = artifact->contextLength();
    if (base)
      limit = std::min(limit, base->contextLength());
    if (context > limit)
      throw Error("--context " + std::to_string(context) +
                  " exceeds the artifact's context length " +
                  std::to_string(limit));
    int64_t stride = opts.stride ? opts.stride : context;
    if (stride > context)
      throw Error("--stride " + std::to_string(stride) +
                  " exceeds the context " + std::to_string(context));

    SessionOptions sessionOptions;
    sessionOptions.threads = opts.threads;
    Session session(artifact, sessionOptions);
    std::optional<Session> baseSession;
    if (base)
      baseSession.emplace(base, sessionOptions);

    double nll = 0, kl = 0;
    int64_t scored = 0, agree = 0, windows = 0;
    int64_t total = int64_t(ids.size());
    int64_t scoredUpTo = 1; // token 0 has no prediction
    for (int64_t begin = 0; scoredUpTo < total; begin += stride) {
      int64_t end = std::min(begin + context, total);
      std::vector<int32_t> window(ids.begin() + begin, ids.begin() + end);
      session.reset();
      std::vector<float> logits = session.prefill(window);
      std::vector<float> baseLogits;
      if (baseSession) {
        baseSession->reset();
        baseLogits = baseSession->prefill(window);
      }
      // Row j - 1 - begin predicts token j.
      for (int64_t j = std::max(scoredUpTo, begin + 1); j < end; ++j) {
        const float *row = logits.data() + (j - 1 - begin) * vocab;
        std::vector<double> logP = logSoftmax(row, vocab);
        nll -= logP[ids[j]];
        if (baseSession) {
          const float *baseRow = baseLogits.data() + (j - 1 - begin) * vocab;
          std::vector<double> logQ = logSoftmax(baseRow, vocab);
          double divergence = 0;
          for (int64_t t = 0; t < vocab; ++t)
            divergence += std::exp(logQ[t]) * (logQ[t] - logP[t]);
          kl += divergence;
          agree += std::max_element(row, row + vocab) - row ==
                   std::max_element(baseRow, baseRow + vocab) - baseRow;
        }
        ++scored;
      }
      scoredUpTo = std::max(scoredUpTo, end);
      ++windows;
      std::fprintf(stderr,
                   "xfmr-perplexity: window %lld: tokens [%lld, %lld), "
                   "%lld of %lld scored, perplexity so far %.4f\n",
                   (long long)windows, (long long)begin, (long long)end,
                   (long long)scored, (long long)(total - 1),
                   std::exp(nll / double(scored)));
      if (end == total)
        break;
    }
    std::printf("{\"tokens\": %lld, \"scored\": %lld, \"windows\": %lld, "
                "\"context\": %lld, \"stride\": %lld, \"nll\": %.9g, "
                "\"perplexity\": %.9g",
                (long long)total, (long long)scored, (long long)windows,
                (long long)context, (long long)stride, nll / double(scored),
                std::exp(nll / double(scored)));
    if (baseSession)
      std::printf(", \"kl_divergence\": %.9g, \"top1_agreement\": %.9g",
                  kl / double(scored), double(agree) / double(scored));
    std::printf("}\n");
    if (std::fflush(stdout) != 0 || std::ferror(stdout))
      throw Error("cannot write the result to stdout");
  } catch (const Error &error) {
    std::fprintf(stderr, "xfmr-perplexity: error: %s\n", error.what());
    return 1;
  }
  return 0;
}
