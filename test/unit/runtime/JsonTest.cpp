//===- JsonTest.cpp - the runtime's JSON reader ---------------------------===//

#include "xfmr/runtime/Json.h"
#include "xfmr/runtime/Error.h"

#include <gtest/gtest.h>

using namespace xfmr::runtime;

namespace {

/// The message of the Error that parsing `text` throws ("" if none).
std::string parseError(const std::string &text) {
  try {
    parseJson(text, "test.json");
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

TEST(JsonTest, ParsesAllKinds) {
  JsonValue v = parseJson(R"( {"a": [1, -2.5, true, false, null],
                                "s": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00",
                                "o": {}} )");
  ASSERT_TRUE(v.isObject());
  const auto &a = v.find("a")->asArray();
  ASSERT_EQ(a.size(), 5u);
  EXPECT_EQ(a[0].asInt(), 1);
  EXPECT_DOUBLE_EQ(a[1].asDouble(), -2.5);
  EXPECT_FALSE(a[1].isInteger());
  EXPECT_TRUE(a[2].asBool());
  EXPECT_FALSE(a[3].asBool());
  EXPECT_TRUE(a[4].isNull());
  EXPECT_EQ(v.find("s")->asString(),
            "x\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_TRUE(v.find("o")->isObject());
  EXPECT_EQ(v.find("missing"), nullptr);
  EXPECT_EQ(v.asObject()[0].first, "a"); // file order is kept
}

TEST(JsonTest, IntegersAreExact) {
  // 2^63 - 1 is not representable as a double.
  EXPECT_EQ(parseJson("9223372036854775807").asInt(), INT64_MAX);
  EXPECT_EQ(parseJson("-9223372036854775808").asInt(), INT64_MIN);
  EXPECT_EQ(parseJson("1e3").asInt(), 1000);
  EXPECT_EQ(parseJson("-0").asInt(), 0);
  EXPECT_FALSE(parseJson("9223372036854775808").isInteger());
  EXPECT_FALSE(parseJson("0.5").isInteger());
  EXPECT_THROW(parseJson("0.5").asInt(), Error);
}

TEST(JsonTest, KindMismatchThrows) {
  EXPECT_THROW(parseJson("1").asString(), Error);
  EXPECT_THROW(parseJson("\"x\"").asInt(), Error);
  EXPECT_THROW(parseJson("[]").asObject(), Error);
}

TEST(JsonTest, RejectsInvalidTextWithOffset) {
  EXPECT_EQ(parseError("{\"a\": 1,}"),
            "test.json: invalid JSON at offset 8: expected a string key");
  EXPECT_NE(parseError("[1, 2").find("offset 5"), std::string::npos);
  EXPECT_NE(parseError("{\"a\": 1} x").find("unexpected text after"),
            std::string::npos);
  EXPECT_NE(parseError("{\"a\": 1, \"a\": 2}").find("duplicate key \"a\""),
            std::string::npos);
  // Large objects (a tokenizer.json vocabulary) look keys up in a set: the
  // same answers, early and late duplicates alike.
  std::string large = "{";
  for (int i = 0; i < 100; ++i)
    large += "\"k" + std::to_string(i) + "\": " + std::to_string(i) + ", ";
  EXPECT_EQ(parseJson(large + "\"last\": 0}").asObject().size(), 101u);
  EXPECT_NE(parseError(large + "\"k3\": 0}").find("duplicate key \"k3\""),
            std::string::npos);
  EXPECT_NE(parseError(large + "\"x\": 0, \"x\": 1}")
                .find("duplicate key \"x\""),
            std::string::npos);
  EXPECT_NE(parseError("01").find("leading zero"), std::string::npos);
  EXPECT_NE(parseError("\"a\nb\"").find("control character"),
            std::string::npos);
  EXPECT_NE(parseError("\"\\x\"").find("invalid escape"), std::string::npos);
  EXPECT_NE(parseError("\"\\ud800\"").find("surrogate"), std::string::npos);
  EXPECT_NE(parseError("1e999").find("out of range"), std::string::npos);
  for (const char *bad :
       {"", " ", "tru", "nul", "-", "1.", ".5", "+1", "NaN", "[1,]", "{\"a\"}",
        "{\"a\" 1}", "\"abc", "'a'", "// c\n1", "[", "]"})
    EXPECT_NE(parseError(bad), "") << bad;
}

TEST(JsonTest, DeepNestingIsAnErrorNotACrash) {
  std::string deep(100000, '[');
  EXPECT_NE(parseError(deep).find("nesting deeper than"), std::string::npos);
}

} // namespace
