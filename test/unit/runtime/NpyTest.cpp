//===- NpyTest.cpp - the .npy writer --------------------------------------===//

#include "RuntimeTestUtil.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Npy.h"

using namespace xfmr::runtime;
using namespace xfmr::test;

namespace {

using NpyTest = TempDirTest;

TEST_F(NpyTest, HeaderIsVersion1AndAligned) {
  std::string h = npyHeaderFloat32({3, 4});
  ASSERT_GE(h.size(), 10u);
  EXPECT_EQ(h.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  size_t dictLength = uint8_t(h[8]) | (uint8_t(h[9]) << 8);
  EXPECT_EQ(h.size(), 10 + dictLength);
  EXPECT_EQ(h.size() % 64, 0u);
  EXPECT_EQ(h.back(), '\n');
  EXPECT_EQ(h.substr(10, h.find('}') - 9),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }");
  EXPECT_NE(npyHeaderFloat32({5}).find("'shape': (5,)"), std::string::npos);
  EXPECT_NE(npyHeaderFloat32({}).find("'shape': ()"), std::string::npos);
  EXPECT_THROW(npyHeaderFloat32({-1}), Error);
}

TEST_F(NpyTest, WritesDataAfterHeader) {
  std::vector<float> data = {1.5f, -2, 0, 3.25f, 7, 8};
  writeNpyFloat32(file("a.npy"), data.data(), {2, 3});
  std::string bytes = readText(file("a.npy"));
  std::string header = npyHeaderFloat32({2, 3});
  ASSERT_EQ(bytes.size(), header.size() + data.size() * 4);
  EXPECT_EQ(bytes.substr(0, header.size()), header);
  EXPECT_EQ(std::memcmp(bytes.data() + header.size(), data.data(), 24), 0);
  // Atomic write: no temporary file is left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir),
                          std::filesystem::directory_iterator()),
            1);
}

TEST_F(NpyTest, EmptyArray) {
  writeNpyFloat32(file("e.npy"), nullptr, {0, 16});
  EXPECT_EQ(readText(file("e.npy")), npyHeaderFloat32({0, 16}));
}

TEST_F(NpyTest, UnwritablePathNamesTheFile) {
  float x = 0;
  std::string path = file("no/such/dir/x.npy");
  try {
    writeNpyFloat32(path, &x, {1});
    FAIL() << "expected an Error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
}

} // namespace
