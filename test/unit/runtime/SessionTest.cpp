//===- SessionTest.cpp - prefill, decode, generate on the fixture model ---===//

#include "RuntimeTestUtil.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/KVCache.h"
#include "xfmr/runtime/Session.h"

#include <thread>

using namespace xfmr::runtime;
using namespace xfmr::test;

namespace {

class SessionTest : public TempDirTest {
protected:
  void SetUp() override {
    TempDirTest::SetUp();
    fixture.write(file("model.xfmr"));
    artifact = Artifact::open(file("model.xfmr"));
  }

  /// The message of the Error `body` throws ("" if none).
  static std::string errorOf(const std::function<void()> &body) {
    try {
      body();
    } catch (const Error &e) {
      return e.what();
    }
    return "";
  }

  /// Greedy continuation computed from the fixture's formula.
  std::vector<int32_t> referenceGreedy(std::vector<int32_t> history, int n) {
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
      std::vector<float> row = fixtureLogits(fixture.bias, history);
      int32_t best = 0;
      for (size_t v = 1; v < row.size(); ++v)
        if (row[v] > row[best])
          best = int32_t(v);
      out.push_back(best);
      history.push_back(best);
    }
    return out;
  }

  FixtureArtifact fixture;
  std::shared_ptr<Artifact> artifact;
};

TEST_F(SessionTest, PrefillReturnsEveryRow) {
  Session s(artifact);
  std::vector<int32_t> ids = {3, 1, 4, 1, 5};
  std::vector<float> logits = s.prefill(ids);
  ASSERT_EQ(logits.size(), ids.size() * 16);
  for (size_t t = 0; t < ids.size(); ++t) {
    std::vector<int32_t> history(ids.begin(), ids.begin() + t + 1);
    std::vector<float> want = fixtureLogits(fixture.bias, history);
    EXPECT_EQ(std::vector<float>(logits.begin() + t * 16,
                                 logits.begin() + (t + 1) * 16),
              want)
        << "row " << t;
  }
  EXPECT_EQ(s.position(), 5);
}

TEST_F(SessionTest, DecodeContinuesFromTheCache) {
  Session split(artifact), whole(artifact);
  split.prefill({3, 1, 4});
  std::vector<float> a = split.decode(1);
  std::vector<float> b = split.decode(5);
  std::vector<float> all = whole.prefill({3, 1, 4, 1, 5});
  EXPECT_EQ(a, std::vector<float>(all.begin() + 3 * 16, all.begin() + 4 * 16));
  EXPECT_EQ(b, std::vector<float>(all.begin() + 4 * 16, all.end()));
  EXPECT_EQ(split.position(), 5);
  // A different prefix gives different decode logits.
  Session other(artifact);
  other.prefill({2, 1, 4});
  EXPECT_NE(other.decode(1), a);
}

TEST_F(SessionTest, ResetZeroesTheCache) {
  Session s(artifact);
  std::vector<float> first = s.prefill({7, 8});
  s.decode(9);
  s.reset();
  EXPECT_EQ(s.position(), 0);
  EXPECT_EQ(s.prefill({7, 8}), first);
}

TEST_F(SessionTest, InputsAreCheckedBeforeCompute) {
  Session s(artifact);
  EXPECT_EQ(errorOf([&] { s.prefill({}); }),
            "no token ids given: need at least one");
  EXPECT_EQ(errorOf([&] {
              s.prefill({1, 2, 16, 3});
            }),
            "token id 16 at index 2 is out of range [0, 16)");
  EXPECT_EQ(errorOf([&] { s.decode(-1); }),
            "token id -1 at index 0 is out of range [0, 16)");
  EXPECT_EQ(errorOf([&] { s.prefill(std::vector<int32_t>(33, 1)); }),
            "context overflow: position 0 + 33 token(s) = 33 exceeds the "
            "context length 32");
  EXPECT_EQ(s.position(), 0);
  EXPECT_EQ(s.stats().prefillTokens, 0);
  s.prefill(std::vector<int32_t>(31, 1));
  s.decode(2);
  EXPECT_EQ(errorOf([&] { s.decode(2); }),
            "context overflow: position 32 + 1 token(s) = 33 exceeds the "
            "context length 32");
  EXPECT_EQ(s.position(), 32);
}

