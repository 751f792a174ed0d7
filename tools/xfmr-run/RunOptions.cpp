//===- RunOptions.cpp - xfmr-run's command line ---------------------------===//

#include "RunOptions.h"

#include "xfmr/runtime/Error.h"

#include <cctype>
#include <charconv>

using namespace xfmr::run;

const char xfmr::run::kUsage[] =
    "usage: xfmr-run ARTIFACT [--prompt TEXT | --prompt-file F | --prompt-ids "
    "IDS]\n"
    "                [-n N] [options]\n"
    "\n"
    "The prompt (one of; without any, the text on stdin):\n"
    "  --prompt TEXT        prompt text, encoded with the tokenizer (BOS "
    "added\n"
    "                       as the tokenizer adds it)\n"
    "  --prompt-file F      prompt text from file F (\"-\": stdin)\n"
    "  --prompt-ids IDS     prompt token ids, separated by spaces or commas\n"
    "                       (\"1 2 3\", \"1,2,3\")\n"
    "  --tokenizer FILE     tokenizer.json or tokenizer.model for text "
    "prompts,\n"
    "                       text output and --stop\n"
    "\n"
    "Chat:\n"
    "  --chat               a conversation: each line of stdin is a user "
    "message\n"
    "                       (--prompt, when given, is the first); the reply "
    "to\n"
    "                       each is printed, then a line end. Messages go\n"
    "                       through the chat template of the tokenizer's\n"
    "                       tokenizer_config.json; the KV cache is kept "
    "between\n"
    "                       turns\n"
    "  --system TEXT        the system message of the conversation\n"
    "  --chat-template FILE a Jinja chat template to use instead\n"
    "\n"
    "Generation:\n"
    "  -n N                 tokens to generate: exactly N with --prompt-ids\n"
    "                       (required there), at most N for text (default: up\n"
    "                       to the end of the context)\n"
    "  --output ids|text    print token ids (one line) or the text as it is\n"
    "                       generated; default: text for text prompts, ids "
    "for\n"
    "                       --prompt-ids\n"
    "  --stop STRING        stop when the text contains STRING, not printed\n"
    "                       (repeatable)\n"
    "  --ignore-eos         with a text prompt or text output, keep going "
    "past\n"
    "                       the end-of-sequence token (which stops generation\n"
    "                       by default there, unprinted)\n"
    "  --temperature T      sampling temperature; 0 (default) is greedy\n"
    "  --top-k K            sample from the K most likely tokens (0: all)\n"
    "  --top-p P            nucleus sampling threshold in (0, 1] (default 1)\n"
    "  --seed S             random seed (default 0)\n"
    "  --threads N          threads for the model code, 0 to 1024 (0: all\n"
    "                       cores)\n"
    "  --stats              print timings and memory as JSON on stderr\n"
    "  --dump-logits FILE   write each generated token's logits as a\n"
    "                       float32 .npy of shape [N, vocab]\n"
    "  --no-verify          skip the artifact's checksum verification (for\n"
    "                       trusted files, when load time matters)\n"
    "  --mmap-weights       CPU: read the weights from the file mapping "
    "instead\n"
    "                       of a copy in huge pages (less memory, shared with\n"
    "                       other processes; slower decode)\n"
    "  --device KIND        run the artifact's code for KIND (cpu, cuda, "
    "rocm,\n"
    "                       vulkan); default: the first of its targets that\n"
    "                       this machine runs\n"
    "  -h, --help           show this help\n"
    "  --version            show the version\n"
    "\n"
    "Exit codes: 0 ok, 1 error, 2 bad command line, 130 interrupted.\n";

namespace {

template <typename T>
T parseNumber(const std::string &flag, const std::string &text) {
  T value{};
  const char *first = text.data(), *last = first + text.size();
  auto [end, err] = std::from_chars(first, last, value);
  if (text.empty() || err != std::errc() || end != last)
    throw UsageError{"invalid value '" + text + "' for " + flag};
  return value;
}

} // namespace

std::vector<int32_t> xfmr::run::parseIds(const std::string &text) {
  std::vector<int32_t> ids;
  auto fail = [&](const std::string &why) {
    throw UsageError{"--prompt-ids: " + why +
                     " (expected 32-bit integers separated by spaces or "
                     "commas)"};
  };
  size_t pos = 0;
  // Whether a comma was seen since the last id (or at the start).
  bool comma = false, first = true;
  while (pos < text.size()) {
    char c = text[pos];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++pos;
      continue;
    }
    if (c == ',') {
      if (comma || first)
        fail("empty field at offset " + std::to_string(pos));
      comma = true;
      ++pos;
      continue;
    }
    size_t end = pos;
    while (end < text.size() && text[end] != ',' &&
           !std::isspace(static_cast<unsigned char>(text[end])))
      ++end;
    std::string word = text.substr(pos, end - pos);
    int32_t id{};
    auto [p, err] = std::from_chars(word.data(), word.data() + word.size(), id);
    if (err != std::errc() || p != word.data() + word.size())
      fail("'" + word + "' is not a token id");
    ids.push_back(id);
    comma = false;
    first = false;
    pos = end;
  }
  if (comma)
    fail("empty field at the end");
  return ids;
}

