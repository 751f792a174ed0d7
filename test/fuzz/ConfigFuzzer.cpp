//===- ConfigFuzzer.cpp - config.json interpretation ----------------------===//
//
// The text goes through what xfmr-compile does with a config.json: the
// strict JSON reader (nesting cap, duplicate keys), then the config
// interpretation and validation of every architecture.
//
//===----------------------------------------------------------------------===//

#include "FuzzTarget.h"

#include "import/ImportUtil.h"
#include "import/ModelConfig.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  llvm::StringRef text(reinterpret_cast<const char *>(data), size);
  llvm::Expected<llvm::json::Value> json =
      xfmr::parseJsonStrict(text, "config.json");
  if (!json) {
    llvm::consumeError(json.takeError());
    return 0;
  }
  llvm::Expected<xfmr::ModelConfig> config =
      xfmr::parseModelConfig(*json, "config.json");
  if (!config) {
    llvm::consumeError(config.takeError());
    return 0;
  }
  (void)config->summary();
  for (int64_t layer = 0; layer < std::min<int64_t>(config->numLayers, 64);
       ++layer)
    (void)config->isMoELayer(layer);
  return 0;
}
