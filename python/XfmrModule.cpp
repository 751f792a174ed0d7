//===- XfmrModule.cpp - the pybind11 extension xfmr._xfmr -------*- C++ -*-===//
//
// A thin layer over the compiler's narrow API (lowering/Compiler.h: strings
// and llvm::Error only) and the runtime (xfmr/runtime: exceptions of type
// xfmr::runtime::Error). The Python package (python/xfmr) wraps these
// functions with argument checks and documentation; this file only converts
// values, releases the GIL around long calls and turns C++ errors into the
// exception classes of xfmr/errors.py with the C++ message.
//
// Locking: every session has a mutex and the compiler has one process-wide
// mutex. They are taken only with the GIL released, and code holding them
// re-acquires the GIL only briefly (progress lines, signal checks), so the
// lock order is always mutex -> GIL and nothing deadlocks.
//
//===----------------------------------------------------------------------===//

#include "compiler/Compiler.h"

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/ChatTemplate.h"
#include "xfmr/runtime/ArtifactPacker.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"
#include "xfmr/runtime/OutputFile.h"
#include "xfmr/runtime/Version.h"
#include "xfmr/runtime/Sampler.h"
#include "xfmr/runtime/Session.h"
#include "xfmr/runtime/TextStream.h"
#include "xfmr/runtime/Tokenizer.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace py = pybind11;
using namespace xfmr;
using xfmr::runtime::Artifact;
using xfmr::runtime::SamplingOptions;

namespace {

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

/// Which class of xfmr/errors.py a failure becomes.
enum class ErrorKind { Error, Compile, InvalidArgument };

/// A C++ failure on its way to Python, with the C++ message.
class Failure : public std::runtime_error {
public:
  Failure(ErrorKind kind, const std::string &message)
      : std::runtime_error(message), kind(kind) {}
  ErrorKind kind;
};

/// xfmr.Error, xfmr.CompileError, xfmr.InvalidArgumentError; set once at
/// import and kept for the life of the process.
PyObject *errorTypes[3] = {nullptr, nullptr, nullptr};

/// The message of `error` (joined like llvm::toString) and whether any part
/// carries std::errc::invalid_argument, which marks a bad option or value.
std::pair<std::string, bool> takeError(llvm::Error error) {
  std::string message;
  bool invalid = false;
  llvm::handleAllErrors(std::move(error), [&](const llvm::ErrorInfoBase &info) {
    if (!message.empty())
      message += "\n";
    message += info.message();
    if (info.convertToErrorCode() ==
        std::make_error_code(std::errc::invalid_argument))
      invalid = true;
  });
  return {message, invalid};
}

/// Whether a compiler message reports a bad option or value rather than a
/// failure to compile. The compiler returns plain string errors; these are
/// the messages of its argument checks (CPU name, target, context length,
/// quantization options, pass pipeline syntax). Errors that carry
/// std::errc::invalid_argument need no entry here.
bool isArgumentMessage(const std::string &message) {
  static const char *const prefixes[] = {"unknown CPU '",
                                         "target '",
                                         "the context length must",
                                         "unknown quantization '",
                                         "invalid quantization options '",
                                         "invalid pass pipeline '",
                                         "unbalanced pass pipeline '"};
  for (const char *prefix : prefixes)
    if (message.rfind(prefix, 0) == 0)
      return true;
  return false;
}

[[noreturn]] void throwCompilerError(llvm::Error error) {
  auto [message, invalid] = takeError(std::move(error));
  throw Failure(invalid || isArgumentMessage(message)
                    ? ErrorKind::InvalidArgument
                    : ErrorKind::Compile,
                message);
}

/// The compiler's entry points run one at a time: MLIR and LLVM keep
/// process-wide registries that are set up lazily.
std::mutex &compilerMutex() {
  static std::mutex mutex;
  return mutex;
}

/// Runs `fn` (returning llvm::Expected<std::string>) without the GIL, under
/// the compiler mutex; returns its string or throws a Failure.
template <typename Fn> std::string callCompiler(Fn fn) {
  std::optional<llvm::Expected<std::string>> result;
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(compilerMutex());
    result.emplace(fn());
  }
  if (!*result)
    throwCompilerError(result->takeError());
  return std::move(**result);
}

/// Whether the calling thread is Python's main thread, the only one on which
/// signal handlers run (PyErr_CheckSignals does nothing elsewhere).
bool onMainThread() {
  py::module_ threading = py::module_::import("threading");
  return threading.attr("main_thread")().attr("ident").cast<long long>() ==
         threading.attr("get_ident")().cast<long long>();
}

