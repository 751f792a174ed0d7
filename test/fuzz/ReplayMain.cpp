//===- ReplayMain.cpp - run a fuzz target on files, without libFuzzer -----===//
//
// `target FILE...` runs each file through LLVMFuzzerTestOneInput once; a
// crash or sanitizer report fails the process, as it would under libFuzzer.
// Folders are read recursively; libFuzzer flags ("-runs=0") are ignored.
//
//===----------------------------------------------------------------------===//

#include "FuzzTarget.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

static int replay(const std::filesystem::path &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return 1;
  }
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t *>(bytes.data()),
                         bytes.size());
  return 0;
}

int main(int argc, char **argv) {
  int failures = 0, count = 0;
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '-')
      continue;
    std::filesystem::path path(argv[i]);
    if (std::filesystem::is_directory(path)) {
      for (const auto &entry :
           std::filesystem::recursive_directory_iterator(path))
        if (entry.is_regular_file()) {
          failures += replay(entry.path());
          ++count;
        }
    } else {
      failures += replay(path);
      ++count;
    }
  }
  std::fprintf(stderr, "replayed %d input(s)\n", count);
  return failures ? 1 : 0;
}
