//===- ChatTemplate.h - chat messages to a prompt ---------------*- C++ -*-===//
//
// The Jinja `chat_template` of a checkpoint's tokenizer_config.json, rendered
// in C++ the way Hugging Face's `apply_chat_template` renders it with
// python3-jinja2 (trim_blocks, lstrip_blocks, loop controls, `tojson` with
// json.dumps's arguments, `raise_exception`, `strftime_now`). The subset
// covers what real chat templates use (DeepSeek-V3, Llama-3, Qwen3, ...):
// if/elif/else, for (with `loop`, `else`, filters, unpacking), set (also
// `namespace` attributes and blocks), macros, break/continue, raw, Python
// operators and str/dict methods, Jinja's common filters and tests. Anything
// outside it (call blocks, includes, unknown filters) is an error naming it
// and the line.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_CHATTEMPLATE_H
#define XFMR_RUNTIME_CHATTEMPLATE_H

#include <memory>
#include <string>

namespace xfmr::runtime {

class Artifact;
class JsonValue;

class ChatTemplate {
public:
  /// Parses `source`. Throws `Error` "`what` line N: ..." on a syntax error
  /// or an unsupported tag.
  explicit ChatTemplate(const std::string &source,
                        std::string what = "chat template");
  ~ChatTemplate();
  ChatTemplate(ChatTemplate &&) noexcept;
  ChatTemplate &operator=(ChatTemplate &&) noexcept;

  /// The template of a tokenizer_config.json object (its `chat_template`: a
  /// string, or a list of {name, template} where "default" is taken), with
  /// the special tokens it names (bos_token, eos_token, ...) as variables.
  /// Null when the config has no chat template. With `source`, that template
  /// is used instead of the config's (never null then; `config` may be null).
  static std::unique_ptr<ChatTemplate>
  fromTokenizerConfig(const JsonValue *config, const std::string &what,
                      const std::string *source = nullptr);
  /// The same for the tokenizer an artifact carries.
  static std::unique_ptr<ChatTemplate>
  fromArtifact(const Artifact &artifact, const std::string *source = nullptr);
  /// The same for the tokenizer_config.json beside a tokenizer file (or
  /// inside an artifact, when `path` is one).
  static std::unique_ptr<ChatTemplate>
  forTokenizerFile(const std::string &path,
                   const std::string *source = nullptr);

  /// Renders `messages` (a JSON array of {"role", "content", ...} objects) as
  /// `apply_chat_template(messages, add_generation_prompt=...)` does: the
  /// template sees `messages`, `add_generation_prompt`, `tools` and
  /// `documents` (None unless given), the special tokens, and the members of
  /// `variables` (a JSON object, may be null), which win over the others.
  /// Throws `Error` "`what` line N: ..." for what Jinja would raise
  /// (raise_exception included).
  std::string apply(const JsonValue &messages, bool addGenerationPrompt,
                    const JsonValue *variables = nullptr) const;

  /// The special token `name` ("bos_token", "eos_token", ...) that the
  /// tokenizer_config.json sets, or null.
  const std::string *specialToken(const std::string &name) const;

  /// Renders with exactly `variables` (a JSON object) as the context.
  std::string render(const JsonValue &variables) const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_CHATTEMPLATE_H
