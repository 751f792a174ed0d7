//===- OpenAIApi.cpp - OpenAI's completion API over the scheduler ---------===//

#include "OpenAIApi.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

#include <chrono>
#include <limits>
#include <random>

using namespace xfmr::serve;
using namespace xfmr::runtime;
using nlohmann::json;

namespace {

[[noreturn]] void refuse(const std::string &message,
                         const std::string &param = {}, int status = 400) {
  throw ApiError{status, message, param};
}

/// The member `name` of `body`, or null when absent or JSON null.
const json *member(const json &body, const char *name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number(const json &value, const char *name) {
  if (!value.is_number())
    refuse(std::string("'") + name + "' must be a number", name);
  return value.get<double>();
}

int64_t integer(const json &value, const char *name) {
  if (!value.is_number_integer() && !value.is_number_unsigned())
    refuse(std::string("'") + name + "' must be an integer", name);
  if (value.is_number_unsigned() &&
      value.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    refuse(std::string("'") + name + "' is too large", name);
  return value.get<int64_t>();
}

bool boolean(const json &value, const char *name) {
  if (!value.is_boolean())
    refuse(std::string("'") + name + "' must be true or false", name);
  return value.get<bool>();
}

/// Token ids of a JSON array of integers.
std::vector<int32_t> tokenIds(const json &array, const char *name) {
  std::vector<int32_t> ids;
  for (const json &id : array) {
    if (!id.is_number_integer() && !id.is_number_unsigned())
      refuse(std::string("'") + name +
                 "' must be a string or a list of token ids",
             name);
    int64_t value = id.get<int64_t>();
    if (value < std::numeric_limits<int32_t>::min() ||
        value > std::numeric_limits<int32_t>::max())
      refuse("token id " + std::to_string(value) + " is out of range", name);
    ids.push_back(int32_t(value));
  }
  return ids;
}

const Tokenizer &needTokenizer(const ModelContext &model, const char *what) {
  if (!model.tokenizer)
    refuse(std::string(what) +
           " needs a tokenizer, and the served artifact carries none (compile "
           "it with one, or start xfmr-serve with --tokenizer FILE)");
  return *model.tokenizer;
}

/// The prompt of /v1/completions: text, token ids, or a list of one.
std::vector<int32_t> completionPrompt(const json &prompt,
                                      const ModelContext &model) {
  if (prompt.is_string())
    return needTokenizer(model, "a text prompt")
        .encode(prompt.get<std::string>(), /*addSpecial=*/true);
  if (!prompt.is_array())
    refuse("'prompt' must be a string or a list of token ids", "prompt");
  if (prompt.size() == 1 && (prompt[0].is_string() || prompt[0].is_array()))
    return completionPrompt(prompt[0], model);
  for (const json &item : prompt)
    if (item.is_string() || item.is_array())
      refuse("one prompt per request: 'prompt' lists " +
                 std::to_string(prompt.size()) + " prompts",
             "prompt");
  return tokenIds(prompt, "prompt");
}

/// An OpenAI message with its content as one string (text parts joined), in
/// the runtime's JSON for the chat template.
JsonValue templateMessage(const json &message, size_t index) {
  std::string where = "messages[" + std::to_string(index) + "]";
  if (!message.is_object())
    refuse("'" + where + "' must be an object", "messages");
  const json *role = member(message, "role");
  if (!role || !role->is_string())
    refuse("'" + where + "' needs a string 'role'", "messages");
  json copy = message;
  if (const json *content = member(message, "content");
      content && content->is_array()) {
    std::string text;
    for (const json &part : *content) {
      const json *type = part.is_object() ? member(part, "type") : nullptr;
      const json *partText = part.is_object() ? member(part, "text") : nullptr;
      if (!type || *type != "text" || !partText || !partText->is_string())
        refuse("'" + where +
                   "' has a content part that is not text; only text is "
                   "supported",
               "messages");
      text += partText->get<std::string>();
    }
    copy["content"] = text;
  } else if (content && !content->is_string()) {
    refuse("'" + where + "' content must be a string or a list of parts",
           "messages");
  }
  return parseJson(copy.dump(), where);
}

std::string randomId(const char *prefix) {
  static thread_local std::mt19937_64 engine{std::random_device{}()};
  static const char hex[] = "0123456789abcdef";
  std::string id = prefix;
  for (int i = 0; i < 24; ++i)
    id += hex[engine() & 15];
  return id;
}

} // namespace

ApiRequest xfmr::serve::parseRequest(const json &body, bool chat,
                                     const ModelContext &model,
                                     uint64_t defaultSeed) {
  if (!body.is_object())
    refuse("the request body must be a JSON object");
  ApiRequest request;
  request.chat = chat;
  if (const json *name = member(body, "model")) {
    if (!name->is_string())
      refuse("'model' must be a string", "model");
    if (name->get<std::string>() != model.name)
      refuse("the model '" + name->get<std::string>() +
                 "' does not exist: this server serves '" + model.name + "'",
             "model", 404);
  }
  if (const json *n = member(body, "n"); n && integer(*n, "n") != 1)
    refuse("'n' must be 1: one completion per request", "n");
  // Options that would change the output and are not implemented.
  for (const char *name : {"presence_penalty", "frequency_penalty"})
    if (const json *penalty = member(body, name);
        penalty && number(*penalty, name) != 0)
      refuse(std::string("'") + name + "' is not supported", name);
  if (const json *bias = member(body, "logit_bias");
      bias && !(bias->is_object() && bias->empty()))
    refuse("'logit_bias' is not supported", "logit_bias");
  if (const json *logprobs = member(body, "logprobs");
      logprobs && !(logprobs->is_boolean() && !logprobs->get<bool>()))
    refuse("'logprobs' is not supported", "logprobs");
  if (const json *echo = member(body, "echo"); echo && boolean(*echo, "echo"))
    refuse("'echo' is not supported", "echo");
  if (const json *bestOf = member(body, "best_of");
      bestOf && integer(*bestOf, "best_of") != 1)
    refuse("'best_of' must be 1", "best_of");
  if (const json *suffix = member(body, "suffix");
      suffix && !(suffix->is_string() && suffix->get<std::string>().empty()))
    refuse("'suffix' is not supported", "suffix");
  if (const json *format = member(body, "response_format");
      format && !(format->is_object() && member(*format, "type") &&
                  (*format)["type"] == "text"))
    refuse("'response_format' other than text is not supported",
           "response_format");

  GenerationRequest &generation = request.generation;
  SamplingOptions &sampling = generation.sampling;
  sampling.temperature = 1; // OpenAI's default
  if (const json *t = member(body, "temperature"))
    sampling.temperature = float(number(*t, "temperature"));
  if (const json *p = member(body, "top_p"))
    sampling.topP = float(number(*p, "top_p"));
  if (const json *k = member(body, "top_k")) {
    int64_t topK = integer(*k, "top_k");
    // vLLM spells "no limit" -1.
    if (topK < -1 || topK > std::numeric_limits<int>::max())
      refuse("'top_k' must be -1, 0 or positive", "top_k");
    sampling.topK = topK < 0 ? 0 : int(topK);
  }
  sampling.seed = defaultSeed;
  if (const json *seed = member(body, "seed"))
    sampling.seed = uint64_t(integer(*seed, "seed"));
  try {
    sampling.validate();
  } catch (const Error &error) {
    refuse(error.what());
  }
  if (const json *stream = member(body, "stream"))
    request.stream = boolean(*stream, "stream");
  if (const json *stop = member(body, "stop")) {
    if (stop->is_string()) {
      generation.stops.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json &item : *stop) {
        if (!item.is_string())
          refuse("'stop' must be a string or a list of strings", "stop");
        generation.stops.push_back(item.get<std::string>());
      }
    } else {
      refuse("'stop' must be a string or a list of strings", "stop");
    }
    for (const std::string &text : generation.stops)
      if (text.empty())
        refuse("a stop string is empty", "stop");
    if (!generation.stops.empty())
      needTokenizer(model, "'stop'");
  }
  bool ignoreEos = false;
  if (const json *ignore = member(body, "ignore_eos"))
    ignoreEos = boolean(*ignore, "ignore_eos");

  if (chat) {
    if (!model.chatTemplate)
      refuse("the served artifact has no chat template (no chat_template in "
             "its tokenizer_config.json): use /v1/completions, or start "
             "xfmr-serve with --chat-template FILE");
    const Tokenizer &tokenizer = needTokenizer(model, "a chat");
    const json *messages = member(body, "messages");
    if (!messages || !messages->is_array() || messages->empty())
      refuse("'messages' must be a non-empty list", "messages");
    JsonValue::Array converted;
    for (size_t i = 0; i < messages->size(); ++i)
      converted.push_back(templateMessage((*messages)[i], i));
    json variables = json::object();
    if (const json *tools = member(body, "tools"))
      variables["tools"] = *tools;
    if (const json *kwargs = member(body, "chat_template_kwargs")) {
      if (!kwargs->is_object())
        refuse("'chat_template_kwargs' must be an object",
               "chat_template_kwargs");
      for (auto it = kwargs->begin(); it != kwargs->end(); ++it)
        variables[it.key()] = it.value();
    }
    std::string text;
    try {
      JsonValue extra = parseJson(variables.dump(), "chat template variables");
      text = model.chatTemplate->apply(JsonValue::makeArray(converted),
                                       /*addGenerationPrompt=*/true, &extra);
    } catch (const Error &error) {
      refuse(error.what(), "messages");
    }
    generation.prompt = tokenizer.encode(text, /*addSpecial=*/false);
    if (!ignoreEos)
      generation.endIds = model.chatEndIds;
  } else {
    const json *prompt = member(body, "prompt");
    if (!prompt)
      refuse("'prompt' is required", "prompt");
    generation.prompt = completionPrompt(*prompt, model);
    if (!ignoreEos)
      generation.endIds = model.endIds;
  }
  if (generation.prompt.empty())
    refuse("the prompt has no tokens", chat ? "messages" : "prompt");

  // Completions default to 16 tokens, as OpenAI's; chat to the rest of the
  // context.
  int64_t left = model.context - int64_t(generation.prompt.size()) + 1;
  int64_t maxTokens = chat ? left : 16;
  for (const char *name : {"max_tokens", "max_completion_tokens"})
    if (const json *value = member(body, name)) {
      maxTokens = integer(*value, name);
      if (maxTokens < 1)
        refuse(std::string("'") + name + "' must be at least 1", name);
    }
  generation.maxTokens =
      int(std::min<int64_t>(maxTokens, std::numeric_limits<int>::max()));
  if (const json *options = member(body, "stream_options")) {
    const json *usage =
        options->is_object() ? member(*options, "include_usage") : nullptr;
    request.includeUsage = usage && boolean(*usage, "include_usage");
  }
  return request;
}

ResponseWriter::ResponseWriter(const ModelContext &model, bool chat,
                               int64_t promptTokens, bool includeUsage)
    : model_(model), chat_(chat), id_(randomId(chat ? "chatcmpl-" : "cmpl-")),
      created_(std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count()),
      promptTokens_(promptTokens), includeUsage_(includeUsage) {}

json ResponseWriter::usage() const {
  return {{"prompt_tokens", promptTokens_},
          {"completion_tokens", completionTokens_},
          {"total_tokens", promptTokens_ + completionTokens_}};
}

json ResponseWriter::chunk(const json &choice) const {
  return {{"id", id_},
          {"object", chat_ ? "chat.completion.chunk" : "text_completion"},
          {"created", created_},
          {"model", model_.name},
          {"choices", json::array({choice})}};
}

static std::string sse(const json &data) {
  return "data: " + data.dump(-1, ' ', false, json::error_handler_t::replace) +
         "\n\n";
}

std::string ResponseWriter::streamEvent(const GenerationEvent &event) {
  add(event);
  if (event.finish == FinishReason::Error)
    return sse(errorBody(event.error, 500)) + "data: [DONE]\n\n";
  json finish = event.finish ? json(finishReasonName(*event.finish)) : json();
  std::string out;
  if (chat_ && !sentRole_) {
    sentRole_ = true;
    out += sse(chunk({{"index", 0},
                      {"delta", {{"role", "assistant"}, {"content", ""}}},
                      {"logprobs", nullptr},
                      {"finish_reason", nullptr}}));
  }
  json choice = {{"index", 0},
                 {"logprobs", nullptr},
                 {"finish_reason", finish},
                 {"token_ids", event.ids}};
  if (chat_)
    choice["delta"] = event.text.empty() && event.finish
                          ? json::object()
                          : json{{"content", event.text}};
  else
    choice["text"] = event.text;
  out += sse(chunk(choice));
  if (event.finish) {
    if (includeUsage_) {
      json last = chunk(json());
      last["choices"] = json::array();
      last["usage"] = usage();
      out += sse(last);
    }
    out += "data: [DONE]\n\n";
  }
  return out;
}

void ResponseWriter::add(const GenerationEvent &event) {
  text_ += event.text;
  ids_.insert(ids_.end(), event.ids.begin(), event.ids.end());
  completionTokens_ += int64_t(event.ids.size());
  if (event.finish)
    finishReason_ = finishReasonName(*event.finish);
}

json ResponseWriter::complete() const {
  json choice = {{"index", 0},
                 {"logprobs", nullptr},
                 {"finish_reason", finishReason_},
                 {"token_ids", ids_}};
  if (chat_)
    choice["message"] = {{"role", "assistant"}, {"content", text_}};
  else
    choice["text"] = text_;
  return {{"id", id_},
          {"object", chat_ ? "chat.completion" : "text_completion"},
          {"created", created_},
          {"model", model_.name},
          {"choices", json::array({choice})},
          {"usage", usage()}};
}

json xfmr::serve::errorBody(const std::string &message, int status,
                            const std::string &param) {
  const char *type = status == 429   ? "rate_limit_error"
                     : status == 404 ? "not_found_error"
                     : status == 401 ? "authentication_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json() : json(param)},
            {"code", nullptr}}}};
}

json xfmr::serve::modelList(const ModelContext &model, int64_t created) {
  return {{"object", "list"},
          {"data", json::array({{{"id", model.name},
                                 {"object", "model"},
                                 {"created", created},
                                 {"owned_by", "xfmr"},
                                 {"max_model_len", model.context}}})}};
}
