//===- xfmr-bench.cpp - prefill and decode speed of an artifact -----------===//
//
//   xfmr-bench ARTIFACT [-p 512,2048] [-n 128] [-r 5] [-t 1,2] [-o md|json]
//
// Like llama-bench: for each thread count, "ppN" times the prefill of N
// tokens in a fresh context and "tgN" the decoding of N tokens after one,
// each repeated (after one untimed warm-up) and reported as mean +- sample
// standard deviation of tokens per second. Token ids are fixed
// pseudo-random ids below the vocabulary. The table (or JSON) goes to
// stdout; errors to stderr. Exit codes: 0 ok, 1 error, 2 bad command line.
//
//===----------------------------------------------------------------------===//

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Session.h"
#include "xfmr/runtime/Version.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace xfmr::runtime;

namespace {

const char kUsage[] =
    "usage: xfmr-bench ARTIFACT [options]\n"
    "\n"
    "Measures prefill (ppN: N tokens in a fresh context) and decode (tgN: N\n"
    "tokens after one) in tokens per second, as mean +- standard deviation\n"
    "over repetitions, like llama-bench.\n"
    "\n"
    "options:\n"
    "  -p N,...      prompt lengths to prefill (default 512; 0: none)\n"
    "  -n N,...      tokens to decode (default 128; 0: none)\n"
    "  -r N          repetitions of each test (default 5)\n"
    "  -t N,...      thread counts (default 0: all cores)\n"
    "  -o md|json    output format (default md)\n"
    "  --device KIND run this target of a multi-target artifact\n"
    "  --no-verify   skip the artifact's checksums\n"
    "  --mmap-weights  CPU: read weights from the file mapping, not a copy\n"
    "                in huge pages\n"
    "  --version     print the version\n"
    "  -h, --help    show this help\n";

struct UsageError {
  std::string message;
};

std::vector<int64_t> parseList(const std::string &flag, const std::string &text,
                               int64_t min) {
  std::vector<int64_t> values;
  size_t begin = 0;
  while (true) {
    size_t end = text.find(',', begin);
    std::string item = text.substr(begin, end - begin);
    char *stop = nullptr;
    long long value = std::strtoll(item.c_str(), &stop, 10);
    if (item.empty() || *stop != '\0' || value < min || value > INT32_MAX)
      throw UsageError{flag + ": expected integers >= " + std::to_string(min) +
                       " separated by commas, got '" + text + "'"};
    values.push_back(value);
    if (end == std::string::npos)
      return values;
    begin = end + 1;
  }
}

struct Result {
  std::string test;
  int threads;
  int64_t prompt, generated;
  std::vector<double> samples; // tokens per second
  double mean() const {
    double sum = 0;
    for (double s : samples)
      sum += s;
    return sum / samples.size();
  }
  double deviation() const {
    if (samples.size() < 2)
      return 0;
    double m = mean(), sum = 0;
    for (double s : samples)
      sum += (s - m) * (s - m);
    return std::sqrt(sum / (samples.size() - 1));
  }
};

/// Fixed pseudo-random ids in [0, vocab) (a 64-bit LCG).
std::vector<int32_t> tokenIds(int64_t count, int64_t vocab) {
  std::vector<int32_t> ids(count);
  uint64_t state = 0x9E3779B97F4A7C15ull;
  for (int32_t &id : ids) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    id = static_cast<int32_t>((state >> 33) % static_cast<uint64_t>(vocab));
  }
  return ids;
}

std::string humanBytes(double bytes) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f %s", bytes, units[unit]);
  return text;
}

std::string jsonString(const std::string &text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\')
      out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20)
      out += c;
  }
  return out + "\"";
}

} // namespace

