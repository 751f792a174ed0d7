//===- RunOptions.h - xfmr-run's command line -------------------*- C++ -*-===//
//
// The command line of xfmr-run, parsed without touching any file, so that it
// is unit-tested and fuzzed on its own (test/fuzz/RunOptionsFuzzer.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TOOLS_XFMR_RUN_RUNOPTIONS_H
#define XFMR_TOOLS_XFMR_RUN_RUNOPTIONS_H

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Sampler.h"
#include "xfmr/runtime/Session.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace xfmr::run {

extern const char kUsage[];

/// A bad command line: exit code 2 with the usage text.
struct UsageError {
  std::string message;
};

/// What xfmr-run prints on stdout.
enum class OutputKind { Ids, Text };

struct RunOptions {
  std::string artifact;
  /// The prompt: ids (--prompt-ids), text (--prompt), a file's text
  /// (--prompt-file; "-" is stdin) or, with none of them, stdin's text.
  std::vector<int32_t> promptIds;
  bool havePromptIds = false;
  std::optional<std::string> promptText;
  std::string promptFile;
  /// tokenizer.json or tokenizer.model (text prompts, text output, --stop).
  std::string tokenizer;
  /// Default: text for a text prompt, ids for --prompt-ids.
  std::optional<OutputKind> output;
  /// Keep generating past the end-of-sequence token.
  bool ignoreEos = false;
  /// Strings that end the generated text (not printed).
  std::vector<std::string> stops;
  /// --chat: a conversation, one user message per line of stdin (after
  /// --prompt's, when given), rendered with the chat template.
  bool chat = false;
  /// --system: the conversation's system message.
  std::optional<std::string> system;
  /// --chat-template: a Jinja file used instead of the tokenizer's template.
  std::string chatTemplate;
  /// Tokens to generate; required with --prompt-ids, else at most this many.
  std::optional<int> numTokens;
  runtime::SamplingOptions sampling;
  runtime::SessionOptions session;
  runtime::OpenOptions open;
  bool stats = false;
  std::string dumpLogits;
  bool help = false;
  bool version = false;
};

/// Token ids separated by spaces and/or single commas ("1 2 3", "1,2,3",
/// "1, 2, 3"); an empty field ("1,,2", "1,", ",1") is refused, as is
/// anything but a 32-bit integer. Throws UsageError.
std::vector<int32_t> parseIds(const std::string &text);

/// What stdout shows for these options.
OutputKind outputKind(const RunOptions &options);

/// Parses argv[1..argc). Throws UsageError.
RunOptions parseRunOptions(const std::vector<std::string> &args);

} // namespace xfmr::run

#endif // XFMR_TOOLS_XFMR_RUN_RUNOPTIONS_H
