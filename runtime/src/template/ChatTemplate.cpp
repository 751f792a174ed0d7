//===- ChatTemplate.cpp - chat messages to a prompt -----------------------===//

#include "xfmr/runtime/ChatTemplate.h"

#include "template/TemplateLexer.h"
#include "template/TemplateParser.h"
#include "template/TemplateRenderer.h"
#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>

using namespace xfmr::runtime;
using namespace xfmr::runtime::jinja;

struct ChatTemplate::Impl {
  std::string what;
  std::vector<Node> nodes;
  /// The special tokens of tokenizer_config.json (bos_token, ...).
  Dict specialTokens;
};

ChatTemplate::ChatTemplate(const std::string &source, std::string what)
    : impl_(std::make_unique<Impl>()) {
  impl_->what = std::move(what);
  try {
    impl_->nodes = parseTemplate(tokenizeTemplate(source));
  } catch (const Error &error) {
    throw Error(impl_->what + " " + error.what());
  }
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate &&) noexcept = default;
ChatTemplate &ChatTemplate::operator=(ChatTemplate &&) noexcept = default;

std::unique_ptr<ChatTemplate>
ChatTemplate::fromTokenizerConfig(const JsonValue *config,
                                  const std::string &what,
                                  const std::string *override) {
  if (config && !config->isNull() && !config->isObject())
    throw Error(what + ": tokenizer_config.json is not an object");
  if (config && config->isNull())
    config = nullptr;
  std::string source;
  const JsonValue *entry = config ? config->find("chat_template") : nullptr;
  if (override) {
    source = *override;
  } else if (!entry || entry->isNull()) {
    return nullptr;
  } else if (entry->isString()) {
    source = entry->asString();
  } else if (entry->isArray()) {
    // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
    bool found = false;
    for (const JsonValue &named : entry->asArray()) {
      const JsonValue *name = named.find("name");
      const JsonValue *text = named.find("template");
      if (name && name->isString() && name->asString() == "default" && text &&
          text->isString()) {
        source = text->asString();
        found = true;
      }
    }
    if (!found)
      throw Error(what + ": chat_template is a list without a \"default\" "
                         "template");
  } else {
    throw Error(what + ": chat_template is neither a string nor a list");
  }
  auto result = std::make_unique<ChatTemplate>(
      source,
      override ? std::string("chat template") : what + " chat_template");
  if (!config)
    return result;
  // transformers passes its special_tokens_map: the tokens the config sets,
  // as strings (an AddedToken object gives its "content").
  for (const char *key : {"bos_token", "eos_token", "unk_token", "sep_token",
                          "pad_token", "cls_token", "mask_token"}) {
    const JsonValue *token = config->find(key);
    if (token && token->isObject())
      token = token->find("content");
    if (token && token->isString())
      result->impl_->specialTokens.emplace_back(
          key, Value::string(token->asString()));
  }
  if (const JsonValue *extra = config->find("additional_special_tokens");
      extra && extra->isArray() && !extra->asArray().empty()) {
    List tokens;
    for (const JsonValue &token : extra->asArray()) {
      const JsonValue *content =
          token.isObject() ? token.find("content") : &token;
      if (content && content->isString())
        tokens.push_back(Value::string(content->asString()));
    }
    result->impl_->specialTokens.emplace_back("additional_special_tokens",
                                              Value::list(std::move(tokens)));
  }
  return result;
}

std::unique_ptr<ChatTemplate>
ChatTemplate::fromArtifact(const Artifact &artifact,
                           const std::string *source) {
  const JsonValue *entry = artifact.manifest().find("tokenizer");
  const JsonValue *config = entry ? entry->find("config") : nullptr;
  return fromTokenizerConfig(config, artifact.path(), source);
}

std::unique_ptr<ChatTemplate>
ChatTemplate::forTokenizerFile(const std::string &path,
                               const std::string *source) {
  if (Artifact::isArtifactFile(path))
    return fromArtifact(*Artifact::inspect(path), source);
  size_t slash = path.rfind('/');
  std::string config =
      (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) +
      "tokenizer_config.json";
  struct stat info;
  if (stat(config.c_str(), &info) != 0 || !S_ISREG(info.st_mode))
    return fromTokenizerConfig(nullptr, config, source);
  std::ifstream file(config, std::ios::binary);
  std::stringstream bytes;
  bytes << file.rdbuf();
  if (!file)
    throw Error(config + ": cannot read the file");
  JsonValue parsed = parseJson(bytes.str(), config);
  return fromTokenizerConfig(&parsed, config, source);
}

const std::string *ChatTemplate::specialToken(const std::string &name) const {
  for (const auto &[key, value] : impl_->specialTokens)
    if (key == name && value.isString())
      return &value.asString();
  return nullptr;
}

std::string ChatTemplate::render(const JsonValue &variables) const {
  if (!variables.isObject())
    throw Error(impl_->what + ": the template variables must be a JSON object");
  Value context = Value::fromJson(variables);
  try {
    return renderTemplate(impl_->nodes, context.asDict());
  } catch (const Error &error) {
    throw Error(impl_->what + " " + error.what());
  }
}

std::string ChatTemplate::apply(const JsonValue &messages,
                                bool addGenerationPrompt,
                                const JsonValue *variables) const {
  if (!messages.isArray())
    throw Error(impl_->what + ": the messages must be a JSON array");
  for (const JsonValue &message : messages.asArray())
    if (!message.isObject())
      throw Error(impl_->what + ": each message must be a JSON object with a "
                                "role and content");
  if (variables && !variables->isNull() && !variables->isObject())
    throw Error(impl_->what + ": the template variables must be a JSON object");
  Dict context = impl_->specialTokens;
  auto set = [&](const std::string &key, Value value) {
    for (auto &member : context)
      if (member.first == key) {
        member.second = std::move(value);
        return;
      }
    context.emplace_back(key, std::move(value));
  };
  set("messages", Value::fromJson(messages));
  set("tools", Value::none());
  set("documents", Value::none());
  set("add_generation_prompt", Value::boolean(addGenerationPrompt));
  if (variables && variables->isObject())
    for (const auto &[key, value] : variables->asObject())
      set(key, Value::fromJson(value));
  try {
    return renderTemplate(impl_->nodes, context);
  } catch (const Error &error) {
    throw Error(impl_->what + " " + error.what());
  }
}
