//===- xfmr-run.cpp - run a compiled model.xfmr ---------------------------===//
//
// Prints the generated token ids on one line of stdout, or (text prompts,
// --output text) the generated text as it arrives and nothing else, so
// scripts and tests can compare outputs. With --chat, each line of stdin is a
// user message and each reply is printed as it arrives, then a line end.
// Diagnostics and --stats go to stderr. Exit codes: 0 ok, 1 runtime error, 2
// bad command line, 130 when interrupted (the tokens generated so far are still
// printed).
//
//===----------------------------------------------------------------------===//

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/ChatTemplate.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"
#include "xfmr/runtime/Npy.h"
#include "xfmr/runtime/OutputFile.h"
#include "xfmr/runtime/Session.h"
#include "xfmr/runtime/TextStream.h"
#include "xfmr/runtime/Tokenizer.h"
#include "xfmr/runtime/Version.h"

#include "RunOptions.h"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
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

/// The prompt's text: --prompt, --prompt-file (a file or "-") or stdin.
std::string readPromptText(const RunOptions &opts) {
  if (opts.promptText)
    return *opts.promptText;
  std::istream *in = &std::cin;
  std::ifstream file;
  if (!opts.promptFile.empty() && opts.promptFile != "-") {
    file.open(opts.promptFile, std::ios::binary);
    if (!file)
      throw Error(opts.promptFile + ": cannot open the prompt file");
    in = &file;
  } else if (opts.promptFile.empty() && isatty(STDIN_FILENO)) {
    throw Error("no prompt: give --prompt TEXT, --prompt-file FILE, "
                "--prompt-ids IDS or the text on stdin");
  }
  std::string text((std::istreambuf_iterator<char>(*in)),
                   std::istreambuf_iterator<char>());
  if (in->bad())
    throw Error("cannot read the prompt from " +
                (opts.promptFile.empty() || opts.promptFile == "-"
                     ? std::string("stdin")
                     : opts.promptFile));
  return text;
}

/// The chat template --chat uses: --chat-template's file, else the one of
/// the tokenizer (beside --tokenizer's file, or in the artifact).
std::unique_ptr<ChatTemplate> loadChatTemplate(const RunOptions &opts,
                                               const Artifact &artifact) {
  std::optional<std::string> source;
  if (!opts.chatTemplate.empty()) {
    std::ifstream file(opts.chatTemplate, std::ios::binary);
    if (!file)
      throw Error(opts.chatTemplate + ": cannot open the chat template");
    source.emplace((std::istreambuf_iterator<char>(file)),
                   std::istreambuf_iterator<char>());
    if (file.bad())
      throw Error(opts.chatTemplate + ": cannot read the chat template");
  }
  const std::string *override = source ? &*source : nullptr;
  std::unique_ptr<ChatTemplate> chatTemplate =
      opts.tokenizer.empty()
          ? ChatTemplate::fromArtifact(artifact, override)
          : ChatTemplate::forTokenizerFile(opts.tokenizer, override);
  if (!chatTemplate)
    throw Error("--chat needs a chat template, and " +
                (opts.tokenizer.empty() ? opts.artifact + "'s tokenizer"
                                        : opts.tokenizer) +
                " has none (no chat_template in its tokenizer_config.json): "
                "give --chat-template FILE");
  return chatTemplate;
}

JsonValue message(const std::string &role, const std::string &content) {
  return JsonValue::makeObject({{"role", JsonValue::makeString(role)},
                                {"content", JsonValue::makeString(content)}});
}