/// Set by onSigint; read between tokens without the GIL.
std::atomic<bool> sigintPending{false};
struct sigaction previousSigint;

/// Notes the signal, then runs the handler it replaced (Python's, which
/// records it for the interpreter's own handling).
extern "C" void onSigint(int signum, siginfo_t *info, void *context) {
  sigintPending.store(true);
  if (previousSigint.sa_flags & SA_SIGINFO)
    previousSigint.sa_sigaction(signum, info, context);
  else
    previousSigint.sa_handler(signum);
}

/// While generating on the main thread, tells whether Ctrl-C was pressed
/// without taking the GIL per token (taking it can wait a whole switch
/// interval, 5 ms, when another Python thread is busy). Installs onSigint in
/// front of the current SIGINT handler when that is a function (Python's);
/// with SIG_DFL or SIG_IGN the signal keeps its usual effect.
class SigintWatch {
public:
  SigintWatch() {
    struct sigaction current;
    if (sigaction(SIGINT, nullptr, &current) != 0)
      return;
    bool isFunction =
        (current.sa_flags & SA_SIGINFO)
            ? current.sa_sigaction != nullptr
            : current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN;
    // Nested (a Python signal handler that generates): the outer one watches.
    if (!isFunction ||
        ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == onSigint)) {
      active = isFunction;
      return;
    }
    previousSigint = current;
    struct sigaction mine = current;
    mine.sa_sigaction = onSigint;
    mine.sa_flags = current.sa_flags | SA_SIGINFO;
    sigintPending.store(false);
    installed = active = sigaction(SIGINT, &mine, nullptr) == 0;
  }
  ~SigintWatch() {
    if (installed)
      sigaction(SIGINT, &previousSigint, nullptr);
  }
  SigintWatch(const SigintWatch &) = delete;
  SigintWatch &operator=(const SigintWatch &) = delete;

  /// Whether SIGINT arrived since the last call.
  bool pending() const { return active && sigintPending.exchange(false); }

private:
  bool installed = false, active = false;
};

//===----------------------------------------------------------------------===//
// Compiler
//===----------------------------------------------------------------------===//

void compile(const std::string &model, const std::string &output,
             const std::string &target, const std::string &cpu, int64_t context,
             const std::string &weights, unsigned optLevel,
             const std::string &dumpIRAfter, const std::string &quantize,
             const std::string &quantizeOptions, const std::string &kvCache,
             const std::string &mlaCache, int64_t kvWindow, int64_t kvSinks,
             const std::string &moe, const std::string &mlaAbsorb,
             bool stripWeights, bool precise, const std::string &tokenizer,
             int sveBits, const py::object &progress,
             const py::object &warning) {
  CompileOptions options;
  options.model = model;
  options.output = output;
  options.target = target;
  options.cpu = cpu;
  options.context = context;
  options.weights = weights;
  options.optLevel = optLevel;
  options.dumpIRAfter = dumpIRAfter;
  options.quantize = quantize;
  options.quantizeOptions = quantizeOptions;
  options.kvCache = kvCache;
  options.mlaCache = mlaCache;
  options.kvWindow = kvWindow;
  options.kvSinks = kvSinks;
  options.moe = moe;
  options.mlaAbsorb = mlaAbsorb;
  options.stripWeights = stripWeights;
  options.precise = precise;
  options.tokenizer = tokenizer;
  options.sveBits = sveBits;

  // A failing callback stops reporting; its exception is raised after the
  // compiler returns (the compiler cannot be unwound through).
  std::unique_ptr<py::error_already_set> callbackError;
  auto callback = [&](const py::object &fn) -> ProgressFn {
    if (fn.is_none())
      return {};
    return [&, fn](const std::string &line) {
      py::gil_scoped_acquire gil;
      if (callbackError)
        return;
      try {
        fn(line);
      } catch (py::error_already_set &e) {
        callbackError = std::make_unique<py::error_already_set>(std::move(e));
      }
    };
  };
  ProgressFn onProgress = callback(progress), onWarning = callback(warning);

  // A kill (SIGTERM, ...) removes a half-written artifact; SIGINT stays
  // Python's.
  runtime::removeOutputsOnSignals(/*onlyDefault=*/true);
  std::optional<llvm::Error> error;
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(compilerMutex());
    error.emplace(compileModel(options, onProgress, onWarning));
  }
  if (callbackError) {
    llvm::consumeError(std::move(*error));
    throw std::move(*callbackError);
  }
  if (*error)
    throwCompilerError(std::move(*error));
}

