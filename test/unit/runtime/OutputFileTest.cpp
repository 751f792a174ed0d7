//===- OutputFileTest.cpp - every writer's output policy ------------------===//

#include "RuntimeTestUtil.h"

#include "xfmr/runtime/OutputFile.h"

#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace xfmr::runtime;
using namespace xfmr::test;

namespace {

class OutputFileTest : public TempDirTest {
protected:
  /// Names in the folder that look like temporary outputs.
  std::vector<std::string> leftovers() const {
    std::vector<std::string> names;
    for (const auto &entry : std::filesystem::directory_iterator(dir))
      if (entry.path().filename().string().find(".tmp-") != std::string::npos)
        names.push_back(entry.path().filename().string());
    return names;
  }
};

TEST_F(OutputFileTest, WritesANewFileThroughATemporary) {
  OutputFile output;
  ASSERT_EQ(output.open(file("out.bin")), "");
  EXPECT_FALSE(output.inPlace());
  EXPECT_NE(output.temporaryPath().find("out.bin.tmp-"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(file("out.bin"))); // not yet
  ASSERT_EQ(output.write("abc", 3), "");
  ASSERT_EQ(output.commit(), "");
  EXPECT_EQ(readText(file("out.bin")), "abc");
  EXPECT_TRUE(leftovers().empty());
}

TEST_F(OutputFileTest, AnUncommittedFileLeavesNothingAndTheOldFileStays) {
  writeBytes(file("out.bin"), Bytes{'o', 'l', 'd'});
  {
    OutputFile output;
    ASSERT_EQ(output.open(file("out.bin")), "");
    ASSERT_EQ(output.write("new", 3), "");
  }
  EXPECT_EQ(readText(file("out.bin")), "old");
  EXPECT_TRUE(leftovers().empty());
}

TEST_F(OutputFileTest, AReplacedFileKeepsItsMode) {
  writeBytes(file("out.bin"), Bytes{'o'});
  ASSERT_EQ(chmod(file("out.bin").c_str(), 0640), 0);
  ASSERT_EQ(writeOutputFile(file("out.bin"), "x", 1), "");
  struct stat st;
  ASSERT_EQ(stat(file("out.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
}

TEST_F(OutputFileTest, DevicesAndFifosAreWrittenInPlace) {
  OutputFile null;
  ASSERT_EQ(null.open("/dev/null"), "");
  EXPECT_TRUE(null.inPlace());
  ASSERT_EQ(null.write("x", 1), "");
  ASSERT_EQ(null.commit(), "");
  struct stat st;
  ASSERT_EQ(stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));

  ASSERT_EQ(mkfifo(file("pipe").c_str(), 0600), 0);
  std::string received;
  std::thread reader([&] { received = readText(file("pipe")); });
  ASSERT_EQ(writeOutputFile(file("pipe"), "through", 7), "");
  reader.join();
  EXPECT_EQ(received, "through");
  ASSERT_EQ(lstat(file("pipe").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

TEST_F(OutputFileTest, LinksDirectoriesAndMissingFoldersAreRefused) {
  writeBytes(file("victim"), Bytes{'v'});
  ASSERT_EQ(symlink(file("victim").c_str(), file("link").c_str()), 0);
  ASSERT_EQ(symlink(file("nothing").c_str(), file("dangling").c_str()), 0);
  struct Case {
    std::string path, message;
  } cases[] = {
      {file("link"), "it is a symbolic link; xfmr does not replace links"},
      {file("dangling"), "it is a symbolic link to nothing"},
      {dir, "it is a directory"},
      {file("no/such/out.bin"), "the directory '" + file("no/such") +
                                     "' does not exist"},
      {file("victim/out.bin"), "'" + file("victim") + "' is not a directory"},
      {"", "no output file given"},
  };
  for (const Case &c : cases) {
    std::string check = checkOutputPath(c.path);
    EXPECT_NE(check.find(c.message), std::string::npos) << check;
    OutputFile output;
    EXPECT_EQ(output.open(c.path), check);
  }
  EXPECT_EQ(readText(file("victim")), "v");
  EXPECT_TRUE(leftovers().empty());
}

TEST_F(OutputFileTest, APlantedTemporaryNameIsNotFollowed) {
  writeBytes(file("victim"), Bytes{'v'});
  ASSERT_EQ(symlink(file("victim").c_str(), file("out.bin.tmp").c_str()), 0);
  ASSERT_EQ(writeOutputFile(file("out.bin"), "new", 3), "");
  EXPECT_EQ(readText(file("victim")), "v");
  EXPECT_EQ(readText(file("out.bin")), "new");
}

TEST_F(OutputFileTest, WritersOfOneOutputEachRenameAWholeFile) {
  OutputFile a, b;
  ASSERT_EQ(a.open(file("out.bin")), "");
  ASSERT_EQ(b.open(file("out.bin")), "");
  EXPECT_NE(a.temporaryPath(), b.temporaryPath());
  ASSERT_EQ(a.write("aaaa", 4), "");
  ASSERT_EQ(b.write("bb", 2), "");
  ASSERT_EQ(a.commit(), "");
  EXPECT_EQ(readText(file("out.bin")), "aaaa");
  ASSERT_EQ(b.commit(), "");
  EXPECT_EQ(readText(file("out.bin")), "bb");
}

} // namespace
