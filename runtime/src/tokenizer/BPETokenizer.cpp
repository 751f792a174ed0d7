//===- BPETokenizer.cpp - Hugging Face tokenizer.json, BPE model ----------===//
//
// Encoding, as the `tokenizers` library does it:
//   1. added tokens (special or not) are found first and become their ids
//      (AddedTokens.h: longest first, `lstrip`/`rstrip`/`single_word`);
//   2. the text between them goes through the normalizers (NFC, Prepend,
//      Replace, a Sequence of those); the added tokens marked `normalized`
//      are found in the result; the text between those goes through the
//      pre-tokenizers (Split on a regex, ByteLevel with its GPT-2 regex,
//      Metaspace, a Sequence of those) into pieces;
//   3. with a ByteLevel pre-tokenizer (GPT-2, Llama-3), each piece's bytes
//      become GPT-2's printable characters, one symbol each; without one
//      (SentencePiece-style files: Llama-2, Mistral, Gemma), each UTF-8
//      character is a symbol, and one outside the vocabulary becomes its
//      <0xXX> byte tokens (`byte_fallback`) or the unknown token;
//   4. the adjacent pair with the lowest merge rank is merged until no pair
//      has a rank;
//   5. with `addSpecial`, the post-processor's template adds its tokens.
// Decoding maps ByteLevel characters back to bytes, or runs the decoder
// steps (Replace, ByteFallback, Fuse, Strip, Metaspace) over the tokens'
// text. Byte tokens decode to their bytes, valid UTF-8 or not.
//
//===----------------------------------------------------------------------===//

#include "tokenizer/BPETokenizer.h"

#include "tokenizer/AddedTokens.h"
#include "tokenizer/Normalizer.h"
#include "tokenizer/Regex.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

#include <algorithm>
#include <climits>
#include <optional>
#include <queue>
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

/// The length of the UTF-8 character that starts at `text[i]`, or 1 for a
/// byte that does not start a complete one.
size_t utf8Length(std::string_view text, size_t i) {
  auto lead = static_cast<unsigned char>(text[i]);
  size_t length = lead < 0x80                    ? 1
                  : lead >= 0xC2 && lead <= 0xDF ? 2
                  : lead >= 0xE0 && lead <= 0xEF ? 3
                  : lead >= 0xF0 && lead <= 0xF4 ? 4
                                                 : 0;
  if (length == 0 || i + length > text.size())
    return 1;
  for (size_t k = 1; k < length; ++k)
    if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80)
      return 1;
  return length;
}

/// The pattern of a Replace normalizer or decoder: a literal or a regex.
struct Pattern {
  std::string literal;
  std::shared_ptr<Regex> regex; // null: the literal

  /// `text` with each match replaced by `content`.
  std::string replaceAll(std::string_view text,
                         const std::string &content) const {
    std::string result;
    size_t done = 0;
    auto onMatch = [&](size_t begin, size_t end) {
      result.append(text, done, begin - done);
      result += content;
      done = end;
    };
    if (regex) {
      regex->forEachMatch(text, onMatch);
    } else {
      for (size_t at = text.find(literal); at != std::string_view::npos;
           at = text.find(literal, at + literal.size()))
        onMatch(at, at + literal.size());
    }
    result.append(text, done, std::string_view::npos);
    return result;
  }
};

/// One normalizer step.
struct Normalizer {
  enum class Kind { NFC, Prepend, Replace } kind;
  std::string text; // Prepend: the prefix; Replace: the replacement
  Pattern pattern;  // Replace
};

/// Where the Metaspace pre-tokenizer puts a replacement character before a
/// piece that does not start with one.
enum class PrependScheme { Always, First, Never };

/// One pre-tokenizer step.
struct PreTokenizer {
  enum class Kind { Split, ByteLevel, Metaspace } kind;
  std::shared_ptr<Regex> regex; // Split, or ByteLevel with use_regex
  bool removeMatches = false;   // Split behavior "Removed"
  bool addPrefixSpace = false;  // ByteLevel
  std::string replacement;      // Metaspace: the character for ' '
  PrependScheme prependScheme = PrependScheme::Always; // Metaspace
  bool splitWords = true; // Metaspace: each replacement starts a piece
};

