//===- TargetBackend.cpp - the back-end registry ----------------------===//

#include "compiler/TargetBackend.h"

#include "llvm/ADT/StringExtras.h"

#include <map>
#include <mutex>

using namespace llvm;
using namespace xfmr;

TargetBackend::~TargetBackend() = default;

static std::map<std::string, TargetBackendFactory> &backends() {
  static std::map<std::string, TargetBackendFactory> registry;
  return registry;
}

void xfmr::registerTargetBackend(StringRef name,
                                 TargetBackendFactory factory) {
  backends()[name.str()] = std::move(factory);
}

void xfmr::registerTargetBackends() {
  static std::once_flag once;
  std::call_once(once, [] {
    registerCPUBackend();
    registerGPUBackends();
  });
}

std::vector<std::string> xfmr::targetBackendNames() {
  registerTargetBackends();
  std::vector<std::string> names;
  for (const auto &[name, factory] : backends())
    names.push_back(name);
  return names;
}

Expected<std::unique_ptr<TargetBackend>>
xfmr::createTargetBackend(StringRef target) {
  registerTargetBackends();
  StringRef name = target.split(':').first;
  auto it = backends().find(name.str());
  if (it == backends().end())
    return createStringError(std::make_error_code(std::errc::invalid_argument),
                             Twine("target '") + target +
                                 "' is not supported yet (supported: " +
                                 join(targetBackendNames(), ", ") + ")");
  return it->second(target);
}
