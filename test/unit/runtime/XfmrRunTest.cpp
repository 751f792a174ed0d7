//===- XfmrRunTest.cpp - the xfmr-run command-line contract ---------------===//
//
// Scripts and lit tests rely on: generated ids on one stdout line and nothing
// else, --stats JSON on stderr, --dump-logits .npy, exit codes 0/1/2.
//
//===----------------------------------------------------------------------===//

#include "RuntimeTestUtil.h"

#include "xfmr/runtime/Json.h"
#include "xfmr/runtime/Npy.h"
#include "xfmr/runtime/Session.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

using namespace xfmr::runtime;
using namespace xfmr::test;

extern char **environ;

namespace {

struct RunResult {
  int exitCode = -1;
  std::string out, err;
};

class XfmrRunTest : public TempDirTest {
protected:
  void SetUp() override {
    TempDirTest::SetUp();
    fixture.write(model());
  }

  std::string model() const { return file("model.xfmr"); }

  /// Runs xfmr-run with `args`, capturing stdout and stderr.
  RunResult run(const std::vector<std::string> &args) {
    std::vector<std::string> argv = {XFMR_RUN_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char *> cargv;
    for (std::string &a : argv)
      cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, file("stdout").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, file("stderr").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    RunResult r;
    int rc =
        posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(rc, 0) << "cannot start " << cargv[0];
    if (rc != 0)
      return r;
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status))
        << "xfmr-run crashed (status " << status << ")";
    r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = readText(file("stdout"));
    r.err = readText(file("stderr"));
    return r;
  }

  /// What the library generates for the same request.
  std::vector<int32_t> expected(const std::vector<int32_t> &prompt, int n,
                                const SamplingOptions &o = {}) {
    Session s(Artifact::open(model()));
    return s.generate(prompt, n, o);
  }

  static std::string line(const std::vector<int32_t> &ids) {
    std::string s;
    for (int32_t id : ids)
      s += (s.empty() ? "" : " ") + std::to_string(id);
    return s + "\n";
  }

  FixtureArtifact fixture;
};

#define EXPECT_CONTAINS(text, part)                                            \
  EXPECT_NE(std::string(text).find(part), std::string::npos)                   \
      << "text: " << (text)

TEST_F(XfmrRunTest, PrintsOneLineOfIds) {
  RunResult r = run({model(), "--prompt-ids", "1 2 3", "-n", "7"});
  EXPECT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(r.out, line(expected({1, 2, 3}, 7)));
  EXPECT_EQ(r.err, "");
  // "--flag=value", ids separated by several spaces, flags before the file.
  RunResult same = run({"-n", "7", "--prompt-ids=  1  2 3 ", model()});
  EXPECT_EQ(same.out, r.out);
}

TEST_F(XfmrRunTest, ZeroTokensPrintsAnEmptyLine) {
  RunResult r = run({model(), "--prompt-ids", "5", "-n", "0"});
  EXPECT_EQ(r.exitCode, 0);
  EXPECT_EQ(r.out, "\n");
}

TEST_F(XfmrRunTest, SamplingFlags) {
  SamplingOptions o;
  o.temperature = 0.8f;
  o.topK = 5;
  o.topP = 0.9f;
  o.seed = 77;
  std::vector<std::string> args = {model(), "--prompt-ids",  "4 4", "-n",
                                   "12",    "--temperature", "0.8", "--top-k",
                                   "5",     "--top-p",       "0.9", "--seed",
                                   "77",    "--threads",     "2"};
  RunResult a = run(args), b = run(args);
  EXPECT_EQ(a.exitCode, 0) << a.err;
  EXPECT_EQ(a.out, line(expected({4, 4}, 12, o)));
  EXPECT_EQ(a.out, b.out);
}

