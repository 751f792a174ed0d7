//===- BPETokenizer.cpp - Hugging Face tokenizer.json, BPE model ----------===//
//
// Encoding, as the `tokenizers` library does it:
//   1. added tokens (special or not) are found first, longest first, and
//      become their ids; `lstrip`/`rstrip` ones absorb the whitespace beside
//      them;
//   2. the text between them is normalized (NFC, or not at all) and goes
//      through the pre-tokenizers (Split on a regex, ByteLevel with its GPT-2
//      regex, a Sequence of those) into pieces;
//   3. each piece's bytes become GPT-2's printable characters (ByteLevel),
//      one symbol each, and the adjacent pair with the lowest merge rank is
//      merged, everywhere in the piece, until no pair has a rank;
//   4. with `addSpecial`, the post-processor's template adds its tokens.
// Decoding maps the characters back to bytes.
//
//===----------------------------------------------------------------------===//

#include "tokenizer/BPETokenizer.h"

#include "tokenizer/Normalizer.h"
#include "tokenizer/Regex.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

#include <algorithm>
#include <climits>
#include <optional>
#include <unordered_map>

using namespace xfmr::runtime;

namespace {

/// The code points of the valid UTF-8 string `s` (vocabulary entries).
std::vector<uint32_t> codePoints(std::string_view s) {
  std::vector<uint32_t> points;
  for (size_t i = 0; i < s.size();) {
    auto byte = static_cast<unsigned char>(s[i]);
    int length = byte < 0x80 ? 1 : byte < 0xE0 ? 2 : byte < 0xF0 ? 3 : 4;
    uint32_t c = length == 1 ? byte : byte & (0x3F >> (length - 1));
    for (int k = 1; k < length && i + k < s.size(); ++k)
      c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    points.push_back(c);
    i += length;
  }
  return points;
}

/// GPT-2's bytes-to-characters map: the printable Latin-1 bytes stand for
/// themselves, the other 68 bytes for U+0100 onwards, in byte order.
struct ByteAlphabet {
  std::string characterOf[256];
  std::unordered_map<uint32_t, uint8_t> byteOf;

  ByteAlphabet() {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
                       (b >= 174 && b <= 255);
      uint32_t c = printable ? b : next++;
      appendUtf8(characterOf[b], c);
      byteOf[c] = uint8_t(b);
    }
  }
};

const ByteAlphabet &byteAlphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

/// GPT-2's pre-tokenizer pattern (ByteLevel's `use_regex`).
const char kGPT2Pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
    "\\s+(?!\\S)|\\s+";

/// One pre-tokenizer step.
struct PreTokenizer {
  enum class Kind { Split, ByteLevel } kind;
  std::shared_ptr<Regex> regex; // Split, or ByteLevel with use_regex
  bool removeMatches = false;   // Split behavior "Removed"
  bool addPrefixSpace = false;  // ByteLevel
};

/// The ids of each distinct pre-tokenized piece, within one encode call.
using PieceCache = std::unordered_map<std::string, std::vector<int32_t>>;

struct AddedToken {
  int32_t id;
  std::string content;
  bool lstrip, rstrip;
};

class BPETokenizer : public Tokenizer {
public:
  BPETokenizer(const JsonValue &json, const std::string &what) : what_(what) {
    readModel(member(json, "model"));
    readAddedTokens(json.find("added_tokens"));
    readNormalizer(json.find("normalizer"));
    if (const JsonValue *pre = json.find("pre_tokenizer");
        pre && !pre->isNull())
      readPreTokenizer(*pre);
    if (!byteLevel_)
      throw Error(what_ + ": BPE without a ByteLevel pre-tokenizer (the "
                          "SentencePiece-style tokenizer.json of Llama 2 and "
                          "Mistral) is not supported yet; use its "
                          "tokenizer.model");
    if (const JsonValue *post = json.find("post_processor");
        post && !post->isNull())
      readPostProcessor(*post);
    readDecoder(json.find("decoder"));
  }

  std::vector<int32_t> encode(std::string_view text,
                              bool addSpecial) const override {
    std::vector<int32_t> ids;
    if (addSpecial)
      ids = prefix_;
    std::string input(text);
    size_t done = 0;
    // Words repeat: each distinct piece is merged once per call.
    PieceCache cache;
    auto encodeText = [&](size_t begin, size_t end) {
      if (end > begin)
        encodeSegment(std::string_view(input).substr(begin, end - begin), ids,
                      cache);
    };
    if (addedPattern_) {
      addedPattern_->forEachMatch(input, [&](size_t begin, size_t end) {
        if (begin < done) // inside whitespace an rstrip token absorbed
          return;
        const AddedToken &token =
            *addedByContent_.at(input.substr(begin, end - begin));
        if (token.lstrip)
          while (begin > done && isSpace(input[begin - 1]))
            --begin;
        encodeText(done, begin);
        ids.push_back(token.id);
        if (token.rstrip)
          while (end < input.size() && isSpace(input[end]))
            ++end;
        done = end;
      });
    }
    encodeText(done, input.size());
    if (addSpecial)
      ids.insert(ids.end(), suffix_.begin(), suffix_.end());
    return ids;
  }