int main(int argc, char **argv) {
  std::string path, format = "md";
  std::vector<int64_t> prompts{512}, generations{128}, threads{0};
  int64_t reps = 5;
  OpenOptions open;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc)
          throw UsageError{arg + " requires a value"};
        return argv[++i];
      };
      if (arg == "-h" || arg == "--help") {
        std::fputs(kUsage, stdout);
        return 0;
      }
      if (arg == "--version") {
        std::printf("%s\n", versionString());
        return 0;
      }
      if (arg == "-p")
        prompts = parseList("-p", value(), 0);
      else if (arg == "-n")
        generations = parseList("-n", value(), 0);
      else if (arg == "-r")
        reps = parseList("-r", value(), 1).front();
      else if (arg == "-t")
        threads = parseList("-t", value(), 0);
      else if (arg == "-o") {
        format = value();
        if (format != "md" && format != "json")
          throw UsageError{"-o must be md or json, got '" + format + "'"};
      } else if (arg == "--device")
        open.device = value();
      else if (arg == "--no-verify")
        open.verifyChecksums = false;
      else if (arg == "--mmap-weights")
        open.mapWeights = true;
      else if (arg.size() > 1 && arg[0] == '-')
        throw UsageError{"unknown option '" + arg + "'"};
      else if (!path.empty())
        throw UsageError{"more than one artifact given ('" + path + "', '" +
                         arg + "')"};
      else
        path = arg;
    }
    if (path.empty())
      throw UsageError{"no artifact given"};
  } catch (const UsageError &error) {
    std::fprintf(stderr, "xfmr-bench: error: %s\n(see xfmr-bench --help)\n",
                 error.message.c_str());
    return 2;
  }

  std::vector<Result> results;
  std::shared_ptr<Artifact> artifact;
  try {
    artifact = Artifact::open(path, open);
    int64_t vocab = artifact->vocabSize();
    int64_t context = artifact->contextLength();
    for (int64_t p : prompts)
      if (p > context)
        throw Error("pp" + std::to_string(p) + " needs " + std::to_string(p) +
                    " positions, the artifact's context is " +
                    std::to_string(context) + " (xfmr-compile --context)");
    for (int64_t n : generations)
      if (n > 0 && n + 1 > context)
        throw Error("tg" + std::to_string(n) + " needs " +
                    std::to_string(n + 1) +
                    " positions, the artifact's context is " +
                    std::to_string(context));
    for (int64_t t : threads) {
      Session session(artifact, SessionOptions{static_cast<int>(t), {}});
      int used = session.stats().threads;
      for (int64_t p : prompts) {
        if (p == 0)
          continue;
        std::vector<int32_t> ids = tokenIds(p, vocab);
        Result result{"pp" + std::to_string(p), used, p, 0, {}};
        for (int64_t rep = 0; rep <= reps; ++rep) { // rep 0: warm-up
          session.reset();
          session.prefill(ids);
          if (rep > 0)
            result.samples.push_back(session.stats().prefillTokensPerSecond());
        }
        results.push_back(result);
      }
      for (int64_t n : generations) {
        if (n == 0)
          continue;
        std::vector<int32_t> ids = tokenIds(n + 1, vocab);
        Result result{"tg" + std::to_string(n), used, 0, n, {}};
        for (int64_t rep = 0; rep <= reps; ++rep) {
          session.reset();
          session.prefill({ids[0]});
          for (int64_t k = 1; k <= n; ++k)
            session.decode(ids[k]);
          if (rep > 0)
            result.samples.push_back(session.stats().decodeTokensPerSecond());
        }
        results.push_back(result);
      }
    }
  } catch (const Error &error) {
    std::fprintf(stderr, "xfmr-bench: error: %s\n", error.what());
    return 1;
  }

  const ModelConfig &model = artifact->model();
  std::string device = artifact->target().kind;
  if (!artifact->target().chip.empty())
    device += ":" + artifact->target().chip;
  else if (!artifact->target().cpu.empty())
    device += " " + artifact->target().cpu;
  if (format == "json") {
    std::printf("[");
    for (size_t i = 0; i < results.size(); ++i) {
      const Result &r = results[i];
      std::printf("%s\n  {\"model\": %s, \"params\": %llu, \"weights_bytes\": "
                  "%llu, \"device\": %s, \"threads\": %d, \"test\": %s, "
                  "\"n_prompt\": %lld, \"n_gen\": %lld, \"avg_ts\": %.6g, "
                  "\"stddev_ts\": %.6g, \"samples_ts\": [",
                  i ? "," : "", jsonString(model.architecture).c_str(),
                  static_cast<unsigned long long>(artifact->parameterCount()),
                  static_cast<unsigned long long>(artifact->weightsBytes()),
                  jsonString(device).c_str(), r.threads,
                  jsonString(r.test).c_str(),
                  static_cast<long long>(r.prompt),
                  static_cast<long long>(r.generated), r.mean(),
                  r.deviation());
      for (size_t k = 0; k < r.samples.size(); ++k)
        std::printf("%s%.6g", k ? ", " : "", r.samples[k]);
      std::printf("]}");
    }
    std::printf("\n]\n");
    return 0;
  }
  std::printf("| model | params | weights | device | threads | test | t/s |\n"
              "| --- | ---: | ---: | --- | ---: | --- | ---: |\n");
  for (const Result &r : results)
    std::printf("| %s | %.2f M | %s | %s | %d | %s | %.2f ± %.2f |\n",
                model.architecture.c_str(),
                artifact->parameterCount() / 1e6,
                humanBytes(static_cast<double>(artifact->weightsBytes())).c_str(),
                device.c_str(), r.threads, r.test.c_str(), r.mean(),
                r.deviation());
  return 0;
}