TEST_F(XfmrRunTest, StatsAreJsonOnStderr) {
  RunResult r = run({model(), "--prompt-ids", "1 2", "-n", "3", "--stats"});
  EXPECT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(r.out, line(expected({1, 2}, 3)));
  JsonValue stats = parseJson(r.err, "--stats output");
  for (const char *key :
       {"prefill_tokens_per_s", "decode_tokens_per_s", "weights_bytes",
        "kv_cache_bytes_per_token", "peak_rss_bytes", "prefill_tokens",
        "decode_tokens", "threads", "parameter_count", "device",
        "device_memory_bytes", "weights_upload_seconds"})
    EXPECT_NE(stats.find(key), nullptr) << key;
  EXPECT_EQ(stats.find("prefill_tokens")->asInt(), 2);
  EXPECT_EQ(stats.find("decode_tokens")->asInt(), 2);
  EXPECT_EQ(stats.find("weights_bytes")->asInt(), 64);
  EXPECT_EQ(stats.find("kv_cache_bytes_per_token")->asInt(), 4);
  EXPECT_EQ(stats.find("parameter_count")->asInt(), 16);
  EXPECT_GT(stats.find("peak_rss_bytes")->asInt(), 0);
}

TEST_F(XfmrRunTest, DumpLogitsWritesNpy) {
  std::string npy = file("logits.npy");
  RunResult r =
      run({model(), "--prompt-ids", "9 8", "-n", "4", "--dump-logits", npy});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  std::string bytes = readText(npy);
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  size_t headerSize = 10 + (uint8_t(bytes[8]) | (uint8_t(bytes[9]) << 8));
  EXPECT_EQ(headerSize % 64, 0u);
  std::string dict = bytes.substr(10, headerSize - 10);
  EXPECT_CONTAINS(dict, "'descr': '<f4'");
  EXPECT_CONTAINS(dict, "'fortran_order': False");
  EXPECT_CONTAINS(dict, "'shape': (4, 16)");
  ASSERT_EQ(bytes.size(), headerSize + 4 * 16 * sizeof(float));
  // Row i is the distribution token i was chosen from.
  std::vector<int32_t> history = {9, 8};
  std::vector<int32_t> tokens = expected({9, 8}, 4);
  for (int i = 0; i < 4; ++i) {
    std::vector<float> row(16);
    std::memcpy(row.data(), bytes.data() + headerSize + i * 64, 64);
    EXPECT_EQ(row, fixtureLogits(fixture.bias, history)) << i;
    history.push_back(tokens[i]);
  }
}

TEST_F(XfmrRunTest, BadCommandLinesExit2WithUsage) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{model(), "--prompt-ids", "1", "-n", "1", "--bogus"},
       "unknown option '--bogus'"},
      {{model(), "--prompt-ids", "1 x 3", "-n", "1"}, "'x' is not a token id"},
      {{model(), "--prompt-ids", "1 99999999999", "-n", "1"},
       "'99999999999' is not a token id"},
      {{model(), "--prompt-ids", "", "-n", "1"}, "no token ids given"},
      {{model(), "--prompt-ids", "1", "-n", "-2"}, "-n must be >= 0, got -2"},
      {{model(), "--prompt-ids", "1", "-n", "two"},
       "invalid value 'two' for -n"},
      {{model(), "--prompt-ids", "1"}, "-n is required"},
      {{model(), "--prompt", "a", "--prompt-ids", "1", "-n", "1"},
       "give one prompt: --prompt and --prompt-ids both given"},
      {{model(), "--prompt", "a", "--output", "json"},
       "--output must be ids or text, got 'json'"},
      {{model(), "--prompt", "a", "--stop", ""},
       "--stop needs a non-empty string"},
      {{model(), "--prompt-file", ""}, "--prompt-file needs a file name"},
      {{"--prompt-ids", "1", "-n", "1"}, "no artifact given"},
      {{model(), model(), "--prompt-ids", "1", "-n", "1"}, "more than one"},
      {{model(), "--prompt-ids", "1", "-n"}, "-n requires a value"},
      {{model(), "--prompt-ids", "1", "-n", "1", "--temperature", "-1"},
       "temperature must be a finite number >= 0"},
      {{model(), "--prompt-ids", "1", "-n", "1", "--temperature", "nan"},
       "temperature"},
      {{model(), "--prompt-ids", "1", "-n", "1", "--temperature", "1x"},
       "invalid value '1x' for --temperature"},
      {{model(), "--prompt-ids", "1", "-n", "1", "--top-p", "0"}, "top-p"},
      {{model(), "--prompt-ids", "1", "-n", "1", "--top-k", "-1"}, "top-k"},
      {{model(), "--prompt-ids", "1", "-n", "1", "--seed", "-1"}, "--seed"},
      {{model(), "--prompt-ids", "1", "-n", "1", "--threads", "-1"},
       "--threads must be in [0, 1024]"},
      {{model(), "--prompt-ids", "1", "-n", "1", "--threads", "100000"},
       "--threads must be in [0, 1024] (0: all cores), got 100000"},
      {{model(), "--prompt-ids", "1,,2", "-n", "1"},
       "--prompt-ids: empty field at offset 2"},
      {{model(), "--prompt-ids", "1,", "-n", "1"},
       "--prompt-ids: empty field at the end"},
      {{model(), "--prompt-ids", ",1", "-n", "1"},
       "--prompt-ids: empty field at offset 0"},
      {{model(), "--prompt-ids", "1", "-n", "1", "--stats=yes"},
       "unknown option '--stats=yes'"},
  };
  for (const Case &c : cases) {
    RunResult r = run(c.args);
    EXPECT_EQ(r.exitCode, 2) << c.message;
    EXPECT_EQ(r.out, "") << c.message;
    EXPECT_EQ(r.err.rfind("xfmr-run: error: ", 0), 0u) << r.err;
    EXPECT_CONTAINS(r.err, c.message);
    EXPECT_CONTAINS(r.err, "(see xfmr-run --help)");
  }
}

