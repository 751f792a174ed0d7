//===- JsonFuzzer.cpp - the runtime's JSON reader -------------------------===//

#include "FuzzTarget.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view text(reinterpret_cast<const char *>(data), size);
  try {
    xfmr::runtime::JsonValue value = xfmr::runtime::parseJson(text, "fuzz");
    (void)value.kind();
  } catch (const xfmr::runtime::Error &) {
  }
  return 0;
}
