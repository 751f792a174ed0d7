//===- CheckpointTest.cpp - Tests for checkpoint folders ------------------===//

#include "import/Checkpoint.h"

#include "ImportTestUtil.h"

using namespace xfmr;
using namespace xfmr::testing;

namespace {

constexpr const char *kConfig = R"({"architectures":["LlamaForCausalLM"]})";

/// A folder with config.json, two shards and an index (edited per test).
class ShardedCheckpointTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir.write("config.json", kConfig);
    dir.write("model-00001-of-00002.safetensors",
              buildSafetensors({{"a", "F32", {2}}, {"b", "BF16", {3}}}));
    dir.write("model-00002-of-00002.safetensors",
              buildSafetensors({{"c", "U8", {4}}}));
  }
  void writeIndex(const std::string &weightMap) {
    dir.write("model.safetensors.index.json",
              R"({"metadata":{"total_size":22},"weight_map":)" + weightMap +
                  "}");
  }
  std::string openError() { return errorOf(Checkpoint::open(dir.path())); }

  TempDir dir;
  const std::string goodMap = R"({"a":"model-00001-of-00002.safetensors",)"
                              R"("b":"model-00001-of-00002.safetensors",)"
                              R"("c":"model-00002-of-00002.safetensors"})";
};

#define EXPECT_HAS(message, fragment)                                          \
  EXPECT_NE((message).find(fragment), std::string::npos)                       \
      << "message: " << (message) << "\nexpected fragment: " << (fragment)

TEST(CheckpointTest, OpensSingleFile) {
  TempDir dir;
  dir.write("config.json", kConfig);
  std::string weights = dir.write(
      "model.safetensors",
      buildSafetensors({{"z", "F32", {1}}, {"m.weight", "BF16", {2, 2}}}));
  auto checkpoint = Checkpoint::open(dir.path());
  ASSERT_TRUE(bool(checkpoint)) << llvm::toString(checkpoint.takeError());
  const Checkpoint &ckpt = **checkpoint;
  EXPECT_FALSE(ckpt.isSharded());
  EXPECT_EQ(ckpt.dir(), dir.path());
  EXPECT_EQ(ckpt.configPath(), dir.file("config.json"));
  EXPECT_EQ(ckpt.size(), 2u);
  std::vector<llvm::StringRef> names = ckpt.names();
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0], "m.weight");
  EXPECT_EQ(names[1], "z");
  const TensorInfo *m = ckpt.find("m.weight");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(ckpt.fileOf(*m), weights);
  llvm::ArrayRef<uint8_t> bytes = ckpt.bytes(*m);
  ASSERT_EQ(bytes.size(), 8u);
  EXPECT_EQ(bytes[3], patternByte(1, 3));
  EXPECT_EQ(ckpt.find("nope"), nullptr);
}

TEST(CheckpointTest, PrefersSingleFileOverIndex) {
  TempDir dir;
  dir.write("config.json", kConfig);
  dir.write("model.safetensors", buildSafetensors({{"z", "F32", {1}}}));
  dir.write("model.safetensors.index.json", "not even json");
  auto checkpoint = Checkpoint::open(dir.path());
  ASSERT_TRUE(bool(checkpoint)) << llvm::toString(checkpoint.takeError());
  EXPECT_NE((*checkpoint)->find("z"), nullptr);
}

TEST(CheckpointTest, MissingFolder) {
  TempDir dir;
  std::string message = errorOf(Checkpoint::open(dir.file("absent")));
  EXPECT_HAS(message, "does not exist or is not a folder");
}

TEST(CheckpointTest, MissingConfig) {
  TempDir dir;
  dir.write("model.safetensors", buildSafetensors({{"z", "F32", {1}}}));
  std::string message = errorOf(Checkpoint::open(dir.path()));
  EXPECT_HAS(message, "has no config.json");
}

TEST(CheckpointTest, MissingWeights) {
  TempDir dir;
  dir.write("config.json", kConfig);
  std::string message = errorOf(Checkpoint::open(dir.path()));
  EXPECT_HAS(message, "has no weights: expected model.safetensors or "
                      "model.safetensors.index.json");
}

