//===- ChatTemplateFuzzer.cpp - chat templates and their messages ---------===//
//
// Input: a Jinja chat template, a NUL, and the messages as JSON (an array of
// objects); without a NUL, the template renders one user message.

#include "FuzzTarget.h"

#include "xfmr/runtime/ChatTemplate.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string input(reinterpret_cast<const char *>(data), size);
  size_t nul = input.find('\0');
  std::string source = input.substr(0, nul);
  std::string messages = nul == std::string::npos
                             ? R"([{"role": "user", "content": "Hi"}])"
                             : input.substr(nul + 1);
  try {
    xfmr::runtime::ChatTemplate chatTemplate(source, "fuzz");
    xfmr::runtime::JsonValue parsed = xfmr::runtime::parseJson(messages);
    xfmr::runtime::JsonValue variables = xfmr::runtime::parseJson(
        R"({"bos_token": "<s>", "eos_token": "</s>", "enable_thinking": false})");
    (void)chatTemplate.apply(parsed, /*addGenerationPrompt=*/true, &variables);
  } catch (const xfmr::runtime::Error &) {
  }
  return 0;
}