TEST_F(SessionTest, GenerateGreedy) {
  Session s(artifact);
  std::vector<int32_t> prompt = {1, 5, 9};
  std::vector<int32_t> got = s.generate(prompt, 10);
  EXPECT_EQ(got, referenceGreedy(prompt, 10));
  // The last token is returned but not fed back.
  EXPECT_EQ(s.position(), 3 + 9);
  Stats st = s.stats();
  EXPECT_EQ(st.prefillTokens, 3);
  EXPECT_EQ(st.decodeTokens, 9);
}

TEST_F(SessionTest, GenerateChecksEverythingFirst) {
  Session s(artifact);
  // The last generated token is not fed back, so it needs no slot.
  EXPECT_EQ(errorOf([&] {
              s.generate({1, 2}, 32);
            }),
            "context overflow: position 0 + 2 token(s) + 31 generated "
            "token(s) fed back = 33 exceeds the context length 32");
  EXPECT_EQ(errorOf([&] { s.generate({1}, -1); }),
            "the number of tokens to generate must be >= 0, got -1");
  SamplingOptions bad;
  bad.topP = 0;
  EXPECT_EQ(errorOf([&] { s.generate({1}, 3, bad); }),
            "top-p must be in (0, 1], got 0");
  EXPECT_EQ(errorOf([&] { s.generate({}, 3); }),
            "no token ids given: need at least one");
  EXPECT_EQ(s.position(), 0);
  EXPECT_EQ(s.stats().prefillTokens, 0);
  EXPECT_EQ(s.generate({1, 2}, 31).size(), 31u); // exactly fits
  EXPECT_EQ(s.position(), 32);
}

TEST_F(SessionTest, AFullContextPromptStillGeneratesOneToken) {
  // A prompt as long as the context, -n 1: once refused one slot too early.
  Session s(artifact);
  std::vector<int32_t> prompt(32, 3);
  EXPECT_EQ(s.generate(prompt, 1).size(), 1u);
  EXPECT_EQ(s.position(), 32);
  s.reset();
  EXPECT_NE(errorOf([&] { s.generate(prompt, 2); }), "");
}

TEST_F(SessionTest, GenerateZeroTokensPrefillsOnly) {
  Session s(artifact);
  EXPECT_TRUE(s.generate({1, 2}, 0).empty());
  EXPECT_EQ(s.position(), 2);
}

TEST_F(SessionTest, CallbackSeesRowsAndCanStop) {
  Session s(artifact);
  std::vector<int32_t> seen;
  std::vector<std::vector<float>> rows;
  std::vector<int32_t> got =
      s.generate({4, 2}, 10, {}, [&](int32_t token, const float *row) {
        seen.push_back(token);
        rows.emplace_back(row, row + 16);
        return seen.size() < 4;
      });
  EXPECT_EQ(got.size(), 4u);
  EXPECT_EQ(seen, got);
  std::vector<int32_t> history = {4, 2};
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(rows[i], fixtureLogits(fixture.bias, history)) << i;
    history.push_back(got[i]);
  }
}

TEST_F(SessionTest, SamplingIsDeterministicForASeed) {
  SamplingOptions o;
  o.temperature = 1.5f;
  o.topK = 8;
  o.topP = 0.9f;
  o.seed = 1234;
  Session a(artifact), b(artifact);
  std::vector<int32_t> x = a.generate({1, 2, 3}, 20, o);
  EXPECT_EQ(x, b.generate({1, 2, 3}, 20, o));
  o.seed = 4321;
  b.reset();
  EXPECT_NE(x, b.generate({1, 2, 3}, 20, o));
  o.topK = 1; // top-k 1 is greedy whatever the temperature
  b.reset();
  EXPECT_EQ(b.generate({1, 2, 3}, 20, o), referenceGreedy({1, 2, 3}, 20));
}