//===----------------------------------------------------------------------===//
// Runtime
//===----------------------------------------------------------------------===//

py::object toPython(const runtime::JsonValue &value) {
  using Kind = runtime::JsonValue::Kind;
  switch (value.kind()) {
  case Kind::Null:
    return py::none();
  case Kind::Bool:
    return py::bool_(value.asBool());
  case Kind::Number:
    if (value.isInteger())
      return py::int_(value.asInt());
    return py::float_(value.asDouble());
  case Kind::String:
    return py::str(value.asString());
  case Kind::Array: {
    py::list list;
    for (const runtime::JsonValue &item : value.asArray())
      list.append(toPython(item));
    return list;
  }
  case Kind::Object: {
    py::dict dict;
    for (const auto &[key, item] : value.asObject())
      dict[py::str(key)] = toPython(item);
    return dict;
  }
  }
  return py::none();
}

std::shared_ptr<Artifact> openArtifact(const std::string &path, bool verify,
                                       const std::string &device,
                                       bool mapWeights) {
  py::gil_scoped_release release;
  runtime::OpenOptions options;
  options.verifyChecksums = verify;
  options.device = device;
  options.mapWeights = mapWeights;
  return Artifact::open(path, options); // runtime::Error -> xfmr.Error
}

/// Hands a vector's buffer to NumPy without copying: the array owns it.
py::array_t<float> toArray(std::vector<float> &&values,
                           std::vector<py::ssize_t> shape) {
  auto *owned = new std::vector<float>(std::move(values));
  py::capsule release(owned, [](void *pointer) {
    delete static_cast<std::vector<float> *>(pointer);
  });
  return py::array_t<float>(std::move(shape), owned->data(), release);
}

SamplingOptions makeSampling(float temperature, int topK, float topP,
                             uint64_t seed) {
  SamplingOptions options;
  options.temperature = temperature;
  options.topK = topK;
  options.topP = topP;
  options.seed = seed;
  try {
    options.validate();
  } catch (const runtime::Error &e) {
    throw Failure(ErrorKind::InvalidArgument, e.what());
  }
  return options;
}

/// A runtime session and the mutex that keeps it to one thread at a time.
class PySession {
public:
  PySession(std::shared_ptr<Artifact> artifact, int threads,
            std::shared_ptr<runtime::KVBlockPool> pool)
      : artifact(artifact), session(makeSession(artifact, threads, pool)) {}

  std::shared_ptr<Artifact> artifact;
  std::unique_ptr<runtime::Session> session;
  std::mutex mutex;

  /// Runs `fn(session)` without the GIL and with the mutex held. A
  /// runtime::Error thrown before the session computed anything (its
  /// position did not move) is a rejected input: InvalidArgumentError.
  template <typename Fn> auto locked(Fn fn) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex);
    int64_t before = session->position();
    try {
      return fn(*session);
    } catch (const runtime::Error &e) {
      throw Failure(session->position() == before ? ErrorKind::InvalidArgument
                                                  : ErrorKind::Error,
                    e.what());
    }
  }

private:
  static std::unique_ptr<runtime::Session>
  makeSession(const std::shared_ptr<Artifact> &artifact, int threads,
              std::shared_ptr<runtime::KVBlockPool> pool) {
    runtime::SessionOptions options;
    options.threads = threads;
    options.blockPool = std::move(pool);
    try {
      return std::make_unique<runtime::Session>(artifact, options);
    } catch (const runtime::Error &e) {
      bool badCount = threads < 0 || threads > Artifact::kMaxThreads;
      throw Failure(badCount ? ErrorKind::InvalidArgument : ErrorKind::Error,
                    e.what());
    }
  }
};

py::array_t<float> prefill(PySession &self, const std::vector<int32_t> &ids) {
  std::vector<float> logits =
      self.locked([&](runtime::Session &s) { return s.prefill(ids); });
  return toArray(std::move(logits),
                 {static_cast<py::ssize_t>(ids.size()),
                  static_cast<py::ssize_t>(self.artifact->vocabSize())});
}

