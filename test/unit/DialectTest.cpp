//===- DialectTest.cpp - C++ API of the xfmr dialect ------------*- C++ -*-===//

#include "dialects/Xfmr/XfmrOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include <gtest/gtest.h>

using namespace mlir;
using namespace xfmr;

namespace {

class XfmrDialectTest : public ::testing::Test {
protected:
  XfmrDialectTest() {
    context.loadDialect<XfmrDialect, func::FuncDialect>();
  }
  MLIRContext context;
};

TEST_F(XfmrDialectTest, ScaleShapeOfPartialBlocks) {
  auto layout = ScaleLayoutAttr::get(&context, ScaleKind::block, {128, 128});
  // Edge blocks are partial: 300 rows need 3 blocks, 129 columns need 2.
  EXPECT_EQ(layout.scaleShape({300, 129}), (SmallVector<int64_t>{3, 2}));
  EXPECT_EQ(layout.scaleShape({8, 300, 129}),
            (SmallVector<int64_t>{8, 3, 2}));
  auto perToken = ScaleLayoutAttr::get(&context, ScaleKind::block, {1, 128});
  EXPECT_EQ(perToken.scaleShape({ShapedType::kDynamic, 256}),
            (SmallVector<int64_t>{ShapedType::kDynamic, 2}));
  auto perChannel = ScaleLayoutAttr::get(&context, ScaleKind::per_channel, {});
  EXPECT_EQ(perChannel.scaleShape({64, 32}), (SmallVector<int64_t>{64}));
  auto perTensor = ScaleLayoutAttr::get(&context, ScaleKind::per_tensor, {});
  EXPECT_TRUE(perTensor.scaleShape({64, 32}).empty());
}

TEST_F(XfmrDialectTest, CacheBytesPerToken) {
  Builder builder(&context);
  auto kv = KVCacheType::get(&context, builder.getBF16Type(), 512, 4, 8, 8,
                             CacheLayout::token_major);
  EXPECT_EQ(kv.bytesPerToken(), 4 * (8 + 8) * 2);
  // DeepSeek-V3's latent: 512 + 64 values per token.
  auto latent =
      LatentCacheType::get(&context, builder.getF32Type(), 4096, 512, 64);
  EXPECT_EQ(latent.bytesPerToken(), (512 + 64) * 4);
}

TEST_F(XfmrDialectTest, YarnMscale) {
  EXPECT_DOUBLE_EQ(RopeAttr::yarnMscale(1.0, 1.0), 1.0);
  EXPECT_NEAR(RopeAttr::yarnMscale(40.0, 1.0), 0.1 * std::log(40.0) + 1.0,
              1e-15);
}

TEST_F(XfmrDialectTest, RopeAttrRoundTripsDoublesExactly) {
  const char *source = R"mlir(
    func.func @f(%x: tensor<?x2x8xf32>, %p: index) -> tensor<?x2x8xf32> {
      %y = xfmr.rope %x at %p {config = #xfmr.rope<theta = 0.1, scaling = yarn,
           factor = 40.0, original_max_positions = 4096,
           mscale = 0.70710678118654757>} : tensor<?x2x8xf32>
      return %y : tensor<?x2x8xf32>
    })mlir";
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(source, &context);
  ASSERT_TRUE(module);
  auto firstRope = [](ModuleOp module) {
    func::FuncOp func = *module.getOps<func::FuncOp>().begin();
    return *func.getOps<RopeOp>().begin();
  };
  RopeOp rope = firstRope(*module);
  EXPECT_EQ(rope.getConfig().getTheta().convertToDouble(), 0.1);
  EXPECT_EQ(rope.getConfig().getMscale().convertToDouble(), 0.70710678118654757);
  EXPECT_EQ(rope.getConfig().getStyle(), RopeStyle::rotate_half);

  std::string printed;
  llvm::raw_string_ostream os(printed);
  module->print(os);
  OwningOpRef<ModuleOp> reparsed =
      parseSourceString<ModuleOp>(printed, &context);
  ASSERT_TRUE(reparsed);
  RopeOp again = firstRope(*reparsed);
  EXPECT_EQ(again.getConfig(), rope.getConfig());
}

TEST_F(XfmrDialectTest, AnnotateModelStatsCountsDistinctWeights) {
  const char *source = R"mlir(
    func.func @decode(%ids: tensor<?xi32>, %c: !xfmr.kv_cache<bf16, capacity = 16, heads = 2, key_dim = 4, value_dim = 4>)
        -> tensor<?x8xf32> attributes {xfmr.entry = "decode"} {
      %e = xfmr.weight "embed" : tensor<32x8xf32>
      %e2 = xfmr.weight "embed" : tensor<32x8xf32>
      %n = xfmr.weight "norm" : tensor<8xbf16>
      %h = xfmr.embedding %e[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
      %h2 = xfmr.embedding %e2[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
      %y = xfmr.rms_norm %h2, %n {eps = 1.0e-5 : f64} : tensor<?x8xf32>, tensor<8xbf16>
      return %y : tensor<?x8xf32>
    })mlir";
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(source, &context);
  ASSERT_TRUE(module);
  PassManager pm(&context);
  pm.addPass(createAnnotateModelStats());
  ASSERT_TRUE(succeeded(pm.run(*module)));
  auto func = *module->getOps<func::FuncOp>().begin();
  EXPECT_EQ(cast<IntegerAttr>(func->getAttr("xfmr.parameter_count")).getInt(),
            32 * 8 + 8);
  EXPECT_EQ(cast<IntegerAttr>(func->getAttr("xfmr.weight_bytes")).getInt(),
            32 * 8 * 4 + 8 * 2);
  EXPECT_EQ(
      cast<IntegerAttr>(func->getAttr("xfmr.kv_cache_bytes_per_token")).getInt(),
      2 * (4 + 4) * 2);
}

} // namespace
