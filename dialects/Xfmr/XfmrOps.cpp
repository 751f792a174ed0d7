//===- XfmrOps.cpp - verifiers and folders of xfmr ops ----------*- C++ -*-===//
//
// Verifiers check what a model author or an importer can get wrong: shapes
// that do not line up, head counts that do not divide, scale tensors that do
// not match their layout. Messages name the offending values.
//
//===----------------------------------------------------------------------===//

#include "dialects/Xfmr/XfmrOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"

#include <cmath>

using namespace mlir;
using namespace xfmr;

#define GET_OP_CLASSES
#include "dialects/Xfmr/XfmrOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

/// Two sizes agree when equal or when either is dynamic.
static bool sizesAgree(int64_t a, int64_t b) {
  return a == b || ShapedType::isDynamic(a) || ShapedType::isDynamic(b);
}

static bool shapesAgree(ArrayRef<int64_t> a, ArrayRef<int64_t> b) {
  return a.size() == b.size() &&
         llvm::all_of(llvm::zip(a, b), [](auto pair) {
           return sizesAgree(std::get<0>(pair), std::get<1>(pair));
         });
}

/// Prints a shape as `[2, ?, 8]`.
static std::string shapeString(ArrayRef<int64_t> shape) {
  std::string text = "[";
  llvm::raw_string_ostream os(text);
  llvm::interleaveComma(shape, os, [&](int64_t size) {
    if (ShapedType::isDynamic(size))
      os << "?";
    else
      os << size;
  });
  os << "]";
  return text;
}

static RankedTensorType tensorType(Value value) {
  return cast<RankedTensorType>(value.getType());
}

static LogicalResult checkRank(Operation *op, Value value, int64_t rank,
                               StringRef what) {
  int64_t actual = tensorType(value).getRank();
  if (actual != rank)
    return op->emitOpError() << "expects " << what << " of rank " << rank
                             << ", got rank " << actual << " ("
                             << value.getType() << ")";
  return success();
}

static bool isFloat8(Type type) {
  return isa<Float8E4M3FNType, Float8E5M2Type, Float8E4M3FNUZType>(type);
}

/// Checks an optional scale tensor against a weight: FP8 weights need one,
/// other weights must not have one, and its shape follows the layout.
static LogicalResult verifyWeightScale(Operation *op, StringRef what,
                                       Value weight, Value scale,
                                       ScaleLayoutAttr layout) {
  RankedTensorType weightType = tensorType(weight);
  Type element = weightType.getElementType();
  bool quantized = isFloat8(element) || element.isInteger(8) ||
                   element.isInteger(4);
  if (quantized && !scale)
    return op->emitOpError() << what << " " << weightType
                             << " is quantized and needs a scale tensor";
  if (!quantized && scale)
    return op->emitOpError() << what << " " << weightType
                             << " is not quantized but has a scale tensor";
  if (!scale)
    return success();
  // int4 weights have f16 group scales (as llama.cpp's Q4_0), the others f32.
  if (element.isInteger(4) != tensorType(scale).getElementType().isF16())
    return op->emitOpError()
           << what << " " << weightType << " needs "
           << (element.isInteger(4) ? "f16" : "f32") << " scales, got "
           << scale.getType();
  if (!layout)
    return op->emitOpError() << "needs a 'scale_layout' for the scale of "
                             << what;
  SmallVector<int64_t> expected = layout.scaleShape(weightType.getShape());
  ArrayRef<int64_t> actual = tensorType(scale).getShape();
  if (!shapesAgree(expected, actual))
    return op->emitOpError()
           << "scale of " << what << " has shape " << shapeString(actual)
           << " but layout " << layout << " of a "
           << shapeString(weightType.getShape()) << " weight needs "
           << shapeString(expected);
  return success();
}