/// runtime::Session::step over `sessions` (each locked, in address order so
/// that two concurrent steps cannot deadlock), without the GIL.
py::array_t<float>
stepSessions(const std::vector<std::shared_ptr<PySession>> &sessions,
             const std::vector<std::vector<int32_t>> &ids) {
  if (sessions.empty() || sessions.size() != ids.size())
    throw Failure(ErrorKind::InvalidArgument,
                  "a step needs one id list per session, and at least one "
                  "session");
  std::vector<runtime::StepInput> inputs;
  std::vector<PySession *> order;
  for (size_t i = 0; i < sessions.size(); ++i) {
    if (!sessions[i])
      throw Failure(ErrorKind::InvalidArgument,
                    "step input " + std::to_string(i) + " has no session");
    inputs.push_back({sessions[i]->session.get(), ids[i]});
    order.push_back(sessions[i].get());
  }
  std::sort(order.begin(), order.end());
  order.erase(std::unique(order.begin(), order.end()), order.end());
  std::vector<int64_t> before;
  for (const runtime::StepInput &input : inputs)
    before.push_back(input.session->position());
  std::vector<float> logits;
  {
    py::gil_scoped_release release;
    std::vector<std::unique_lock<std::mutex>> locks;
    for (PySession *session : order)
      locks.emplace_back(session->mutex);
    try {
      logits = runtime::Session::step(inputs);
    } catch (const runtime::Error &e) {
      bool moved = false;
      for (size_t i = 0; i < inputs.size(); ++i)
        moved |= inputs[i].session->position() != before[i];
      throw Failure(moved ? ErrorKind::Error : ErrorKind::InvalidArgument,
                    e.what());
    }
  }
  return toArray(std::move(logits), {static_cast<py::ssize_t>(sessions.size()),
                                     static_cast<py::ssize_t>(
                                         sessions[0]->artifact->vocabSize())});
}

py::array_t<float> decode(PySession &self, int32_t id) {
  std::vector<float> logits =
      self.locked([&](runtime::Session &s) { return s.decode(id); });
  return toArray(std::move(logits),
                 {static_cast<py::ssize_t>(self.artifact->vocabSize())});
}

std::vector<int32_t> generate(PySession &self,
                              const std::vector<int32_t> &prompt,
                              int maxNewTokens, float temperature, int topK,
                              float topP, uint64_t seed) {
  SamplingOptions sampling = makeSampling(temperature, topK, topP, seed);
  // Ctrl-C: when SIGINT arrived, run Python's signal handlers between two
  // tokens with the GIL held; the first exception they raise
  // (KeyboardInterrupt) stops generation and is raised here.
  std::optional<SigintWatch> watch;
  if (onMainThread())
    watch.emplace();
  std::unique_ptr<py::error_already_set> interrupted;
  auto onToken = [&](int32_t, const float *) {
    if (!watch || !watch->pending())
      return true;
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() == 0)
      return true;
    interrupted = std::make_unique<py::error_already_set>();
    return false;
  };
  std::vector<int32_t> tokens = self.locked([&](runtime::Session &s) {
    return s.generate(prompt, maxNewTokens, sampling, onToken);
  });
  if (interrupted)
    throw std::move(*interrupted);
  return tokens;
}

/// `Session.generate` one token at a time. The first step runs the
/// session's own generate (same validation, prefill and first sample) and
/// stops it after one token; a private sampler with the same options replays
/// that first draw, so later draws continue the same random sequence.
class TokenStream {
public:
  TokenStream(std::shared_ptr<PySession> owner, std::vector<int32_t> prompt,
              int maxNewTokens, const SamplingOptions &sampling)
      : owner(std::move(owner)), prompt(std::move(prompt)),
        maxNewTokens(maxNewTokens), sampling(sampling), sampler(sampling) {
    if (maxNewTokens < 0)
      throw Failure(ErrorKind::InvalidArgument,
                    "the number of tokens to generate must be >= 0, got " +
                        std::to_string(maxNewTokens));
  }

  int32_t next() {
    if (finished || (started && produced == maxNewTokens)) {
      finished = true;
      throw py::stop_iteration();
    }
    int64_t vocab = owner->artifact->vocabSize();
    try {
      if (!started) {
        std::optional<int32_t> first;
        owner->locked([&](runtime::Session &s) {
          s.generate(prompt, maxNewTokens, sampling,
                     [&](int32_t token, const float *row) {
                       sampler.sample(row, vocab);
                       first = token;
                       return false;
                     });
        });
        started = true;
        if (!first) { // maxNewTokens == 0: the prompt was prefilled.
          finished = true;
          throw py::stop_iteration();
        }
        last = *first;
      } else {
        last = owner->locked([&](runtime::Session &s) {
          std::vector<float> logits = s.decode(last);
          return sampler.sample(logits.data(), vocab);
        });
      }
    } catch (const Failure &) {
      finished = true;
      throw;
    }
    ++produced;
    return last;
  }

private:
  std::shared_ptr<PySession> owner;
  std::vector<int32_t> prompt;
  int maxNewTokens;
  SamplingOptions sampling;
  runtime::Sampler sampler;
  bool started = false, finished = false;
  int produced = 0;
  int32_t last = 0;
};

