//===- ServeOptions.h - xfmr-serve's command line ---------------*- C++ -*-===//
//
// Parsed without touching any file or socket, so that it is unit-tested on
// its own.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TOOLS_XFMR_SERVE_SERVEOPTIONS_H
#define XFMR_TOOLS_XFMR_SERVE_SERVEOPTIONS_H

#include "xfmr/runtime/Artifact.h"

#include <string>
#include <vector>

namespace xfmr::serve {

extern const char kUsage[];

/// A bad command line: exit code 2 with the usage text.
struct UsageError {
  std::string message;
};

struct ServeOptions {
  std::string artifact;
  /// Loopback unless told otherwise.
  std::string host = "127.0.0.1";
  /// 0: any free port (printed when listening).
  int port = 8080;
  int maxSequences = 4;
  int maxQueue = 64;
  int prefillChunk = 256;
  bool prefixCache = true;
  bool pagedCache = true;
  /// 0: the scheduler's defaults.
  int kvBlocks = 0, kvBlockTokens = 0;
  /// Threads for the model code; 0: all cores.
  int threads = 0;
  /// The name clients use for the model (default: the artifact's file name
  /// without its extension).
  std::string modelName;
  std::string tokenizer;
  std::string chatTemplate;
  /// When set (--api-key, or the XFMR_API_KEY environment variable), /v1/
  /// requests must carry "Authorization: Bearer KEY".
  std::string apiKey;
  runtime::OpenOptions open;
  bool help = false, version = false;
};

/// Parses argv[1..argc). Throws UsageError.
ServeOptions parseServeOptions(const std::vector<std::string> &args);

} // namespace xfmr::serve

#endif // XFMR_TOOLS_XFMR_SERVE_SERVEOPTIONS_H