  std::string decode(const std::vector<int32_t> &ids) const override {
    const ByteAlphabet &alphabet = byteAlphabet();
    std::string text;
    for (int32_t id : ids) {
      if (id < 0 || id >= vocabSize() || !known_[id])
        throw Error("token id " + std::to_string(id) +
                    " is not in the vocabulary of " + what_);
      if (isAdded_[id]) {
        text += tokens_[id];
        continue;
      }
      for (uint32_t c : codePoints(tokens_[id])) {
        auto it = alphabet.byteOf.find(c);
        if (it == alphabet.byteOf.end())
          throw Error(what_ + ": token " + std::to_string(id) +
                      " holds a character outside the ByteLevel alphabet");
        text += char(it->second);
      }
    }
    return text;
  }

  int64_t vocabSize() const override { return int64_t(tokens_.size()); }
  std::string kind() const override { return "tokenizer.json (BPE)"; }

private:
  static bool isSpace(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
           c == '\v';
  }

  const JsonValue &member(const JsonValue &object, const char *key) const {
    const JsonValue *value = object.find(key);
    if (!value)
      throw Error(what_ + ": '" + key + "' is missing");
    return *value;
  }

  [[noreturn]] void unsupported(const std::string &component) const {
    throw Error(what_ + ": " + component + " is not supported");
  }

  void setToken(int32_t id, const std::string &text, bool added) {
    if (id < 0)
      throw Error(what_ + ": negative token id " + std::to_string(id));
    if (size_t(id) >= tokens_.size()) {
      tokens_.resize(id + 1);
      known_.resize(id + 1, false);
      isAdded_.resize(id + 1, false);
    }
    tokens_[id] = text;
    known_[id] = true;
    isAdded_[id] = added;
  }

  void readModel(const JsonValue &model) {
    for (const char *key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (const JsonValue *v = model.find(key);
          v && !v->isNull() && !v->asString().empty())
        unsupported(std::string("BPE ") + key + " '" + v->asString() + "'");
    if (const JsonValue *v = model.find("dropout");
        v && !v->isNull() && v->asDouble() != 0)
      unsupported("BPE dropout");
    if (const JsonValue *v = model.find("ignore_merges"); v && !v->isNull())
      ignoreMerges_ = v->asBool();
    for (const auto &[text, id] : member(model, "vocab").asObject()) {
      setToken(int32_t(id.asInt()), text, false);
      vocab_[text] = int32_t(id.asInt());
    }
    const JsonValue::Array &merges = member(model, "merges").asArray();
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      std::string left, right;
      if (merges[rank].isString()) {
        const std::string &merge = merges[rank].asString();
        size_t space = merge.find(' ', 1);
        if (space == std::string::npos)
          throw Error(what_ + ": merge " + std::to_string(rank) + " '" + merge +
                      "' is not two tokens");
        left = merge.substr(0, space);
        right = merge.substr(space + 1);
      } else {
        const JsonValue::Array &pair = merges[rank].asArray();
        if (pair.size() != 2)
          throw Error(what_ + ": merge " + std::to_string(rank) +
                      " is not two tokens");
        left = pair[0].asString();
        right = pair[1].asString();
      }
      auto a = vocab_.find(left), b = vocab_.find(right),
           merged = vocab_.find(left + right);
      if (a == vocab_.end() || b == vocab_.end() || merged == vocab_.end())
        throw Error(what_ + ": merge " + std::to_string(rank) + " ('" + left +
                    "', '" + right +
                    "') uses or makes a token outside the "
                    "vocabulary");
      merges_.try_emplace(pairKey(a->second, b->second),
                          Merge{int32_t(rank), merged->second});
    }
  }

