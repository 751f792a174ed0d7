//===- xfmr-tokenize.cpp - text <-> token ids on the command line ---------===//
//
//   xfmr-tokenize FILE [--add-special]     text on stdin -> ids on stdout
//   xfmr-tokenize FILE --decode            ids on stdin -> text on stdout
//
// FILE is a Hugging Face tokenizer.json, a SentencePiece tokenizer.model or
// an artifact that carries one.
// Links only the runtime. Exit codes: 0 ok, 1 error, 2 bad command line.
//
//===----------------------------------------------------------------------===//

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Tokenizer.h"
#include "xfmr/runtime/Version.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

using namespace xfmr::runtime;

namespace {

const char kUsage[] =
    "usage: xfmr-tokenize FILE [--add-special] [--decode]\n"
    "\n"
    "Encodes the text on stdin (all of it, as bytes) and prints the token "
    "ids,\n"
    "space-separated, on one line. FILE is a Hugging Face tokenizer.json, a\n"
    "SentencePiece tokenizer.model, or a model.xfmr artifact that carries "
    "one.\n"
    "\n"
    "options:\n"
    "  --add-special  add the tokens the tokenizer adds around a sequence\n"
    "                 (BOS for Llama-3, DeepSeek-V3 and SentencePiece models)\n"
    "  --decode       read ids (whitespace-separated) instead and print their\n"
    "                 text, exactly, with no newline added\n"
    "  --version      print the version\n"
    "  -h, --help     show this help\n";

int usage(const std::string &message) {
  std::fprintf(stderr, "xfmr-tokenize: error: %s\n(see xfmr-tokenize --help)\n",
               message.c_str());
  return 2;
}

/// The ids in `text`; throws `Error` naming the first word that is not one.
std::vector<int32_t> parseIds(const std::string &text) {
  std::istringstream words(text);
  std::vector<int32_t> ids;
  std::string word;
  while (words >> word) {
    errno = 0;
    char *end = nullptr;
    long long value = std::strtoll(word.c_str(), &end, 10);
    if (*end != '\0' || errno == ERANGE || value < INT32_MIN ||
        value > INT32_MAX)
      throw Error("'" + word + "' on stdin is not a token id");
    ids.push_back(int32_t(value));
  }
  return ids;
}

} // namespace

int main(int argc, char **argv) {
  std::string file;
  bool addSpecial = false, decode = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--version") {
      std::printf("%s\n", versionString());
      return 0;
    }
    if (arg == "--add-special")
      addSpecial = true;
    else if (arg == "--decode")
      decode = true;
    else if (arg.size() > 1 && arg[0] == '-')
      return usage("unknown option '" + arg + "'");
    else if (!file.empty())
      return usage("too many arguments ('" + arg + "')");
    else
      file = arg;
  }
  if (file.empty())
    return usage("expected a tokenizer file");
  if (decode && addSpecial)
    return usage("--add-special applies to encoding, not to --decode");
  try {
    std::unique_ptr<Tokenizer> tokenizer;
    if (Artifact::isArtifactFile(file)) {
      tokenizer = Tokenizer::fromArtifact(*Artifact::inspect(file));
      if (!tokenizer)
        throw Error(file + " carries no tokenizer (compile it from a "
                           "checkpoint folder with one, or with --tokenizer)");
    } else {
      tokenizer = Tokenizer::load(file);
    }
    std::string input((std::istreambuf_iterator<char>(std::cin)),
                      std::istreambuf_iterator<char>());
    if (decode) {
      std::string text = tokenizer->decode(parseIds(input));
      std::fwrite(text.data(), 1, text.size(), stdout);
    } else {
      std::string line;
      for (int32_t id : tokenizer->encode(input, addSpecial))
        line += (line.empty() ? "" : " ") + std::to_string(id);
      std::printf("%s\n", line.c_str());
    }
    if (std::fflush(stdout) != 0 || std::ferror(stdout))
      throw Error("cannot write to stdout");
  } catch (const Error &error) {
    std::fprintf(stderr, "xfmr-tokenize: error: %s\n", error.what());
    return 1;
  }
  return 0;
}