/// One decoder step (all but ByteLevel, which decodes on its own).
struct Decoder {
  enum class Kind { Replace, ByteFallback, Fuse, Strip, Metaspace } kind;
  Pattern pattern;              // Replace
  std::string text;             // Replace: the replacement; Strip: the
                                // character; Metaspace: the replacement
  size_t start = 0, stop = 0;   // Strip: how many to remove at each end
  bool stripFirstSpace = false; // Metaspace: prepend_scheme is not "never"
};

/// The ids of each distinct pre-tokenized piece, within one encode call.
using PieceCache = std::unordered_map<std::string, std::vector<int32_t>>;

/// The largest vocabulary a tokenizer.json may describe (ids below it).
constexpr int32_t kMaxTokenId = int32_t(1) << 24;

class BPETokenizer : public Tokenizer {
public:
  BPETokenizer(const JsonValue &json, const std::string &what) : what_(what) {
    readModel(member(json, "model"));
    // Normalized added tokens are matched as their normalized content.
    readNormalizer(json.find("normalizer"));
    readAddedTokens(json.find("added_tokens"));
    if (const JsonValue *pre = json.find("pre_tokenizer");
        pre && !pre->isNull())
      readPreTokenizer(*pre);
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
    // Words repeat: each distinct piece is merged once per call.
    PieceCache cache;
    auto encodeText = [&](size_t begin, size_t end) {
      encodeSegment(text.substr(begin, end - begin), begin == 0, ids, cache);
    };
    if (rawAdded_)
      rawAdded_->split(text, encodeText,
                       [&](int32_t id) { ids.push_back(id); });
    else if (!text.empty())
      encodeText(0, text.size());
    if (addSpecial)
      ids.insert(ids.end(), suffix_.begin(), suffix_.end());
    return ids;
  }