TEST(CheckpointTest, InvalidSingleFileNamesIt) {
  TempDir dir;
  dir.write("config.json", kConfig);
  dir.write("model.safetensors", "short");
  std::string message = errorOf(Checkpoint::open(dir.path()));
  EXPECT_HAS(message, dir.file("model.safetensors"));
  EXPECT_HAS(message, "too short");
}

TEST_F(ShardedCheckpointTest, OpensShards) {
  writeIndex(goodMap);
  auto checkpoint = Checkpoint::open(dir.path());
  ASSERT_TRUE(bool(checkpoint)) << llvm::toString(checkpoint.takeError());
  const Checkpoint &ckpt = **checkpoint;
  EXPECT_TRUE(ckpt.isSharded());
  EXPECT_EQ(ckpt.size(), 3u);
  EXPECT_EQ(ckpt.files().size(), 2u);
  const TensorInfo *b = ckpt.find("b");
  const TensorInfo *c = ckpt.find("c");
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(b->shard, 0u);
  EXPECT_EQ(c->shard, 1u);
  EXPECT_EQ(ckpt.fileOf(*b), dir.file("model-00001-of-00002.safetensors"));
  EXPECT_EQ(ckpt.fileOf(*c), dir.file("model-00002-of-00002.safetensors"));
  llvm::ArrayRef<uint8_t> cBytes = ckpt.bytes(*c);
  ASSERT_EQ(cBytes.size(), 4u);
  EXPECT_EQ(cBytes[2], patternByte(0, 2));
  llvm::ArrayRef<uint8_t> bBytes = ckpt.bytes(*b);
  ASSERT_EQ(bBytes.size(), 6u);
  EXPECT_EQ(bBytes[0], patternByte(1, 0));
  std::vector<llvm::StringRef> names = ckpt.names();
  EXPECT_EQ(names, (std::vector<llvm::StringRef>{"a", "b", "c"}));
}

TEST_F(ShardedCheckpointTest, AcceptsDotSlashShardPaths) {
  writeIndex(R"({"a":"./model-00001-of-00002.safetensors",)"
             R"("b":"model-00001-of-00002.safetensors",)"
             R"("c":"model-00002-of-00002.safetensors"})");
  auto checkpoint = Checkpoint::open(dir.path());
  ASSERT_TRUE(bool(checkpoint)) << llvm::toString(checkpoint.takeError());
  EXPECT_EQ((*checkpoint)->files().size(), 2u);
}

TEST_F(ShardedCheckpointTest, IndexNotJson) {
  writeIndex("{");
  EXPECT_HAS(openError(), "is not valid JSON");
}

TEST_F(ShardedCheckpointTest, IndexWithoutWeightMap) {
  dir.write("model.safetensors.index.json", R"({"metadata":{}})");
  EXPECT_HAS(openError(), "has no 'weight_map'");
}

TEST_F(ShardedCheckpointTest, WeightMapNotObject) {
  writeIndex("[]");
  EXPECT_HAS(openError(), "'weight_map' is a JSON array, expected an object");
}

TEST_F(ShardedCheckpointTest, EmptyWeightMap) {
  writeIndex("{}");
  EXPECT_HAS(openError(), "'weight_map' is empty");
}

TEST_F(ShardedCheckpointTest, WeightMapValueNotString) {
  writeIndex(R"({"a":1})");
  EXPECT_HAS(openError(),
             "'weight_map' entry for tensor 'a' is a JSON integer");
}

TEST_F(ShardedCheckpointTest, MissingShard) {
  writeIndex(R"({"a":"model-00001-of-00002.safetensors",)"
             R"("b":"model-00001-of-00002.safetensors",)"
             R"("c":"model-00003-of-00002.safetensors"})");
  std::string message = openError();
  EXPECT_HAS(message, "shard 'model-00003-of-00002.safetensors' (holding e.g. "
                      "tensor 'c') does not exist");
  EXPECT_HAS(message, "model.safetensors.index.json");
}

