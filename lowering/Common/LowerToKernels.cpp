//===- LowerToKernels.cpp - entry points -> kernels + schedule --*- C++ -*-===//
//
// An entry point is a straight-line list of xfmr ops. Each op becomes calls
// of kernels (lowering/Kernels) on buffers: the schedule allocates an f32
// buffer per result, views weights and caches inside the two blobs the entry
// ABI passes in, and frees each buffer after the last op that reads it (or
// any view of it). The old tensor-level function is replaced.
//
//===----------------------------------------------------------------------===//

#include "lowering/Passes.h"
#include "lowering/CPU/Kernels/Kernels.h"

#include "dialects/Xfmr/XfmrOps.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/MathExtras.h"

namespace xfmr {
#define GEN_PASS_DEF_LOWERTOKERNELS
#include "lowering/Passes.h.inc"
} // namespace xfmr

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

namespace {

constexpr int64_t kAlignment = 64;

int64_t alignTo(int64_t value) { return llvm::alignTo(value, kAlignment); }

int64_t elementBytes(Type type) {
  return (type.getIntOrFloatBitWidth() + 7) / 8;
}

/// Where each distinct weight lives in the weight blob.
struct WeightSlot {
  int64_t offset;
  int64_t bytes;
  RankedTensorType type;
};

/// The blob slots of the codes and scales of a weight quantized at compile
/// time, keyed by source name, layout and element type.
std::string quantizedWeightKey(QuantizeOp quantize, StringRef part) {
  std::string key;
  llvm::raw_string_ostream os(key);
  os << cast<WeightOp>(quantize.getInput().getDefiningOp()).getName() << "#"
     << part << "#" << quantize.getLayout() << "#"
     << quantize.getResult().getType().getElementType();
  return key;
}

/// Cache element types the CPU lowering implements.
bool isSupportedCacheElement(Type type) {
  return type.isF32() || type.isBF16() || type.isF16() ||
         isa<Float8E4M3FNType>(type) || type.isInteger(8);
}

int64_t cacheCodeBytes(KVCacheType cache) {
  return cache.getCapacity() * cache.getHeads() *
         (cache.getKeyDim() + cache.getValueDim()) *
         elementBytes(cache.getElementType());
}

/// Where the parts of a latent cache's slot live, relative to its offset:
/// the latent codes, their scales (8-bit only) and k_pe.
struct LatentLayout {
  int64_t scalesOffset;
  int64_t ropeOffset;
  int64_t bytes;
};

LatentLayout latentLayout(LatentCacheType cache) {
  int64_t latentBytes = cache.getCapacity() * cache.getLatentDim() *
                        elementBytes(cache.getElementType());
  int64_t scaleBytes = cache.getCapacity() * cache.scaleBlocks() * 4;
  int64_t scalesOffset = alignTo(latentBytes);
  int64_t ropeOffset = scaleBytes ? alignTo(scalesOffset + scaleBytes)
                                  : scalesOffset;
  int64_t ropeBytes = cache.getCapacity() * cache.getRopeDim() *
                      elementBytes(cache.ropeElementType());
  return {scalesOffset, ropeOffset, ropeOffset + ropeBytes};
}

/// The kernels' view of a latent cache's storage.
kernels::LatentCacheFormat latentFormat(LatentCacheType cache) {
  return {weightFormatOf(cache.getElementType()),
          weightFormatOf(cache.ropeElementType()), cache.scaleBlocks()};
}

/// True when every user of `weight` derives another weight from it at
/// compile time (FP8 codes and scales, folded MLA products): only those are
/// stored.
bool onlyDerived(WeightOp weight) {
  return !weight->use_empty() &&
         llvm::all_of(weight->getUsers(), [](Operation *user) {
           return isa<QuantizeOp, FoldMLAWeightOp>(user);
         });
}

/// The blob slot of a folded MLA weight, keyed by everything its value
/// depends on: kind, sources, head shape and stored type.
std::string foldedWeightKey(FoldMLAWeightOp fold) {
  std::string key =
      "fold#" + stringifyMLAFold(fold.getKind()).str() + "#" +
      cast<WeightOp>(fold.getWeight().getDefiningOp()).getName().str();
  if (Value kvB = fold.getKvB())
    key += "#" + cast<WeightOp>(kvB.getDefiningOp()).getName().str();
  llvm::raw_string_ostream os(key);
  os << "#" << fold.getHeads() << "x" << fold.getNope() << "x" << fold.getRope()
     << "x" << fold.getValueDim() << "#" << fold.getResult().getType();
  return key;
}

/// Where each layer's cache lives in the cache blob.
/// 8-bit caches keep their per-entry scales after the codes:
/// [capacity, heads, 2] f32 at offset + alignTo(codeBytes).
struct CacheSlot {
  int64_t offset;
  int64_t bytes;
  Type type;
};

/// An optional non-negative attribute (sliding_window, sinks) as int64_t.
std::optional<int64_t> asInt(std::optional<uint64_t> value) {
  if (!value)
    return std::nullopt;
  return static_cast<int64_t>(*value);
}

/// Where the per-expert token counters of one MoE layer live in the cache
/// blob: `experts` i64 at `offset`. The n-th xfmr.moe_experts of every entry
/// point counts into the n-th slot.
struct CounterSlot {
  int64_t offset;
  int64_t experts;
};

/// Emits the schedule of one entry point.
class ScheduleEmitter {
public:
  ScheduleEmitter(KernelLibrary &lib,
                  const llvm::StringMap<WeightSlot> &weights,
                  ArrayRef<CacheSlot> caches, ArrayRef<CounterSlot> counters)
      : lib(lib), weights(weights), caches(caches), counters(counters) {}

  LogicalResult emit(func::FuncOp old);

private:
  // Buffers.
  Value alloc(ArrayRef<int64_t> trailing, Type element = {});
  /// Records that `value` lives in `buffer`; `owned` buffers were allocated
  /// by the schedule and are freed after the last reader of their value (or
  /// of views of it).
  void bind(Value value, Value buffer, bool owned) {
    buffers[value] = buffer;
    if (owned)
      ownedBuffers[value] = buffer;
  }
  Value buffer(Value value) { return buffers.lookup(value); }
  Value flat(Value buffer);
  void call(func::FuncOp kernel, ValueRange args) {
    func::CallOp::create(*b, loc, kernel, args);
  }
  WeightOperand weightOperand(Value weight, Value scale,
                              ScaleLayoutAttr layout, Operation *op,
                              bool &ok);