static LogicalResult verifyQuantizedPair(Operation *op, Value data,
                                         Value scale, ScaleLayoutAttr layout,
                                         Value real) {
  ArrayRef<int64_t> dataShape = tensorType(data).getShape();
  ArrayRef<int64_t> realShape = tensorType(real).getShape();
  if (!shapesAgree(dataShape, realShape))
    return op->emitOpError() << "quantized shape " << shapeString(dataShape)
                             << " differs from real shape "
                             << shapeString(realShape);
  SmallVector<int64_t> expected = layout.scaleShape(dataShape);
  ArrayRef<int64_t> actual = tensorType(scale).getShape();
  if (!shapesAgree(expected, actual))
    return op->emitOpError()
           << "scale has shape " << shapeString(actual) << " but layout "
           << layout << " of a " << shapeString(dataShape)
           << " tensor needs " << shapeString(expected);
  if (layout.getKind() == ScaleKind::block && dataShape.size() < 2)
    return op->emitOpError() << "block scales need a tensor of rank >= 2";
  return success();
}

//===----------------------------------------------------------------------===//
// WeightOp
//===----------------------------------------------------------------------===//

LogicalResult WeightOp::verify() {
  StringRef name = getName();
  if (name.empty())
    return emitOpError() << "needs a non-empty weight name";
  size_t stars = name.count('*');
  if (stars > 1)
    return emitOpError() << "name '" << name
                         << "' has more than one '*' placeholder";
  RankedTensorType type = getResult().getType();
  if (!type.hasStaticShape())
    return emitOpError() << "weight '" << name
                         << "' must have a static shape, got " << type;
  if (stars == 1 && type.getRank() < 1)
    return emitOpError() << "stacked weight '" << name
                         << "' needs a leading stacking dimension";
  return success();
}

//===----------------------------------------------------------------------===//
// EmbeddingOp
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::verify() {
  if (failed(checkRank(*this, getTable(), 2, "a table [vocab, hidden]")) ||
      failed(checkRank(*this, getResult(), 2, "a result [tokens, hidden]")))
    return failure();
  RankedTensorType table = getTable().getType();
  RankedTensorType result = getResult().getType();
  if (!isa<FloatType>(table.getElementType()) ||
      isFloat8(table.getElementType()))
    return emitOpError() << "expects a f32/bf16/f16 table, got " << table;
  if (!sizesAgree(table.getDimSize(1), result.getDimSize(1)))
    return emitOpError() << "result hidden size " << result.getDimSize(1)
                         << " differs from the table's "
                         << table.getDimSize(1);
  if (!sizesAgree(getIds().getType().getDimSize(0), result.getDimSize(0)))
    return emitOpError() << "result has " << result.getDimSize(0)
                         << " tokens but there are "
                         << getIds().getType().getDimSize(0) << " ids";
  return success();
}

//===----------------------------------------------------------------------===//
// RMSNormOp
//===----------------------------------------------------------------------===//

LogicalResult RMSNormOp::verify() {
  if (failed(checkRank(*this, getWeight(), 1, "a weight [hidden]")))
    return failure();
  int64_t hidden = getInput().getType().getShape().back();
  int64_t weightSize = getWeight().getType().getDimSize(0);
  if (!sizesAgree(hidden, weightSize))
    return emitOpError() << "weight has " << weightSize
                         << " elements but the input's last dimension is "
                         << hidden;
  double eps = getEps().convertToDouble();
  if (!(eps > 0) || !std::isfinite(eps))
    return emitOpError() << "eps must be positive and finite, got " << formatF64(eps);
  return success();
}

//===----------------------------------------------------------------------===//
// LinearOp
//===----------------------------------------------------------------------===//