  void readAddedTokens(const JsonValue *added) {
    if (!added || added->isNull())
      return;
    std::vector<const AddedToken *> byLength;
    for (const JsonValue &entry : added->asArray()) {
      AddedToken token;
      token.id = int32_t(member(entry, "id").asInt());
      token.content = member(entry, "content").asString();
      auto flag = [&](const char *key) {
        const JsonValue *v = entry.find(key);
        return v && !v->isNull() && v->asBool();
      };
      token.lstrip = flag("lstrip");
      token.rstrip = flag("rstrip");
      if (flag("single_word"))
        unsupported("added token '" + token.content + "' with single_word");
      if (token.content.empty())
        throw Error(what_ + ": added token " + std::to_string(token.id) +
                    " is empty");
      setToken(token.id, token.content, true);
      added_.push_back(token);
    }
    if (added_.empty())
      return;
    for (const AddedToken &token : added_)
      addedByContent_[token.content] = &token;
    for (const auto &[content, token] : addedByContent_)
      byLength.push_back(token);
    // Longest first: "<|a|>" wins over "<|a" at the same position.
    std::sort(byLength.begin(), byLength.end(),
              [](const AddedToken *a, const AddedToken *b) {
                return a->content.size() != b->content.size()
                           ? a->content.size() > b->content.size()
                           : a->content < b->content;
              });
    std::string pattern;
    for (const AddedToken *token : byLength)
      pattern += (pattern.empty() ? "" : "|") + escapeRegex(token->content);
    addedPattern_ = std::make_shared<Regex>(pattern, what_ + " (added tokens)");
  }

  void readNormalizer(const JsonValue *normalizer) {
    if (!normalizer || normalizer->isNull())
      return;
    const std::string &type = member(*normalizer, "type").asString();
    if (type == "Sequence") {
      for (const JsonValue &step : member(*normalizer, "normalizers").asArray())
        readNormalizer(&step);
    } else if (type == "NFC") {
      nfc_ = true;
    } else {
      unsupported("the normalizer '" + type + "'");
    }
  }

  void readPreTokenizer(const JsonValue &pre) {
    const std::string &type = member(pre, "type").asString();
    if (type == "Sequence") {
      for (const JsonValue &step : member(pre, "pretokenizers").asArray())
        readPreTokenizer(step);
      return;
    }
    PreTokenizer step;
    if (type == "ByteLevel") {
      step.kind = PreTokenizer::Kind::ByteLevel;
      const JsonValue *prefix = pre.find("add_prefix_space");
      step.addPrefixSpace = prefix && !prefix->isNull() && prefix->asBool();
      const JsonValue *useRegex = pre.find("use_regex");
      if (!useRegex || useRegex->isNull() || useRegex->asBool())
        step.regex =
            std::make_shared<Regex>(kGPT2Pattern, what_ + " (ByteLevel regex)");
      byteLevel_ = true;
    } else if (type == "Split") {
      step.kind = PreTokenizer::Kind::Split;
      const JsonValue &pattern = member(pre, "pattern");
      if (const JsonValue *regex = pattern.find("Regex"))
        step.regex = std::make_shared<Regex>(regex->asString(),
                                             what_ + " (Split pattern)");
      else if (const JsonValue *literal = pattern.find("String"))
        step.regex = std::make_shared<Regex>(escapeRegex(literal->asString()),
                                             what_ + " (Split pattern)");
      else
        unsupported("a Split pattern that is neither Regex nor String");
      const std::string &behavior = member(pre, "behavior").asString();
      if (behavior == "Removed")
        step.removeMatches = true;
      else if (behavior != "Isolated")
        unsupported("the Split behavior '" + behavior + "'");
      if (const JsonValue *invert = pre.find("invert");
          invert && !invert->isNull() && invert->asBool())
        unsupported("an inverted Split");
    } else {
      unsupported("the pre-tokenizer '" + type + "'");
    }
    preTokenizers_.push_back(step);
  }

  void readPostProcessor(const JsonValue &post) {
    const std::string &type = member(post, "type").asString();
    if (type == "ByteLevel")
      return; // offsets only
    if (type == "Sequence") {
      for (const JsonValue &step : member(post, "processors").asArray())
        readPostProcessor(step);
      return;
    }
    if (type != "TemplateProcessing")
      unsupported("the post-processor '" + type + "'");
    const JsonValue &specials = member(post, "special_tokens");
    bool sequenceSeen = false;
    for (const JsonValue &item : member(post, "single").asArray()) {
      if (item.find("Sequence")) {
        sequenceSeen = true;
        continue;
      }
      const JsonValue *special = item.find("SpecialToken");
      if (!special)
        unsupported("a post-processor template item other than "
                    "SpecialToken and Sequence");
      const std::string &name = member(*special, "id").asString();
      const JsonValue *entry = specials.find(name);
      if (!entry)
        throw Error(what_ + ": the post-processor's special token '" + name +
                    "' has no ids");
      for (const JsonValue &id : member(*entry, "ids").asArray())
        (sequenceSeen ? suffix_ : prefix_).push_back(int32_t(id.asInt()));
    }
  }