RunOptions xfmr::run::parseRunOptions(const std::vector<std::string> &args) {
  RunOptions opts;
  std::vector<std::string> prompts;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg == "-h" || arg == "--help") {
      opts.help = true;
      return opts;
    }
    if (arg == "--version") {
      opts.version = true;
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
    } else if (arg == "--no-verify" && !inlineValue) {
      opts.open.verifyChecksums = false;
    } else if (arg == "--mmap-weights" && !inlineValue) {
      opts.open.mapWeights = true;
    } else if (arg == "--device") {
      opts.open.device = value();
      if (opts.open.device != "cpu" && opts.open.device != "cuda" &&
          opts.open.device != "rocm" && opts.open.device != "vulkan")
        throw UsageError{"--device must be cpu, cuda, rocm or vulkan, got '" +
                         opts.open.device + "'"};
    } else if (arg == "--prompt-ids") {
      opts.promptIds = parseIds(value());
      opts.havePromptIds = true;
      prompts.push_back(arg);
    } else if (arg == "--prompt") {
      opts.promptText = value();
      prompts.push_back(arg);
    } else if (arg == "--prompt-file") {
      opts.promptFile = value();
      if (opts.promptFile.empty())
        throw UsageError{"--prompt-file needs a file name (\"-\": stdin)"};
      prompts.push_back(arg);
    } else if (arg == "--tokenizer") {
      opts.tokenizer = value();
      if (opts.tokenizer.empty())
        throw UsageError{"--tokenizer needs a file name"};
    } else if (arg == "--output") {
      std::string kind = value();
      if (kind == "ids")
        opts.output = OutputKind::Ids;
      else if (kind == "text")
        opts.output = OutputKind::Text;
      else
        throw UsageError{"--output must be ids or text, got '" + kind + "'"};
    } else if (arg == "--stop") {
      opts.stops.push_back(value());
      if (opts.stops.back().empty())
        throw UsageError{"--stop needs a non-empty string"};
    } else if (arg == "--chat" && !inlineValue) {
      opts.chat = true;
    } else if (arg == "--system") {
      opts.system = value();
    } else if (arg == "--chat-template") {
      opts.chatTemplate = value();
      if (opts.chatTemplate.empty())
        throw UsageError{"--chat-template needs a file name"};
    } else if (arg == "--ignore-eos" && !inlineValue) {
      opts.ignoreEos = true;
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
  if (prompts.size() > 1)
    throw UsageError{"give one prompt: " + prompts[0] + " and " + prompts[1] +
                     " both given"};
  if (!opts.chat && (opts.system || !opts.chatTemplate.empty()))
    throw UsageError{std::string(opts.system ? "--system" : "--chat-template") +
                     " needs --chat"};
  if (opts.chat) {
    const char *conflict = opts.havePromptIds               ? "--prompt-ids"
                           : !opts.promptFile.empty()       ? "--prompt-file"
                           : opts.output == OutputKind::Ids ? "--output ids"
                           : !opts.dumpLogits.empty()       ? "--dump-logits"
                                                            : nullptr;
    if (conflict)
      throw UsageError{std::string("--chat reads the conversation as text "
                                   "and prints text: ") +
                       conflict + " does not go with it"};
  }
  if (opts.havePromptIds && opts.promptIds.empty())
    throw UsageError{"--prompt-ids: no token ids given"};
  if (opts.havePromptIds && !opts.numTokens)
    throw UsageError{"-n is required with --prompt-ids"};
  if (opts.numTokens && *opts.numTokens < 0)
    throw UsageError{"-n must be >= 0, got " + std::to_string(*opts.numTokens)};
  if (opts.session.threads < 0 ||
      opts.session.threads > runtime::Artifact::kMaxThreads)
    throw UsageError{"--threads must be in [0, " +
                     std::to_string(runtime::Artifact::kMaxThreads) +
                     "] (0: all cores), got " +
                     std::to_string(opts.session.threads)};
  try {
    opts.sampling.validate();
  } catch (const runtime::Error &e) {
    throw UsageError{e.what()};
  }
  return opts;
}

OutputKind xfmr::run::outputKind(const RunOptions &options) {
  if (options.output)
    return *options.output;
  return options.havePromptIds ? OutputKind::Ids : OutputKind::Text;
}
