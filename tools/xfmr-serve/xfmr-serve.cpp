//===- xfmr-serve.cpp - a compiled model behind OpenAI's HTTP API ---------===//
//
// HTTP from Debian's cpp-httplib, JSON from nlohmann-json; the API's wire
// format is OpenAIApi.h's, the scheduling Scheduler.h's. Every response to a
// generation request is sent in chunks, so that a client that goes away is
// noticed between tokens and its sequence freed. SIGTERM and SIGINT are
// taken by a thread of their own: new requests get 503, running ones finish,
// then the server stops and the process exits 0.
//
//===----------------------------------------------------------------------===//

#include "OpenAIApi.h"
#include "Scheduler.h"
#include "ServeOptions.h"

#include "xfmr/runtime/ChatTemplate.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Version.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <pthread.h>
#include <random>

using namespace xfmr::serve;
using namespace xfmr::runtime;
using nlohmann::json;

namespace {

void sendJson(httplib::Response &res, int status, const json &body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace),
                  "application/json");
}

void sendError(httplib::Response &res, int status, const std::string &message,
               const std::string &param = {}) {
  sendJson(res, status, errorBody(message, status, param));
}

std::string readFile(const std::string &path, const char *what) {
  std::ifstream file(path, std::ios::binary);
  if (!file)
    throw Error(path + ": cannot open the " + what);
  std::string text((std::istreambuf_iterator<char>(file)),
                   std::istreambuf_iterator<char>());
  if (file.bad())
    throw Error(path + ": cannot read the " + what);
  return text;
}

std::string defaultModelName(const std::string &path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  if (name.size() > 5 && name.compare(name.size() - 5, 5, ".xfmr") == 0)
    name.resize(name.size() - 5);
  return name.empty() ? "model" : name;
}

std::string metricsText(const SchedulerMetrics &m, const ModelContext &model) {
  std::string out;
  auto metric = [&](const char *name, const char *type, const char *help,
                    double value) {
    char number[64];
    std::snprintf(number, sizeof(number), "%.17g", value);
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name +
           " " + type + "\n" + name + "{model=\"" + model.name + "\"} " +
           number + "\n";
  };
  metric("xfmr_requests_total", "counter", "Generation requests accepted.",
         double(m.requests));
  metric("xfmr_requests_rejected_total", "counter",
         "Generation requests rejected with 429 (queue full).",
         double(m.rejected));
  metric("xfmr_requests_finished_total", "counter",
         "Generations that ended at a stop or their length.",
         double(m.finished));
  metric("xfmr_requests_cancelled_total", "counter",
         "Generations ended because their client went away.",
         double(m.cancelled));
  metric("xfmr_requests_failed_total", "counter",
         "Generations ended by an error.", double(m.failed));
  metric("xfmr_prompt_tokens_total", "counter", "Prompt tokens accepted.",
         double(m.promptTokens));
  metric("xfmr_prefix_cache_tokens_total", "counter",
         "Prompt tokens a cache already held (not run again); over "
         "xfmr_prefix_cache_lookup_tokens_total: the prefix cache's hit rate.",
         double(m.prefixCacheTokens));
  metric("xfmr_prefix_cache_lookup_tokens_total", "counter",
         "Prompt tokens looked up in the prefix cache (recomputed ones "
         "included).",
         double(m.prefixLookupTokens));
  metric("xfmr_prefix_cache_hit_rate", "gauge",
         "xfmr_prefix_cache_tokens_total over "
         "xfmr_prefix_cache_lookup_tokens_total (0 before any lookup).",
         m.prefixLookupTokens > 0
             ? double(m.prefixCacheTokens) / double(m.prefixLookupTokens)
             : 0.0);
  metric("xfmr_preemptions_total", "counter",
         "Sequences preempted when the KV blocks ran out (recomputed "
         "later).",
         double(m.preemptions));
  metric("xfmr_generated_tokens_total", "counter", "Tokens generated.",
         double(m.generatedTokens));
  metric("xfmr_queue_length", "gauge", "Requests waiting for a free sequence.",
         double(m.queued));
  metric("xfmr_running_sequences", "gauge", "Generations running now.",
         double(m.running));
  metric("xfmr_sessions", "gauge",
         "Sequences allocated (each holds a KV cache).", double(m.sessions));
  metric("xfmr_kv_cache_bytes", "gauge",
         "Bytes of KV cache held: the sequences' whole caches, or the "
         "blocks in use and cached.",
         double(m.kvCacheBytes));
  metric("xfmr_kv_blocks", "gauge",
         "Blocks of the paged KV cache (0: whole caches).", double(m.kvBlocks));
  metric("xfmr_kv_blocks_used", "gauge",
         "KV blocks that running sequences map.", double(m.kvBlocksUsed));
  metric("xfmr_kv_blocks_cached", "gauge",
         "KV blocks no sequence maps, kept for their prefix (reclaimed "
         "first when blocks run out).",
         double(m.kvBlocksCached));
  std::string labels = "model=\"" + model.name + "\"";
  out += m.timeToFirstToken.prometheus(
      "xfmr_time_to_first_token_seconds",
      "From a request's arrival to its first generated token.", labels);
  out += m.interTokenLatency.prometheus(
      "xfmr_inter_token_latency_seconds",
      "Between consecutive tokens of one generation.", labels);
  out += m.roundSize.prometheus("xfmr_batch_size",
                                "Sequences that advanced in one batched step.",
                                labels);
  return out;
}

