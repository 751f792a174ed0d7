//===- TokenizerFiles.cpp - the tokenizer an artifact carries -------------===//

#include "compiler/TokenizerFiles.h"

#include "import/ImportUtil.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Tokenizer.h"

#include "llvm/Support/Base64.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

using namespace llvm;
using namespace xfmr;

namespace {

/// The JSON object in `path`, or none when the file does not exist.
Expected<std::optional<json::Object>> readOptionalObject(StringRef path) {
  if (!sys::fs::exists(path))
    return std::nullopt;
  Expected<json::Value> value = readJsonFile(path);
  if (!value)
    return value.takeError();
  json::Object *object = value->getAsObject();
  if (!object)
    return createStringError("'" + path + "' is not a JSON object");
  return std::optional<json::Object>(std::move(*object));
}

} // namespace

Expected<TokenizerFiles> xfmr::readTokenizerFiles(StringRef path,
                                                  bool required) {
  TokenizerFiles files;
  std::string folder = path.str(), file;
  if (sys::fs::is_directory(path)) {
    for (StringRef name : {"tokenizer.json", "tokenizer.model"}) {
      SmallString<256> candidate(path);
      sys::path::append(candidate, name);
      if (sys::fs::exists(candidate)) {
        file = std::string(candidate);
        break;
      }
    }
    if (file.empty() && required)
      return createStringError("'" + path +
                               "' holds no tokenizer.json or tokenizer.model");
  } else if (sys::fs::exists(path)) {
    file = path.str();
    folder = sys::path::parent_path(path).str();
    if (folder.empty())
      folder = ".";
  } else {
    return createStringError("tokenizer '" + path + "' does not exist");
  }

  SmallString<256> generation(folder);
  sys::path::append(generation, "generation_config.json");
  Expected<std::optional<json::Object>> generationConfig =
      readOptionalObject(generation);
  if (!generationConfig)
    return generationConfig.takeError();
  files.generationConfig = std::move(*generationConfig);
  if (file.empty())
    return std::move(files);

  if (Error error = checkRegularFile(file))
    return std::move(error);
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer = MemoryBuffer::getFile(file);
  if (!buffer)
    return createStringError("cannot read tokenizer '" + file +
                             "': " + buffer.getError().message());
  std::string bytes = (*buffer)->getBuffer().str();
  std::unique_ptr<runtime::Tokenizer> tokenizer;
  bool isJson = bytes.find_first_not_of(" \t\r\n") != std::string::npos &&
                bytes[bytes.find_first_not_of(" \t\r\n")] == '{';
  if (isJson && !json::isUTF8(bytes))
    return createStringError("tokenizer '" + file + "' is not valid UTF-8");
  try {
    tokenizer = runtime::Tokenizer::fromBytes(bytes, file);
  } catch (const runtime::Error &error) {
    return createStringError(error.what());
  }
  files.vocabSize = tokenizer->vocabSize();
  std::string name = sys::path::filename(file).str();
  files.tokenizer["file"] = isJson ? "tokenizer.json" : "tokenizer.model";
  if (isJson)
    files.tokenizer["text"] = std::move(bytes);
  else
    files.tokenizer["base64"] = encodeBase64(bytes);
  files.tokenizer["vocab_size"] = files.vocabSize;
  SmallString<256> config(folder);
  sys::path::append(config, "tokenizer_config.json");
  Expected<std::optional<json::Object>> tokenizerConfig =
      readOptionalObject(config);
  if (!tokenizerConfig)
    return tokenizerConfig.takeError();
  if (*tokenizerConfig)
    files.tokenizer["config"] = std::move(**tokenizerConfig);
  files.description =
      name + " (" + std::to_string(files.vocabSize) + " tokens) from " + folder;
  return std::move(files);
}
