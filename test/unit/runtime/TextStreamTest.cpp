//===- TextStreamTest.cpp - streaming generated text ----------------------===//

#include "xfmr/runtime/TextStream.h"
#include "xfmr/runtime/Error.h"

#include <gtest/gtest.h>

using namespace xfmr::runtime;

namespace {

/// Each id decodes to a fixed string of bytes (a byte-level tokenizer).
class PieceTokenizer : public Tokenizer {
public:
  explicit PieceTokenizer(std::vector<std::string> pieces)
      : pieces_(std::move(pieces)) {}
  std::vector<int32_t> encode(std::string_view, bool) const override {
    return {};
  }
  std::string decode(const std::vector<int32_t> &ids) const override {
    std::string text;
    for (int32_t id : ids) {
      if (id < 0 || size_t(id) >= pieces_.size())
        throw Error("token id " + std::to_string(id) + " is out of range");
      text += pieces_[id];
    }
    return text;
  }
  int64_t vocabSize() const override { return int64_t(pieces_.size()); }
  std::string kind() const override { return "pieces"; }

private:
  std::vector<std::string> pieces_;
};

/// What a stream shows for `ids`, chunk by chunk, then finish().
std::vector<std::string> chunks(TextStream &stream,
                                const std::vector<int32_t> &ids) {
  std::vector<std::string> out;
  for (int32_t id : ids)
    out.push_back(stream.push(id));
  out.push_back(stream.finish());
  return out;
}

} // namespace

TEST(TextStreamTest, HoldsBackSplitCharacters) {
  // "é" is C3 A9, "👍" is F0 9F 91 8D: split across tokens.
  PieceTokenizer tokenizer({"a", "\xC3", "\xA9", "\xF0\x9F", "\x91", "\x8D"});
  TextStream stream(tokenizer);
  EXPECT_EQ(chunks(stream, {0, 1, 2, 3, 4, 5, 0}),
            (std::vector<std::string>{"a", "", "\xC3\xA9", "", "",
                                      "\xF0\x9F\x91\x8D", "a", ""}));
  // A character the generation never completes comes out at the end.
  TextStream cut(tokenizer);
  EXPECT_EQ(chunks(cut, {0, 3}),
            (std::vector<std::string>{"a", "", "\xF0\x9F"}));
  // A byte that can never start a character is shown at once.
  PieceTokenizer invalid({"\xFF", "\x80"});
  TextStream bad(invalid);
  EXPECT_EQ(chunks(bad, {0, 1}),
            (std::vector<std::string>{"\xFF", "\x80", ""}));
}

TEST(TextStreamTest, StopsBeforeStopStrings) {
  PieceTokenizer tokenizer({"Hello", " wor", "ld", "!", "\n", "User", ":"});
  // A stop string across tokens: its start is held back until it is known.
  TextStream stream(tokenizer, {"\nUser:", "world"});
  EXPECT_EQ(chunks(stream, {0, 1, 2, 3}),
            (std::vector<std::string>{"Hello", " ", "", "", ""}));
  EXPECT_TRUE(stream.stopped());
  EXPECT_EQ(stream.text(), "Hello ");
  EXPECT_EQ(stream.push(3), "");
  // A held-back prefix that does not become the stop string is shown.
  TextStream partial(tokenizer, {"\nUser:"});
  EXPECT_EQ(chunks(partial, {3, 4, 0, 4, 5}),
            (std::vector<std::string>{"!", "", "\nHello", "", "", "\nUser"}));
  EXPECT_FALSE(partial.stopped());
  // The earliest of several stop strings wins.
  TextStream first(tokenizer, {"ld", "wor"});
  EXPECT_EQ(chunks(first, {0, 1, 2}),
            (std::vector<std::string>{"Hello", " ", "", ""}));
  EXPECT_THROW(TextStream(tokenizer, {""}), Error);
  // Ids past the tokenizer's vocabulary have no text.
  TextStream padded(tokenizer);
  EXPECT_EQ(padded.push(0), "Hello");
  EXPECT_EQ(padded.push(99), "");
  EXPECT_EQ(padded.push(3), "!");
  EXPECT_EQ(padded.text(), "Hello!");
}

TEST(TextStreamTest, CompleteUtf8Prefix) {
  EXPECT_EQ(completeUtf8Prefix(""), 0u);
  EXPECT_EQ(completeUtf8Prefix("abc"), 3u);
  EXPECT_EQ(completeUtf8Prefix("a\xC3"), 1u);
  EXPECT_EQ(completeUtf8Prefix("a\xC3\xA9"), 3u);
  EXPECT_EQ(completeUtf8Prefix("a\xE2\x82"), 1u);
  EXPECT_EQ(completeUtf8Prefix("a\xF0\x9F\x91"), 1u);
  EXPECT_EQ(completeUtf8Prefix("\x80\x80\x80\x80\x80"), 5u);
}