/// Runs one generation request: parse, queue, answer (streamed or whole).
void generate(const httplib::Request &req, httplib::Response &res, bool chat,
              Scheduler &scheduler, const ModelContext &model) {
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded())
    return sendError(res, 400, "the request body is not valid JSON");
  static std::mt19937_64 seeds{std::random_device{}()};
  static std::mutex seedsMutex;
  uint64_t seed;
  {
    std::lock_guard<std::mutex> lock(seedsMutex);
    seed = seeds();
  }
  ApiRequest request;
  try {
    request = parseRequest(body, chat, model, seed);
  } catch (const ApiError &error) {
    return sendError(res, error.status, error.message, error.param);
  } catch (const Error &error) {
    return sendError(res, 400, error.what());
  }
  std::shared_ptr<Generation> generation;
  Scheduler::Admission admission;
  try {
    admission = scheduler.submit(request.generation, generation);
  } catch (const Error &error) {
    return sendError(res, 400, error.what());
  }
  if (admission == Scheduler::Admission::QueueFull)
    return sendError(res, 429,
                     "the server is busy: every sequence is running and the "
                     "queue is full; retry later");
  if (admission == Scheduler::Admission::Draining)
    return sendError(res, 503, "the server is shutting down");

  auto writer = std::make_shared<ResponseWriter>(
      model, chat, generation->promptTokens(), request.includeUsage);
  bool stream = request.stream;
  res.set_chunked_content_provider(
      stream ? "text/event-stream" : "application/json",
      [generation, writer, stream](size_t, httplib::DataSink &sink) {
        for (;;) {
          if (!sink.is_writable()) {
            generation->cancel();
            return false;
          }
          std::optional<GenerationEvent> event =
              generation->next(std::chrono::milliseconds(100));
          if (!event)
            continue;
          std::string out;
          if (stream) {
            out = writer->streamEvent(*event);
          } else {
            writer->add(*event);
            if (event->finish == FinishReason::Error)
              out = errorBody(event->error, 500).dump();
            else if (event->finish)
              out = writer->complete().dump(-1, ' ', false,
                                            json::error_handler_t::replace);
          }
          if (!out.empty() && !sink.write(out.data(), out.size())) {
            generation->cancel();
            return false;
          }
          if (event->finish) {
            sink.done();
            return true;
          }
          if (stream)
            return true;
        }
      });
}

} // namespace

