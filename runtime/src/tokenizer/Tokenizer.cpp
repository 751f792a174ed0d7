//===- Tokenizer.cpp - loading either kind of tokenizer file --------------===//

#include "xfmr/runtime/Tokenizer.h"

#include "tokenizer/BPETokenizer.h"
#include "tokenizer/SentencePieceTokenizer.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

#include <fstream>
#include <sstream>

using namespace xfmr::runtime;

Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string &path) {
  std::ifstream file(path, std::ios::binary);
  if (!file)
    throw Error(path + ": cannot open the tokenizer file");
  std::ostringstream bytes;
  bytes << file.rdbuf();
  if (file.bad())
    throw Error(path + ": cannot read the tokenizer file");
  return fromBytes(bytes.str(), path);
}

std::unique_ptr<Tokenizer> Tokenizer::fromBytes(const std::string &bytes,
                                                const std::string &what) {
  size_t first = bytes.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && bytes[first] == '{') {
    JsonValue json = parseJson(bytes, what);
    const JsonValue *model = json.find("model");
    const JsonValue *type = model ? model->find("type") : nullptr;
    if (!type || !type->isString())
      throw Error(what + ": not a tokenizer.json: no model.type");
    if (type->asString() != "BPE")
      throw Error(what + ": the tokenizer model '" + type->asString() +
                  "' is not supported (only BPE)");
    return loadBPETokenizer(json, what);
  }
  return loadSentencePieceTokenizer(bytes, what);
}