  std::string decode(const std::vector<int32_t> &ids) const override {
    for (int32_t id : ids)
      if (id < 0 || id >= vocabSize() || !known_[id])
        throw Error("token id " + std::to_string(id) +
                    " is not in the vocabulary of " + what_);
    if (!byteLevelDecoder_)
      return decodeSteps(ids);
    const ByteAlphabet &alphabet = byteAlphabet();
    std::string text;
    for (int32_t id : ids) {
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
    // Ids index a table: a stray huge id must not size it (real
    // vocabularies stay far below this).
    if (id >= kMaxTokenId)
      throw Error(what_ + ": token id " + std::to_string(id) +
                  " is too large (ids must be below " +
                  std::to_string(kMaxTokenId) + ")");
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
    if (const JsonValue *v = model.find("byte_fallback"); v && !v->isNull())
      byteFallback_ = v->asBool();
    if (const JsonValue *v = model.find("fuse_unk"); v && !v->isNull())
      fuseUnk_ = v->asBool();
    for (const auto &[text, id] : member(model, "vocab").asObject()) {
      setToken(int32_t(id.asInt()), text, false);
      vocab_[text] = int32_t(id.asInt());
    }
    // (An unk_token outside the vocabulary is an error only when needed.)
    if (const JsonValue *v = model.find("unk_token"); v && !v->isNull())
      if (auto it = vocab_.find(v->asString()); it != vocab_.end())
        unkId_ = it->second;
    // SentencePiece's byte tokens, "<0x00>" to "<0xFF>".
    for (int byte = 0; byte < 256; ++byte) {
      static const char hex[] = "0123456789ABCDEF";
      std::string name = "<0x";
      name += hex[byte >> 4];
      name += hex[byte & 15];
      name += '>';
      auto it = vocab_.find(name);
      byteIds_[byte] = it == vocab_.end() ? -1 : it->second;
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
      token.singleWord = flag("single_word");
      token.normalized = flag("normalized");
      if (token.content.empty())
        throw Error(what_ + ": added token " + std::to_string(token.id) +
                    " is empty");
      setToken(token.id, token.content, true);
      added_.push_back(token);
    }
    std::vector<std::pair<std::string, const AddedToken *>> raw, normalized;
    for (const AddedToken &token : added_) {
      if (!token.normalized) {
        raw.emplace_back(token.content, &token);
        continue;
      }
      // As the tokenizers library does; a token that normalizes to nothing
      // can never be found.
      std::string pattern = normalize(token.content);
      if (!pattern.empty())
        normalized.emplace_back(std::move(pattern), &token);
    }
    if (!raw.empty())
      rawAdded_ =
          std::make_unique<AddedTokenMatcher>(raw, what_ + " (added tokens)");
    if (!normalized.empty())
      normalizedAdded_ = std::make_unique<AddedTokenMatcher>(
          normalized, what_ + " (normalized added tokens)");
  }

  void readNormalizer(const JsonValue *normalizer) {
    if (!normalizer || normalizer->isNull())
      return;
    const std::string &type = member(*normalizer, "type").asString();
    if (type == "Sequence") {
      for (const JsonValue &step : member(*normalizer, "normalizers").asArray())
        readNormalizer(&step);
      return;
    }
    Normalizer step;
    if (type == "NFC") {
      step.kind = Normalizer::Kind::NFC;
    } else if (type == "Prepend") {
      step.kind = Normalizer::Kind::Prepend;
      step.text = member(*normalizer, "prepend").asString();
    } else if (type == "Replace") {
      step.kind = Normalizer::Kind::Replace;
      step.pattern = readPattern(*normalizer, "Replace");
      step.text = member(*normalizer, "content").asString();
    } else {
      unsupported("the normalizer '" + type + "'");
    }
    normalizers_.push_back(std::move(step));
  }

  /// The "pattern" of a Replace normalizer or decoder.
  Pattern readPattern(const JsonValue &object, const std::string &what) const {
    const JsonValue &pattern = member(object, "pattern");
    Pattern result;
    if (const JsonValue *regex = pattern.find("Regex"))
      result.regex = std::make_shared<Regex>(regex->asString(),
                                             what_ + " (" + what + " pattern)");
    else if (const JsonValue *literal = pattern.find("String"))
      result.literal = literal->asString();
    else
      unsupported("a " + what + " pattern that is neither Regex nor String");
    if (!result.regex && result.literal.empty())
      throw Error(what_ + ": a " + what + " pattern is empty");
    return result;
  }

  /// The prepend scheme of a Metaspace pre-tokenizer or decoder: files
  /// before `tokenizers` 0.19 say `add_prefix_space` instead (false means
  /// "never"); the default is "always".
  PrependScheme readPrependScheme(const JsonValue &metaspace) const {
    const JsonValue *scheme = metaspace.find("prepend_scheme");
    const JsonValue *prefix = metaspace.find("add_prefix_space");
    bool noPrefix = prefix && !prefix->isNull() && !prefix->asBool();
    if (!scheme || scheme->isNull())
      return noPrefix ? PrependScheme::Never : PrependScheme::Always;
    const std::string &name = scheme->asString();
    PrependScheme result;
    if (name == "always")
      result = PrependScheme::Always;
    else if (name == "first")
      result = PrependScheme::First;
    else if (name == "never")
      result = PrependScheme::Never;
    else
      unsupported("the Metaspace prepend_scheme '" + name + "'");
    if (noPrefix && result != PrependScheme::Never)
      throw Error(what_ +
                  ": a Metaspace's add_prefix_space false "
                  "contradicts its prepend_scheme '" +
                  name + "'");
    return result;
  }

  /// The replacement character of a Metaspace pre-tokenizer or decoder.
  std::string readReplacement(const JsonValue &metaspace) const {
    const std::string &replacement =
        member(metaspace, "replacement").asString();
    if (replacement.empty() || utf8Length(replacement, 0) != replacement.size())
      throw Error(what_ + ": the Metaspace replacement '" + replacement +
                  "' is not one character");
    return replacement;
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
    } else if (type == "Metaspace") {
      step.kind = PreTokenizer::Kind::Metaspace;
      step.replacement = readReplacement(pre);
      step.prependScheme = readPrependScheme(pre);
      const JsonValue *split = pre.find("split");
      step.splitWords = !split || split->isNull() || split->asBool();
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
    if (member(*decoder, "type").asString() == "ByteLevel")
      byteLevelDecoder_ = true;
    else
      readDecoderStep(*decoder);
  }

  void readDecoderStep(const JsonValue &decoder) {
    const std::string &type = member(decoder, "type").asString();
    if (type == "Sequence") {
      for (const JsonValue &step : member(decoder, "decoders").asArray())
        readDecoderStep(step);
      return;
    }
    Decoder step;
    if (type == "Replace") {
      step.kind = Decoder::Kind::Replace;
      step.pattern = readPattern(decoder, "Replace");
      step.text = member(decoder, "content").asString();
    } else if (type == "ByteFallback") {
      step.kind = Decoder::Kind::ByteFallback;
    } else if (type == "Fuse") {
      step.kind = Decoder::Kind::Fuse;
    } else if (type == "Strip") {
      step.kind = Decoder::Kind::Strip;
      step.text = member(decoder, "content").asString();
      if (step.text.empty() || utf8Length(step.text, 0) != step.text.size())
        throw Error(what_ + ": the Strip decoder's content '" + step.text +
                    "' is not one character");
      step.start = size_t(member(decoder, "start").asInt());
      step.stop = size_t(member(decoder, "stop").asInt());
    } else if (type == "Metaspace") {
      step.kind = Decoder::Kind::Metaspace;
      step.text = readReplacement(decoder);
      step.stripFirstSpace = readPrependScheme(decoder) != PrependScheme::Never;
    } else {
      unsupported(type == "ByteLevel" ? "the decoder 'ByteLevel' in a Sequence"
                                      : "the decoder '" + type + "'");
    }
    decoders_.push_back(std::move(step));
  }

  static uint64_t pairKey(int32_t a, int32_t b) {
    return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
  }

  /// `text` through the normalizers.
  std::string normalize(std::string_view text) const {
    std::string normalized(text);
    for (const Normalizer &step : normalizers_) {
      switch (step.kind) {
      case Normalizer::Kind::NFC:
        normalized = toNFC(normalized);
        break;
      case Normalizer::Kind::Prepend:
        if (!normalized.empty())
          normalized.insert(0, step.text);
        break;
      case Normalizer::Kind::Replace:
        normalized = step.pattern.replaceAll(normalized, step.text);
        break;
      }
    }
    return normalized;
  }

  /// Text between the (not normalized) added tokens: normalized, split at
  /// the normalized added tokens, pre-tokenized, each piece merged.
  /// `atStart`: the text starts the input (Metaspace's "first" scheme).
  void encodeSegment(std::string_view text, bool atStart,
                     std::vector<int32_t> &ids, PieceCache &cache) const {
    std::string normalized = normalize(text);
    auto encodePiece = [&](size_t begin, size_t end) {
      preTokenize(0, normalized.substr(begin, end - begin),
                  atStart && begin == 0, ids, cache);
    };
    if (normalizedAdded_)
      normalizedAdded_->split(normalized, encodePiece,
                              [&](int32_t id) { ids.push_back(id); });
    else if (!normalized.empty())
      encodePiece(0, normalized.size());
  }

  /// Runs pre-tokenizer `step` on `piece` and hands each part it makes, in
  /// order, to the next step; after the last step, merges the part. (Depth
  /// first: no list of the pieces of a long text is ever built.) `atStart`:
  /// the piece starts the input.
  void preTokenize(size_t step, std::string piece, bool atStart,
                   std::vector<int32_t> &ids, PieceCache &cache) const {
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
    if (pre.kind == PreTokenizer::Kind::Metaspace) {
      metaspace(pre, step, piece, atStart, ids, cache);
      return;
    }
    if (!pre.regex) {
      preTokenize(step + 1, std::move(piece), atStart, ids, cache);
      return;
    }
    // The text around the matches, and (unless removed) the matches, in
    // order; no part is empty.
    size_t done = 0;
    pre.regex->forEachMatch(piece, [&](size_t begin, size_t end) {
      if (begin > done)
        preTokenize(step + 1, piece.substr(done, begin - done),
                    atStart && done == 0, ids, cache);
      if (!pre.removeMatches)
        preTokenize(step + 1, piece.substr(begin, end - begin),
                    atStart && begin == 0, ids, cache);
      done = end;
    });
    if (done < piece.size())
      preTokenize(step + 1, piece.substr(done), atStart && done == 0, ids,
                  cache);
  }

  /// The Metaspace pre-tokenizer: spaces become the replacement character,
  /// which the scheme may put in front; with `split`, each replacement
  /// character starts a new part.
  void metaspace(const PreTokenizer &pre, size_t step, std::string_view piece,
                 bool atStart, std::vector<int32_t> &ids,
                 PieceCache &cache) const {
    std::string text;
    for (char c : piece) {
      if (c == ' ')
        text += pre.replacement;
      else
        text += c;
    }
    bool prepend = pre.prependScheme == PrependScheme::Always ||
                   (pre.prependScheme == PrependScheme::First && atStart);
    if (prepend && text.compare(0, pre.replacement.size(), pre.replacement))
      text.insert(0, pre.replacement);
    if (!pre.splitWords) {
      preTokenize(step + 1, std::move(text), atStart, ids, cache);
      return;
    }
    size_t begin = 0;
    for (size_t at = text.find(pre.replacement, 1); at != std::string::npos;
         at = text.find(pre.replacement, at + pre.replacement.size())) {
      preTokenize(step + 1, text.substr(begin, at - begin),
                  atStart && begin == 0, ids, cache);
      begin = at;
    }
    preTokenize(step + 1, text.substr(begin), atStart && begin == 0, ids,
                cache);
  }

  /// One pre-tokenized piece, merged by rank.
  void encodePiece(const std::string &piece, std::vector<int32_t> &ids) const {
    if (byteLevel_)
      encodeByteLevelPiece(piece, ids);
    else
      encodeCharacterPiece(piece, ids);
  }

  /// A piece of a SentencePiece-style file: its UTF-8 characters as symbols
  /// (a byte that is not UTF-8 is a character of its own), merged by rank.
  void encodeCharacterPiece(const std::string &piece,
                            std::vector<int32_t> &ids) const {
    if (ignoreMerges_) {
      if (auto whole = vocab_.find(piece); whole != vocab_.end()) {
        ids.push_back(whole->second);
        return;
      }
    }
    std::vector<int32_t> symbols;
    bool afterUnknown = false;
    for (size_t i = 0, length; i < piece.size(); i += length) {
      length = utf8Length(piece, i);
      if (auto it = vocab_.find(piece.substr(i, length)); it != vocab_.end()) {
        symbols.push_back(it->second);
        afterUnknown = false;
        continue;
      }
      bool bytesKnown = byteFallback_;
      for (size_t k = 0; k < length; ++k)
        bytesKnown = bytesKnown && byteIds_[uint8_t(piece[i + k])] >= 0;
      if (bytesKnown) {
        for (size_t k = 0; k < length; ++k)
          symbols.push_back(byteIds_[uint8_t(piece[i + k])]);
        afterUnknown = false;
        continue;
      }
      if (unkId_ < 0) {
        std::string bytes;
        for (size_t k = 0; k < length; ++k)
          bytes += " " + std::to_string(uint8_t(piece[i + k]));
        throw Error(what_ + ": the character of bytes" + bytes +
                    " has no token, and neither byte_fallback nor an "
                    "unk_token gives it one");
      }
      if (!(fuseUnk_ && afterUnknown))
        symbols.push_back(unkId_);
      afterUnknown = true;
    }
    mergeByRank(symbols);
    ids.insert(ids.end(), symbols.begin(), symbols.end());
  }

  /// Merges `symbols` as the reference implementations do: the pair with
  /// the lowest rank first, the leftmost of equals first, the pairs a merge
  /// makes included. A priority queue keeps this fast on a whole text (a
  /// SentencePiece-style file may not pre-tokenize at all).
  void mergeByRank(std::vector<int32_t> &symbols) const {
    if (symbols.size() < 2)
      return;
    struct Candidate {
      int32_t rank;
      uint32_t left;
      uint64_t pair;
    };
    auto later = [](const Candidate &a, const Candidate &b) {
      return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
    };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)>
        queue(later);
    // A doubly linked list over the symbols; a merged-away symbol is -1.
    const uint32_t none = UINT32_MAX;
    std::vector<uint32_t> prev(symbols.size()), next(symbols.size());
    for (uint32_t i = 0; i < symbols.size(); ++i) {
      prev[i] = i == 0 ? none : i - 1;
      next[i] = i + 1 == symbols.size() ? none : i + 1;
    }
    auto consider = [&](uint32_t left) {
      if (left == none || next[left] == none)
        return;
      uint64_t pair = pairKey(symbols[left], symbols[next[left]]);
      if (auto it = merges_.find(pair); it != merges_.end())
        queue.push(Candidate{it->second.rank, left, pair});
    };
    for (uint32_t i = 0; i + 1 < symbols.size(); ++i)
      consider(i);
    while (!queue.empty()) {
      Candidate top = queue.top();
      queue.pop();
      uint32_t right = next[top.left];
      // Skip a pair that an earlier merge changed.
      if (symbols[top.left] < 0 || right == none ||
          pairKey(symbols[top.left], symbols[right]) != top.pair)
        continue;
      symbols[top.left] = merges_.at(top.pair).id;
      symbols[right] = -1;
      next[top.left] = next[right];
      if (next[right] != none)
        prev[next[right]] = top.left;
      consider(prev[top.left]);
      consider(top.left);
    }
    symbols.erase(std::remove(symbols.begin(), symbols.end(), -1),
                  symbols.end());
  }