TEST_F(SessionTest, Stats) {
  Session s(artifact, SessionOptions{2, {}});
  s.generate({1, 2, 3, 4}, 5);
  Stats st = s.stats();
  EXPECT_EQ(st.prefillTokens, 4);
  EXPECT_EQ(st.decodeTokens, 4);
  EXPECT_GE(st.prefillSeconds, 0);
  EXPECT_GE(st.prefillTokensPerSecond(), 0);
  EXPECT_EQ(st.weightsBytes, 64u);
  EXPECT_EQ(st.kvCacheBytes, 128u);
  EXPECT_EQ(st.kvCacheBytesPerToken, 4u);
  EXPECT_EQ(st.parameterCount, 16u);
  EXPECT_GT(st.peakRssBytes, 1u << 20);
  EXPECT_EQ(st.threads, 2);
  // Timings describe one generation: reset() starts them over, so rates
  // are not averaged over earlier conversations.
  s.reset();
  st = s.stats();
  EXPECT_EQ(st.prefillTokens, 0);
  EXPECT_EQ(st.decodeTokens, 0);
  EXPECT_EQ(st.prefillSeconds, 0);
  EXPECT_EQ(st.decodeTokensPerSecond(), 0);
  EXPECT_EQ(st.generations, 2);
  s.generate({1}, 2);
  st = s.stats();
  EXPECT_EQ(st.prefillTokens, 1);
  EXPECT_EQ(st.decodeTokens, 1);
}

TEST_F(SessionTest, ThreadsAreAppliedPerCall) {
  auto get =
      reinterpret_cast<int (*)()>(artifact->symbol("fixture_get_threads"));
  ASSERT_NE(get, nullptr);
  Session two(artifact, SessionOptions{2, {}}),
      three(artifact, SessionOptions{3, {}});
  two.prefill({1});
  EXPECT_EQ(get(), 2);
  three.prefill({1});
  EXPECT_EQ(get(), 3);
  EXPECT_THROW(Session(artifact, SessionOptions{-1, {}}), Error);
  EXPECT_THROW(Session(nullptr), Error);
}

TEST_F(SessionTest, SessionsOnDifferentThreads) {
  std::vector<int32_t> want = referenceGreedy({1, 2}, 20);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      Session s(artifact, SessionOptions{i + 1, {}});
      for (int round = 0; round < 20; ++round) {
        s.reset();
        got[i] = s.generate({1, 2}, 20);
      }
    });
  for (std::thread &t : threads)
    t.join();
  for (const auto &g : got)
    EXPECT_EQ(g, want);
}

TEST_F(SessionTest, SessionKeepsTheArtifactAlive) {
  Session s(std::move(artifact));
  EXPECT_EQ(s.prefill({1}).size(), 16u);
}

// A step runs each input as prefill/decode would, on its own cache.
TEST_F(SessionTest, StepEqualsEachSessionAlone) {
  ASSERT_TRUE(artifact->backend().hasStep());
  Session a(artifact), b(artifact), c(artifact);
  a.prefill({3, 1});
  // One row per input: the logits of its last id.
  std::vector<float> rows =
      Session::step({{&a, {4}}, {&b, {2, 7, 1}}, {&c, {5}}});
  ASSERT_EQ(rows.size(), 3u * 16);
  auto row = [&](size_t i) {
    return std::vector<float>(rows.begin() + i * 16,
                              rows.begin() + (i + 1) * 16);
  };
  EXPECT_EQ(row(0), fixtureLogits(fixture.bias, {3, 1, 4}));
  EXPECT_EQ(row(1), fixtureLogits(fixture.bias, {2, 7, 1}));
  EXPECT_EQ(row(2), fixtureLogits(fixture.bias, {5}));
  EXPECT_EQ(a.position(), 3);
  EXPECT_EQ(b.position(), 3);
  EXPECT_EQ(c.position(), 1);
  // One id counts as decode, several as prefill.
  EXPECT_EQ(a.stats().decodeTokens, 1);
  EXPECT_EQ(b.stats().prefillTokens, 3);
  // The caches stay apart in later calls.
  EXPECT_EQ(a.decode(9), fixtureLogits(fixture.bias, {3, 1, 4, 9}));
  EXPECT_EQ(b.decode(9), fixtureLogits(fixture.bias, {2, 7, 1, 9}));
}

