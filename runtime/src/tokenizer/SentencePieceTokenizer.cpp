//===- SentencePieceTokenizer.cpp - tokenizer.model files -----------------===//

#include "tokenizer/SentencePieceTokenizer.h"

#include "xfmr/runtime/Error.h"

#include <sentencepiece_processor.h>

using namespace xfmr::runtime;

namespace {

class SentencePieceTokenizer : public Tokenizer {
public:
  SentencePieceTokenizer(const std::string &bytes, const std::string &what) {
    auto status = processor_.LoadFromSerializedProto(bytes);
    if (!status.ok())
      throw Error(what + ": not a SentencePiece model: " + status.ToString());
  }

  std::vector<int32_t> encode(std::string_view text,
                              bool addSpecial) const override {
    std::vector<int> ids;
    auto status =
        processor_.Encode(absl::string_view(text.data(), text.size()), &ids);
    if (!status.ok())
      throw Error("SentencePiece encoding failed: " + status.ToString());
    std::vector<int32_t> result;
    // Hugging Face's Llama and Mistral tokenizers add BOS, not EOS.
    if (addSpecial && processor_.bos_id() >= 0)
      result.push_back(processor_.bos_id());
    result.insert(result.end(), ids.begin(), ids.end());
    return result;
  }

  std::string decode(const std::vector<int32_t> &ids) const override {
    std::vector<int> pieces;
    for (int32_t id : ids) {
      if (id < 0 || id >= processor_.GetPieceSize())
        throw Error("token id " + std::to_string(id) +
                    " is outside the vocabulary [0, " +
                    std::to_string(processor_.GetPieceSize()) + ")");
      pieces.push_back(id);
    }
    std::string text;
    auto status = processor_.Decode(pieces, &text);
    if (!status.ok())
      throw Error("SentencePiece decoding failed: " + status.ToString());
    return text;
  }

  int64_t vocabSize() const override { return processor_.GetPieceSize(); }
  std::string kind() const override { return "SentencePiece"; }

private:
  sentencepiece::SentencePieceProcessor processor_;
};

} // namespace

std::unique_ptr<Tokenizer>
xfmr::runtime::loadSentencePieceTokenizer(const std::string &bytes,
                                          const std::string &what) {
  return std::make_unique<SentencePieceTokenizer>(bytes, what);
}
