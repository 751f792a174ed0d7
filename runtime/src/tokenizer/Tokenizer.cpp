//===- Tokenizer.cpp - loading either kind of tokenizer file --------------===//

#include "xfmr/runtime/Tokenizer.h"

#include "tokenizer/BPETokenizer.h"
#include "tokenizer/SentencePieceTokenizer.h"
#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

using namespace xfmr::runtime;

Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string &path) {
  // A folder or a FIFO does not read as a file (or never ends).
  struct stat info;
  if (stat(path.c_str(), &info) != 0)
    throw Error(path +
                ": cannot open the tokenizer file: " + std::strerror(errno));
  if (!S_ISREG(info.st_mode))
    throw Error(path + ": the tokenizer is not a regular file");
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file)
    throw Error(path + ": cannot open the tokenizer file");
  std::streamoff size = file.tellg();
  if (size < 0)
    throw Error(path + ": cannot read the tokenizer file");
  std::string bytes(size_t(size), '\0');
  file.seekg(0);
  if (!file.read(bytes.data(), size))
    throw Error(path + ": cannot read the tokenizer file");
  return fromBytes(bytes, path);
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

namespace {

/// The bytes of standard base64 `text` (padding optional); throws `Error`
/// naming `what` for anything else.
std::string decodeBase64(const std::string &text, const std::string &what) {
  auto value = [&](char c) -> int {
    if (c >= 'A' && c <= 'Z')
      return c - 'A';
    if (c >= 'a' && c <= 'z')
      return c - 'a' + 26;
    if (c >= '0' && c <= '9')
      return c - '0' + 52;
    if (c == '+')
      return 62;
    if (c == '/')
      return 63;
    throw Error(what + " is not base64");
  };
  size_t length = text.size();
  while (length > 0 && text[length - 1] == '=')
    --length;
  if (length % 4 == 1 || text.size() - length > 2)
    throw Error(what + " is not base64");
  std::string bytes;
  uint32_t bits = 0;
  int count = 0;
  for (size_t i = 0; i < length; ++i) {
    bits = (bits << 6) | uint32_t(value(text[i]));
    if (++count == 4) {
      bytes += char(bits >> 16);
      bytes += char(bits >> 8);
      bytes += char(bits);
      bits = 0;
      count = 0;
    }
  }
  if (count == 2) {
    bytes += char(bits >> 4);
  } else if (count == 3) {
    bytes += char(bits >> 10);
    bytes += char(bits >> 2);
  }
  return bytes;
}

} // namespace

std::unique_ptr<Tokenizer> Tokenizer::fromArtifact(const Artifact &artifact) {
  const JsonValue *entry = artifact.manifest().find("tokenizer");
  if (!entry || entry->isNull())
    return nullptr;
  std::string what = artifact.path() + " (its tokenizer)";
  if (!entry->isObject())
    throw Error(what + ": the manifest's tokenizer is not an object");
  const JsonValue *file = entry->find("file");
  const JsonValue *text = entry->find("text");
  const JsonValue *base64 = entry->find("base64");
  if (!file || !file->isString() || (text && !text->isString()) ||
      (base64 && !base64->isString()) || bool(text) == bool(base64))
    throw Error(what + ": the manifest's tokenizer needs a file name and "
                       "its text or base64 bytes");
  std::string bytes =
      text ? text->asString() : decodeBase64(base64->asString(), what);
  return fromBytes(bytes, what);
}