TEST_F(ShardedCheckpointTest, TensorNamedTwice) {
  writeIndex(R"({"a":"model-00001-of-00002.safetensors",)"
             R"("b":"model-00001-of-00002.safetensors",)"
             R"("c":"model-00002-of-00002.safetensors",)"
             R"("a":"model-00002-of-00002.safetensors"})");
  EXPECT_HAS(openError(), "'weight_map' names tensor 'a' more than once");
}

TEST_F(ShardedCheckpointTest, TensorClaimedByAnotherShard) {
  // 'c' really lives in shard 2; put a second copy in shard 1 as well.
  dir.write("model-00001-of-00002.safetensors",
            buildSafetensors(
                {{"a", "F32", {2}}, {"b", "BF16", {3}}, {"c", "U8", {4}}}));
  writeIndex(goodMap);
  EXPECT_HAS(openError(),
             "tensor 'c' is present in shard "
             "'model-00001-of-00002.safetensors' but the index assigns it to "
             "'model-00002-of-00002.safetensors'");
}

TEST_F(ShardedCheckpointTest, TensorNotListed) {
  writeIndex(R"({"a":"model-00001-of-00002.safetensors",)"
             R"("c":"model-00002-of-00002.safetensors"})");
  EXPECT_HAS(openError(), "tensor 'b' in shard "
                          "'model-00001-of-00002.safetensors' is not listed "
                          "in the index");
}

TEST_F(ShardedCheckpointTest, TensorMissingFromNamedShard) {
  writeIndex(R"({"a":"model-00001-of-00002.safetensors",)"
             R"("b":"model-00001-of-00002.safetensors",)"
             R"("c":"model-00001-of-00002.safetensors"})");
  std::string message = openError();
  EXPECT_HAS(message, "tensor 'c' is missing from shard "
                      "'model-00001-of-00002.safetensors' named by the index");
  // The unused second shard is never opened, so only one problem is reported.
  EXPECT_EQ(message.find("problems"), std::string::npos) << message;
}

TEST_F(ShardedCheckpointTest, SeveralProblemsReportedTogether) {
  writeIndex(R"({"a":"model-00002-of-00002.safetensors",)"
             R"("b":"model-00001-of-00002.safetensors",)"
             R"("c":"model-00001-of-00002.safetensors"})");
  std::string message = openError();
  EXPECT_HAS(message, "4 problems:");
  EXPECT_HAS(message, "tensor 'a' is missing from shard "
                      "'model-00002-of-00002.safetensors'");
  EXPECT_HAS(message, "tensor 'c' is missing from shard "
                      "'model-00001-of-00002.safetensors'");
}

TEST_F(ShardedCheckpointTest, AbsoluteShardPath) {
  writeIndex(R"({"a":"/etc/passwd"})");
  EXPECT_HAS(openError(), "shard path '/etc/passwd' for tensor 'a' is "
                          "absolute");
}

TEST_F(ShardedCheckpointTest, WindowsAbsoluteShardPath) {
  writeIndex(R"({"a":"C:\\x.safetensors"})");
  EXPECT_HAS(openError(), "is absolute");
}

TEST_F(ShardedCheckpointTest, DotDotShardPath) {
  writeIndex(R"({"a":"sub/../../x.safetensors"})");
  EXPECT_HAS(openError(), "shard path 'sub/../../x.safetensors' for tensor "
                          "'a' contains '..'");
}

TEST_F(ShardedCheckpointTest, BackslashDotDotShardPath) {
  writeIndex(R"({"a":"..\\x.safetensors"})");
  EXPECT_HAS(openError(), "contains '..'");
}

TEST_F(ShardedCheckpointTest, EmptyShardPath) {
  writeIndex(R"({"a":""})");
  EXPECT_HAS(openError(), "shard path '' for tensor 'a' is empty");
}

TEST_F(ShardedCheckpointTest, InvalidShardNamesIt) {
  dir.write("model-00002-of-00002.safetensors",
            rawSafetensors(R"({"c":{"dtype":"F64","shape":[1],)"
                           R"("data_offsets":[0,8]}})",
                           std::string(8, '\0')));
  writeIndex(goodMap);
  std::string message = openError();
  EXPECT_HAS(message, dir.file("model-00002-of-00002.safetensors"));
  EXPECT_HAS(message, "unsupported dtype 'F64' for tensor 'c'");
}

} // namespace