  void readDecoder(const JsonValue *decoder) {
    if (!decoder || decoder->isNull())
      unsupported("a tokenizer without a decoder");
    const std::string &type = member(*decoder, "type").asString();
    if (type != "ByteLevel")
      unsupported("the decoder '" + type + "'");
  }

  static uint64_t pairKey(int32_t a, int32_t b) {
    return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
  }

  /// Text between added tokens: normalized, pre-tokenized, each piece merged.
  void encodeSegment(std::string_view text, std::vector<int32_t> &ids,
                     PieceCache &cache) const {
    preTokenize(0, nfc_ ? toNFC(text) : std::string(text), ids, cache);
  }

  /// Runs pre-tokenizer `step` on `piece` and hands each part it makes, in
  /// order, to the next step; after the last step, merges the part. (Depth
  /// first: no list of the pieces of a long text is ever built.)
  void preTokenize(size_t step, std::string piece, std::vector<int32_t> &ids,
                   PieceCache &cache) const {
    if (step == preTokenizers_.size()) {
      auto [it, inserted] = cache.try_emplace(std::move(piece));
      if (inserted)
        encodePiece(it->first, it->second);
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
    const PreTokenizer &pre = preTokenizers_[step];
    if (pre.kind == PreTokenizer::Kind::ByteLevel && pre.addPrefixSpace &&
        piece[0] != ' ')
      piece.insert(piece.begin(), ' ');
    if (!pre.regex) {
      preTokenize(step + 1, std::move(piece), ids, cache);
      return;
    }
    // The text around the matches, and (unless removed) the matches, in
    // order; no part is empty.
    size_t done = 0;
    pre.regex->forEachMatch(piece, [&](size_t begin, size_t end) {
      if (begin > done)
        preTokenize(step + 1, piece.substr(done, begin - done), ids, cache);
      if (!pre.removeMatches)
        preTokenize(step + 1, piece.substr(begin, end - begin), ids, cache);
      done = end;
    });
    if (done < piece.size())
      preTokenize(step + 1, piece.substr(done), ids, cache);
  }

  /// One pre-tokenized piece: its bytes as ByteLevel symbols, merged by rank.
  void encodePiece(const std::string &piece, std::vector<int32_t> &ids) const {
    const ByteAlphabet &alphabet = byteAlphabet();
    std::string characters;
    for (char byte : piece)
      characters += alphabet.characterOf[uint8_t(byte)];
    if (ignoreMerges_) {
      if (auto whole = vocab_.find(characters); whole != vocab_.end()) {
        ids.push_back(whole->second);
        return;
      }
    }
    std::vector<int32_t> symbols;
    for (char byte : piece) {
      auto it = vocab_.find(alphabet.characterOf[uint8_t(byte)]);
      if (it == vocab_.end())
        throw Error(what_ + ": byte " + std::to_string(uint8_t(byte)) +
                    " has no token");
      symbols.push_back(it->second);
    }
    while (symbols.size() > 1) {
      const Merge *best = nullptr;
      int32_t left = 0, right = 0;
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        auto it = merges_.find(pairKey(symbols[i], symbols[i + 1]));
        if (it != merges_.end() && (!best || it->second.rank < best->rank)) {
          best = &it->second;
          left = symbols[i];
          right = symbols[i + 1];
        }
      }
      if (!best)
        break;
      std::vector<int32_t> merged;
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == left &&
            symbols[i + 1] == right) {
          merged.push_back(best->id);
          ++i;
        } else {
          merged.push_back(symbols[i]);
        }
      }
      symbols = std::move(merged);
    }
    ids.insert(ids.end(), symbols.begin(), symbols.end());
  }

  struct Merge {
    int32_t rank, id;
  };

  std::string what_;
  std::vector<std::string> tokens_;
  std::vector<bool> known_, isAdded_;
  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  bool ignoreMerges_ = false;
  std::vector<AddedToken> added_;
  std::unordered_map<std::string, const AddedToken *> addedByContent_;
  std::shared_ptr<Regex> addedPattern_;
  std::vector<PreTokenizer> preTokenizers_;
  bool byteLevel_ = false;
  bool nfc_ = false;
  std::vector<int32_t> prefix_, suffix_;
};

} // namespace

std::unique_ptr<Tokenizer>
xfmr::runtime::loadBPETokenizer(const JsonValue &json,
                                const std::string &what) {
  return std::make_unique<BPETokenizer>(json, what);
}