LogicalResult LinearOp::verify() {
  RankedTensorType input = getInput().getType();
  RankedTensorType weight = getWeight().getType();
  RankedTensorType result = getResult().getType();
  if (input.getRank() < 1)
    return emitOpError() << "expects an input of rank >= 1";
  if (failed(checkRank(*this, getWeight(), 2, "a weight [out, in]")))
    return failure();
  if (result.getRank() != input.getRank())
    return emitOpError() << "result rank " << result.getRank()
                         << " differs from input rank " << input.getRank();
  int64_t in = input.getShape().back();
  if (!sizesAgree(in, weight.getDimSize(1)))
    return emitOpError() << "input has " << in
                         << " features but the weight "
                         << shapeString(weight.getShape()) << " expects "
                         << weight.getDimSize(1);
  if (!sizesAgree(result.getShape().back(), weight.getDimSize(0)))
    return emitOpError() << "result has " << result.getShape().back()
                         << " features but the weight "
                         << shapeString(weight.getShape()) << " produces "
                         << weight.getDimSize(0);
  if (!shapesAgree(input.getShape().drop_back(),
                   result.getShape().drop_back()))
    return emitOpError() << "leading dimensions of input "
                         << shapeString(input.getShape()) << " and result "
                         << shapeString(result.getShape()) << " differ";
  if (input.getElementType() != result.getElementType())
    return emitOpError() << "input element type " << input.getElementType()
                         << " differs from result element type "
                         << result.getElementType();
  if (Value bias = getBias()) {
    RankedTensorType biasType = tensorType(bias);
    if (biasType.getRank() != 1 ||
        !sizesAgree(biasType.getDimSize(0), weight.getDimSize(0)))
      return emitOpError() << "bias " << shapeString(biasType.getShape())
                           << " must have shape [" << weight.getDimSize(0)
                           << "]";
  }
  return verifyWeightScale(*this, "weight", getWeight(), getScale(),
                           getScaleLayoutAttr());
}

//===----------------------------------------------------------------------===//
// Shape ops
//===----------------------------------------------------------------------===//

static LogicalResult verifyHeadsReshape(Operation *op, RankedTensorType flat,
                                        RankedTensorType heads) {
  if (flat.getRank() != 2 || heads.getRank() != 3)
    return op->emitOpError() << "reshapes [tokens, heads * dim] <-> [tokens, "
                                "heads, dim], got "
                             << flat << " and " << heads;
  if (flat.getElementType() != heads.getElementType())
    return op->emitOpError() << "element types differ";
  if (!sizesAgree(flat.getDimSize(0), heads.getDimSize(0)))
    return op->emitOpError() << "token counts differ: " << flat.getDimSize(0)
                             << " vs " << heads.getDimSize(0);
  if (heads.isDynamicDim(1) || heads.isDynamicDim(2) || flat.isDynamicDim(1))
    return op->emitOpError() << "heads and head_dim must be static";
  if (heads.getDimSize(1) * heads.getDimSize(2) != flat.getDimSize(1))
    return op->emitOpError() << heads.getDimSize(1) << " heads x "
                             << heads.getDimSize(2) << " channels != "
                             << flat.getDimSize(1) << " features";
  return success();
}

LogicalResult SplitHeadsOp::verify() {
  return verifyHeadsReshape(*this, getInput().getType(), getType());
}

OpFoldResult SplitHeadsOp::fold(FoldAdaptor) {
  // split_heads(merge_heads(x)) == x.
  if (auto merge = getInput().getDefiningOp<MergeHeadsOp>())
    if (merge.getInput().getType() == getType())
      return merge.getInput();
  return {};
}

LogicalResult MergeHeadsOp::verify() {
  return verifyHeadsReshape(*this, getType(), getInput().getType());
}

OpFoldResult MergeHeadsOp::fold(FoldAdaptor) {
  // merge_heads(split_heads(x)) == x.
  if (auto split = getInput().getDefiningOp<SplitHeadsOp>())
    if (split.getInput().getType() == getType())
      return split.getInput();
  return {};
}

LogicalResult SplitOp::verify() {
  RankedTensorType input = getInput().getType();
  if (input.getRank() < 1 || input.isDynamicDim(input.getRank() - 1))
    return emitOpError() << "needs an input with a static last dimension";
  if (getResults().empty())
    return emitOpError() << "needs at least one result";
  int64_t total = 0;
  for (Value result : getResults()) {
    RankedTensorType type = tensorType(result);
    if (type.getRank() != input.getRank() ||
        !shapesAgree(type.getShape().drop_back(),
                     input.getShape().drop_back()) ||
        type.getElementType() != input.getElementType())
      return emitOpError() << "result " << type
                           << " must match the input " << input
                           << " except in the last dimension";
    if (type.isDynamicDim(type.getRank() - 1))
      return emitOpError() << "result pieces must have static sizes";
    total += type.getShape().back();
  }
  if (total != input.getShape().back())
    return emitOpError() << "pieces add up to " << total
                         << " channels but the input has "
                         << input.getShape().back();
  return success();
}

