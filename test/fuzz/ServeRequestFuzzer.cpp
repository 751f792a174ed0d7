//===- ServeRequestFuzzer.cpp - xfmr-serve's requests and command line ----===//
//
// The first byte picks the input: 'c' a /v1/completions body, 'h' a
// /v1/chat/completions body (the JSON after it), 'o' xfmr-serve's command
// line (arguments separated by NUL bytes). Requests go through the API layer
// with a small byte-level tokenizer and a chat template, and then through the
// scheduler's checks, as the server runs them; streamed and whole responses
// are built from a made-up generation.
//
//===----------------------------------------------------------------------===//

#include "FuzzTarget.h"

#include "OpenAIApi.h"
#include "ServeOptions.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

using namespace xfmr::serve;
using namespace xfmr::runtime;

namespace {

/// GPT-2's byte alphabet: 256 single-byte tokens, no merges, one special.
std::unique_ptr<Tokenizer> byteTokenizer() {
  std::string vocab;
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
                     (b >= 174 && b <= 255);
    std::string symbol;
    appendUtf8(symbol, printable ? b : next++);
    std::string escaped;
    for (char c : symbol)
      escaped += c == '"' ? "\\\"" : c == '\\' ? "\\\\" : std::string(1, c);
    vocab += (b ? ", \"" : "\"") + escaped + "\": " + std::to_string(b);
  }
  std::string json =
      "{\"model\": {\"type\": \"BPE\", \"vocab\": {" + vocab +
      "}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", "
      "\"add_prefix_space\": false, \"use_regex\": true}, \"decoder\": "
      "{\"type\": \"ByteLevel\"}, \"added_tokens\": [{\"id\": 256, "
      "\"content\": \"<|end|>\", \"special\": true}]}";
  return Tokenizer::fromBytes(json, "fuzz tokenizer");
}

struct Fixture {
  std::unique_ptr<Tokenizer> tokenizer = byteTokenizer();
  ChatTemplate chatTemplate{
      "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
      "{% if tools %}{{ tools | tojson }}{% endif %}"
      "{% if add_generation_prompt %}assistant:{% endif %}"};
  ModelContext model;
  Fixture() {
    model.name = "model";
    model.vocab = 257;
    model.context = 64;
    model.tokenizer = tokenizer.get();
    model.chatTemplate = &chatTemplate;
    model.endIds = {256};
    model.chatEndIds = {256};
  }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static Fixture fixture;
  if (size == 0)
    return 0;
  char kind = char(data[0]);
  if (kind == 'o') {
    try {
      parseServeOptions(xfmr::fuzz::splitAtNul(data + 1, size - 1));
    } catch (const UsageError &) {
    }
    return 0;
  }
  if (kind != 'c' && kind != 'h')
    return 0;
  nlohmann::json body =
      nlohmann::json::parse(data + 1, data + size, nullptr, false);
  if (body.is_discarded())
    return 0;
  bool chat = kind == 'h';
  ApiRequest request;
  try {
    request = parseRequest(body, chat, fixture.model, 1);
  } catch (const ApiError &) {
    return 0;
  } catch (const Error &) {
    return 0;
  }
  // The scheduler's own checks (what submit() runs before queueing).
  const GenerationRequest &g = request.generation;
  bool valid = !g.prompt.empty() && g.maxTokens >= 1 &&
               int64_t(g.prompt.size()) + g.maxTokens - 1 <= 64;
  for (int32_t id : g.prompt)
    valid = valid && id >= 0 && id < 257;
  (void)valid;
  ResponseWriter writer(fixture.model, chat, int64_t(g.prompt.size()),
                        request.includeUsage);
  GenerationEvent token;
  token.text = "h\xc3";
  token.ids = {104};
  GenerationEvent last;
  last.text = "\xa9";
  last.ids = {256};
  last.finish = FinishReason::Stop;
  if (request.stream) {
    writer.streamEvent(token);
    writer.streamEvent(last);
  } else {
    writer.add(token);
    writer.add(last);
    writer.complete().dump(-1, ' ', false,
                           nlohmann::json::error_handler_t::replace);
  }
  return 0;
}