py::dict statsDict(const runtime::Stats &s, double verifySeconds) {
  py::dict d;
  d["prefill_tokens"] = s.prefillTokens;
  d["prefill_seconds"] = s.prefillSeconds;
  d["prefill_tokens_per_s"] = s.prefillTokensPerSecond();
  d["decode_tokens"] = s.decodeTokens;
  d["decode_seconds"] = s.decodeSeconds;
  d["decode_tokens_per_s"] = s.decodeTokensPerSecond();
  d["weights_bytes"] = s.weightsBytes;
  d["kv_cache_bytes"] = s.kvCacheBytes;
  d["kv_cache_bytes_per_token"] = s.kvCacheBytesPerToken;
  d["parameter_count"] = s.parameterCount;
  d["peak_rss_bytes"] = s.peakRssBytes;
  d["threads"] = s.threads;
  d["device"] = s.device;
  d["device_memory_bytes"] = s.deviceMemoryBytes;
  d["weights_upload_seconds"] = s.weightsUploadSeconds;
  d["generations"] = s.generations;
  d["verify_seconds"] = verifySeconds;
  // {layer name: [tokens routed to expert 0, 1, ...]}, in layer order.
  py::dict experts;
  for (const runtime::ExpertTokens &layer : s.expertTokens)
    experts[py::str(layer.layer)] = layer.counts;
  d["expert_tokens"] = experts;
  return d;
}

std::optional<int> optionalId(std::optional<int32_t> id) {
  if (id)
    return *id;
  return std::nullopt;
}

} // namespace