TEST_F(XfmrRunTest, IdsMaySeparateWithSpacesOrCommas) {
  RunResult spaces = run({model(), "--prompt-ids", "1 2 3", "-n", "2"});
  for (const char *ids : {"1,2,3", "1, 2, 3", " 1 ,2 , 3 "}) {
    RunResult r = run({model(), "--prompt-ids", ids, "-n", "2"});
    EXPECT_EQ(r.exitCode, 0) << ids;
    EXPECT_EQ(r.out, spaces.out) << ids;
  }
}

TEST_F(XfmrRunTest, VersionIsXfmrs) {
  RunResult r = run({"--version"});
  EXPECT_EQ(r.exitCode, 0);
  EXPECT_EQ(r.out.rfind("xfmr ", 0), 0u) << r.out;
  EXPECT_CONTAINS(r.out, " (");
}

TEST_F(XfmrRunTest, HelpGoesToStdout) {
  RunResult r = run({"--help"});
  EXPECT_EQ(r.exitCode, 0);
  EXPECT_CONTAINS(r.out, "usage: xfmr-run ARTIFACT");
}

TEST_F(XfmrRunTest, RuntimeErrorsExit1) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{file("absent.xfmr"), "--prompt-ids", "1", "-n", "1"},
       "xfmr-run: error: " + file("absent.xfmr") + ": cannot open"},
      {{file("stdout"), "--prompt-ids", "1", "-n", "1"},
       "not an xfmr artifact"},
      {{model(), "--prompt-ids", "1 16", "-n", "1"},
       "xfmr-run: error: token id 16 at index 1 is out of range [0, 16)\n"},
      // 2 + 32 - 1 positions in a 32-token context (the last generated
      // token needs no slot: "-n 31" fits exactly).
      {{model(), "--prompt-ids", "1 2", "-n", "32"}, "context overflow"},
      {{model(), "--prompt-ids", "1", "-n", "1", "--dump-logits",
        file("no/dir/x.npy")},
       "cannot write"},
  };
  writeBytes(file("stdout"), Bytes(100, 'x'));
  for (const Case &c : cases) {
    RunResult r = run(c.args);
    EXPECT_EQ(r.exitCode, 1) << c.message;
    EXPECT_CONTAINS(r.err, c.message);
    EXPECT_EQ(r.err.find("usage:"), std::string::npos);
  }
}

TEST_F(XfmrRunTest, TruncatedArtifactIsAnErrorNotACrash) {
  Bytes bytes = fixture.bytes();
  for (size_t size :
       {size_t(0), size_t(7), size_t(72), size_t(5000), bytes.size() - 1}) {
    writeBytes(file("cut.xfmr"), Bytes(bytes.begin(), bytes.begin() + size));
    RunResult r = run({file("cut.xfmr"), "--prompt-ids", "1", "-n", "1"});
    EXPECT_EQ(r.exitCode, 1) << size;
    EXPECT_EQ(r.out, "");
  }
}

} // namespace
