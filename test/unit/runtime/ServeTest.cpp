//===- ServeTest.cpp - xfmr-serve's scheduler, API layer and options ------===//
//
// The scheduler runs the fixture model (RuntimeTestUtil.h): every generation
// it runs, alone or concurrently, equals Session::generate's. The API layer
// and the command line are checked without a model.
//
//===----------------------------------------------------------------------===//

#include "RuntimeTestUtil.h"

#include "Histogram.h"
#include "OpenAIApi.h"
#include "Scheduler.h"
#include "ServeOptions.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Session.h"

#include <thread>

using namespace xfmr::runtime;
using namespace xfmr::serve;
using namespace xfmr::test;
using nlohmann::json;

namespace {

class SchedulerTest : public TempDirTest {
protected:
  void SetUp() override {
    TempDirTest::SetUp();
    fixture.write(file("model.xfmr"));
    artifact = Artifact::open(file("model.xfmr"));
  }

  /// All events of `generation` until its last one: the ids and the reason.
  static std::pair<std::vector<int32_t>, FinishReason>
  collect(Generation &generation) {
    std::vector<int32_t> ids;
    for (;;) {
      std::optional<GenerationEvent> event =
          generation.next(std::chrono::milliseconds(10000));
      EXPECT_TRUE(event) << "no event within 10 s";
      if (!event)
        return {ids, FinishReason::Error};
      ids.insert(ids.end(), event->ids.begin(), event->ids.end());
      if (event->finish)
        return {ids, *event->finish};
    }
  }

  std::vector<int32_t> alone(const GenerationRequest &request) {
    Session session(artifact);
    return session.generate(request.prompt, request.maxTokens,
                            request.sampling);
  }

  FixtureArtifact fixture;
  std::shared_ptr<Artifact> artifact;
};

TEST_F(SchedulerTest, GenerationsEqualSessionGenerate) {
  SchedulerOptions options;
  options.maxSequences = 3;
  Scheduler scheduler(artifact, nullptr, options);
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 8; ++i) {
    GenerationRequest request;
    request.prompt = {1, int32_t(3 + i), int32_t(i % 5)};
    request.maxTokens = 4 + i;
    if (i % 2) {
      request.sampling.temperature = 0.7f;
      request.sampling.seed = uint64_t(i);
    }
    requests.push_back(request);
  }
  std::vector<std::shared_ptr<Generation>> generations(requests.size());
  for (size_t i = 0; i < requests.size(); ++i)
    ASSERT_EQ(scheduler.submit(requests[i], generations[i]),
              Scheduler::Admission::Queued);
  for (size_t i = 0; i < requests.size(); ++i) {
    auto [ids, reason] = collect(*generations[i]);
    EXPECT_EQ(ids, alone(requests[i])) << "request " << i;
    EXPECT_EQ(reason, FinishReason::Length);
  }
  scheduler.drain();
  SchedulerMetrics metrics = scheduler.metrics();
  EXPECT_EQ(metrics.requests, 8);
  EXPECT_EQ(metrics.finished, 8);
  EXPECT_EQ(metrics.sessions, 3);
  EXPECT_EQ(metrics.timeToFirstToken.count(), 8);
  EXPECT_EQ(metrics.queued + metrics.running, 0);
  // Draining: no more requests.
  std::shared_ptr<Generation> late;
  EXPECT_EQ(scheduler.submit(requests[0], late),
            Scheduler::Admission::Draining);
}

TEST_F(SchedulerTest, EndIdsStopAndAreReported) {
  GenerationRequest request;
  request.prompt = {1, 2, 3};
  request.maxTokens = 20;
  std::vector<int32_t> greedy = alone(request);
  request.endIds = {greedy[2]};
  Scheduler scheduler(artifact, nullptr, SchedulerOptions{});
  std::shared_ptr<Generation> generation;
  ASSERT_EQ(scheduler.submit(request, generation),
            Scheduler::Admission::Queued);
  auto [ids, reason] = collect(*generation);
  size_t first = size_t(std::find(greedy.begin(), greedy.end(), greedy[2]) -
                        greedy.begin());
  EXPECT_EQ(ids, std::vector<int32_t>(greedy.begin(),
                                      greedy.begin() + int64_t(first) + 1));
  EXPECT_EQ(reason, FinishReason::Stop);
}