  LogicalResult emitOp(Operation *op);
  /// A view of the weight-blob slot `key` in its storage type.
  Value weightView(StringRef key);
  /// Appends `latent` and `ropeKey` at `start` to the latent cache value
  /// `cache`, binds `newCache` to the same storage and returns it (latent,
  /// [scales], k_pe) for the attention kernel.
  SmallVector<Value> appendLatent(Value cache, Value newCache, Value latent,
                                  Value ropeKey, std::optional<int64_t> sinks);

  KernelLibrary &lib;
  const llvm::StringMap<WeightSlot> &weights;
  ArrayRef<CacheSlot> caches;
  ArrayRef<CounterSlot> counters;
  /// The counter slot of the next xfmr.moe_experts.
  size_t nextCounter = 0;

  std::optional<OpBuilder> b;
  Location loc = UnknownLoc::get(lib.getModule().getContext());
  Value tokens, start, weightBlob, cacheBlob, logitsOut, logitsValue;
  llvm::DenseMap<Value, Value> buffers;
  /// The scale buffers of 8-bit caches, by cache value.
  llvm::DenseMap<Value, Value> cacheScales;
  /// Latent caches: the k_pe view of each cache value (the value's buffer is
  /// the latent, cacheScales its scales).
  llvm::DenseMap<Value, Value> latentRope;
  /// Values whose buffer the schedule allocated, and that buffer.
  llvm::MapVector<Value, Value> ownedBuffers;
};

Value ScheduleEmitter::alloc(ArrayRef<int64_t> trailing, Type element) {
  SmallVector<int64_t> shape{ShapedType::kDynamic};
  shape.append(trailing.begin(), trailing.end());
  auto type = MemRefType::get(shape, element ? element : b->getF32Type());
  return memref::AllocOp::create(*b, loc, type, ValueRange{tokens},
                                    b->getI64IntegerAttr(kAlignment));
}

Value ScheduleEmitter::flat(Value value) {
  auto type = cast<MemRefType>(value.getType());
  ReassociationIndices all;
  for (int64_t i = 0; i < type.getRank(); ++i)
    all.push_back(i);
  return memref::CollapseShapeOp::create(*b, loc, value,
                                            ArrayRef<ReassociationIndices>{all});
}

WeightOperand ScheduleEmitter::weightOperand(Value weight, Value scale,
                                             ScaleLayoutAttr layout,
                                             Operation *op, bool &ok) {
  WeightOperand operand;
  operand.format =
      weightFormatOf(cast<RankedTensorType>(weight.getType()).getElementType());
  if (scale) {
    if (!layout || layout.getKind() != ScaleKind::block) {
      op->emitOpError() << "the CPU lowering supports block scale layouts "
                           "only, got "
                        << layout;
      ok = false;
      return operand;
    }
    operand.blockScale = {layout.getBlock()[0], layout.getBlock()[1]};
  }
  return operand;
}

Value ScheduleEmitter::weightView(StringRef key) {
  const WeightSlot &slot = weights.find(key)->second;
  auto type = MemRefType::get(
      slot.type.getShape(),
      storageTypeOf(weightFormatOf(slot.type.getElementType()),
                    b->getContext()));
  return memref::ViewOp::create(*b, loc, type, weightBlob,
                                index(*b, loc, slot.offset), ValueRange{});
}

SmallVector<Value> ScheduleEmitter::appendLatent(Value cache, Value newCache,
                                                 Value latent, Value ropeKey,
                                                 std::optional<int64_t> sinks) {
  auto type = cast<LatentCacheType>(cache.getType());
  Value cacheBuffer = buffer(cache);
  Value scales = cacheScales.lookup(cache);
  Value ropeBuffer = latentRope.lookup(cache);
  SmallVector<Value> storage{cacheBuffer};
  if (scales)
    storage.push_back(scales);
  storage.push_back(ropeBuffer);
  SmallVector<Value> writeArgs{buffer(latent), buffer(ropeKey)};
  writeArgs.append(storage);
  writeArgs.push_back(start);
  call(latentCacheWrite(lib, type.getCapacity(), type.getLatentDim(),
                        type.getRopeDim(), latentFormat(type), sinks),
       writeArgs);
  bind(newCache, cacheBuffer, false);
  if (scales)
    cacheScales[newCache] = scales;
  latentRope[newCache] = ropeBuffer;
  return storage;
}

LogicalResult ScheduleEmitter::emitOp(Operation *op) {
  auto outOrLogits = [&](Value result, ArrayRef<int64_t> trailing) {
    // The op producing the returned logits writes straight into the
    // caller's buffer.
    Value buffer = result == logitsValue ? logitsOut : alloc(trailing);
    bind(result, buffer, result != logitsValue);
    return buffer;
  };
  auto dims = [](Value v) {
    return cast<RankedTensorType>(v.getType()).getShape().drop_front();
  };

  if (auto weight = dyn_cast<WeightOp>(op)) {
    if (onlyDerived(weight))
      return success(); // its quantize reads the packed codes instead
    bind(weight.getResult(), weightView(weight.getName()), false);
    return success();
  }
  if (auto embed = dyn_cast<EmbeddingOp>(op)) {
    auto table = embed.getTable().getType();
    Value result = outOrLogits(embed.getResult(), dims(embed.getResult()));
    call(embedding(lib, table.getDimSize(0), table.getDimSize(1),
                   weightFormatOf(table.getElementType())),
         {buffer(embed.getTable()), buffer(embed.getIds()), result});
    return success();
  }
  if (auto norm = dyn_cast<RMSNormOp>(op)) {
    if (norm.getInput().getType().getRank() != 2)
      return op->emitOpError("the CPU lowering supports rank-2 inputs only");
    int64_t hidden = norm.getWeight().getType().getDimSize(0);
    Value result = outOrLogits(norm.getResult(), {hidden});
    call(rmsNorm(lib, hidden,
                 weightFormatOf(norm.getWeight().getType().getElementType()),
                 norm.getEps().convertToDouble()),
         {buffer(norm.getInput()), buffer(norm.getWeight()), result});
    return success();
  }
  if (auto lin = dyn_cast<LinearOp>(op)) {
    if (lin.getInput().getType().getRank() != 2)
      return op->emitOpError("the CPU lowering supports rank-2 inputs only");
    bool ok = true;
    WeightOperand weight = weightOperand(lin.getWeight(), lin.getScale(),
                                         lin.getScaleLayoutAttr(), op, ok);
    if (!ok)
      return failure();
    auto w = lin.getWeight().getType();
    std::optional<WeightFormat> bias;
    SmallVector<Value> args{buffer(lin.getInput()), buffer(lin.getWeight())};
    if (Value biasValue = lin.getBias()) {
      bias = weightFormatOf(
          cast<RankedTensorType>(biasValue.getType()).getElementType());
      args.push_back(buffer(biasValue));
    }
    if (Value scale = lin.getScale())
      args.push_back(buffer(scale));
    args.push_back(outOrLogits(lin.getResult(), {w.getDimSize(0)}));
    call(linear(lib, w.getDimSize(1), w.getDimSize(0), weight, bias), args);
    return success();
  }
  if (isa<AddOp, MulOp, SwiGLUOp, SiluOp, GeluOp>(op)) {
    Elementwise kind =
        TypeSwitch<Operation *, Elementwise>(op)
            .Case([](AddOp) { return Elementwise::Add; })
            .Case([](MulOp) { return Elementwise::Mul; })
            .Case([](SwiGLUOp) { return Elementwise::SwiGLU; })
            .Case([](SiluOp) { return Elementwise::Silu; })
            .Case([](GeluOp gelu) {
              return gelu.getApproximate() ? Elementwise::GeluTanh
                                           : Elementwise::Gelu;
            });
    Value result = outOrLogits(op->getResult(0), dims(op->getResult(0)));
    SmallVector<Value> args;
    for (Value operand : op->getOperands())
      args.push_back(flat(buffer(operand)));
    args.push_back(flat(result));
    call(elementwise(lib, kind), args);
    return success();
  }
  if (auto split = dyn_cast<SplitHeadsOp>(op)) {
    ArrayRef<int64_t> shape = split.getType().getShape();
    Value view = memref::ExpandShapeOp::create(*b, 
        loc,
        MemRefType::get({ShapedType::kDynamic, shape[1], shape[2]},
                        b->getF32Type()),
        buffer(split.getInput()),
        ArrayRef<ReassociationIndices>{{0}, {1, 2}},
        ArrayRef<OpFoldResult>{tokens, b->getIndexAttr(shape[1]),
                               b->getIndexAttr(shape[2])});
    bind(split.getResult(), view, false);
    return success();
  }
  if (auto merge = dyn_cast<MergeHeadsOp>(op)) {
    Value view = memref::CollapseShapeOp::create(*b, 
        loc, buffer(merge.getInput()),
        ArrayRef<ReassociationIndices>{{0}, {1, 2}});
    bind(merge.getResult(), view, false);
    return success();
  }
  if (auto split = dyn_cast<SplitOp>(op)) {
    if (split.getInput().getType().getRank() != 2)
      return op->emitOpError("the CPU lowering supports rank-2 inputs only");
    int64_t inDim = split.getInput().getType().getDimSize(1), offset = 0;
    for (Value result : split.getResults()) {
      int64_t piece = cast<RankedTensorType>(result.getType()).getDimSize(1);
      Value target = outOrLogits(result, {piece});
      call(sliceColumns(lib, inDim, offset, piece),
           {buffer(split.getInput()), target});
      offset += piece;
    }
    return success();
  }
  if (auto rotary = dyn_cast<RopeOp>(op)) {
    ArrayRef<int64_t> shape = rotary.getType().getShape();
    Value result = outOrLogits(rotary.getResult(), {shape[1], shape[2]});
    call(rope(lib, shape[1], shape[2], rotary.getConfig()),
         {buffer(rotary.getInput()), start, result});
    return success();
  }
  if (auto attn = dyn_cast<AttentionOp>(op)) {
    KVCacheType cache = attn.getCache().getType();
    WeightFormat format = weightFormatOf(cache.getElementType());
    Value cacheBuffer = buffer(attn.getCache());
    Value scales = cacheScales.lookup(attn.getCache());
    auto withScales = [&](SmallVector<Value> args, size_t position) {
      if (scales)
        args.insert(args.begin() + position, scales);
      return args;
    };
    ArrayRef<int64_t> q = attn.getQuery().getType().getShape();
    std::optional<int64_t> sinks = asInt(attn.getSinks());
    call(cacheWrite(lib, cache.getCapacity(), cache.getHeads(),
                    cache.getKeyDim(), cache.getValueDim(), format, sinks),
         withScales({buffer(attn.getKey()), buffer(attn.getValue()),
                     cacheBuffer, start},
                    3));
    Value result = outOrLogits(attn.getOutput(), {q[1], cache.getValueDim()});
    std::optional<int64_t> window = asInt(attn.getSlidingWindow());
    call(attend(lib, cache.getCapacity(), q[1], cache.getHeads(),
                cache.getKeyDim(), cache.getValueDim(),
                attn.getScale().convertToDouble(), window, format, sinks),
         withScales({buffer(attn.getQuery()), cacheBuffer, start, result}, 2));
    bind(attn.getNewCache(), cacheBuffer, false);
    if (scales)
      cacheScales[attn.getNewCache()] = scales;
    return success();
  }
  if (auto mla = dyn_cast<MLAAttentionOp>(op)) {
    std::optional<int64_t> window = asInt(mla.getSlidingWindow());
    std::optional<int64_t> sinks = asInt(mla.getSinks());
    if (auto latentCache = dyn_cast<LatentCacheType>(mla.getCache().getType())) {
      bool ok = true;
      WeightOperand weight =
          weightOperand(mla.getKvBWeight(), mla.getScaleTensor(),
                        mla.getScaleLayoutAttr(), op, ok);
      if (!ok)
        return failure();
      int64_t heads = mla.getQuery().getType().getDimSize(1);
      int64_t ropeDim = latentCache.getRopeDim();
      int64_t nope = mla.getQuery().getType().getDimSize(2) - ropeDim;
      int64_t rank = latentCache.getLatentDim();
      int64_t valueDim = mla.getOutput().getType().getDimSize(2);
      SmallVector<Value> kvB{buffer(mla.getKvBWeight())};
      if (Value scale = mla.getScaleTensor())
        kvB.push_back(buffer(scale));
      Value queryLatent = alloc({heads, rank});
      SmallVector<Value> absorbArgs{buffer(mla.getQuery())};
      absorbArgs.append(kvB);
      absorbArgs.push_back(queryLatent);
      call(mlaAbsorbQuery(lib, heads, nope, ropeDim, valueDim, rank, weight),
           absorbArgs);
      SmallVector<Value> storage =
          appendLatent(mla.getCache(), mla.getNewCache(), mla.getLatent(),
                       mla.getRopeKey(), sinks);
      kernels::LatentCacheFormat format = latentFormat(latentCache);
      Value outputLatent = alloc({heads, rank});
      SmallVector<Value> attendArgs{queryLatent, buffer(mla.getQuery())};
      attendArgs.append(storage);
      attendArgs.push_back(start);
      attendArgs.push_back(outputLatent);
      call(latentAttend(lib, latentCache.getCapacity(), heads, nope, ropeDim,
                        rank, mla.getScale().convertToDouble(), format,
                        window, sinks),
           attendArgs);
      memref::DeallocOp::create(*b, loc, queryLatent);
      Value result = outOrLogits(mla.getOutput(), {heads, valueDim});
      SmallVector<Value> outputArgs{outputLatent};
      outputArgs.append(kvB);
      outputArgs.push_back(result);
      call(mlaAbsorbOutput(lib, heads, nope, valueDim, rank, weight),
           outputArgs);
      memref::DeallocOp::create(*b, loc, outputLatent);
      return success();
    }
    auto cache = cast<KVCacheType>(mla.getCache().getType());
    WeightFormat cacheFormat = weightFormatOf(cache.getElementType());
    Value scales = cacheScales.lookup(mla.getCache());
    bool ok = true;
    WeightOperand weight =
        weightOperand(mla.getKvBWeight(), mla.getScaleTensor(),
                      mla.getScaleLayoutAttr(), op, ok);
    if (!ok)
      return failure();
    auto kvB = mla.getKvBWeight().getType();
    int64_t heads = cache.getHeads(), valueDim = cache.getValueDim();
    int64_t ropeDim = mla.getRopeKey().getType().getDimSize(2);
    int64_t nope = cache.getKeyDim() - ropeDim;
    // Expand keys and values from the latent, write them to the cache.
    Value kv = alloc({kvB.getDimSize(0)});
    SmallVector<Value> args{buffer(mla.getLatent()), buffer(mla.getKvBWeight())};
    if (Value scale = mla.getScaleTensor())
      args.push_back(buffer(scale));
    args.push_back(kv);
    call(linear(lib, kvB.getDimSize(1), kvB.getDimSize(0), weight,
                std::nullopt),
         args);
    Value cacheBuffer = buffer(mla.getCache());
    SmallVector<Value> writeArgs{kv, buffer(mla.getRopeKey()), cacheBuffer};
    if (scales)
      writeArgs.push_back(scales);
    writeArgs.push_back(start);
    call(mlaCacheWrite(lib, cache.getCapacity(), heads, nope, ropeDim,
                       valueDim, cacheFormat, sinks),
         writeArgs);
    memref::DeallocOp::create(*b, loc, kv);
    Value result = outOrLogits(mla.getOutput(), {heads, valueDim});
    SmallVector<Value> attendArgs{buffer(mla.getQuery()), cacheBuffer};
    if (scales)
      attendArgs.push_back(scales);
    attendArgs.push_back(start);
    attendArgs.push_back(result);
    call(attend(lib, cache.getCapacity(), heads, heads, cache.getKeyDim(),
                valueDim, mla.getScale().convertToDouble(), window,
                cacheFormat, sinks),
         attendArgs);
    bind(mla.getNewCache(), cacheBuffer, false);
    if (scales)
      cacheScales[mla.getNewCache()] = scales;
    return success();
  }
  if (auto gate = dyn_cast<MoEGateOp>(op)) {
    auto w = gate.getGateWeight().getType();
    int64_t experts = w.getDimSize(0), topK = gate.getTopK();
    Value logits = alloc({experts});
    WeightOperand weight;
    weight.format = weightFormatOf(w.getElementType());
    if (weight.format == WeightFormat::F8E4M3FN ||
        weight.format == WeightFormat::F8E5M2)
      return op->emitOpError("the CPU lowering needs a high-precision router");
    call(linear(lib, w.getDimSize(1), experts, weight, std::nullopt),
         {buffer(gate.getInput()), buffer(gate.getGateWeight()), logits});
    Value weightsBuffer = outOrLogits(gate.getWeights(), {topK});
    Value indicesBuffer = alloc({topK}, b->getI32Type());
    bind(gate.getIndices(), indicesBuffer, true);
    SmallVector<Value> args{logits};
    if (Value bias = gate.getBias())
      args.push_back(buffer(bias));
    args.push_back(weightsBuffer);
    args.push_back(indicesBuffer);
    call(moeRoute(lib, gate), args);
    memref::DeallocOp::create(*b, loc, logits);
    return success();
  }
  if (auto experts = dyn_cast<MoEExpertsOp>(op)) {
    auto gateType = experts.getGateWeight().getType();
    Type element = gateType.getElementType();
    if (experts.getUpWeight().getType().getElementType() != element ||
        experts.getDownWeight().getType().getElementType() != element)
      return op->emitOpError("the CPU lowering needs one element type for "
                             "all expert weights");
    bool ok = true;
    WeightOperand weight =
        weightOperand(experts.getGateWeight(), experts.getGateScale(),
                      experts.getScaleLayoutAttr(), op, ok);
    if (!ok)
      return failure();
    int64_t count = gateType.getDimSize(0), inter = gateType.getDimSize(1);
    int64_t hidden = gateType.getDimSize(2);
    int64_t topK = experts.getWeights().getType().getDimSize(1);
    const CounterSlot &counter = counters[nextCounter++];
    Value counts = memref::ViewOp::create(
        *b, loc, MemRefType::get({count}, b->getI64Type()), cacheBlob,
        index(*b, loc, counter.offset), ValueRange{});
    Value result = outOrLogits(experts.getResult(), {hidden});
    SmallVector<Value> args{buffer(experts.getInput()),
                            buffer(experts.getWeights()),
                            buffer(experts.getIndices()),
                            buffer(experts.getGateWeight()),
                            buffer(experts.getUpWeight()),
                            buffer(experts.getDownWeight())};
    if (weight.blockScale) {
      args.push_back(buffer(experts.getGateScale()));
      args.push_back(buffer(experts.getUpScale()));
      args.push_back(buffer(experts.getDownScale()));
    }
    std::optional<SharedExpert> shared;
    if (Value sharedGate = experts.getSharedGate()) {
      auto sharedType = cast<RankedTensorType>(sharedGate.getType());
      for (Value w : {experts.getSharedUp(), experts.getSharedDown()})
        if (cast<RankedTensorType>(w.getType()).getElementType() !=
            sharedType.getElementType())
          return op->emitOpError("the CPU lowering needs one element type "
                                 "for the shared expert's weights");
      WeightOperand sharedWeight =
          weightOperand(sharedGate, experts.getSharedGateScale(),
                        experts.getScaleLayoutAttr(), op, ok);
      if (!ok)
        return failure();
      shared = SharedExpert{sharedType.getDimSize(0), sharedWeight};
      args.push_back(buffer(sharedGate));
      args.push_back(buffer(experts.getSharedUp()));
      args.push_back(buffer(experts.getSharedDown()));
      if (sharedWeight.blockScale) {
        args.push_back(buffer(experts.getSharedGateScale()));
        args.push_back(buffer(experts.getSharedUpScale()));
        args.push_back(buffer(experts.getSharedDownScale()));
      }
    }
    args.push_back(counts);
    args.push_back(result);
    call(moeExperts(lib, count, inter, hidden, topK, weight,
                    experts.getDispatch(), shared,
                    asInt(experts.getActivationGroup())),
         args);
    return success();
  }
  if (auto fold = dyn_cast<FoldMLAWeightOp>(op)) {
    // Evaluated at compile time: a view of the packed product.
    bind(fold.getResult(), weightView(foldedWeightKey(fold)), false);
    return success();
  }
  if (auto mla = dyn_cast<MLALatentAttentionOp>(op)) {
    std::optional<int64_t> window = asInt(mla.getSlidingWindow());
    std::optional<int64_t> sinks = asInt(mla.getSinks());
    LatentCacheType cache = mla.getCache().getType();
    int64_t heads = mla.getQueryLatent().getType().getDimSize(1);
    int64_t rank = cache.getLatentDim(), ropeDim = cache.getRopeDim();
    SmallVector<Value> storage =
        appendLatent(mla.getCache(), mla.getNewCache(), mla.getLatent(),
                     mla.getRopeKey(), sinks);
    // The rope query is the whole "query" of the kernel (no no-rope part).
    SmallVector<Value> attendArgs{buffer(mla.getQueryLatent()),
                                  buffer(mla.getQueryRope())};
    attendArgs.append(storage);
    attendArgs.push_back(start);
    attendArgs.push_back(outOrLogits(mla.getOutput(), {heads, rank}));
    call(latentAttend(lib, cache.getCapacity(), heads, /*nope=*/0, ropeDim,
                      rank, mla.getScale().convertToDouble(),
                      latentFormat(cache), window, sinks),
         attendArgs);
    return success();
  }
  if (auto quantize = dyn_cast<QuantizeOp>(op)) {
    if (quantize.getInput().getDefiningOp<WeightOp>()) {
      // Evaluated at compile time: views of the packed codes and scales.
      for (auto [result, part] :
           {std::pair(quantize.getResult(), "codes"),
            std::pair(quantize.getScale(), "scales")}) {
        bind(result, weightView(quantizedWeightKey(quantize, part)), false);
      }
      return success();
    }
    // Activations: only quantize-then-dequantize (fused below) is supported.
    for (Operation *user : quantize->getUsers())
      if (!isa<DequantizeOp>(user))
        return user->emitOpError()
               << "uses quantized activations directly; the CPU lowering "
                  "supports them only through xfmr.dequantize";
    return success();
  }
  if (auto dequantize = dyn_cast<DequantizeOp>(op)) {
    auto quantize = dequantize.getInput().getDefiningOp<QuantizeOp>();
    ScaleLayoutAttr layout = dequantize.getLayout();
    if (!quantize || quantize.getInput().getDefiningOp<WeightOp>() ||
        quantize.getLayout() != layout ||
        quantize.getScale() != dequantize.getScale())
      return op->emitOpError()
             << "the CPU lowering dequantizes only what an xfmr.quantize of "
                "activations produced, with the same layout";
    auto type = dequantize.getType();
    if (type.getRank() != 2 || layout.getKind() != ScaleKind::block ||
        layout.getBlock()[0] != 1)
      return op->emitOpError()
             << "the CPU lowering quantizes activations per token in groups "
                "(block [1, G] on [tokens, channels]), got "
             << layout;
    int64_t channels = type.getDimSize(1);
    Value result = outOrLogits(dequantize.getResult(), {channels});
    call(fakeQuantize(lib, channels, layout.getBlock()[1],
                      weightFormatOf(dequantize.getInput()
                                         .getType()
                                         .getElementType())),
         {buffer(quantize.getInput()), result});
    return success();
  }
  return op->emitOpError()
         << "is not supported by the CPU lowering (xfmr-lower-to-kernels)";
}

LogicalResult ScheduleEmitter::emit(func::FuncOp old) {
  MLIRContext *context = old.getContext();
  auto ret = cast<func::ReturnOp>(old.getBody().front().getTerminator());
  logitsValue = ret.getOperand(0);
  int64_t vocab = cast<RankedTensorType>(logitsValue.getType()).getDimSize(1);

  OpBuilder builder(old);
  b.emplace(builder);
  loc = old.getLoc();
  Type i8 = b->getI8Type();
  auto dynamic = ShapedType::kDynamic;
  SmallVector<Type> inputs{MemRefType::get({dynamic}, b->getI32Type()),
                           b->getIndexType(), MemRefType::get({dynamic}, i8),
                           MemRefType::get({dynamic}, i8),
                           MemRefType::get({dynamic, vocab}, b->getF32Type())};
  auto func = func::FuncOp::create(*b, loc, old.getName(),
                                      b->getFunctionType(inputs, {}));
  func->setAttr("llvm.emit_c_interface", UnitAttr::get(context));
  func->setAttr(kEntryAttrName, old->getAttr(kEntryAttrName));
  Block *entry = func.addEntryBlock();
  b->setInsertionPointToStart(entry);
  Value ids = entry->getArgument(0);
  start = entry->getArgument(1);
  weightBlob = entry->getArgument(2);
  cacheBlob = entry->getArgument(3);
  logitsOut = entry->getArgument(4);
  tokens = memref::DimOp::create(*b, loc, ids, 0);

  Block &body = old.getBody().front();
  bind(body.getArgument(0), ids, false);
  bind(body.getArgument(1), start, false);
  for (auto [i, slot] : llvm::enumerate(caches)) {
    if (auto latent = dyn_cast<LatentCacheType>(slot.type)) {
      LatentLayout layout = latentLayout(latent);
      kernels::LatentCacheFormat format = latentFormat(latent);
      auto view = [&](ArrayRef<int64_t> shape, Type element, int64_t offset) {
        return memref::ViewOp::create(
            *b, loc, MemRefType::get(shape, element), cacheBlob,
            index(*b, loc, slot.offset + offset), ValueRange{});
      };
      Value arg = body.getArgument(2 + i);
      bind(arg,
           view({latent.getCapacity(), latent.getLatentDim()},
                storageTypeOf(format.format, b->getContext()), 0),
           false);
      if (latent.hasScales())
        cacheScales[arg] = view({latent.getCapacity(), latent.scaleBlocks()},
                                b->getF32Type(), layout.scalesOffset);
      latentRope[arg] =
          view({latent.getCapacity(), latent.getRopeDim()},
               storageTypeOf(format.ropeFormat, b->getContext()),
               layout.ropeOffset);
      continue;
    }
    auto cacheType = cast<KVCacheType>(slot.type);
    auto type = MemRefType::get(
        {cacheType.getCapacity(), cacheType.getHeads(),
         cacheType.getKeyDim() + cacheType.getValueDim()},
        storageTypeOf(weightFormatOf(cacheType.getElementType()),
                      b->getContext()));
    Value view = memref::ViewOp::create(*b, loc, type, cacheBlob,
                                           index(*b, loc, slot.offset),
                                           ValueRange{});
    bind(body.getArgument(2 + i), view, false);
    if (cacheType.hasScales()) {
      auto scaleType = MemRefType::get(
          {cacheType.getCapacity(), cacheType.getHeads(), 2}, b->getF32Type());
      cacheScales[body.getArgument(2 + i)] = memref::ViewOp::create(
          *b, loc, scaleType, cacheBlob,
          index(*b, loc, slot.offset + alignTo(cacheCodeBytes(cacheType))),
          ValueRange{});
    }
  }

  // Head reshapes are views: a value's storage is that of its root.
  SmallVector<Operation *> ops;
  for (Operation &op : body.without_terminator())
    ops.push_back(&op);
  llvm::DenseMap<Value, Value> rootOf;
  llvm::DenseMap<Value, int64_t> lastRead;
  for (auto [i, op] : llvm::enumerate(ops)) {
    for (Value result : op->getResults()) {
      Value root = result;
      if (isa<SplitHeadsOp, MergeHeadsOp>(op))
        root = rootOf.lookup(op->getOperand(0));
      rootOf[result] = root;
      lastRead.try_emplace(root, int64_t(i));
    }
    for (Value operand : op->getOperands())
      if (Value root = rootOf.lookup(operand))
        lastRead[root] = int64_t(i);
    // A dequantize reads the activations its quantize was given.
    if (auto dequantize = dyn_cast<DequantizeOp>(op))
      if (auto quantize = dequantize.getInput().getDefiningOp<QuantizeOp>())
        if (Value root = rootOf.lookup(quantize.getInput()))
          lastRead[root] = int64_t(i);
  }

  for (auto [i, op] : llvm::enumerate(ops)) {
    loc = op->getLoc();
    if (failed(emitOp(op)))
      return failure();
    // Free every owned buffer whose storage no later op reads.
    for (auto &[value, owned] : ownedBuffers) {
      if (owned && lastRead.lookup(rootOf.lookup(value)) == int64_t(i)) {
        memref::DeallocOp::create(*b, loc, owned);
        owned = Value();
      }
    }
  }
  if (!buffers.count(logitsValue))
    return old.emitOpError("returns logits that no op produced");
  if (buffer(logitsValue) != logitsOut) {
    // The logits came from an op that could not write in place: copy.
    call(elementwise(lib, Elementwise::Copy),
         {flat(buffer(logitsValue)), flat(logitsOut)});
  }
  for (auto &[value, owned] : ownedBuffers)
    if (owned)
      memref::DeallocOp::create(*b, loc, owned);
  func::ReturnOp::create(*b, loc);
  return success();
}

struct LowerToKernelsPass
    : xfmr::impl::LowerToKernelsBase<LowerToKernelsPass> {
  void runOnOperation() override;
};

/// Checks that `func` has the importer's entry signature: (ids, start,
/// caches...) -> (logits, caches...).
LogicalResult checkEntrySignature(func::FuncOp func) {
  if (auto kind = func->getAttrOfType<StringAttr>(kEntryAttrName);
      kind && kind.getValue() == "mtp")
    return func.emitOpError("the multi-token-prediction entry point ('mtp') "
                            "is not compiled yet; import without --mtp");
  FunctionType type = func.getFunctionType();
  auto ids = type.getNumInputs() > 0
                 ? dyn_cast<RankedTensorType>(type.getInput(0))
                 : RankedTensorType();
  if (!ids || ids.getRank() != 1 || !ids.getElementType().isInteger(32) ||
      type.getNumInputs() < 2 || !type.getInput(1).isIndex())
    return func.emitOpError("entry point must take (tensor<?xi32> ids, index "
                            "start, caches...)");
  if (type.getNumResults() != type.getNumInputs() - 1)
    return func.emitOpError("entry point must return (logits, caches...)");
  auto logits = dyn_cast<RankedTensorType>(type.getResult(0));
  if (!logits || logits.getRank() != 2 || !logits.getElementType().isF32())
    return func.emitOpError("entry point must return f32 logits [tokens, "
                            "vocab] first");
  for (unsigned i = 2; i < type.getNumInputs(); ++i) {
    if (type.getInput(i) != type.getResult(i - 1))
      return func.emitOpError("cache argument ")
             << i << " and its returned update differ in type";
    auto latent = dyn_cast<LatentCacheType>(type.getInput(i));
    if (!isa<KVCacheType>(type.getInput(i)) && !latent)
      return func.emitOpError("argument ")
             << i << " must be a !xfmr.kv_cache or a !xfmr.latent_cache";
    if (latent && !isSupportedCacheElement(latent.getElementType()))
      return func.emitOpError("the CPU lowering supports f32, bf16, f16, "
                              "f8E4M3FN and i8 latent caches, got ")
             << latent;
  }
  if (func.getBody().getBlocks().size() != 1)
    return func.emitOpError("entry point must be a single block");
  return success();
}

void LowerToKernelsPass::runOnOperation() {
  ModuleOp module = getOperation();
  SmallVector<func::FuncOp> entries;
  for (auto func : module.getOps<func::FuncOp>()) {
    if (!func->hasAttr(kEntryAttrName)) {
      func.emitOpError("is not an entry point; the CPU lowering compiles "
                       "modules of entry points only");
      return signalPassFailure();
    }
    if (failed(checkEntrySignature(func)))
      return signalPassFailure();
    entries.push_back(func);
  }
  if (entries.empty()) {
    module.emitError("no entry point (func.func with xfmr.entry) to lower");
    return signalPassFailure();
  }

  int64_t vocab = cast<RankedTensorType>(
                      entries.front().getFunctionType().getResult(0))
                      .getDimSize(1);
  // The runtime accepts token ids below the vocabulary (the logits' width):
  // every embedding table must have a row for each of them.
  bool tablesCoverVocabulary = true;
  module.walk([&](EmbeddingOp embedding) {
    int64_t rows = embedding.getTable().getType().getDimSize(0);
    if (rows < vocab) {
      embedding.emitOpError()
          << "table has " << rows << " rows but the logits have " << vocab
          << " entries: token ids in [" << rows << ", " << vocab
          << ") would read past the table";
      tablesCoverVocabulary = false;
    }
  });
  if (!tablesCoverVocabulary)
    return signalPassFailure();

  // One weight blob and one cache blob serve all entry points.
  Builder builder(&getContext());
  llvm::StringMap<WeightSlot> weights;
  SmallVector<Attribute> weightLayout;
  int64_t weightBytes = 0;
  auto addSlot = [&](StringRef key, RankedTensorType type,
                     ArrayRef<NamedAttribute> description) -> bool {
    auto [it, inserted] = weights.try_emplace(key, WeightSlot{0, 0, type});
    if (!inserted)
      return it->second.type == type;
    it->second.offset = weightBytes;
    it->second.bytes =
        type.getNumElements() * elementBytes(type.getElementType());
    weightBytes = alignTo(weightBytes + it->second.bytes);
    SmallVector<NamedAttribute> entry(description.begin(), description.end());
    entry.push_back(builder.getNamedAttr(
        "offset", builder.getI64IntegerAttr(it->second.offset)));
    entry.push_back(builder.getNamedAttr(
        "bytes", builder.getI64IntegerAttr(it->second.bytes)));
    entry.push_back(builder.getNamedAttr("type", TypeAttr::get(type)));
    weightLayout.push_back(builder.getDictionaryAttr(entry));
    return true;
  };
  for (func::FuncOp func : entries) {
    func.walk([&](Operation *op) {
      if (auto weight = dyn_cast<WeightOp>(op)) {
        if (onlyDerived(weight))
          return;
        if (!addSlot(weight.getName(), weight.getType(),
                     {builder.getNamedAttr("name", weight.getNameAttr())})) {
          weight.emitOpError() << "weight '" << weight.getName()
                               << "' is used with two types";
          signalPassFailure();
        }
        return;
      }
      if (auto fold = dyn_cast<FoldMLAWeightOp>(op)) {
        auto source = fold.getWeight().getDefiningOp<WeightOp>();
        auto kvB = fold.getKvB() ? fold.getKvB().getDefiningOp<WeightOp>()
                                 : WeightOp();
        if (!source || (fold.getKvB() && !kvB)) {
          fold.emitOpError("folds checkpoint weights (xfmr.weight) only");
          signalPassFailure();
          return;
        }
        SmallVector<NamedAttribute> description{
            builder.getNamedAttr("name", source.getNameAttr()),
            builder.getNamedAttr(
                "transform",
                builder.getStringAttr("mla_" +
                                      stringifyMLAFold(fold.getKind()).str())),
            builder.getNamedAttr("source_type",
                                 TypeAttr::get(source.getType())),
            builder.getNamedAttr("heads", fold.getHeadsAttr()),
            builder.getNamedAttr("nope", fold.getNopeAttr()),
            builder.getNamedAttr("rope", fold.getRopeAttr()),
            builder.getNamedAttr("value_dim", fold.getValueDimAttr())};
        if (kvB) {
          description.push_back(
              builder.getNamedAttr("kv_b", kvB.getNameAttr()));
          description.push_back(
              builder.getNamedAttr("kv_b_type", TypeAttr::get(kvB.getType())));
        }
        addSlot(foldedWeightKey(fold), fold.getResult().getType(), description);
        return;
      }
      auto quantize = dyn_cast<QuantizeOp>(op);
      if (!quantize)
        return;
      auto source = quantize.getInput().getDefiningOp<WeightOp>();
      if (!source)
        return;
      // Codes and scales the packer computes from the source weight.
      for (auto [part, type] :
           {std::pair(StringRef("codes"), quantize.getResult().getType()),
            std::pair(StringRef("scales"), quantize.getScale().getType())})
        addSlot(quantizedWeightKey(quantize, part), cast<RankedTensorType>(type),
                {builder.getNamedAttr("name", source.getNameAttr()),
                 builder.getNamedAttr(
                     "transform", builder.getStringAttr("fp8_" + part.str())),
                 builder.getNamedAttr("layout", quantize.getLayout()),
                 builder.getNamedAttr("source_type",
                                      TypeAttr::get(source.getType()))});
    });
  }
  SmallVector<CacheSlot> caches;
  SmallVector<Attribute> cacheLayout;
  int64_t cacheBytes = 0;
  for (Type type : entries.front().getFunctionType().getInputs().drop_front(2)) {
    if (auto latent = dyn_cast<LatentCacheType>(type)) {
      int64_t bytes = latentLayout(latent).bytes;
      caches.push_back({cacheBytes, bytes, type});
      cacheLayout.push_back(builder.getDictionaryAttr({
          builder.getNamedAttr("offset", builder.getI64IntegerAttr(cacheBytes)),
          builder.getNamedAttr("bytes", builder.getI64IntegerAttr(bytes)),
          builder.getNamedAttr("type", TypeAttr::get(type)),
      }));
      cacheBytes = alignTo(cacheBytes + bytes);
      continue;
    }
    auto cache = cast<KVCacheType>(type);
    if (!isSupportedCacheElement(cache.getElementType())) {
      entries.front().emitOpError("the CPU lowering supports f32, bf16, f16, "
                                  "f8E4M3FN and i8 caches, got ")
          << cache;
      return signalPassFailure();
    }
    int64_t bytes = cacheCodeBytes(cache);
    if (cache.hasScales())
      bytes = alignTo(bytes) +
              cache.getCapacity() * cache.getHeads() * 2 * int64_t(sizeof(float));
    caches.push_back({cacheBytes, bytes, type});
    cacheLayout.push_back(builder.getDictionaryAttr({
        builder.getNamedAttr("offset", builder.getI64IntegerAttr(cacheBytes)),
        builder.getNamedAttr("bytes", builder.getI64IntegerAttr(bytes)),
        builder.getNamedAttr("type", TypeAttr::get(type)),
    }));
    cacheBytes = alignTo(cacheBytes + bytes);
  }
  for (func::FuncOp func : entries)
    if (func.getFunctionType().getInputs().drop_front(2) !=
        entries.front().getFunctionType().getInputs().drop_front(2)) {
      func.emitOpError("entry points must share one cache layout");
      return signalPassFailure();
    }

  // Per-expert token counters, after the caches (zeroed with them).
  SmallVector<CounterSlot> counters;
  SmallVector<Attribute> counterLayout;
  llvm::StringSet<> counterNames;
  entries.front().walk([&](MoEExpertsOp experts) {
    int64_t count = experts.getGateWeight().getType().getDimSize(0);
    std::string name = "moe." + std::to_string(counters.size());
    if (auto named = dyn_cast<NameLoc>(experts.getLoc()))
      name = named.getName().str();
    // Names key the runtime's statistics: keep them unique.
    if (!counterNames.insert(name).second) {
      name += "#" + std::to_string(counters.size());
      counterNames.insert(name);
    }
    counters.push_back({cacheBytes, count});
    counterLayout.push_back(builder.getDictionaryAttr({
        builder.getNamedAttr("name", builder.getStringAttr(name)),
        builder.getNamedAttr("offset", builder.getI64IntegerAttr(cacheBytes)),
        builder.getNamedAttr("experts", builder.getI64IntegerAttr(count)),
    }));
    cacheBytes = alignTo(cacheBytes + count * 8);
  });
  for (func::FuncOp func : entries) {
    SmallVector<int64_t> sizes;
    func.walk([&](MoEExpertsOp experts) {
      sizes.push_back(experts.getGateWeight().getType().getDimSize(0));
    });
    if (sizes.size() != counters.size() ||
        !llvm::all_of(llvm::zip(sizes, counters), [](auto pair) {
          return std::get<0>(pair) == std::get<1>(pair).experts;
        })) {
      func.emitOpError("entry points must have the same MoE layers");
      return signalPassFailure();
    }
  }

  KernelLibrary lib(module);
  for (func::FuncOp old : entries) {
    ScheduleEmitter emitter(lib, weights, caches, counters);
    if (failed(emitter.emit(old)))
      return signalPassFailure();
    old.erase();
  }
  // Hand-written IR may lack the model description the importer writes: its
  // vocabulary is the logits' width, which the artifact manifest needs.
  auto model = module->getAttrOfType<DictionaryAttr>("xfmr.model");
  if (!model || !model.get("vocab_size")) {
    NamedAttrList description(model ? model : builder.getDictionaryAttr({}));
    description.set("vocab_size", builder.getI64IntegerAttr(vocab));
    module->setAttr("xfmr.model", description.getDictionary(&getContext()));
  }
  module->setAttr("xfmr.weight_layout", builder.getArrayAttr(weightLayout));
  module->setAttr("xfmr.cache_layout", builder.getArrayAttr(cacheLayout));
  if (!counterLayout.empty())
    module->setAttr("xfmr.expert_counts", builder.getArrayAttr(counterLayout));
  module->setAttr("xfmr.weights_bytes", builder.getI64IntegerAttr(weightBytes));
  module->setAttr("xfmr.cache_bytes", builder.getI64IntegerAttr(cacheBytes));
}

} // namespace