//===----------------------------------------------------------------------===//
// RopeOp
//===----------------------------------------------------------------------===//

LogicalResult RopeOp::verify() {
  if (failed(checkRank(*this, getInput(), 3, "an input [tokens, heads, dim]")))
    return failure();
  int64_t headDim = getInput().getType().getDimSize(2);
  if (ShapedType::isDynamic(headDim))
    return emitOpError() << "needs a static head dimension";
  RopeAttr config = getConfig();
  int64_t offset = config.getRotaryOffset();
  int64_t rotary =
      config.getRotaryDim() == 0 ? headDim - offset : config.getRotaryDim();
  if (rotary <= 0 || offset + rotary > headDim)
    return emitOpError() << "rotates channels [" << offset << ", "
                         << offset + rotary << ") of a head of " << headDim;
  if (rotary % 2 != 0)
    return emitOpError() << "rotary dimension " << rotary
                         << " must be even (channels rotate in pairs)";
  return success();
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

static LogicalResult verifyScaleAttr(Operation *op, double scale) {
  if (!(scale > 0) || !std::isfinite(scale))
    return op->emitOpError() << "scale must be positive and finite, got "
                             << formatF64(scale);
  return success();
}

/// A positive sliding window; sinks (an evicting ring cache) need one and a
/// cache of exactly sinks + window entries.
static LogicalResult verifyWindow(Operation *op,
                                  std::optional<uint64_t> window,
                                  std::optional<uint64_t> sinks,
                                  int64_t capacity) {
  if (window && static_cast<int64_t>(*window) <= 0)
    return op->emitOpError() << "sliding_window must be positive, got "
                             << static_cast<int64_t>(*window);
  if (!sinks)
    return success();
  auto count = static_cast<int64_t>(*sinks);
  if (count < 0)
    return op->emitOpError() << "sinks must be non-negative, got " << count;
  if (!window)
    return op->emitOpError() << "sinks (an evicting cache) needs a "
                                "sliding_window";
  if (capacity != count + static_cast<int64_t>(*window))
    return op->emitOpError()
           << "an evicting cache holds sinks + sliding_window = "
           << count + static_cast<int64_t>(*window)
           << " entries, but its capacity is " << capacity;
  return success();
}

LogicalResult AttentionOp::verify() {
  if (failed(checkRank(*this, getQuery(), 3, "a query [tokens, heads, dim]")) ||
      failed(checkRank(*this, getKey(), 3, "a key [tokens, kv_heads, dim]")) ||
      failed(
          checkRank(*this, getValue(), 3, "a value [tokens, kv_heads, dim]")) ||
      failed(checkRank(*this, getOutput(), 3,
                       "an output [tokens, heads, dim]")))
    return failure();
  ArrayRef<int64_t> q = getQuery().getType().getShape();
  ArrayRef<int64_t> k = getKey().getType().getShape();
  ArrayRef<int64_t> v = getValue().getType().getShape();
  ArrayRef<int64_t> out = getOutput().getType().getShape();
  KVCacheType cache = getCache().getType();
  if (!sizesAgree(q[0], k[0]) || !sizesAgree(q[0], v[0]) ||
      !sizesAgree(q[0], out[0]))
    return emitOpError() << "query, key, value and output token counts "
                            "differ: "
                         << shapeString(q) << ", " << shapeString(k) << ", "
                         << shapeString(v) << ", " << shapeString(out);
  if (k[1] != v[1])
    return emitOpError() << "key has " << k[1] << " heads but value has "
                         << v[1];
  if (k[1] != cache.getHeads())
    return emitOpError() << "key/value have " << k[1]
                         << " heads but the cache holds " << cache.getHeads();
  if (q[1] % k[1] != 0)
    return emitOpError() << "query heads (" << q[1]
                         << ") must be a multiple of KV heads (" << k[1]
                         << ")";
  if (q[2] != k[2] || k[2] != cache.getKeyDim())
    return emitOpError() << "query/key head dims " << q[2] << "/" << k[2]
                         << " must equal the cache key_dim "
                         << cache.getKeyDim();
  if (v[2] != cache.getValueDim())
    return emitOpError() << "value head dim " << v[2]
                         << " differs from the cache value_dim "
                         << cache.getValueDim();
  if (out[1] != q[1] || out[2] != v[2])
    return emitOpError() << "output must be [tokens, " << q[1] << ", " << v[2]
                         << "], got " << shapeString(out);
  Type element = getQuery().getType().getElementType();
  if (getKey().getType().getElementType() != element ||
      getValue().getType().getElementType() != element ||
      getOutput().getType().getElementType() != element)
    return emitOpError() << "query, key, value and output element types "
                            "differ";
  if (failed(verifyWindow(*this, getSlidingWindow(), getSinks(),
                          cache.getCapacity())))
    return failure();
  return verifyScaleAttr(*this, getScale().convertToDouble());
}

LogicalResult MLAAttentionOp::verify() {
  if (failed(checkRank(*this, getQuery(), 3, "a query [tokens, heads, dim]")) ||
      failed(checkRank(*this, getLatent(), 2, "a latent [tokens, rank]")) ||
      failed(checkRank(*this, getRopeKey(), 3,
                       "a rope key [tokens, 1, rope_dim]")) ||
      failed(checkRank(*this, getKvBWeight(), 2,
                       "a kv_b weight [heads * (nope + v), rank]")) ||
      failed(checkRank(*this, getOutput(), 3,
                       "an output [tokens, heads, v_dim]")))
    return failure();
  ArrayRef<int64_t> q = getQuery().getType().getShape();
  ArrayRef<int64_t> latent = getLatent().getType().getShape();
  ArrayRef<int64_t> ropeKey = getRopeKey().getType().getShape();
  ArrayRef<int64_t> kvB = getKvBWeight().getType().getShape();
  ArrayRef<int64_t> out = getOutput().getType().getShape();
  if (!sizesAgree(q[0], latent[0]) || !sizesAgree(q[0], ropeKey[0]) ||
      !sizesAgree(q[0], out[0]))
    return emitOpError() << "token counts of query, latent, rope key and "
                            "output differ";
  if (ropeKey[1] != 1)
    return emitOpError() << "rope key is shared by all heads and must have 1 "
                            "head, got "
                         << ropeKey[1];
  int64_t heads = q[1], ropeDim = ropeKey[2], nope = q[2] - ropeDim;
  int64_t rank = latent[1], vDim = out[2];
  if (nope <= 0)
    return emitOpError() << "query head dim " << q[2]
                         << " must exceed the rope dim " << ropeDim;
  if (out[1] != heads)
    return emitOpError() << "output has " << out[1] << " heads, query has "
                         << heads;
  if (kvB[1] != rank)
    return emitOpError() << "kv_b weight reads " << kvB[1]
                         << " channels but the latent has " << rank;
  if (kvB[0] != heads * (nope + vDim))
    return emitOpError() << "kv_b weight has " << kvB[0] << " rows, expected "
                         << heads << " heads x (" << nope << " nope + "
                         << vDim << " v) = " << heads * (nope + vDim);
  if (auto cache = dyn_cast<KVCacheType>(getCache().getType())) {
    if (cache.getHeads() != heads || cache.getKeyDim() != q[2] ||
        cache.getValueDim() != vDim)
      return emitOpError() << "expanded cache must have heads = " << heads
                           << ", key_dim = " << q[2]
                           << ", value_dim = " << vDim << ", got "
                           << cache;
  } else {
    auto latentCache = cast<LatentCacheType>(getCache().getType());
    if (latentCache.getLatentDim() != rank ||
        latentCache.getRopeDim() != ropeDim)
      return emitOpError() << "latent cache must have latent_dim = " << rank
                           << ", rope_dim = " << ropeDim << ", got "
                           << latentCache;
  }
  if (failed(verifyWeightScale(*this, "kv_b weight", getKvBWeight(),
                               getScaleTensor(), getScaleLayoutAttr())))
    return failure();
  int64_t capacity =
      isa<KVCacheType>(getCache().getType())
          ? cast<KVCacheType>(getCache().getType()).getCapacity()
          : cast<LatentCacheType>(getCache().getType()).getCapacity();
  if (failed(verifyWindow(*this, getSlidingWindow(), getSinks(), capacity)))
    return failure();
  return verifyScaleAttr(*this, getScale().convertToDouble());
}

LogicalResult MLALatentAttentionOp::verify() {
  if (failed(checkRank(*this, getQueryLatent(), 3,
                       "a latent query [tokens, heads, rank]")) ||
      failed(checkRank(*this, getQueryRope(), 3,
                       "a rope query [tokens, heads, rope_dim]")) ||
      failed(checkRank(*this, getLatent(), 2, "a latent [tokens, rank]")) ||
      failed(checkRank(*this, getRopeKey(), 3,
                       "a rope key [tokens, 1, rope_dim]")) ||
      failed(
          checkRank(*this, getOutput(), 3, "an output [tokens, heads, rank]")))
    return failure();
  ArrayRef<int64_t> ql = getQueryLatent().getType().getShape();
  ArrayRef<int64_t> qr = getQueryRope().getType().getShape();
  ArrayRef<int64_t> latent = getLatent().getType().getShape();
  ArrayRef<int64_t> ropeKey = getRopeKey().getType().getShape();
  ArrayRef<int64_t> out = getOutput().getType().getShape();
  for (int64_t tokens : {qr[0], latent[0], ropeKey[0], out[0]})
    if (!sizesAgree(ql[0], tokens))
      return emitOpError() << "token counts of the queries, latent, rope key "
                              "and output differ";
  if (ropeKey[1] != 1)
    return emitOpError() << "rope key is shared by all heads and must have 1 "
                            "head, got "
                         << ropeKey[1];
  if (qr[1] != ql[1] || out[1] != ql[1])
    return emitOpError() << "latent query, rope query and output must have "
                            "the same heads, got "
                         << ql[1] << ", " << qr[1] << ", " << out[1];
  LatentCacheType cache = getCache().getType();
  int64_t rank = cache.getLatentDim(), ropeDim = cache.getRopeDim();
  if (ql[2] != rank || latent[1] != rank || out[2] != rank)
    return emitOpError() << "latent query, latent and output must have the "
                            "cache's latent_dim "
                         << rank;
  if (qr[2] != ropeDim || ropeKey[2] != ropeDim)
    return emitOpError() << "rope query and rope key must have the cache's "
                            "rope_dim "
                         << ropeDim;
  if (failed(verifyWindow(*this, getSlidingWindow(), getSinks(),
                          cache.getCapacity())))
    return failure();
  return verifyScaleAttr(*this, getScale().convertToDouble());
}

LogicalResult FoldMLAWeightOp::verify() {
  if (failed(checkRank(*this, getWeight(), 2, "a weight [rows, columns]")))
    return failure();
  ArrayRef<int64_t> w = tensorType(getWeight()).getShape();
  int64_t heads = getHeads(), nope = getNope(), rope = getRope();
  int64_t vDim = getValueDim();
  bool needsKvB = getKind() != MLAFold::query_rope;
  if (needsKvB != static_cast<bool>(getKvB()))
    return emitOpError() << stringifyMLAFold(getKind())
                         << (needsKvB ? " needs" : " takes no")
                         << " kv_b weight";
  if (isFloat8(tensorType(getWeight()).getElementType()) ||
      (getKvB() && isFloat8(tensorType(getKvB()).getElementType())))
    return emitOpError() << "folds high-precision weights only, not FP8";
  int64_t rank = 0;
  if (needsKvB) {
    if (failed(checkRank(*this, getKvB(), 2,
                         "a kv_b weight [heads * (nope + v), rank]")))
      return failure();
    ArrayRef<int64_t> kvB = tensorType(getKvB()).getShape();
    if (kvB[0] != heads * (nope + vDim))
      return emitOpError() << "kv_b weight has " << kvB[0] << " rows, expected "
                           << heads * (nope + vDim);
    rank = kvB[1];
  }
  SmallVector<int64_t> expected;
  switch (getKind()) {
  case MLAFold::query_latent:
  case MLAFold::query_rope:
    if (w[0] != heads * (nope + rope))
      return emitOpError() << "query weight has " << w[0] << " rows, expected "
                           << heads * (nope + rope);
    expected = {heads * (getKind() == MLAFold::query_latent ? rank : rope),
                w[1]};
    break;
  case MLAFold::output:
    if (w[1] != heads * vDim)
      return emitOpError() << "output weight has " << w[1]
                           << " columns, expected " << heads * vDim;
    expected = {w[0], heads * rank};
    break;
  }
  ArrayRef<int64_t> result = getResult().getType().getShape();
  if (result != ArrayRef<int64_t>(expected))
    return emitOpError() << "result must be " << shapeString(expected)
                         << ", got " << shapeString(result);
  return success();
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

LogicalResult MoEGateOp::verify() {
  if (failed(checkRank(*this, getInput(), 2, "an input [tokens, hidden]")) ||
      failed(checkRank(*this, getGateWeight(), 2,
                       "a gate weight [experts, hidden]")) ||
      failed(checkRank(*this, getWeights(), 2, "weights [tokens, top_k]")) ||
      failed(checkRank(*this, getIndices(), 2, "indices [tokens, top_k]")))
    return failure();
  ArrayRef<int64_t> gate = getGateWeight().getType().getShape();
  int64_t experts = gate[0];
  int64_t topK = getTopK(), groups = getNGroup(), keptGroups = getTopkGroup();
  if (!sizesAgree(getInput().getType().getDimSize(1), gate[1]))
    return emitOpError() << "gate weight reads " << gate[1]
                         << " features, input has "
                         << getInput().getType().getDimSize(1);
  if (topK > experts)
    return emitOpError() << "top_k (" << topK << ") exceeds the number of "
                         << "experts (" << experts << ")";
  if (groups <= 0 || experts % groups != 0)
    return emitOpError() << "n_group (" << groups
                         << ") must divide the number of experts ("
                         << experts << ")";
  if (keptGroups <= 0 || keptGroups > groups)
    return emitOpError() << "topk_group (" << keptGroups
                         << ") must be in [1, n_group = " << groups << "]";
  if (groups > 1 && experts / groups < 2)
    return emitOpError() << "group-limited routing ranks groups by their two "
                            "best experts and needs >= 2 experts per group, "
                            "got "
                         << experts / groups;
  if (topK > keptGroups * (experts / groups))
    return emitOpError() << "top_k (" << topK << ") exceeds the "
                         << keptGroups * (experts / groups)
                         << " experts of the kept groups";
  if (Value bias = getBias()) {
    ArrayRef<int64_t> biasShape = tensorType(bias).getShape();
    if (biasShape.size() != 1 || biasShape[0] != experts)
      return emitOpError() << "bias " << shapeString(biasShape)
                           << " must have shape [" << experts << "]";
  }
  for (Value result : {getWeights(), getIndices()}) {
    ArrayRef<int64_t> shape = tensorType(result).getShape();
    if (!sizesAgree(shape[0], getInput().getType().getDimSize(0)) ||
        !sizesAgree(shape[1], topK))
      return emitOpError() << "results must be [tokens, top_k = " << topK
                           << "], got " << shapeString(shape);
  }
  double factor = getRoutedScalingFactor().convertToDouble();
  if (!(factor > 0) || !std::isfinite(factor))
    return emitOpError() << "routed_scaling_factor must be positive, got "
                         << formatF64(factor);
  return success();
}

LogicalResult MoEExpertsOp::verify() {
  if (failed(checkRank(*this, getInput(), 2, "an input [tokens, hidden]")) ||
      failed(checkRank(*this, getWeights(), 2, "weights [tokens, top_k]")) ||
      failed(checkRank(*this, getIndices(), 2, "indices [tokens, top_k]")) ||
      failed(checkRank(*this, getGateWeight(), 3,
                       "gate weights [experts, inter, hidden]")) ||
      failed(checkRank(*this, getUpWeight(), 3,
                       "up weights [experts, inter, hidden]")) ||
      failed(checkRank(*this, getDownWeight(), 3,
                       "down weights [experts, hidden, inter]")))
    return failure();
  ArrayRef<int64_t> input = getInput().getType().getShape();
  ArrayRef<int64_t> gate = getGateWeight().getType().getShape();
  ArrayRef<int64_t> up = getUpWeight().getType().getShape();
  ArrayRef<int64_t> down = getDownWeight().getType().getShape();
  if (!shapesAgree(getWeights().getType().getShape(),
                   getIndices().getType().getShape()) ||
      !sizesAgree(getWeights().getType().getDimSize(0), input[0]))
    return emitOpError() << "routing weights and indices must both be "
                            "[tokens, top_k]";
  if (gate != up)
    return emitOpError() << "gate " << shapeString(gate) << " and up "
                         << shapeString(up) << " weights differ";
  if (down[0] != gate[0] || down[1] != gate[2] || down[2] != gate[1])
    return emitOpError() << "down weights " << shapeString(down)
                         << " must be [" << gate[0] << ", " << gate[2] << ", "
                         << gate[1] << "] to match gate "
                         << shapeString(gate);
  if (!sizesAgree(input[1], gate[2]))
    return emitOpError() << "experts read " << gate[2]
                         << " features, input has " << input[1];
  if (getResult().getType() != getInput().getType())
    return emitOpError() << "result type " << getResult().getType()
                         << " must equal the input type "
                         << getInput().getType();
  if (failed(verifyWeightScale(*this, "gate weights", getGateWeight(),
                               getGateScale(), getScaleLayoutAttr())) ||
      failed(verifyWeightScale(*this, "up weights", getUpWeight(), getUpScale(),
                               getScaleLayoutAttr())) ||
      failed(verifyWeightScale(*this, "down weights", getDownWeight(),
                               getDownScale(), getScaleLayoutAttr())))
    return failure();
  if (getActivationGroup() && !getGateScale())
    return emitOpError() << "activation_group quantizes activations for FP8 "
                            "or int8 expert weights, but the experts are not "
                            "quantized";
  return verifySharedExpert();
}

LogicalResult MoEExpertsOp::verifySharedExpert() {
  Value gate = getSharedGate(), up = getSharedUp(), down = getSharedDown();
  if (!gate && !up && !down) {
    if (getSharedGateScale() || getSharedUpScale() || getSharedDownScale())
      return emitOpError() << "has shared-expert scales but no shared expert";
    return success();
  }
  if (!gate || !up || !down)
    return emitOpError() << "a shared expert needs gate, up and down weights";
  if (failed(
          checkRank(*this, gate, 2, "shared gate weights [inter, hidden]")) ||
      failed(checkRank(*this, up, 2, "shared up weights [inter, hidden]")) ||
      failed(checkRank(*this, down, 2, "shared down weights [hidden, inter]")))
    return failure();
  ArrayRef<int64_t> g = tensorType(gate).getShape();
  ArrayRef<int64_t> u = tensorType(up).getShape();
  ArrayRef<int64_t> d = tensorType(down).getShape();
  int64_t hidden = getGateWeight().getType().getDimSize(2);
  if (g != u || g[1] != hidden || d[0] != hidden || d[1] != g[0])
    return emitOpError() << "shared expert weights " << shapeString(g) << ", "
                         << shapeString(u) << ", " << shapeString(d)
                         << " must be [inter, " << hidden << "] twice and ["
                         << hidden << ", inter]";
  return success(
      succeeded(verifyWeightScale(*this, "shared gate weights", gate,
                                  getSharedGateScale(),
                                  getScaleLayoutAttr())) &&
      succeeded(verifyWeightScale(*this, "shared up weights", up,
                                  getSharedUpScale(), getScaleLayoutAttr())) &&
      succeeded(verifyWeightScale(*this, "shared down weights", down,
                                  getSharedDownScale(), getScaleLayoutAttr())));
}

//===----------------------------------------------------------------------===//
// Quantization
//===----------------------------------------------------------------------===//

LogicalResult QuantizeOp::verify() {
  return verifyQuantizedPair(*this, getResult(), getScale(), getLayout(),
                             getInput());
}

LogicalResult DequantizeOp::verify() {
  return verifyQuantizedPair(*this, getInput(), getScale(), getLayout(),
                             getResult());
}