PYBIND11_MODULE(_xfmr, m) {
  m.doc() = "Native part of xfmr: the compiler API (lowering/Compiler.h) and "
            "the runtime. Use it through the `xfmr` package, which checks "
            "arguments and documents the API.";

  // The exception classes live in pure Python so they exist without us.
  py::module_ errors = py::module_::import("xfmr.errors");
  const char *names[] = {"Error", "CompileError", "InvalidArgumentError"};
  for (int i = 0; i < 3; ++i) {
    py::object type = errors.attr(names[i]);
    errorTypes[i] = type.release().ptr();
  }
  py::register_exception_translator([](std::exception_ptr pointer) {
    if (!pointer)
      return;
    try {
      std::rethrow_exception(pointer);
    } catch (const Failure &e) {
      PyErr_SetString(errorTypes[static_cast<int>(e.kind)], e.what());
    } catch (const runtime::Error &e) {
      PyErr_SetString(errorTypes[static_cast<int>(ErrorKind::Error)], e.what());
    }
  });

  // The version string of every tool and manifest.
  m.attr("version_string") = runtime::versionString();
  m.attr("version_number") = runtime::versionNumber();
  m.attr("version_commit") = runtime::versionCommit();

  // Compiler.
  m.def("compile", &compile, py::arg("model"), py::arg("output"),
        py::arg("target"), py::arg("cpu"), py::arg("context"),
        py::arg("weights"), py::arg("opt_level"), py::arg("dump_ir_after"),
        py::arg("quantize"), py::arg("quantize_options"), py::arg("kv_cache"),
        py::arg("mla_cache"), py::arg("kv_window"), py::arg("kv_sinks"),
        py::arg("moe"), py::arg("mla_absorb"), py::arg("strip_weights"),
        py::arg("precise"), py::arg("tokenizer"), py::arg("sve_bits"),
        py::arg("progress"), py::arg("warning"),
        "Compiles a checkpoint folder or .mlir file into an artifact "
        "(xfmr::compileModel). Releases the GIL.");
  m.def(
      "import_checkpoint",
      [](const std::string &dir, int64_t context) {
        return callCompiler(
            [&] { return importCheckpointToText(dir, context); });
      },
      py::arg("dir"), py::arg("context"),
      "The xfmr IR of a checkpoint folder, as text.");
  m.def(
      "run_pipeline",
      [](const std::string &ir, const std::string &pipeline) {
        return callCompiler([&] { return runPipeline(ir, pipeline); });
      },
      py::arg("ir"), py::arg("pipeline"),
      "Parses IR text, runs a pass pipeline, returns the printed result.");
  m.def(
      "round_trip",
      [](const std::string &ir) {
        return callCompiler([&] { return roundTrip(ir); });
      },
      py::arg("ir"), "Parses and verifies IR text; returns it printed.");
  m.def(
      "list_passes",
      [] {
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(compilerMutex());
        return listPasses();
      },
      "The xfmr passes and pipelines: [(flag, description)].");

  // Runtime.
  m.def(
      "pack",
      [](const std::string &artifact, const std::string &checkpoint,
         const std::string &output, const py::object &progress) {
        std::unique_ptr<py::error_already_set> callbackError;
        std::function<void(const std::string &)> report;
        if (!progress.is_none())
          report = [&](const std::string &line) {
            py::gil_scoped_acquire gil;
            if (callbackError)
              return;
            try {
              progress(line);
            } catch (py::error_already_set &e) {
              callbackError =
                  std::make_unique<py::error_already_set>(std::move(e));
            }
          };
        runtime::removeOutputsOnSignals(/*onlyDefault=*/true);
        runtime::PackResult result;
        {
          py::gil_scoped_release release;
          result = runtime::packArtifact(artifact, checkpoint, output, report);
        }
        if (callbackError)
          throw std::move(*callbackError);
        return result.summary.converted;
      },
      py::arg("artifact"), py::arg("checkpoint"), py::arg("output"),
      py::arg("progress"),
      "Binds a checkpoint's weights to an artifact's code "
      "(runtime::packArtifact); returns the converted tensors. Releases the "
      "GIL.");
  py::class_<Artifact, std::shared_ptr<Artifact>>(
      m, "Artifact", "A loaded model.xfmr (runtime::Artifact).")
      .def_static("open", &openArtifact, py::arg("path"), py::arg("verify"),
                  py::arg("device"), py::arg("map_weights") = false)
      .def_property_readonly("verify_seconds", &Artifact::verifySeconds)
      .def(
          "save",
          [](const Artifact &a, const std::string &path) {
            py::gil_scoped_release release;
            a.save(path);
          },
          py::arg("path"))
      .def_property_readonly("path", &Artifact::path)
      .def_property_readonly(
          "manifest", [](const Artifact &a) { return toPython(a.manifest()); })
      .def_property_readonly(
          "architecture",
          [](const Artifact &a) { return a.model().architecture; })
      .def_property_readonly("vocab_size", &Artifact::vocabSize)
      .def_property_readonly(
          "hidden_size", [](const Artifact &a) { return a.model().hiddenSize; })
      .def_property_readonly(
          "num_layers", [](const Artifact &a) { return a.model().numLayers; })
      .def_property_readonly("context_length", &Artifact::contextLength)
      .def_property_readonly(
          "bos_token_id",
          [](const Artifact &a) { return optionalId(a.bosTokenId()); })
      .def_property_readonly(
          "eos_token_id",
          [](const Artifact &a) { return optionalId(a.eosTokenId()); })
      .def_property_readonly("end_of_sequence_ids", &Artifact::endOfSequenceIds)
      .def_property_readonly("target",
                             [](const Artifact &a) {
                               const runtime::TargetInfo &t = a.target();
                               py::dict d;
                               d["kind"] = t.kind;
                               d["triple"] = t.triple;
                               d["cpu"] = t.cpu;
                               d["features"] = t.features;
                               d["chip"] = t.chip;
                               d["sve_bits"] = t.sveBits;
                               return d;
                             })
      .def_property_readonly("kv_cache_bytes", &Artifact::kvCacheBytes)
      .def_property_readonly("kv_cache_bytes_per_token",
                             &Artifact::kvCacheBytesPerToken)
      .def_property_readonly("weights_bytes", &Artifact::weightsBytes)
      .def_property_readonly("parameter_count", &Artifact::parameterCount)
      .def_property_readonly("compiler", &Artifact::compiler)
      .def_property_readonly("threads_supported", &Artifact::threadsSupported);

  py::class_<runtime::Tokenizer, std::shared_ptr<runtime::Tokenizer>>(
      m, "Tokenizer", "A tokenizer.json or tokenizer.model (runtime::Tokenizer).")
      .def_static(
          "load",
          [](const std::string &path) {
            py::gil_scoped_release release;
            return std::shared_ptr<runtime::Tokenizer>(
                runtime::Tokenizer::load(path));
          },
          py::arg("path"))
      .def(
          "encode",
          [](const runtime::Tokenizer &t, const py::bytes &text,
             bool addSpecial) {
            std::string bytes = text;
            py::gil_scoped_release release;
            return t.encode(bytes, addSpecial);
          },
          py::arg("text"), py::arg("add_special"))
      .def(
          "decode",
          [](const runtime::Tokenizer &t, const std::vector<int32_t> &ids) {
            std::string text;
            {
              py::gil_scoped_release release;
              text = t.decode(ids);
            }
            return py::bytes(text);
          },
          py::arg("ids"))
      .def_static(
          "from_artifact",
          [](const std::shared_ptr<Artifact> &artifact) {
            return std::shared_ptr<runtime::Tokenizer>(
                runtime::Tokenizer::fromArtifact(*artifact));
          },
          py::arg("artifact"))
      .def_property_readonly("vocab_size", &runtime::Tokenizer::vocabSize)
      .def_property_readonly("kind", &runtime::Tokenizer::kind);

  py::class_<runtime::ChatTemplate, std::shared_ptr<runtime::ChatTemplate>>(
      m, "ChatTemplate",
      "A Jinja chat template (runtime::ChatTemplate); JSON in, bytes out.")
      .def(py::init([](const std::string &source, const std::string &what) {
             return std::make_shared<runtime::ChatTemplate>(source, what);
           }),
           py::arg("source"), py::arg("what") = "chat template")
      .def_static(
          "for_tokenizer_file",
          [](const std::string &path, std::optional<std::string> source) {
            return std::shared_ptr<runtime::ChatTemplate>(
                runtime::ChatTemplate::forTokenizerFile(
                    path, source ? &*source : nullptr));
          },
          py::arg("path"), py::arg("source") = py::none())
      .def_static(
          "from_artifact",
          [](const std::shared_ptr<Artifact> &artifact,
             std::optional<std::string> source) {
            return std::shared_ptr<runtime::ChatTemplate>(
                runtime::ChatTemplate::fromArtifact(
                    *artifact, source ? &*source : nullptr));
          },
          py::arg("artifact"), py::arg("source") = py::none())
      .def(
          "apply",
          [](const runtime::ChatTemplate &t, const std::string &messages,
             bool addGenerationPrompt, const std::string &variables) {
            runtime::JsonValue parsedMessages =
                runtime::parseJson(messages, "the messages");
            runtime::JsonValue parsedVariables =
                runtime::parseJson(variables, "the template variables");
            std::string text;
            {
              py::gil_scoped_release release;
              text = t.apply(parsedMessages, addGenerationPrompt,
                             &parsedVariables);
            }
            return py::bytes(text);
          },
          py::arg("messages_json"), py::arg("add_generation_prompt"),
          py::arg("variables_json"))
      .def(
          "special_token",
          [](const runtime::ChatTemplate &t,
             const std::string &name) -> std::optional<std::string> {
            if (const std::string *token = t.specialToken(name))
              return *token;
            return std::nullopt;
          },
          py::arg("name"))
      .def(
          "render",
          [](const runtime::ChatTemplate &t, const std::string &variables) {
            runtime::JsonValue parsed =
                runtime::parseJson(variables, "the template variables");
            std::string text;
            {
              py::gil_scoped_release release;
              text = t.render(parsed);
            }
            return py::bytes(text);
          },
          py::arg("variables_json"));

  // A TextStream with the tokenizer it decodes with kept alive.
  struct PyTextStream {
    std::shared_ptr<runtime::Tokenizer> tokenizer;
    runtime::TextStream stream;
    PyTextStream(std::shared_ptr<runtime::Tokenizer> t,
                 std::vector<std::string> stops)
        : tokenizer(std::move(t)), stream(*tokenizer, std::move(stops)) {}
  };
  py::class_<PyTextStream>(m, "TextStream",
                           "Generated ids to the text safe to show "
                           "(runtime::TextStream).")
      .def(py::init<std::shared_ptr<runtime::Tokenizer>,
                    std::vector<std::string>>(),
           py::arg("tokenizer"), py::arg("stops"))
      .def(
          "push",
          [](PyTextStream &s, int32_t id) {
            return py::bytes(s.stream.push(id));
          },
          py::arg("id"))
      .def("finish",
           [](PyTextStream &s) { return py::bytes(s.stream.finish()); })
      .def_property_readonly(
          "stopped", [](const PyTextStream &s) { return s.stream.stopped(); });

  py::class_<TokenStream>(m, "TokenStream",
                          "Token ids of one generation, one at a time.")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &TokenStream::next);

  m.def("step_sessions", &stepSessions, py::arg("sessions"), py::arg("ids"),
        "runtime::Session::step: several sessions' ids in one call.");

  py::class_<runtime::KVBlockPool, std::shared_ptr<runtime::KVBlockPool>>(
      m, "KVBlockPool", "runtime::KVBlockPool: paged KV-cache memory.")
      .def(py::init([](std::shared_ptr<Artifact> artifact, int64_t blocks,
                       int64_t sequences, int64_t blockTokens) {
             runtime::KVBlockPoolOptions options;
             options.blocks = blocks;
             options.sequences = sequences;
             options.blockTokens = blockTokens;
             try {
               return std::make_shared<runtime::KVBlockPool>(artifact, options);
             } catch (const runtime::Error &e) {
               throw Failure(ErrorKind::InvalidArgument, e.what());
             }
           }),
           py::arg("artifact"), py::arg("blocks"), py::arg("sequences"),
           py::arg("block_tokens"))
      .def_static("why_not_pageable",
                  [](const Artifact &artifact, int64_t blockTokens) {
                    return runtime::KVBlockPool::whyNotPageable(artifact,
                                                                blockTokens);
                  })
      .def_property_readonly("block_tokens", &runtime::KVBlockPool::blockTokens)
      .def_property_readonly("block_bytes", &runtime::KVBlockPool::blockBytes)
      .def_property_readonly("blocks", &runtime::KVBlockPool::blocks)
      .def_property_readonly("available", &runtime::KVBlockPool::available)
      .def("stats", [](const runtime::KVBlockPool &pool) {
        runtime::KVBlockPoolStats stats = pool.stats();
        py::dict d;
        d["blocks"] = stats.blocks;
        d["block_tokens"] = stats.blockTokens;
        d["block_bytes"] = stats.blockBytes;
        d["used"] = stats.used;
        d["cached"] = stats.cached;
        d["free"] = stats.free;
        d["prefix_lookup_tokens"] = stats.prefixLookupTokens;
        d["prefix_hit_tokens"] = stats.prefixHitTokens;
        d["copies"] = stats.copies;
        return d;
      });

  py::class_<PySession, std::shared_ptr<PySession>>(
      m, "Session", "A runtime::Session guarded by a mutex.")
      .def(py::init<std::shared_ptr<Artifact>, int,
                    std::shared_ptr<runtime::KVBlockPool>>(),
           py::arg("artifact"), py::arg("threads"), py::arg("pool"))
      .def("truncate",
           [](PySession &self, int64_t position) {
             self.locked([&](runtime::Session &s) { s.truncate(position); });
           })
      .def("reuse_prefix",
           [](PySession &self, const std::vector<int32_t> &prompt) {
             return self.locked(
                 [&](runtime::Session &s) { return s.reusePrefix(prompt); });
           })
      .def("prefill", &prefill, py::arg("ids"))
      .def("decode", &decode, py::arg("token"))
      .def("generate", &generate, py::arg("prompt_ids"),
           py::arg("max_new_tokens"), py::arg("temperature"), py::arg("top_k"),
           py::arg("top_p"), py::arg("seed"))
      .def(
          "stream",
          [](std::shared_ptr<PySession> self, std::vector<int32_t> prompt,
             int maxNewTokens, float temperature, int topK, float topP,
             uint64_t seed) {
            return TokenStream(std::move(self), std::move(prompt), maxNewTokens,
                               makeSampling(temperature, topK, topP, seed));
          },
          py::arg("prompt_ids"), py::arg("max_new_tokens"),
          py::arg("temperature"), py::arg("top_k"), py::arg("top_p"),
          py::arg("seed"))
      .def("reset",
           [](PySession &self) {
             self.locked([](runtime::Session &s) { s.reset(); });
           })
      .def_property_readonly("position",
                             [](PySession &self) {
                               return self.locked([](runtime::Session &s) {
                                 return s.position();
                               });
                             })
      .def_property_readonly("kv_blocks",
                             [](PySession &self) {
                               return self.locked([](runtime::Session &s) {
                                 return s.stats().kvBlocks;
                               });
                             })
      .def_property_readonly("threads",
                             [](PySession &self) {
                               return self.locked([](runtime::Session &s) {
                                 return s.stats().threads;
                               });
                             })
      .def("stats", [](PySession &self) {
        runtime::Stats stats =
            self.locked([](runtime::Session &s) { return s.stats(); });
        return statsDict(stats, self.artifact->verifySeconds());
      });
}