  /// A piece of a ByteLevel file: its bytes as GPT-2's characters, merged by
  /// rank.
  void encodeByteLevelPiece(const std::string &piece,
                            std::vector<int32_t> &ids) const {
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

  /// The text of `ids` through the decoder steps (all but ByteLevel).
  std::string decodeSteps(const std::vector<int32_t> &ids) const {
    std::vector<std::string> pieces;
    for (int32_t id : ids)
      pieces.push_back(tokens_[id]);
    for (const Decoder &step : decoders_) {
      switch (step.kind) {
      case Decoder::Kind::Replace:
        for (std::string &piece : pieces)
          piece = step.pattern.replaceAll(piece, step.text);
        break;
      case Decoder::Kind::ByteFallback:
        pieces = decodeByteTokens(std::move(pieces));
        break;
      case Decoder::Kind::Fuse: {
        std::string all;
        for (const std::string &piece : pieces)
          all += piece;
        pieces.assign(1, std::move(all));
        break;
      }
      case Decoder::Kind::Strip:
        for (std::string &piece : pieces)
          piece = strip(piece, step);
        break;
      case Decoder::Kind::Metaspace: {
        Pattern replacement{step.text, nullptr};
        for (size_t i = 0; i < pieces.size(); ++i) {
          pieces[i] = replacement.replaceAll(pieces[i], " ");
          // The space the pre-tokenizer put in front of the text. (The Rust
          // library drops every replacement character of the first token,
          // transformers.js only the first, which keeps "  a" as it was.)
          if (i == 0 && step.stripFirstSpace && !pieces[i].empty() &&
              pieces[i][0] == ' ')
            pieces[i].erase(0, 1);
        }
        break;
      }
      }
    }
    std::string text;
    for (const std::string &piece : pieces)
      text += piece;
    return text;
  }

  /// The Strip decoder: `piece` without up to `step.start` of its character
  /// at the front and `step.stop` at the back.
  static std::string strip(const std::string &piece, const Decoder &step) {
    const std::string &c = step.text;
    size_t begin = 0, end = piece.size();
    for (size_t k = 0; k < step.start && piece.compare(begin, c.size(), c) == 0;
         ++k)
      begin += c.size();
    for (size_t k = 0; k < step.stop && end >= begin + c.size() &&
                       piece.compare(end - c.size(), c.size(), c) == 0;
         ++k)
      end -= c.size();
    return piece.substr(begin, end - begin);
  }

  /// The ByteFallback decoder: each run of <0xXX> tokens becomes one piece
  /// of those bytes. (The reference implementations then turn bytes that
  /// are not UTF-8 into U+FFFD; decode returns bytes, so they stay.)
  static std::vector<std::string>
  decodeByteTokens(std::vector<std::string> pieces) {
    auto hexDigit = [](char c) {
      return c >= '0' && c <= '9'   ? c - '0'
             : c >= 'A' && c <= 'F' ? c - 'A' + 10
             : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                    : -1;
    };
    std::vector<std::string> result;
    bool afterByte = false;
    for (std::string &piece : pieces) {
      bool isByte = piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 &&
                    hexDigit(piece[3]) >= 0 && hexDigit(piece[4]) >= 0 &&
                    piece[5] == '>';
      if (!isByte) {
        result.push_back(std::move(piece));
        afterByte = false;
        continue;
      }
      if (!afterByte)
        result.emplace_back();
      result.back() += char(hexDigit(piece[3]) * 16 + hexDigit(piece[4]));
      afterByte = true;
    }
    return result;
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
  std::vector<AddedToken> added_; // never changes after construction
  // The added tokens matched in the raw text and in the normalized text.
  std::unique_ptr<AddedTokenMatcher> rawAdded_, normalizedAdded_;
  bool byteFallback_ = false, fuseUnk_ = false;
  int32_t unkId_ = -1;
  int32_t byteIds_[256]; // the id of "<0xXX>", or -1
  std::vector<Normalizer> normalizers_;
  std::vector<PreTokenizer> preTokenizers_;
  bool byteLevel_ = false;
  bool byteLevelDecoder_ = false;
  std::vector<Decoder> decoders_;
  std::vector<int32_t> prefix_, suffix_;
};

} // namespace

std::unique_ptr<Tokenizer>
xfmr::runtime::loadBPETokenizer(const JsonValue &json,
                                const std::string &what) {
  return std::make_unique<BPETokenizer>(json, what);
}