TEST_F(SchedulerTest, RequestsAreCheckedBeforeQueueing) {
  Scheduler scheduler(artifact, nullptr, SchedulerOptions{});
  auto message = [&](GenerationRequest request) -> std::string {
    std::shared_ptr<Generation> generation;
    try {
      scheduler.submit(request, generation);
    } catch (const Error &error) {
      return error.what();
    }
    return "";
  };
  GenerationRequest request;
  EXPECT_NE(message(request).find("empty"), std::string::npos);
  request.prompt = {1, kFixtureVocab};
  EXPECT_NE(message(request).find("outside the vocabulary"), std::string::npos);
  request.prompt = {1, 2};
  request.maxTokens = kFixtureContext; // 2 + 32 - 1 > 32
  EXPECT_NE(message(request).find("context of 32"), std::string::npos);
  request.maxTokens = kFixtureContext - 1; // exactly fits
  EXPECT_EQ(message(request), "");
  request.maxTokens = 2;
  request.stops = {"x"};
  EXPECT_NE(message(request).find("tokenizer"), std::string::npos);
  request.stops.clear();
  request.sampling.topP = 2;
  EXPECT_NE(message(request).find("top"), std::string::npos);
}

TEST_F(SchedulerTest, ACancelledGenerationEnds) {
  SchedulerOptions options;
  options.maxSequences = 1;
  Scheduler scheduler(artifact, nullptr, options);
  GenerationRequest request;
  request.prompt = {1};
  request.maxTokens = kFixtureContext;
  std::shared_ptr<Generation> generation;
  ASSERT_EQ(scheduler.submit(request, generation),
            Scheduler::Admission::Queued);
  generation->cancel();
  auto [ids, reason] = collect(*generation);
  // Cancelled between two steps, or finished before the flag was seen.
  EXPECT_TRUE(reason == FinishReason::Cancelled ||
              (reason == FinishReason::Length &&
               ids.size() == size_t(kFixtureContext)));
  // The sequence is free again.
  request.maxTokens = 3;
  ASSERT_EQ(scheduler.submit(request, generation),
            Scheduler::Admission::Queued);
  EXPECT_EQ(collect(*generation).first.size(), 3u);
}

ModelContext idsOnlyModel() {
  ModelContext model;
  model.name = "m";
  model.vocab = 100;
  model.context = 64;
  model.endIds = {2};
  return model;
}

int statusOf(const json &body, bool chat = false) {
  try {
    parseRequest(body, chat, idsOnlyModel(), 7);
  } catch (const ApiError &error) {
    return error.status;
  }
  return 200;
}

TEST(OpenAIApiTest, CompletionDefaultsAndFields) {
  ModelContext model = idsOnlyModel();
  ApiRequest request = parseRequest(json{{"prompt", {5, 6}}}, false, model, 7);
  EXPECT_EQ(request.generation.prompt, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(request.generation.maxTokens, 16);
  EXPECT_EQ(request.generation.sampling.temperature, 1.0f);
  EXPECT_EQ(request.generation.sampling.seed, 7u);
  EXPECT_EQ(request.generation.endIds, (std::vector<int32_t>{2}));
  EXPECT_FALSE(request.stream);
  request = parseRequest(json{{"prompt", {{5, 6}}},
                              {"model", "m"},
                              {"max_tokens", 3},
                              {"temperature", 0},
                              {"top_k", -1},
                              {"seed", 9},
                              {"ignore_eos", true},
                              {"stream", true},
                              {"stream_options", {{"include_usage", true}}}},
                         false, model, 7);
  EXPECT_EQ(request.generation.prompt, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(request.generation.maxTokens, 3);
  EXPECT_EQ(request.generation.sampling.topK, 0);
  EXPECT_EQ(request.generation.sampling.seed, 9u);
  EXPECT_TRUE(request.generation.endIds.empty());
  EXPECT_TRUE(request.stream && request.includeUsage);
}

TEST(OpenAIApiTest, RefusalsNameTheirStatus) {
  EXPECT_EQ(statusOf(json::array()), 400);
  EXPECT_EQ(statusOf(json{{"prompt", {1}}, {"model", "other"}}), 404);
  EXPECT_EQ(statusOf(json{{"prompt", {1}}, {"n", 2}}), 400);
  EXPECT_EQ(statusOf(json{{"prompt", {1}}, {"echo", true}}), 400);
  EXPECT_EQ(statusOf(json{{"prompt", {1}}, {"presence_penalty", 0.5}}), 400);
  EXPECT_EQ(statusOf(json{{"prompt", {1}}, {"presence_penalty", 0}}), 200);
  EXPECT_EQ(statusOf(json{{"prompt", {1}}, {"max_tokens", 0}}), 400);
  EXPECT_EQ(statusOf(json{{"prompt", {1}}, {"temperature", "hot"}}), 400);
  EXPECT_EQ(statusOf(json{{"prompt", {1}}, {"stop", {1}}}), 400);
  EXPECT_EQ(statusOf(json{{"prompt", {{1}, {2}}}}), 400);
  EXPECT_EQ(statusOf(json{{"prompt", {int64_t(1) << 40}}}), 400);
  // Text needs a tokenizer, chat a chat template: neither is there.
  EXPECT_EQ(statusOf(json{{"prompt", "hello"}}), 400);
  EXPECT_EQ(
      statusOf(json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}},
               true),
      400);
}