// A truncated session continues its kept prefix as if the rest never ran.
TEST_F(SessionTest, TruncateKeepsAPrefix) {
  Session s(artifact);
  s.prefill({3, 1, 4, 1, 5});
  s.truncate(3);
  EXPECT_EQ(s.position(), 3);
  EXPECT_EQ(s.decode(9), fixtureLogits(fixture.bias, {3, 1, 4, 9}));
  EXPECT_EQ(errorOf([&] { s.truncate(5); }),
            "cannot keep 5 tokens: the cache holds 4");
  EXPECT_EQ(errorOf([&] { s.truncate(-1); }),
            "cannot keep -1 tokens: the cache holds 4");
  s.truncate(0);
  EXPECT_EQ(s.decode(2), fixtureLogits(fixture.bias, {2}));
}

TEST_F(SessionTest, StepChecksEverythingFirst) {
  Session a(artifact), b(artifact);
  auto other = Artifact::open(file("model.xfmr"));
  Session elsewhere(other);
  EXPECT_EQ(errorOf([&] { Session::step({}); }),
            "a step needs at least one session");
  EXPECT_EQ(errorOf([&] {
              Session::step({{nullptr, {1}}});
            }),
            "step input 0 has no session");
  EXPECT_EQ(errorOf([&] {
              Session::step({{&a, {1}}, {&a, {2}}});
            }),
            "step input 1 repeats the session of step input 0");
  EXPECT_NE(errorOf([&] {
              Session::step({{&a, {1}}, {&elsewhere, {2}}});
            }).find("another artifact"),
            std::string::npos);
  EXPECT_EQ(errorOf([&] {
              Session::step({{&a, {1}}, {&b, {16}}});
            }),
            "step input 1: token id 16 at index 0 is out of range [0, 16)");
  std::vector<int32_t> tooMany(33, 1);
  EXPECT_NE(errorOf([&] {
              Session::step({{&a, {1}}, {&b, tooMany}});
            }).find("step input 1: context overflow"),
            std::string::npos);
  EXPECT_EQ(a.position(), 0);
  EXPECT_EQ(b.position(), 0);
}

} // namespace

// Caches of 4 MiB and more are mappings with 2 MiB pages; smaller ones come
// from the heap. Both start zeroed, are 64-byte aligned and clear to zero.
TEST(KVCacheTest, ZeroedAlignedAndClearedAtEverySize) {
  for (uint64_t bytes : {uint64_t(0), uint64_t(100), uint64_t(3) << 20,
                         (uint64_t(9) << 20) + 123}) {
    KVCache cache(bytes);
    ASSERT_NE(cache.data(), nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(cache.data()) % 64, 0u);
    for (uint64_t i = 0; i < bytes; i += 4093)
      ASSERT_EQ(cache.data()[i], 0) << bytes << " bytes, byte " << i;
    if (bytes == 0)
      continue;
    std::memset(cache.data(), 0xAB, bytes);
    cache.clear();
    for (uint64_t i = 0; i < bytes; i += 4093)
      ASSERT_EQ(cache.data()[i], 0) << bytes << " bytes, byte " << i;
    EXPECT_EQ(cache.data()[bytes - 1], 0);
    // Still writable after clearing.
    cache.data()[bytes - 1] = 7;
    EXPECT_EQ(cache.data()[bytes - 1], 7);
  }
}