/// --chat: renders the conversation after each user line, runs only what
/// the KV cache does not hold yet, and streams the reply.
int runChat(const RunOptions &opts, const std::shared_ptr<Artifact> &artifact,
            const Tokenizer &tokenizer) {
  std::unique_ptr<ChatTemplate> chatTemplate =
      loadChatTemplate(opts, *artifact);
  // A reply ends at the model's end-of-sequence ids and at the template's
  // eos_token (Llama-3 ends turns with <|eot_id|>).
  std::vector<int32_t> eos;
  if (!opts.ignoreEos) {
    eos = artifact->endOfSequenceIds();
    if (const std::string *token = chatTemplate->specialToken("eos_token")) {
      std::vector<int32_t> ids = tokenizer.encode(*token, false);
      if (ids.size() == 1)
        eos.push_back(ids[0]);
    }
  }
  JsonValue::Array messages;
  if (opts.system)
    messages.push_back(message("system", *opts.system));
  Session session(artifact, opts.session);
  std::vector<int32_t> cached; // the ids in the KV cache
  bool terminal = isatty(STDIN_FILENO);
  std::optional<std::string> pending = opts.promptText;

  struct sigaction action = {};
  action.sa_handler = onSigint;
  action.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &action, nullptr);

  for (;;) {
    std::string line;
    if (pending) {
      line = std::move(*pending);
      pending.reset();
    } else {
      if (terminal)
        std::fputs("> ", stderr);
      if (!std::getline(std::cin, line))
        break;
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
    }
    if (line.empty())
      continue;
    messages.push_back(message("user", line));
    std::string prompt = chatTemplate->apply(JsonValue::makeArray(messages),
                                             /*addGenerationPrompt=*/true);
    std::vector<int32_t> ids = tokenizer.encode(prompt, /*addSpecial=*/false);
    int64_t context = artifact->contextLength();
    if (int64_t(ids.size()) >= context)
      throw Error("the conversation is " + std::to_string(ids.size()) +
                  " tokens long and no longer fits the context of " +
                  std::to_string(context) + " tokens");
    // The cache is reused when it holds the start of the new prompt (the
    // previous turns, as the template writes them again).
    bool reuse = cached.size() < ids.size() &&
                 std::equal(cached.begin(), cached.end(), ids.begin());
    if (!reuse) {
      session.reset();
      cached.clear();
    }
    std::vector<int32_t> fresh(ids.begin() + int64_t(cached.size()), ids.end());
    int maxNew = int(std::min<int64_t>(
        opts.numTokens.value_or(std::numeric_limits<int>::max()),
        context - int64_t(ids.size()) + 1));
    TextStream text(tokenizer, opts.stops);
    std::string reply;
    std::vector<int32_t> sampled;
    session.generate(
        fresh, maxNew, opts.sampling, [&](int32_t token, const float *) {
          sampled.push_back(token);
          if (std::find(eos.begin(), eos.end(), token) != eos.end())
            return false;
          std::string chunk = text.push(token);
          reply += chunk;
          std::fwrite(chunk.data(), 1, chunk.size(), stdout);
          std::fflush(stdout);
          return !interrupted && !text.stopped();
        });
    std::string rest = text.finish();
    reply += rest;
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::printf("\n");
    if (std::fflush(stdout) != 0 || std::ferror(stdout))
      throw Error("cannot write the reply to stdout");
    cached = ids;
    cached.insert(cached.end(), sampled.begin(), sampled.end());
    cached.resize(size_t(session.position()));
    messages.push_back(message("assistant", reply));
    if (interrupted) {
      std::fprintf(stderr, "xfmr-run: interrupted\n");
      return 130;
    }
  }
  if (opts.stats)
    printStats(session.stats(), artifact->verifySeconds());
  return 0;
}