TEST(OpenAIApiTest, ResponsesAndStreams) {
  ModelContext model = idsOnlyModel();
  GenerationEvent token{"he", {7}, std::nullopt, {}};
  GenerationEvent last{"llo", {8}, FinishReason::Length, {}};
  ResponseWriter whole(model, false, 2);
  whole.add(token);
  whole.add(last);
  json body = whole.complete();
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["choices"][0]["text"], "hello");
  EXPECT_EQ(body["choices"][0]["token_ids"], json({7, 8}));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"]["total_tokens"], 4);

  ResponseWriter chat(model, true, 2, /*includeUsage=*/true);
  std::string first = chat.streamEvent(token);
  EXPECT_EQ(first.find("data: {"), 0u);
  EXPECT_NE(first.find("\"role\":\"assistant\""), std::string::npos);
  std::string end = chat.streamEvent(last);
  EXPECT_NE(end.find("\"finish_reason\":\"length\""), std::string::npos);
  EXPECT_NE(end.find("\"usage\""), std::string::npos);
  EXPECT_EQ(end.substr(end.size() - 14), "data: [DONE]\n\n");
  json error = errorBody("busy", 429);
  EXPECT_EQ(error["error"]["type"], "rate_limit_error");
}

TEST(HistogramTest, CumulativeBuckets) {
  Histogram histogram({0.1, 1, 10});
  for (double v : {0.05, 0.5, 0.5, 5.0, 50.0})
    histogram.observe(v);
  EXPECT_EQ(histogram.count(), 5);
  EXPECT_DOUBLE_EQ(histogram.sum(), 56.05);
  std::string text = histogram.prometheus("x", "help");
  EXPECT_NE(text.find("x_bucket{le=\"1\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("x_bucket{le=\"+Inf\"} 5\n"), std::string::npos);
  EXPECT_NE(text.find("x_count 5\n"), std::string::npos);
  std::string labelled = histogram.prometheus("x", "help", "model=\"m\"");
  EXPECT_NE(labelled.find("x_bucket{model=\"m\",le=\"1\"} 3\n"),
            std::string::npos);
  EXPECT_NE(labelled.find("x_count{model=\"m\"} 5\n"), std::string::npos);
}

TEST(ServeOptionsTest, ParsesAndRefuses) {
  ServeOptions opts = parseServeOptions({"m.xfmr"});
  EXPECT_EQ(opts.host, "127.0.0.1");
  EXPECT_EQ(opts.port, 8080);
  opts = parseServeOptions({"m.xfmr", "--port", "0", "--max-sequences", "16",
                            "--max-queue", "0", "-t", "2", "--no-verify"});
  EXPECT_EQ(opts.port, 0);
  EXPECT_EQ(opts.maxSequences, 16);
  EXPECT_EQ(opts.maxQueue, 0);
  EXPECT_FALSE(opts.open.verifyChecksums);
  EXPECT_EQ(opts.prefillChunk, 256);
  EXPECT_TRUE(opts.prefixCache);
  opts = parseServeOptions(
      {"m.xfmr", "--prefill-chunk", "32", "--no-prefix-cache"});
  EXPECT_EQ(opts.prefillChunk, 32);
  EXPECT_FALSE(opts.prefixCache);
  for (std::vector<std::string> bad : {std::vector<std::string>{},
                                       {"m.xfmr", "--prefill-chunk", "0"},
                                       {"m.xfmr", "--port", "65536"},
                                       {"m.xfmr", "--max-sequences", "0"},
                                       {"m.xfmr", "--bogus"},
                                       {"a.xfmr", "b.xfmr"},
                                       {"m.xfmr", "--port"}})
    EXPECT_THROW(parseServeOptions(bad), UsageError);
}

} // namespace
