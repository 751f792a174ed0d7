//===- ServeOptions.cpp - xfmr-serve's command line -----------------------===//

#include "ServeOptions.h"

#include <charconv>
#include <climits>

using namespace xfmr::serve;

const char xfmr::serve::kUsage[] =
    "usage: xfmr-serve ARTIFACT [--host ADDR] [--port N] [options]\n"
    "\n"
    "Serves a compiled model over HTTP with OpenAI's API:\n"
    "  POST /v1/completions        prompt: text or token ids\n"
    "  POST /v1/chat/completions   messages, with the artifact's chat "
    "template\n"
    "  GET  /v1/models, /health, /metrics (Prometheus text)\n"
    "Both POST endpoints stream server-sent events with \"stream\": true.\n"
    "\n"
    "options:\n"
    "  --host ADDR           address to listen on (default 127.0.0.1: this\n"
    "                        machine only; 0.0.0.0 for every interface)\n"
    "  --port N              TCP port (default 8080; 0: any free port)\n"
    "  --max-sequences N     generations that run at once, each with a KV\n"
    "                        cache of its own (default 4)\n"
    "  --max-queue N         requests that may wait for a free sequence;\n"
    "                        more get HTTP 429 (default 64)\n"
    "  --prefill-chunk N     prompt tokens per step, over all new\n"
    "                        sequences; the rest of a prompt runs in later\n"
    "                        steps, beside the others' tokens (default 256)\n"
    "  --kv-blocks N         KV memory, in blocks shared by the sequences\n"
    "                        (paged cache; default: --max-sequences full\n"
    "                        contexts): requests wait, and sequences are\n"
    "                        preempted and recomputed, when it runs out\n"
    "  --kv-block-tokens N   positions per block (default: 16, or more where\n"
    "                        a block of a small model's cache would not be\n"
    "                        whole pages or the blocks too many to map)\n"
    "  --no-paged-cache      one whole KV cache per sequence instead (GPU\n"
    "                        back ends always use whole caches)\n"
    "  --no-prefix-cache     never reuse the cache of an earlier prompt that\n"
    "                        starts the same way\n"
    "  -t, --threads N       threads for the model code (default: all cores)\n"
    "  --api-key KEY         require \"Authorization: Bearer KEY\" on /v1/\n"
    "                        requests (default: the XFMR_API_KEY environment\n"
    "                        variable; unset: no key)\n"
    "  --model-name NAME     the model's name in the API (default: the\n"
    "                        artifact's file name without .xfmr)\n"
    "  --tokenizer FILE      tokenizer.json or tokenizer.model, instead of\n"
    "                        the artifact's\n"
    "  --chat-template FILE  a Jinja chat template, instead of the\n"
    "                        tokenizer's\n"
    "  --device KIND         run this target of a multi-target artifact\n"
    "  --mmap-weights        CPU: read weights from the file mapping\n"
    "  --no-verify           skip the artifact's checksums\n"
    "  --version             print the version\n"
    "  -h, --help            show this help\n"
    "\n"
    "SIGTERM or SIGINT stops accepting requests, finishes the running ones\n"
    "and exits 0. Exit codes: 0, 1 (the artifact cannot be served, the port\n"
    "cannot be bound), 2 (bad command line).\n";

static int integer(const std::string &flag, const std::string &text, int low,
                   int high) {
  int value = 0;
  auto [end, err] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  if (err != std::errc() || end != text.data() + text.size() || value < low ||
      value > high)
    throw UsageError{"invalid value '" + text + "' for " + flag +
                     " (expected an integer in [" + std::to_string(low) + ", " +
                     std::to_string(high) + "])"};
  return value;
}

ServeOptions
xfmr::serve::parseServeOptions(const std::vector<std::string> &args) {
  ServeOptions opts;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string &arg = args[i];
    auto value = [&]() -> const std::string & {
      if (i + 1 >= args.size())
        throw UsageError{arg + " requires a value"};
      return args[++i];
    };
    if (arg == "-h" || arg == "--help") {
      opts.help = true;
    } else if (arg == "--version") {
      opts.version = true;
    } else if (arg == "--host") {
      opts.host = value();
      if (opts.host.empty())
        throw UsageError{"--host requires an address"};
    } else if (arg == "--port") {
      opts.port = integer(arg, value(), 0, 65535);
    } else if (arg == "--max-sequences") {
      opts.maxSequences = integer(arg, value(), 1, 4096);
    } else if (arg == "--no-prefix-cache") {
      opts.prefixCache = false;
    } else if (arg == "--no-paged-cache") {
      opts.pagedCache = false;
    } else if (arg == "--kv-blocks") {
      opts.kvBlocks = integer(arg, value(), 1, INT32_MAX);
    } else if (arg == "--kv-block-tokens") {
      opts.kvBlockTokens = integer(arg, value(), 1, 1 << 20);
    } else if (arg == "--prefill-chunk") {
      opts.prefillChunk = integer(arg, value(), 1, 1 << 20);
    } else if (arg == "--max-queue") {
      opts.maxQueue = integer(arg, value(), 0, 1 << 20);
    } else if (arg == "-t" || arg == "--threads") {
      opts.threads = integer(arg, value(), 0, 4096);
    } else if (arg == "--model-name") {
      opts.modelName = value();
      if (opts.modelName.empty())
        throw UsageError{"--model-name requires a name"};
    } else if (arg == "--api-key") {
      opts.apiKey = value();
      if (opts.apiKey.empty())
        throw UsageError{"--api-key requires a key"};
    } else if (arg == "--tokenizer") {
      opts.tokenizer = value();
    } else if (arg == "--chat-template") {
      opts.chatTemplate = value();
    } else if (arg == "--device") {
      opts.open.device = value();
      if (opts.open.device != "cpu" && opts.open.device != "cuda" &&
          opts.open.device != "rocm" && opts.open.device != "vulkan")
        throw UsageError{"--device must be cpu, cuda, rocm or vulkan, got '" +
                         opts.open.device + "'"};
    } else if (arg == "--mmap-weights") {
      opts.open.mapWeights = true;
    } else if (arg == "--no-verify") {
      opts.open.verifyChecksums = false;
    } else if (!arg.empty() && arg[0] == '-') {
      throw UsageError{"unknown option '" + arg + "'"};
    } else if (opts.artifact.empty()) {
      opts.artifact = arg;
    } else {
      throw UsageError{"more than one artifact given ('" + opts.artifact +
                       "', '" + arg + "')"};
    }
  }
  if (opts.artifact.empty() && !opts.help && !opts.version)
    throw UsageError{"no artifact given"};
  if (!opts.pagedCache && (opts.kvBlocks > 0 || opts.kvBlockTokens > 0))
    throw UsageError{"--kv-blocks and --kv-block-tokens size the paged cache, "
                     "which --no-paged-cache turns off"};
  return opts;
}
