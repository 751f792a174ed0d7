//===- OpenAIApi.h - OpenAI's completion API over the scheduler -*- C++ -*-===//
//
// Request bodies of /v1/completions and /v1/chat/completions in, generation
// requests out; events out as OpenAI's response objects and stream chunks
// (server-sent events). Everything about the wire format lives here; the
// HTTP plumbing is in xfmr-serve.cpp.
//
// Supported fields: model, prompt (text, token ids, or a list holding one of
// those), messages (rendered with the artifact's chat template; tools are
// handed to the template), max_tokens / max_completion_tokens,
// temperature, top_p, top_k, seed, stop, stream, n (1), ignore_eos, and
// zero penalties. Anything else that changes the output (echo, logprobs,
// best_of, suffix, non-zero penalties, n > 1) is refused with a message
// naming it, rather than ignored.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TOOLS_XFMR_SERVE_OPENAIAPI_H
#define XFMR_TOOLS_XFMR_SERVE_OPENAIAPI_H

#include "Scheduler.h"

#include "xfmr/runtime/ChatTemplate.h"
#include "xfmr/runtime/Tokenizer.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace xfmr::serve {

/// A request the API refuses: its HTTP status and message.
struct ApiError {
  int status;
  std::string message;
  /// The request field at fault, if any.
  std::string param;
};

/// What the API layer knows about the served model.
struct ModelContext {
  std::string name;
  int64_t vocab = 0, context = 0;
  /// May be null: then prompts must be token ids and replies have no text.
  const runtime::Tokenizer *tokenizer = nullptr;
  /// May be null: then /v1/chat/completions is refused.
  const runtime::ChatTemplate *chatTemplate = nullptr;
  /// End-of-sequence ids (the artifact's, and the chat template's
  /// eos_token for chat).
  std::vector<int32_t> endIds, chatEndIds;
};

struct ApiRequest {
  GenerationRequest generation;
  bool chat = false, stream = false;
  /// stream_options.include_usage: a last chunk with the token counts.
  bool includeUsage = false;
};

/// Parses a request body (throws ApiError).
ApiRequest parseRequest(const nlohmann::json &body, bool chat,
                        const ModelContext &model, uint64_t defaultSeed);

/// Builds OpenAI's response objects for one generation.
class ResponseWriter {
public:
  ResponseWriter(const ModelContext &model, bool chat, int64_t promptTokens,
                 bool includeUsage = false);

  /// One server-sent event for `event` ("data: {...}\n\n", and the final
  /// "data: [DONE]\n\n" after the last event); empty when there is nothing
  /// to send yet.
  std::string streamEvent(const GenerationEvent &event);
  /// Collects `event` for complete().
  void add(const GenerationEvent &event);
  /// The whole response object, after the last event.
  nlohmann::json complete() const;

private:
  nlohmann::json chunk(const nlohmann::json &choice) const;
  nlohmann::json usage() const;

  const ModelContext &model_;
  bool chat_;
  std::string id_;
  int64_t created_;
  int64_t promptTokens_, completionTokens_ = 0;
  std::string text_;
  std::vector<int32_t> ids_;
  std::string finishReason_;
  bool includeUsage_;
  bool sentRole_ = false;
};

/// OpenAI's error object.
nlohmann::json errorBody(const std::string &message, int status,
                         const std::string &param = {});

/// The /v1/models list.
nlohmann::json modelList(const ModelContext &model, int64_t created);

} // namespace xfmr::serve

#endif // XFMR_TOOLS_XFMR_SERVE_OPENAIAPI_H