int main(int argc, char **argv) {
  ServeOptions opts;
  try {
    opts = parseServeOptions(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const UsageError &e) {
    std::fprintf(stderr, "xfmr-serve: error: %s\n(see xfmr-serve --help)\n",
                 e.message.c_str());
    return 2;
  }
  if (opts.help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (opts.version) {
    std::printf("xfmr-serve %s\n", versionString());
    return 0;
  }
  // Signals go to the signal thread only (threads inherit this mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::shared_ptr<Artifact> artifact;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<ChatTemplate> chatTemplate;
  ModelContext model;
  try {
    artifact = Artifact::open(opts.artifact, opts.open);
    tokenizer = opts.tokenizer.empty() ? Tokenizer::fromArtifact(*artifact)
                                       : Tokenizer::load(opts.tokenizer);
    if (tokenizer && tokenizer->vocabSize() > artifact->vocabSize())
      throw Error((opts.tokenizer.empty() ? opts.artifact + "'s tokenizer"
                                          : opts.tokenizer) +
                  " has " + std::to_string(tokenizer->vocabSize()) +
                  " tokens, more than the model's " +
                  std::to_string(artifact->vocabSize()));
    std::string source;
    if (!opts.chatTemplate.empty())
      source = readFile(opts.chatTemplate, "chat template");
    const std::string *override = opts.chatTemplate.empty() ? nullptr : &source;
    if (tokenizer)
      chatTemplate =
          opts.tokenizer.empty()
              ? ChatTemplate::fromArtifact(*artifact, override)
              : ChatTemplate::forTokenizerFile(opts.tokenizer, override);
    model.name = opts.modelName.empty() ? defaultModelName(opts.artifact)
                                        : opts.modelName;
    model.vocab = artifact->vocabSize();
    model.context = artifact->contextLength();
    model.tokenizer = tokenizer.get();
    model.chatTemplate = chatTemplate.get();
    model.endIds = artifact->endOfSequenceIds();
    model.chatEndIds = model.endIds;
    if (chatTemplate && tokenizer)
      if (const std::string *eos = chatTemplate->specialToken("eos_token")) {
        std::vector<int32_t> ids = tokenizer->encode(*eos, false);
        if (ids.size() == 1)
          model.chatEndIds.push_back(ids[0]);
      }
  } catch (const Error &error) {
    std::fprintf(stderr, "xfmr-serve: error: %s\n", error.what());
    return 1;
  }

  SchedulerOptions schedulerOptions;
  schedulerOptions.maxSequences = opts.maxSequences;
  schedulerOptions.maxQueue = opts.maxQueue;
  schedulerOptions.prefillChunk = opts.prefillChunk;
  schedulerOptions.prefixCache = opts.prefixCache;
  schedulerOptions.pagedCache = opts.pagedCache;
  schedulerOptions.kvBlocks = opts.kvBlocks;
  schedulerOptions.kvBlockTokens = opts.kvBlockTokens;
  schedulerOptions.session.threads = opts.threads;
  std::unique_ptr<Scheduler> created;
  try {
    created = std::make_unique<Scheduler>(artifact, tokenizer.get(),
                                          schedulerOptions);
  } catch (const Error &error) {
    std::fprintf(stderr, "xfmr-serve: error: %s\n", error.what());
    return 1;
  }
  if (const KVBlockPool *pool = created->blockPool())
    std::fprintf(stderr,
                 "xfmr-serve: paged KV cache: %lld blocks of %lld positions "
                 "(%.1f MiB each, %.1f MiB in all, taken as sequences "
                 "grow)\n",
                 (long long)pool->blocks(), (long long)pool->blockTokens(),
                 double(pool->blockBytes()) / double(1 << 20),
                 double(pool->blockBytes()) * double(pool->blocks()) /
                     double(1 << 20));
  else
    std::fprintf(stderr,
                 "xfmr-serve: %d whole KV caches of %.1f MiB (not paged: "
                 "%s)\n",
                 opts.maxSequences,
                 double(artifact->kvCacheBytes()) / double(1 << 20),
                 created->whyNotPaged().c_str());
  Scheduler &scheduler = *created;
  int64_t started = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();

  httplib::Server server;
  // A handler thread for every request that may run or wait, and a few for
  // the cheap endpoints.
  size_t handlers = size_t(opts.maxSequences) + size_t(opts.maxQueue) + 4;
  server.new_task_queue = [handlers] {
    return new httplib::ThreadPool(handlers);
  };
  server.set_payload_max_length(size_t(16) << 20);
  std::string apiKey = opts.apiKey;
  if (apiKey.empty())
    if (const char *key = std::getenv("XFMR_API_KEY"))
      apiKey = key;
  if (!apiKey.empty())
    server.set_pre_routing_handler(
        [apiKey](const httplib::Request &req, httplib::Response &res) {
          if (req.path.rfind("/v1/", 0) != 0 ||
              req.get_header_value("Authorization") == "Bearer " + apiKey)
            return httplib::Server::HandlerResponse::Unhandled;
          sendError(res, 401,
                    "a valid API key is required: send \"Authorization: "
                    "Bearer KEY\"");
          return httplib::Server::HandlerResponse::Handled;
        });
  server.Post("/v1/completions",
              [&](const httplib::Request &req, httplib::Response &res) {
                generate(req, res, false, scheduler, model);
              });
  server.Post("/v1/chat/completions",
              [&](const httplib::Request &req, httplib::Response &res) {
                generate(req, res, true, scheduler, model);
              });
  server.Get("/v1/models",
             [&](const httplib::Request &, httplib::Response &res) {
               sendJson(res, 200, modelList(model, started));
             });
  server.Get("/health", [&](const httplib::Request &, httplib::Response &res) {
    bool draining = scheduler.draining();
    sendJson(res, draining ? 503 : 200,
             {{"status", draining ? "draining" : "ok"}});
  });
  server.Get("/metrics", [&](const httplib::Request &, httplib::Response &res) {
    res.set_content(metricsText(scheduler.metrics(), model),
                    "text/plain; version=0.0.4");
  });
  server.set_error_handler(
      [](const httplib::Request &req, httplib::Response &res) {
        if (!res.body.empty())
          return;
        std::string message = res.status == 404
                                  ? "no endpoint " + req.method + " " + req.path
                                  : "HTTP " + std::to_string(res.status);
        sendError(res, res.status, message);
      });
  server.set_exception_handler([](const httplib::Request &,
                                  httplib::Response &res,
                                  std::exception_ptr error) {
    std::string message = "internal error";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception &e) {
      message = e.what();
    } catch (...) {
    }
    sendError(res, 500, message);
  });

  int port = opts.port;
  if (port == 0)
    port = server.bind_to_any_port(opts.host);
  else if (!server.bind_to_port(opts.host, port))
    port = -1;
  if (port < 0) {
    std::fprintf(stderr, "xfmr-serve: error: cannot listen on %s:%d\n",
                 opts.host.c_str(), opts.port);
    return 1;
  }

  std::thread signalThread([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    std::fprintf(stderr, "xfmr-serve: %s: finishing the running requests\n",
                 signal == SIGTERM ? "SIGTERM" : "SIGINT");
    scheduler.drain();
    server.stop();
  });
  std::fprintf(stderr,
               "xfmr-serve: serving '%s' on http://%s:%d (%d sequences, "
               "queue %d)\n",
               model.name.c_str(), opts.host.c_str(), port, opts.maxSequences,
               opts.maxQueue);
  bool failed = !server.listen_after_bind();
  // A stop that did not come from a signal: wake the signal thread (which
  // then drains the scheduler and stops a stopped server: both harmless).
  pthread_kill(signalThread.native_handle(), SIGTERM);
  signalThread.join();
  if (failed) {
    std::fprintf(stderr, "xfmr-serve: error: the server stopped accepting "
                         "connections\n");
    return 1;
  }
  std::fprintf(stderr, "xfmr-serve: stopped\n");
  return 0;
}