int run(const RunOptions &opts) {
  bool printedAny = false;
  OutputKind output = outputKind(opts);
  try {
    // Before generating: the logits file must be writable.
    if (!opts.dumpLogits.empty())
      if (std::string error = checkOutputPath(opts.dumpLogits); !error.empty())
        throw Error(error);
    bool textPrompt = !opts.havePromptIds;
    auto artifact = Artifact::open(opts.artifact, opts.open);
    int64_t vocab = artifact->vocabSize();
    // --tokenizer, or the one the artifact carries.
    std::unique_ptr<Tokenizer> tokenizer;
    if (textPrompt || output == OutputKind::Text || !opts.stops.empty()) {
      tokenizer = opts.tokenizer.empty() ? Tokenizer::fromArtifact(*artifact)
                                         : Tokenizer::load(opts.tokenizer);
      if (!tokenizer)
        throw Error(std::string(textPrompt ? "a text prompt"
                                : output == OutputKind::Text
                                    ? "--output text"
                                    : "--stop") +
                    " needs a tokenizer, and " + opts.artifact +
                    " carries none: give --tokenizer FILE (tokenizer.json "
                    "or tokenizer.model), or compile with one");
      if (tokenizer->vocabSize() > vocab)
        throw Error((opts.tokenizer.empty() ? opts.artifact + "'s tokenizer"
                                            : opts.tokenizer) +
                    " has " + std::to_string(tokenizer->vocabSize()) +
                    " tokens, more than the model's vocabulary of " +
                    std::to_string(vocab));
    }
    if (opts.chat)
      return runChat(opts, artifact, *tokenizer);
    std::vector<int32_t> prompt = opts.promptIds;
    if (textPrompt) {
      prompt = tokenizer->encode(readPromptText(opts), /*addSpecial=*/true);
      if (prompt.empty())
        throw Error("the prompt is empty: it encodes to no tokens");
    }
    Session session(artifact, opts.session);
    // Text generation ends at an end-of-sequence id by default; ids with
    // --prompt-ids keep their exact count.
    std::vector<int32_t> eos;
    if (!opts.ignoreEos && (textPrompt || output == OutputKind::Text))
      eos = artifact->endOfSequenceIds();
    int maxNew = opts.numTokens.value_or(0);
    if (!opts.numTokens) // up to the end of the context
      maxNew = int(std::max<int64_t>(
          0, std::min<int64_t>(artifact->contextLength() -
                                   int64_t(prompt.size()) + 1,
                               std::numeric_limits<int>::max())));
    std::optional<TextStream> text;
    if (output == OutputKind::Text || !opts.stops.empty())
      text.emplace(*tokenizer, opts.stops);

    // The first Ctrl-C stops after the current token; a second one kills.
    struct sigaction action = {};
    action.sa_handler = onSigint;
    action.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &action, nullptr);

    std::vector<float> logits;
    std::vector<int32_t> shown;
    session.generate(
        prompt, maxNew, opts.sampling, [&](int32_t token, const float *row) {
          if (std::find(eos.begin(), eos.end(), token) != eos.end())
            return false;
          std::string chunk = text ? text->push(token) : "";
          if (text && text->stopped() && output == OutputKind::Ids)
            return false; // a stop string: this token is not printed
          shown.push_back(token);
          if (output == OutputKind::Text) {
            std::fwrite(chunk.data(), 1, chunk.size(), stdout);
          } else {
            std::printf(printedAny ? " %d" : "%d", token);
            printedAny = true;
          }
          std::fflush(stdout);
          if (!opts.dumpLogits.empty())
            logits.insert(logits.end(), row, row + vocab);
          return !interrupted && !(text && text->stopped());
        });
    if (output == OutputKind::Text) {
      std::string rest = text->finish();
      std::fwrite(rest.data(), 1, rest.size(), stdout);
      // The text exactly; a terminal also gets a line end.
      if (isatty(STDOUT_FILENO))
        std::printf("\n");
    } else {
      std::printf("\n");
    }
    printedAny = false;
    if (std::fflush(stdout) != 0 || std::ferror(stdout))
      throw Error("cannot write the generated tokens to stdout");

    // A kill while writing leaves no temporary file; Ctrl-C keeps the
    // handler above when it was not pressed yet.
    removeOutputsOnSignals(/*onlyDefault=*/true);
    if (!opts.dumpLogits.empty())
      writeNpyFloat32(opts.dumpLogits, logits.data(),
                      {static_cast<int64_t>(shown.size()), vocab});
    if (opts.stats)
      printStats(session.stats(), artifact->verifySeconds());
    if (interrupted) {
      std::fprintf(stderr, "xfmr-run: interrupted after %zu token(s)\n",
                   shown.size());
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
