//===- LowerToKernels.cpp - entry points -> kernels + schedule --*- C++ -*-===//
//
// An entry point is a straight-line list of xfmr ops. Each op becomes
// launches of kernels (KernelContracts.h) on buffers: the schedule allocates
// an f32 buffer per result, views weights and caches inside the two blobs
// the entry ABI passes in (at the offsets of the memory plan), and frees
// each buffer after the last op that reads it (or any view of it). The old
// tensor-level function is replaced. All of this is target-neutral; the
// module's target (KernelTarget.h) materializes and launches the kernels.
//
// The decode function is also lowered a second time into the batched
// `batch_step` entry (kind "step"), which runs several sequences at once: its
// ids are the tokens of consecutive segments, one per sequence, each with its
// own start position and its own cache (the ABI is above
// ScheduleEmitter::emit). Ops that only look at their own row
// (embedding, norms, linears, MoE, the LM head) run once over every token,
// so the weights are read once per step; RoPE, cache writes and attention
// run per segment with the same kernels as prefill. prefill and decode are
// the one-segment case of the same emitter.
//
//===----------------------------------------------------------------------===//

#include "lowering/Common/KernelTarget.h"
#include "lowering/Common/MemoryPlan.h"
#include "lowering/Passes.h"

#include "dialects/Xfmr/XfmrOps.h"

#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/StringExtras.h"
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

/// An optional non-negative attribute (sliding_window, sinks) as int64_t.
std::optional<int64_t> asInt(std::optional<uint64_t> value) {
  if (!value)
    return std::nullopt;
  return static_cast<int64_t>(*value);
}

/// The tokens a position-dependent op (RoPE, cache writes, attention) runs
/// at once: a whole prefill or decode call, or one segment of a step.
struct Segment {
  /// The segment's first row in the step's buffers; null for the whole
  /// call (every buffer as it is).
  Value firstRow;
  /// Its token count (index).
  Value rows;
  /// The position of its first token (index).
  Value start;
  /// Where its cache blob starts in the entry's cache buffer (bytes, index);
  /// null: at 0.
  Value cacheOffset;
  /// Which segment it is (index); null for the whole call.
  Value index;
};

/// Views of one cache value's storage: the cache (or latent), its 8-bit
/// scales and, for latent caches, the k_pe part.
struct CacheViews {
  Value main, scales, rope;
};

/// Emits the schedule of one entry point.
class ScheduleEmitter {
public:
  ScheduleEmitter(KernelTarget &target, MemoryPlanAttr plan, bool precise,
                  int64_t maxBindingBytes)
      : target(target), plan(plan), precise(precise),
        maxBindingBytes(maxBindingBytes) {}

  /// Adds the schedule of `old` as `name` (the caller erases `old`). With
  /// `step` it is the batched entry (several sequences; ABI at emit()).
  LogicalResult emit(func::FuncOp old, StringRef name, bool step);

private:
  // Buffers.
  /// A buffer of `tokens` rows of `trailing` elements: a view of a raw byte
  /// allocation, so that rows of it can be viewed (rows()).
  Value alloc(ArrayRef<int64_t> trailing, Type element = {}) {
    return allocRows(tokens, trailing, element);
  }
  /// The same with `count` rows.
  Value allocRows(Value count, ArrayRef<int64_t> trailing, Type element = {});
  /// Step entry: the last row of each segment of `buffer` ([tokens, ...]),
  /// gathered into a new buffer of one row per segment.
  FailureOr<Value> lastRows(Value buffer, Operation *op);
  /// Records that `value` lives in `buffer`; `owned` buffers were allocated
  /// by the schedule and are freed after the last reader of their value (or
  /// of views of it).
  void bind(Value value, Value buffer, bool owned) {
    buffers[value] = buffer;
    if (owned)
      ownedBuffers[value] = buffer;
  }
  Value buffer(Value value) { return buffers.lookup(value); }
  Value constant(int64_t value) {
    return arith::ConstantIndexOp::create(*b, loc, value);
  }
  Value flat(Value buffer);
  /// Launches the kernel of `kernel`'s configuration on `operands`.
  template <typename Kernel>
  LogicalResult launch(const Kernel &kernel,
                       typename Kernel::template Operands<Value> operands) {
    FailureOr<SymbolRefAttr> symbol = target.materialize(kernel, loc);
    if (failed(symbol))
      return failure();
    target.launch(*b, loc, *symbol, presentOperands(operands));
    return success();
  }
  void release(Value buffer) {
    Value raw = rawOf.lookup(buffer);
    target.deallocate(*b, loc, raw ? raw : buffer);
  }
  /// Rows [segment.firstRow, + segment.rows) of `buffer` (all of it for a
  /// whole call), as a buffer of the same type; null (after an error on
  /// `op`) when the buffer is not one the schedule allocated.
  Value rows(Value buffer, const Segment &segment, Operation *op);
  /// Runs `body` once for the whole call, or (step) in a loop over the
  /// segments.
  LogicalResult
  perSegment(llvm::function_ref<LogicalResult(const Segment &)> body);
  /// The storage of cache value `cache` in the cache blob at `offset` (null:
  /// 0).
  CacheViews cacheViews(Value cache, Value offset);
  WeightOperand weightOperand(Value weight, Value scale,
                              ScaleLayoutAttr layout, Operation *op,
                              bool &ok);
  /// True when `dequantize` (of activations quantized to i8 per token) only
  /// feeds the inputs of linears whose int8 kernels quantize their input
  /// themselves (W8A8 weights in panels): it is then no kernel of its own,
  /// and its value is the quantize's input.
  bool fusedIntoInt8Linears(DequantizeOp dequantize);
  /// True when a linear or MoE experts op reading `dequantize` (activations
  /// quantized to E4M3FN per token in groups) would multiply the codes and
  /// scales (KernelTarget::takesFP8InputCodes, expertsTakeFP8InputCodes).
  bool consumersTakeFP8Codes(DequantizeOp dequantize);
  /// The configuration of `linear`'s kernel from its operands' types: its
  /// shape, weight and bias formats, `precise` (errors on the op).
  FailureOr<LinearKernel> linearKernelOf(LinearOp linear);
  /// The same for an MoE experts op: shapes, weight formats (one for the
  /// routed stacks, one for a fused shared expert), dispatch, activations.
  FailureOr<MoEExpertsKernel> expertsKernelOf(MoEExpertsOp experts);
  /// Frees an owned buffer, and the FP8 codes and scales beside it.
  void releaseOwned(Value buffer) {
    release(buffer);
    auto codes = inputCodes.find(buffer);
    if (codes == inputCodes.end())
      return;
    release(codes->second.first);
    release(codes->second.second);
    inputCodes.erase(codes);
  }

  LogicalResult emitOp(Operation *op);
  /// A view of the weight-blob slot `op` reads (its `attrName`), in the
  /// slot's storage type.
  Value weightView(Operation *op, StringRef attrName = kSlotAttrName);
  /// Appends `latent` and `ropeKey` at `start` to the latent cache value
  /// `cache`, binds `newCache` to the same storage and returns it (latent,
  /// [scales], k_pe) for the attention kernel.
  FailureOr<LatentCacheWriteOperands<Value>>
  appendLatent(Value cache, Value newCache, Value latent, Value ropeKey,
               std::optional<int64_t> sinks, const Segment &segment,
               Operation *op);

  KernelTarget &target;
  MemoryPlanAttr plan;
  /// Linear layers keep f32 inputs (--precise).
  bool precise;
  /// Weights larger than this are split by rows over launches (0: never).
  int64_t maxBindingBytes;
  /// Rows of `buffer` ([R, ...]) in [first, first + count), as a view.
  Value rowWindow(Value buffer, int64_t first, int64_t count);
  /// Columns [first, first + count) of `buffer` ([S, N]), as a view.
  Value columnWindow(Value buffer, int64_t first, int64_t count);
  /// Rows per launch of a weight of `rows` rows of `rowBytes` bytes (a
  /// multiple of `multiple`): all of them within maxBindingBytes.
  int64_t rowsPerLaunch(int64_t rows, int64_t rowBytes, int64_t multiple);
  /// The counter slot of the next xfmr.moe_experts.
  size_t nextCounter = 0;

  std::optional<OpBuilder> b;
  Location loc = UnknownLoc::get(target.getModule().getContext());
  Value tokens, start, weightBlob, cacheBlob, logitsOut, logitsValue;
  /// The step entry's segments ([N, 4] i64: first row, rows, start, cache
  /// offset) and the first one's cache offset; null in prefill/decode.
  Value segments, firstCacheOffset;
  llvm::DenseMap<Value, Value> buffers;
  /// The raw byte allocation under each buffer alloc() made (and under the
  /// head reshapes of those buffers).
  llvm::DenseMap<Value, Value> rawOf;
  /// The memory-plan slot of each cache value (new caches share theirs).
  llvm::DenseMap<Value, CacheSlotAttr> cacheSlotOf;
  /// Values whose buffer the schedule allocated, and that buffer.
  llvm::MapVector<Value, Value> ownedBuffers;
  /// The FP8 codes and scales written beside a quantization's values (its
  /// buffer), freed with it.
  llvm::DenseMap<Value, std::pair<Value, Value>> inputCodes;
};

/// Bytes of one row of `type` (all dimensions but the first, static).
static int64_t rowBytes(MemRefType type) {
  int64_t elements = 1;
  for (int64_t size : type.getShape().drop_front())
    elements *= size;
  return elements * int64_t(type.getElementTypeBitWidth() / 8);
}

Value ScheduleEmitter::allocRows(Value count, ArrayRef<int64_t> trailing,
                                 Type element) {
  SmallVector<int64_t> shape{ShapedType::kDynamic};
  shape.append(trailing.begin(), trailing.end());
  auto type = MemRefType::get(shape, element ? element : b->getF32Type());
  Value bytes = arith::MulIOp::create(*b, loc, count, constant(rowBytes(type)));
  Value raw = target.allocate(
      *b, loc, MemRefType::get({ShapedType::kDynamic}, b->getI8Type()),
      ValueRange{bytes});
  Value view = memref::ViewOp::create(*b, loc, type, raw, constant(0),
                                      ValueRange{count});
  rawOf[view] = raw;
  return view;
}

FailureOr<Value> ScheduleEmitter::lastRows(Value buffer, Operation *op) {
  auto type = cast<MemRefType>(buffer.getType());
  Value count = memref::DimOp::create(*b, loc, segments, 0);
  Value out = allocRows(count, type.getShape().drop_front());
  if (failed(perSegment([&](const Segment &segment) -> LogicalResult {
        Value one = constant(1);
        Value end =
            arith::AddIOp::create(*b, loc, segment.firstRow, segment.rows);
        Value last = arith::SubIOp::create(*b, loc, end, one);
        Value from = rows(buffer, Segment{last, one, {}, {}, {}}, op);
        Value to = rows(out, Segment{segment.index, one, {}, {}, {}}, op);
        if (!from || !to)
          return failure();
        return launch(ElementwiseKernel{Elementwise::Copy},
                      {flat(from), Value(), flat(to)});
      })))
    return failure();
  return out;
}

Value ScheduleEmitter::rows(Value buffer, const Segment &segment,
                            Operation *op) {
  if (!segment.firstRow)
    return buffer;
  Value raw = rawOf.lookup(buffer);
  if (!raw) {
    op->emitOpError("reads a buffer the step entry cannot split into "
                    "sequences (not an activation the schedule allocated)");
    return Value();
  }
  auto type = cast<MemRefType>(buffer.getType());
  Value shift = arith::MulIOp::create(*b, loc, segment.firstRow,
                                      constant(rowBytes(type)));
  return memref::ViewOp::create(*b, loc, type, raw, shift,
                                ValueRange{segment.rows});
}

LogicalResult ScheduleEmitter::perSegment(
    llvm::function_ref<LogicalResult(const Segment &)> body) {
  if (!segments)
    return body(Segment{Value(), tokens, start, Value(), Value()});
  Value count = memref::DimOp::create(*b, loc, segments, 0);
  Value zero = constant(0);
  Value one = constant(1);
  auto loop = scf::ForOp::create(*b, loc, zero, count, one);
  OpBuilder::InsertionGuard guard(*b);
  b->setInsertionPoint(loop.getBody()->getTerminator());
  Value s = loop.getInductionVar();
  auto field = [&](int64_t i) -> Value {
    Value v =
        memref::LoadOp::create(*b, loc, segments, ValueRange{s, constant(i)});
    return arith::IndexCastOp::create(*b, loc, b->getIndexType(), v);
  };
  Segment segment;
  segment.firstRow = field(0);
  segment.rows = field(1);
  segment.start = field(2);
  segment.cacheOffset = field(3);
  segment.index = s;
  return body(segment);
}

CacheViews ScheduleEmitter::cacheViews(Value cache, Value offset) {
  CacheSlotAttr slot = cacheSlotOf.lookup(cache);
  CacheStorage storage = cacheStorage(slot.getType());
  auto view = [&](ArrayRef<int64_t> shape, Type element, int64_t at) -> Value {
    Value shift = constant(int64_t(slot.getOffset()) + at);
    if (offset)
      shift = arith::AddIOp::create(*b, loc, offset, shift);
    return memref::ViewOp::create(*b, loc, MemRefType::get(shape, element),
                                  cacheBlob, shift, ValueRange{});
  };
  CacheViews views;
  if (auto latent = dyn_cast<LatentCacheType>(slot.getType())) {
    LatentCacheFormat format = latentCacheFormatOf(latent);
    views.main = view({latent.getCapacity(), latent.getLatentDim()},
                      storageTypeOf(format.format, b->getContext()), 0);
    if (latent.hasScales())
      views.scales = view({latent.getCapacity(), latent.scaleBlocks()},
                          b->getF32Type(), storage.scalesOffset);
    views.rope = view({latent.getCapacity(), latent.getRopeDim()},
                      storageTypeOf(format.ropeFormat, b->getContext()),
                      storage.ropeOffset);
    return views;
  }
  auto cacheType = cast<KVCacheType>(slot.getType());
  views.main = view({cacheType.getCapacity(), cacheType.getHeads(),
                     cacheType.getKeyDim() + cacheType.getValueDim()},
                    storageTypeOf(weightFormatOf(cacheType.getElementType()),
                                  b->getContext()),
                    0);
  if (cacheType.hasScales())
    views.scales = view({cacheType.getCapacity(), cacheType.getHeads(), 2},
                        b->getF32Type(), storage.scalesOffset);
  return views;
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
      op->emitOpError() << "kernels support block scale layouts only, got "
                        << layout;
      ok = false;
      return operand;
    }
    operand.blockScale = {layout.getBlock()[0], layout.getBlock()[1]};
    // f16 scales are int4 weights' group scales, and those have no others.
    bool f16Scale =
        cast<RankedTensorType>(scale.getType()).getElementType().isF16();
    if (f16Scale != (operand.format == WeightFormat::I4)) {
      op->emitOpError() << "kernels read f16 scales with int4 weights only, "
                           "and int4 weights with f16 scales only";
      ok = false;
      return operand;
    }
  }
  // The slot of a checkpoint weight, or of FP8 codes quantized at compile
  // time.
  Operation *source = weight.getDefiningOp<WeightOp>();
  if (!source)
    source = weight.getDefiningOp<QuantizeOp>();
  if (source)
    if (WeightSlotAttr slot = getWeightSlot(plan, source))
      operand.panel = slot.getPanel();
  return operand;
}

/// The group of the per-token E4M3FN quantization whose dequantization is
/// `input`, or 0.
static int64_t fp8InputGroup(Value input) {
  auto dequantize = input.getDefiningOp<DequantizeOp>();
  if (!dequantize)
    return 0;
  auto quantize = dequantize.getInput().getDefiningOp<QuantizeOp>();
  ScaleLayoutAttr layout = dequantize.getLayout();
  if (!quantize || quantize.getInput().getDefiningOp<WeightOp>() ||
      !isa<Float8E4M3FNType>(quantize.getResult().getType().getElementType()) ||
      quantize.getLayout() != layout || dequantize.getType().getRank() != 2 ||
      layout.getKind() != ScaleKind::block || layout.getBlock()[0] != 1)
    return 0;
  return layout.getBlock()[1];
}

int64_t ScheduleEmitter::rowsPerLaunch(int64_t rows, int64_t rowBytes,
                                       int64_t multiple) {
  if (!maxBindingBytes || rows * rowBytes <= maxBindingBytes)
    return rows;
  return maxBindingBytes / (rowBytes * multiple) * multiple;
}

Value ScheduleEmitter::rowWindow(Value buffer, int64_t first, int64_t count) {
  auto type = cast<MemRefType>(buffer.getType());
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> offsets(rank, b->getIndexAttr(0));
  SmallVector<OpFoldResult> sizes, strides(rank, b->getIndexAttr(1));
  offsets[0] = b->getIndexAttr(first);
  sizes.push_back(b->getIndexAttr(count));
  for (int64_t i = 1; i < rank; ++i)
    sizes.push_back(b->getIndexAttr(type.getDimSize(i)));
  return memref::SubViewOp::create(*b, loc, buffer, offsets, sizes, strides);
}

Value ScheduleEmitter::columnWindow(Value buffer, int64_t first,
                                    int64_t count) {
  Value rows = memref::DimOp::create(*b, loc, buffer, 0);
  SmallVector<OpFoldResult> offsets{b->getIndexAttr(0), b->getIndexAttr(first)};
  SmallVector<OpFoldResult> sizes{rows, b->getIndexAttr(count)};
  SmallVector<OpFoldResult> strides(2, b->getIndexAttr(1));
  return memref::SubViewOp::create(*b, loc, buffer, offsets, sizes, strides);
}

bool ScheduleEmitter::consumersTakeFP8Codes(DequantizeOp dequantize) {
  int64_t group = fp8InputGroup(dequantize.getResult());
  if (!group)
    return false;
  return llvm::any_of(dequantize->getUses(), [&](OpOperand &use) {
    if (auto experts = dyn_cast<MoEExpertsOp>(use.getOwner())) {
      if (&use != &experts.getInputMutable())
        return false;
      FailureOr<MoEExpertsKernel> kernel = expertsKernelOf(experts);
      if (failed(kernel))
        return false;
      kernel->fp8InputGroup = group;
      return target.expertsTakeFP8InputCodes(*kernel);
    }
    auto linear = dyn_cast<LinearOp>(use.getOwner());
    if (!linear || &use != &linear.getInputMutable())
      return false;
    // The step entry's LM head reads gathered rows, not the codes.
    if (segments && linear.getResult() == logitsValue)
      return false;
    FailureOr<LinearKernel> kernel = linearKernelOf(linear);
    if (failed(kernel))
      return false;
    kernel->fp8InputGroup = group;
    return target.takesFP8InputCodes(*kernel);
  });
}

FailureOr<MoEExpertsKernel>
ScheduleEmitter::expertsKernelOf(MoEExpertsOp experts) {
  Operation *op = experts;
  auto gateType = experts.getGateWeight().getType();
  Type element = gateType.getElementType();
  if (experts.getUpWeight().getType().getElementType() != element ||
      experts.getDownWeight().getType().getElementType() != element)
    return op->emitOpError("kernels need one element type for all expert "
                           "weights");
  bool ok = true;
  WeightOperand weight =
      weightOperand(experts.getGateWeight(), experts.getGateScale(),
                    experts.getScaleLayoutAttr(), op, ok);
  if (!ok)
    return failure();
  // The CPU's expert kernels widen int4 stacks 16 codes at a time and
  // scale whole vectors (MatmulTile.h).
  if (weight.format == WeightFormat::I4 &&
      (!weight.blockScale || weight.blockScale->first != 1 ||
       weight.blockScale->second % kInt4ExpertGroupMultiple != 0))
    return op->emitOpError()
           << "multiplies int4 expert stacks, which need f16 scales in "
              "groups [1, 16k] (xfmr-quantize-int4 with a group that is a "
              "multiple of 16)";
  int64_t count = gateType.getDimSize(0), inter = gateType.getDimSize(1);
  int64_t hidden = gateType.getDimSize(2);
  int64_t topK = experts.getWeights().getType().getDimSize(1);
  MoEExpertsKernel kernel{count,        inter,
                          hidden,       topK,
                          weight,       experts.getDispatch(),
                          std::nullopt, asInt(experts.getActivationGroup()),
                          precise};
  kernel.fp8InputGroup = fp8InputGroup(experts.getInput());
  if (Value sharedGate = experts.getSharedGate()) {
    auto sharedType = cast<RankedTensorType>(sharedGate.getType());
    for (Value w : {experts.getSharedUp(), experts.getSharedDown()})
      if (cast<RankedTensorType>(w.getType()).getElementType() !=
          sharedType.getElementType())
        return op->emitOpError("kernels need one element type for the "
                               "shared expert's weights");
    WeightOperand sharedWeight =
        weightOperand(sharedGate, experts.getSharedGateScale(),
                      experts.getScaleLayoutAttr(), op, ok);
    if (!ok)
      return failure();
    if (sharedWeight.format == WeightFormat::I4 ||
        weight.format == WeightFormat::I4)
      return op->emitOpError()
             << "fuses a shared expert with int4 weights; the fused "
                "shared-expert kernels read no int4 (int4 shared experts "
                "stay linears)";
    kernel.shared = SharedExpert{sharedType.getDimSize(0), sharedWeight};
  }
  return kernel;
}

FailureOr<LinearKernel> ScheduleEmitter::linearKernelOf(LinearOp linear) {
  bool ok = true;
  WeightOperand weight = weightOperand(linear.getWeight(), linear.getScale(),
                                       linear.getScaleLayoutAttr(), linear, ok);
  if (!ok)
    return failure();
  auto w = linear.getWeight().getType();
  LinearKernel kernel{w.getDimSize(1), w.getDimSize(0), weight, std::nullopt};
  if (Value bias = linear.getBias())
    kernel.bias =
        weightFormatOf(cast<RankedTensorType>(bias.getType()).getElementType());
  kernel.precise = precise;
  return kernel;
}

bool ScheduleEmitter::fusedIntoInt8Linears(DequantizeOp dequantize) {
  auto quantize = dequantize.getInput().getDefiningOp<QuantizeOp>();
  auto type = dequantize.getType();
  ScaleLayoutAttr layout = dequantize.getLayout();
  if (!quantize || quantize.getInput().getDefiningOp<WeightOp>() ||
      !quantize.getResult().getType().getElementType().isInteger(8) ||
      type.getRank() != 2 || layout.getKind() != ScaleKind::block ||
      layout.getBlock()[0] != 1 || layout.getBlock()[1] < type.getDimSize(1) ||
      dequantize->use_empty())
    return false;
  return llvm::all_of(dequantize->getUses(), [&](OpOperand &use) {
    auto linear = dyn_cast<LinearOp>(use.getOwner());
    if (!linear || &use != &linear.getInputMutable())
      return false;
    auto weight = linear.getWeight().getDefiningOp<QuantizeOp>();
    Type codes =
        weight ? weight.getResult().getType().getElementType() : Type();
    if (!codes || !(codes.isInteger(8) || codes.isInteger(4)))
      return false;
    WeightSlotAttr slot = getWeightSlot(plan, weight);
    return slot && slot.getPanel() != 0;
  });
}

Value ScheduleEmitter::weightView(Operation *op, StringRef attrName) {
  WeightSlotAttr slot = getWeightSlot(plan, op, attrName);
  if (!slot) {
    op->emitOpError("has no weight slot in the memory plan (run "
                    "xfmr-plan-memory first)");
    return Value();
  }
  auto tensor = cast<RankedTensorType>(slot.getType());
  SmallVector<int64_t> shape(tensor.getShape());
  if (slot.getPanel())
    shape = llvm::to_vector(
        panelStorageShape(shape, slot.getPanel(), tensor.getElementType()));
  else if (tensor.getElementType().isInteger(4))
    shape = llvm::to_vector(int4RowStorageShape(shape));
  auto type = MemRefType::get(
      shape,
      storageTypeOf(weightFormatOf(tensor.getElementType()), b->getContext()));
  return memref::ViewOp::create(*b, loc, type, weightBlob,
                                constant(slot.getOffset()), ValueRange{});
}

FailureOr<LatentCacheWriteOperands<Value>>
ScheduleEmitter::appendLatent(Value cache, Value newCache, Value latent,
                              Value ropeKey, std::optional<int64_t> sinks,
                              const Segment &segment, Operation *op) {
  auto type = cast<LatentCacheType>(cache.getType());
  CacheViews views = cacheViews(cache, segment.cacheOffset);
  LatentCacheWriteOperands<Value> write;
  write.latent = rows(buffer(latent), segment, op);
  write.ropeKey = rows(buffer(ropeKey), segment, op);
  if (!write.latent || !write.ropeKey)
    return failure();
  write.latentCache = views.main;
  write.scales = views.scales;
  write.ropeCache = views.rope;
  write.start = segment.start;
  if (failed(launch(LatentCacheWriteKernel{type.getCapacity(),
                                           type.getLatentDim(),
                                           type.getRopeDim(),
                                           latentCacheFormatOf(type), sinks},
                    write)))
    return failure();
  cacheSlotOf[newCache] = cacheSlotOf.lookup(cache);
  return write;
}

LogicalResult ScheduleEmitter::emitOp(Operation *op) {
  auto outOrLogits = [&](Value result, ArrayRef<int64_t> trailing) {
    // The op producing the returned logits writes straight into the
    // caller's buffer (in the step entry, which returns one row per
    // sequence, only a linear, run on the rows that need logits).
    bool direct = result == logitsValue && (!segments || isa<LinearOp>(op));
    Value buffer = direct ? logitsOut : alloc(trailing);
    bind(result, buffer, !direct);
    return buffer;
  };
  auto dims = [](Value v) {
    return cast<RankedTensorType>(v.getType()).getShape().drop_front();
  };

  if (auto weight = dyn_cast<WeightOp>(op)) {
    // A weight only derived from (FP8 codes and scales, folded MLA
    // products) has no slot: its users read theirs.
    if (!op->hasAttr(kSlotAttrName))
      return success();
    Value view = weightView(op);
    if (!view)
      return failure();
    bind(weight.getResult(), view, false);
    return success();
  }
  if (auto embed = dyn_cast<EmbeddingOp>(op)) {
    auto table = embed.getTable().getType();
    Value result = outOrLogits(embed.getResult(), dims(embed.getResult()));
    int64_t vocab = table.getDimSize(0), hidden = table.getDimSize(1);
    WeightFormat format = weightFormatOf(table.getElementType());
    Value tableBuffer = buffer(embed.getTable());
    int64_t rowBytes =
        hidden *
        int64_t(
            storageTypeOf(format, b->getContext()).getIntOrFloatBitWidth()) /
        8;
    int64_t perLaunch = rowsPerLaunch(vocab, rowBytes, 1);
    if (!perLaunch)
      return op->emitOpError()
             << "has embedding rows of " << rowBytes << " bytes, more than the "
             << maxBindingBytes << " bytes a kernel can bind";
    // A table larger than a binding: launches over windows of its rows,
    // each writing the tokens whose ids fall in it.
    for (int64_t first = 0; first < vocab; first += perLaunch) {
      int64_t rows = std::min(perLaunch, vocab - first);
      bool whole = rows == vocab;
      Value window = whole ? tableBuffer : rowWindow(tableBuffer, first, rows);
      if (failed(launch(EmbeddingKernel{rows, hidden, format, first},
                        {window, buffer(embed.getIds()), result})))
        return failure();
    }
    return success();
  }
  if (auto norm = dyn_cast<RMSNormOp>(op)) {
    if (norm.getInput().getType().getRank() != 2)
      return op->emitOpError("kernels support rank-2 inputs only");
    int64_t hidden = norm.getWeight().getType().getDimSize(0);
    Value result = outOrLogits(norm.getResult(), {hidden});
    return launch(
        RMSNormKernel{
            hidden, weightFormatOf(norm.getWeight().getType().getElementType()),
            norm.getEps().convertToDouble()},
        {buffer(norm.getInput()), buffer(norm.getWeight()), result});
  }
  if (auto lin = dyn_cast<LinearOp>(op)) {
    if (lin.getInput().getType().getRank() != 2)
      return op->emitOpError("kernels support rank-2 inputs only");
    FailureOr<LinearKernel> config = linearKernelOf(lin);
    if (failed(config))
      return failure();
    LinearKernel kernel = *config;
    const WeightOperand &weight = kernel.weight;
    auto w = lin.getWeight().getType();
    if (weight.format == WeightFormat::I4 && !weight.panel)
      return op->emitOpError() << "multiplies int4 weights that are not in "
                                  "the CPU's panels (int4 is for CPU-only "
                                  "artifacts)";
    if ((weight.format == WeightFormat::I8 ||
         weight.format == WeightFormat::I4) &&
        weight.panel) {
      // W8A8 and W4A8: the kernel quantizes its input itself.
      auto dequantize = lin.getInput().getDefiningOp<DequantizeOp>();
      if (!dequantize || !fusedIntoInt8Linears(dequantize))
        return op->emitOpError()
               << "multiplies " << formatName(weight.format)
               << " weights by activations that are not quantized to int8 "
                  "per token (run xfmr-quantize-int8 or xfmr-quantize-int4)";
      kernel.int8Activations = true;
    } else {
      kernel.bf16Activations = weight.panel && !precise;
      kernel.fp8InputGroup = fp8InputGroup(lin.getInput());
    }
    LinearOperands<Value> operands;
    operands.input = buffer(lin.getInput());
    // The step entry's logits: only each sequence's last row runs the
    // linear (the LM head of a prompt chunk would otherwise run on every
    // token of it).
    Value gathered;
    if (segments && lin.getResult() == logitsValue) {
      FailureOr<Value> last = lastRows(operands.input, op);
      if (failed(last))
        return failure();
      gathered = operands.input = *last;
    }
    operands.weight = buffer(lin.getWeight());
    if (Value bias = lin.getBias())
      operands.bias = buffer(bias);
    if (Value scale = lin.getScale())
      operands.scale = buffer(scale);
    // The FP8 codes and scales beside the input, where its quantization
    // left them for this target's linears (not gathered: all rows).
    auto codes = inputCodes.find(buffer(lin.getInput()));
    if (!gathered && codes != inputCodes.end() &&
        target.takesFP8InputCodes(kernel)) {
      kernel.fp8InputCodes = true;
      operands.inputCodes = codes->second.first;
      operands.inputScale = codes->second.second;
    }
    operands.output = outOrLogits(lin.getResult(), {w.getDimSize(0)});
    // A weight larger than a binding: launches over windows of its rows
    // (whole block-scale rows), each writing its window of the output's
    // columns.
    int64_t out = kernel.out;
    int64_t rowBytes = kernel.in *
                       int64_t(storageTypeOf(weight.format, b->getContext())
                                   .getIntOrFloatBitWidth()) /
                       8;
    int64_t blockRows = weight.blockScale ? weight.blockScale->first : 1;
    int64_t perLaunch =
        weight.panel ? out : rowsPerLaunch(out, rowBytes, blockRows);
    if (!perLaunch)
      return op->emitOpError()
             << "has weight rows of " << rowBytes << " bytes (in blocks of "
             << blockRows << "), more than the " << maxBindingBytes
             << " bytes a kernel can bind";
    for (int64_t first = 0; first < out; first += perLaunch) {
      int64_t rows = std::min(perLaunch, out - first);
      LinearKernel part = kernel;
      LinearOperands<Value> window = operands;
      if (rows != out) {
        part.out = rows;
        part.outputStride = out;
        window.weight = rowWindow(operands.weight, first, rows);
        if (operands.bias)
          window.bias = rowWindow(operands.bias, first, rows);
        if (operands.scale)
          window.scale = rowWindow(operands.scale, first / blockRows,
                                   llvm::divideCeilSigned(rows, blockRows));
        window.output = columnWindow(operands.output, first, rows);
      }
      if (failed(launch(part, window)))
        return failure();
    }
    if (gathered)
      release(gathered);
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
    ElementwiseOperands<Value> operands;
    operands.a = flat(buffer(op->getOperand(0)));
    if (isBinary(kind))
      operands.b = flat(buffer(op->getOperand(1)));
    operands.output = flat(result);
    return launch(ElementwiseKernel{kind}, operands);
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
    if (Value raw = rawOf.lookup(buffer(split.getInput())))
      rawOf[view] = raw;
    bind(split.getResult(), view, false);
    return success();
  }
  if (auto merge = dyn_cast<MergeHeadsOp>(op)) {
    Value view = memref::CollapseShapeOp::create(*b, 
        loc, buffer(merge.getInput()),
        ArrayRef<ReassociationIndices>{{0}, {1, 2}});
    if (Value raw = rawOf.lookup(buffer(merge.getInput())))
      rawOf[view] = raw;
    bind(merge.getResult(), view, false);
    return success();
  }
  if (auto split = dyn_cast<SplitOp>(op)) {
    if (split.getInput().getType().getRank() != 2)
      return op->emitOpError("kernels support rank-2 inputs only");
    int64_t inDim = split.getInput().getType().getDimSize(1), offset = 0;
    for (Value result : split.getResults()) {
      int64_t piece = cast<RankedTensorType>(result.getType()).getDimSize(1);
      Value output = outOrLogits(result, {piece});
      if (failed(launch(SliceColumnsKernel{inDim, offset, piece},
                        {buffer(split.getInput()), output})))
        return failure();
      offset += piece;
    }
    return success();
  }
  if (auto rotary = dyn_cast<RopeOp>(op)) {
    ArrayRef<int64_t> shape = rotary.getType().getShape();
    Value result = outOrLogits(rotary.getResult(), {shape[1], shape[2]});
    return perSegment([&](const Segment &segment) -> LogicalResult {
      Value input = rows(buffer(rotary.getInput()), segment, op);
      Value output = rows(result, segment, op);
      if (!input || !output)
        return failure();
      return launch(RopeKernel{shape[1], shape[2], rotary.getConfig()},
                    {input, segment.start, output});
    });
  }
  if (auto attn = dyn_cast<AttentionOp>(op)) {
    KVCacheType cache = attn.getCache().getType();
    CacheFormat format = cacheFormatOf(cache);
    ArrayRef<int64_t> q = attn.getQuery().getType().getShape();
    std::optional<int64_t> sinks = asInt(attn.getSinks());
    std::optional<int64_t> window = asInt(attn.getSlidingWindow());
    Value result = outOrLogits(attn.getOutput(), {q[1], cache.getValueDim()});
    cacheSlotOf[attn.getNewCache()] = cacheSlotOf.lookup(attn.getCache());
    return perSegment([&](const Segment &segment) -> LogicalResult {
      CacheViews views = cacheViews(attn.getCache(), segment.cacheOffset);
      Value key = rows(buffer(attn.getKey()), segment, op);
      Value value = rows(buffer(attn.getValue()), segment, op);
      Value query = rows(buffer(attn.getQuery()), segment, op);
      Value output = rows(result, segment, op);
      if (!key || !value || !query || !output)
        return failure();
      if (failed(launch(CacheWriteKernel{cache.getCapacity(), cache.getHeads(),
                                         cache.getKeyDim(), cache.getValueDim(),
                                         format, sinks},
                        {key, value, views.main, views.scales, segment.start})))
        return failure();
      return launch(AttendKernel{cache.getCapacity(), q[1], cache.getHeads(),
                                 cache.getKeyDim(), cache.getValueDim(),
                                 attn.getScale().convertToDouble(), window,
                                 format, sinks, precise},
                    {query, views.main, views.scales, segment.start, output});
    });
  }
  if (auto mla = dyn_cast<MLAAttentionOp>(op)) {
    std::optional<int64_t> window = asInt(mla.getSlidingWindow());
    std::optional<int64_t> sinks = asInt(mla.getSinks());
    bool ok = true;
    WeightOperand weight =
        weightOperand(mla.getKvBWeight(), mla.getScaleTensor(),
                      mla.getScaleLayoutAttr(), op, ok);
    if (!ok)
      return failure();
    Value kvB = buffer(mla.getKvBWeight());
    Value kvBScale = mla.getScaleTensor() ? buffer(mla.getScaleTensor())
                                          : Value();
    if (auto latentCache = dyn_cast<LatentCacheType>(mla.getCache().getType())) {
      int64_t heads = mla.getQuery().getType().getDimSize(1);
      int64_t ropeDim = latentCache.getRopeDim();
      int64_t nope = mla.getQuery().getType().getDimSize(2) - ropeDim;
      int64_t rank = latentCache.getLatentDim();
      int64_t valueDim = mla.getOutput().getType().getDimSize(2);
      Value queryLatent = alloc({heads, rank});
      if (failed(launch(
              MLAAbsorbQueryKernel{heads, nope, ropeDim, valueDim, rank, weight},
              {buffer(mla.getQuery()), kvB, kvBScale, queryLatent})))
        return failure();
      Value outputLatent = alloc({heads, rank});
      if (failed(perSegment([&](const Segment &segment) -> LogicalResult {
            FailureOr<LatentCacheWriteOperands<Value>> storage =
                appendLatent(mla.getCache(), mla.getNewCache(), mla.getLatent(),
                             mla.getRopeKey(), sinks, segment, op);
            if (failed(storage))
              return failure();
            Value queryRows = rows(queryLatent, segment, op);
            Value query = rows(buffer(mla.getQuery()), segment, op);
            Value output = rows(outputLatent, segment, op);
            if (!queryRows || !query || !output)
              return failure();
            return launch(
                LatentAttendKernel{
                    latentCache.getCapacity(), heads, nope, ropeDim, rank,
                    mla.getScale().convertToDouble(),
                    latentCacheFormatOf(latentCache), window, sinks, precise},
                {queryRows, query, storage->latentCache, storage->scales,
                 storage->ropeCache, segment.start, output});
          })))
        return failure();
      release(queryLatent);
      Value result = outOrLogits(mla.getOutput(), {heads, valueDim});
      if (failed(launch(
              MLAAbsorbOutputKernel{heads, nope, valueDim, rank, weight},
              {outputLatent, kvB, kvBScale, result})))
        return failure();
      release(outputLatent);
      return success();
    }
    auto cache = cast<KVCacheType>(mla.getCache().getType());
    CacheFormat cacheFormat = cacheFormatOf(cache);
    auto kvBType = mla.getKvBWeight().getType();
    int64_t heads = cache.getHeads(), valueDim = cache.getValueDim();
    int64_t ropeDim = mla.getRopeKey().getType().getDimSize(2);
    int64_t nope = cache.getKeyDim() - ropeDim;
    // Expand keys and values from the latent, write them to the cache.
    Value kv = alloc({kvBType.getDimSize(0)});
    LinearOperands<Value> expand;
    expand.input = buffer(mla.getLatent());
    expand.weight = kvB;
    expand.scale = kvBScale;
    expand.output = kv;
    if (failed(launch(LinearKernel{kvBType.getDimSize(1),
                                   kvBType.getDimSize(0), weight,
                                   std::nullopt},
                      expand)))
      return failure();
    Value result = outOrLogits(mla.getOutput(), {heads, valueDim});
    cacheSlotOf[mla.getNewCache()] = cacheSlotOf.lookup(mla.getCache());
    if (failed(perSegment([&](const Segment &segment) -> LogicalResult {
          CacheViews views = cacheViews(mla.getCache(), segment.cacheOffset);
          Value kvRows = rows(kv, segment, op);
          Value ropeKey = rows(buffer(mla.getRopeKey()), segment, op);
          Value query = rows(buffer(mla.getQuery()), segment, op);
          Value output = rows(result, segment, op);
          if (!kvRows || !ropeKey || !query || !output)
            return failure();
          if (failed(launch(
                  MLACacheWriteKernel{cache.getCapacity(), heads, nope, ropeDim,
                                      valueDim, cacheFormat, sinks},
                  {kvRows, ropeKey, views.main, views.scales, segment.start})))
            return failure();
          return launch(
              AttendKernel{cache.getCapacity(), heads, heads, cache.getKeyDim(),
                           valueDim, mla.getScale().convertToDouble(), window,
                           cacheFormat, sinks, precise},
              {query, views.main, views.scales, segment.start, output});
        })))
      return failure();
    release(kv);
    return success();
  }
  if (auto gate = dyn_cast<MoEGateOp>(op)) {
    auto w = gate.getGateWeight().getType();
    int64_t experts = w.getDimSize(0), topK = gate.getTopK();
    WeightOperand weight;
    weight.format = weightFormatOf(w.getElementType());
    if (weight.format == WeightFormat::F8E4M3FN ||
        weight.format == WeightFormat::F8E5M2)
      return op->emitOpError("kernels need a high-precision router");
    Value logits = alloc({experts});
    LinearOperands<Value> router;
    router.input = buffer(gate.getInput());
    router.weight = buffer(gate.getGateWeight());
    router.output = logits;
    // The router keeps (about) f32's precision on every target, --precise
    // or not, as the CPU's does and DeepSeek-V3's reference computes its
    // gate in f32: on matrix units its input goes in two bf16 products, not
    // one. A routing decision that flips on a rounding moves a token's
    // output far more than the rounding itself.
    LinearKernel routerKernel{w.getDimSize(1), experts, weight, std::nullopt};
    routerKernel.precise = true;
    if (failed(launch(routerKernel, router)))
      return failure();
    Value weightsBuffer = outOrLogits(gate.getWeights(), {topK});
    Value indicesBuffer = alloc({topK}, b->getI32Type());
    bind(gate.getIndices(), indicesBuffer, true);
    Value bias = gate.getBias() ? buffer(gate.getBias()) : Value();
    if (failed(launch(MoERouteKernel::of(gate),
                      {logits, bias, weightsBuffer, indicesBuffer})))
      return failure();
    release(logits);
    return success();
  }
  if (auto experts = dyn_cast<MoEExpertsOp>(op)) {
    FailureOr<MoEExpertsKernel> config = expertsKernelOf(experts);
    if (failed(config))
      return failure();
    MoEExpertsKernel kernel = *config;
    int64_t count = kernel.experts, hidden = kernel.hidden;
    if (nextCounter >= plan.getCounters().size())
      return op->emitOpError("has no counter slot in the memory plan");
    auto counter = cast<CounterSlotAttr>(plan.getCounters()[nextCounter++]);
    MoEExpertsOperands<Value> operands;
    operands.input = buffer(experts.getInput());
    operands.weights = buffer(experts.getWeights());
    operands.indices = buffer(experts.getIndices());
    operands.gate = buffer(experts.getGateWeight());
    operands.up = buffer(experts.getUpWeight());
    operands.down = buffer(experts.getDownWeight());
    if (kernel.weight.blockScale) {
      operands.gateScale = buffer(experts.getGateScale());
      operands.upScale = buffer(experts.getUpScale());
      operands.downScale = buffer(experts.getDownScale());
    }
    if (kernel.shared) {
      operands.sharedGate = buffer(experts.getSharedGate());
      operands.sharedUp = buffer(experts.getSharedUp());
      operands.sharedDown = buffer(experts.getSharedDown());
      if (kernel.shared->weight.blockScale) {
        operands.sharedGateScale = buffer(experts.getSharedGateScale());
        operands.sharedUpScale = buffer(experts.getSharedUpScale());
        operands.sharedDownScale = buffer(experts.getSharedDownScale());
      }
    }
    // The FP8 codes and scales beside the input, where its quantization
    // left them for this target's experts.
    auto codes = inputCodes.find(operands.input);
    if (codes != inputCodes.end() && target.expertsTakeFP8InputCodes(kernel)) {
      kernel.fp8InputCodes = true;
      operands.inputCodes = codes->second.first;
      operands.inputScale = codes->second.second;
    }
    // A step credits its expert counts to its first sequence's counters.
    Value counterAt = constant(counter.getOffset());
    if (firstCacheOffset)
      counterAt = arith::AddIOp::create(*b, loc, firstCacheOffset, counterAt);
    operands.counts = memref::ViewOp::create(
        *b, loc, MemRefType::get({count}, b->getI64Type()), cacheBlob,
        counterAt, ValueRange{});
    operands.output = outOrLogits(experts.getResult(), {hidden});
    return launch(kernel, operands);
  }
  if (auto fold = dyn_cast<FoldMLAWeightOp>(op)) {
    // Evaluated at compile time: a view of the packed product.
    Value view = weightView(op);
    if (!view)
      return failure();
    bind(fold.getResult(), view, false);
    return success();
  }
  if (auto mla = dyn_cast<MLALatentAttentionOp>(op)) {
    std::optional<int64_t> window = asInt(mla.getSlidingWindow());
    std::optional<int64_t> sinks = asInt(mla.getSinks());
    LatentCacheType cache = mla.getCache().getType();
    int64_t heads = mla.getQueryLatent().getType().getDimSize(1);
    int64_t rank = cache.getLatentDim(), ropeDim = cache.getRopeDim();
    Value result = outOrLogits(mla.getOutput(), {heads, rank});
    return perSegment([&](const Segment &segment) -> LogicalResult {
      FailureOr<LatentCacheWriteOperands<Value>> storage =
          appendLatent(mla.getCache(), mla.getNewCache(), mla.getLatent(),
                       mla.getRopeKey(), sinks, segment, op);
      if (failed(storage))
        return failure();
      Value queryLatent = rows(buffer(mla.getQueryLatent()), segment, op);
      Value queryRope = rows(buffer(mla.getQueryRope()), segment, op);
      Value output = rows(result, segment, op);
      if (!queryLatent || !queryRope || !output)
        return failure();
      // The rope query is the whole "query" of the kernel (no no-rope part).
      return launch(
          LatentAttendKernel{cache.getCapacity(), heads, /*nope=*/0, ropeDim,
                             rank, mla.getScale().convertToDouble(),
                             latentCacheFormatOf(cache), window, sinks,
                             precise},
          {queryLatent, queryRope, storage->latentCache, storage->scales,
           storage->ropeCache, segment.start, output});
    });
  }
  if (auto quantize = dyn_cast<QuantizeOp>(op)) {
    if (quantize.getInput().getDefiningOp<WeightOp>()) {
      // Evaluated at compile time: views of the packed codes and scales.
      Value codes = weightView(op, kSlotAttrName);
      Value scales = weightView(op, kScaleSlotAttrName);
      if (!codes || !scales)
        return failure();
      bind(quantize.getResult(), codes, false);
      bind(quantize.getScale(), scales, false);
      return success();
    }
    // Activations: only quantize-then-dequantize (fused below) is supported.
    for (Operation *user : quantize->getUsers())
      if (!isa<DequantizeOp>(user))
        return user->emitOpError()
               << "uses quantized activations directly; kernels support "
                  "them only through xfmr.dequantize";
    return success();
  }
  if (auto dequantize = dyn_cast<DequantizeOp>(op)) {
    auto quantize = dequantize.getInput().getDefiningOp<QuantizeOp>();
    if (fusedIntoInt8Linears(dequantize)) {
      bind(dequantize.getResult(), buffer(quantize.getInput()), false);
      return success();
    }
    ScaleLayoutAttr layout = dequantize.getLayout();
    if (!quantize || quantize.getInput().getDefiningOp<WeightOp>() ||
        quantize.getLayout() != layout ||
        quantize.getScale() != dequantize.getScale())
      return op->emitOpError()
             << "kernels dequantize only what an xfmr.quantize of "
                "activations produced, with the same layout";
    auto type = dequantize.getType();
    if (type.getRank() != 2 || layout.getKind() != ScaleKind::block ||
        layout.getBlock()[0] != 1)
      return op->emitOpError()
             << "kernels quantize activations per token in groups "
                "(block [1, G] on [tokens, channels]), got "
             << layout;
    int64_t channels = type.getDimSize(1), group = layout.getBlock()[1];
    Value result = outOrLogits(dequantize.getResult(), {channels});
    FakeQuantizeKernel kernel{
        channels, group,
        weightFormatOf(dequantize.getInput().getType().getElementType())};
    FakeQuantizeOperands<Value> operands;
    operands.input = buffer(quantize.getInput());
    operands.output = result;
    // (Codes live as long as the values: only beside a buffer the schedule
    // owns and frees.)
    if (ownedBuffers.count(dequantize.getResult()) &&
        consumersTakeFP8Codes(dequantize)) {
      // The linears or experts multiply the codes: they live as long as
      // the values.
      kernel.withCodes = true;
      operands.codes =
          alloc({channels}, dequantize.getInput().getType().getElementType());
      operands.scales = alloc({llvm::divideCeilSigned(channels, group)});
      inputCodes[result] = {operands.codes, operands.scales};
    }
    return launch(kernel, operands);
  }
  return op->emitOpError() << "is not supported by xfmr-lower-to-kernels";
}

/// The entry ABI. prefill and decode:
///   (ids: memref<?xi32>, start: index, weights: memref<?xi8>,
///    cache: memref<?xi8>, logits: memref<?xVxf32>)
/// step, N sequences in one call:
///   (ids: memref<?xi32>, segments: memref<?x4xi64>, weights: memref<?xi8>,
///    caches: memref<?xi8>, logits: memref<?xVxf32>)
/// where segment s = [first row, rows, start position, cache offset]: ids
/// [first row, first row + rows) are sequence s's tokens at positions
/// start..., and its cache blob starts `cache offset` bytes into `caches`.
/// Segments cover the ids in order, without gaps. logits has one row per
/// segment: the logits of its last token.
LogicalResult ScheduleEmitter::emit(func::FuncOp old, StringRef name,
                                    bool step) {
  MLIRContext *context = old.getContext();
  auto ret = cast<func::ReturnOp>(old.getBody().front().getTerminator());
  logitsValue = ret.getOperand(0);
  int64_t vocab = cast<RankedTensorType>(logitsValue.getType()).getDimSize(1);

  OpBuilder builder(old);
  b.emplace(builder);
  loc = old.getLoc();
  Type i8 = b->getI8Type();
  auto dynamic = ShapedType::kDynamic;
  Type second = step ? Type(MemRefType::get({dynamic, 4}, b->getI64Type()))
                     : Type(b->getIndexType());
  SmallVector<Type> inputs{MemRefType::get({dynamic}, b->getI32Type()), second,
                           MemRefType::get({dynamic}, i8),
                           MemRefType::get({dynamic}, i8),
                           MemRefType::get({dynamic, vocab}, b->getF32Type())};
  auto func =
      func::FuncOp::create(*b, loc, name, b->getFunctionType(inputs, {}));
  func->setAttr("llvm.emit_c_interface", UnitAttr::get(context));
  func->setAttr(kEntryAttrName,
                step ? b->getStringAttr("step") : old->getAttr(kEntryAttrName));
  Block *entry = func.addEntryBlock();
  b->setInsertionPointToStart(entry);
  Value ids = entry->getArgument(0);
  weightBlob = entry->getArgument(2);
  cacheBlob = entry->getArgument(3);
  logitsOut = entry->getArgument(4);
  tokens = memref::DimOp::create(*b, loc, ids, 0);
  if (step) {
    segments = entry->getArgument(1);
    Value first = memref::LoadOp::create(*b, loc, segments,
                                         ValueRange{constant(0), constant(3)});
    firstCacheOffset =
        arith::IndexCastOp::create(*b, loc, b->getIndexType(), first);
  } else {
    start = entry->getArgument(1);
  }

  Block &body = old.getBody().front();
  bind(body.getArgument(0), ids, false);
  for (auto [i, slot] : llvm::enumerate(plan.getCacheSlots()))
    cacheSlotOf[body.getArgument(2 + i)] = slot;

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
      // A dequantize fused into int8 linears is its activations.
      if (auto dequantize = dyn_cast<DequantizeOp>(op);
          dequantize && fusedIntoInt8Linears(dequantize))
        if (Value input = rootOf.lookup(
                dequantize.getInput().getDefiningOp<QuantizeOp>().getInput()))
          root = input;
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
  // Logits that are not written in place are copied out after every op:
  // their storage lives until the end.
  if (Value root = rootOf.lookup(logitsValue))
    lastRead[root] = int64_t(ops.size());

  for (auto [i, op] : llvm::enumerate(ops)) {
    loc = op->getLoc();
    if (failed(emitOp(op)))
      return failure();
    // Free every owned buffer whose storage no later op reads.
    for (auto &[value, owned] : ownedBuffers) {
      if (owned && lastRead.lookup(rootOf.lookup(value)) == int64_t(i)) {
        releaseOwned(owned);
        owned = Value();
      }
    }
  }
  if (!buffers.count(logitsValue))
    return old.emitOpError("returns logits that no op produced");
  if (buffer(logitsValue) != logitsOut) {
    // The logits came from an op that could not write in place: copy (the
    // step entry's last row of each sequence).
    Value logits = buffer(logitsValue);
    if (segments) {
      FailureOr<Value> last = lastRows(logits, old);
      if (failed(last))
        return failure();
      logits = *last;
    }
    if (failed(launch(ElementwiseKernel{Elementwise::Copy},
                      {flat(logits), Value(), flat(logitsOut)})))
      return failure();
    if (segments)
      release(logits);
  }
  for (auto &[value, owned] : ownedBuffers)
    if (owned)
      releaseOwned(owned);
  func::ReturnOp::create(*b, loc);
  return success();
}

struct LowerToKernelsPass
    : xfmr::impl::LowerToKernelsBase<LowerToKernelsPass> {
  using LowerToKernelsBase::LowerToKernelsBase;
  void runOnOperation() override;
};

void LowerToKernelsPass::runOnOperation() {
  ModuleOp module = getOperation();
  MemoryPlanAttr plan = getMemoryPlan(module);
  if (!plan) {
    module.emitError("the module has no memory plan (run xfmr-plan-memory "
                     "first)");
    return signalPassFailure();
  }
  SmallVector<func::FuncOp> entries;
  for (auto func : module.getOps<func::FuncOp>())
    if (func->hasAttr(kEntryAttrName))
      entries.push_back(func);
  std::unique_ptr<KernelTarget> target =
      KernelRegistry::global().createTarget(module);
  if (!target) {
    InFlightDiagnostic diag = module.emitError()
                              << "no kernels are registered for target '"
                              << getModuleTarget(module).getKind() << "'";
    SmallVector<std::string> kinds = KernelRegistry::global().targetKinds();
    diag << " (registered: "
         << (kinds.empty() ? std::string("none") : llvm::join(kinds, ", "))
         << ")";
    return signalPassFailure();
  }
  // What the target implements of what the plan allows.
  for (func::FuncOp func : entries)
    for (Type type : func.getFunctionType().getInputs().drop_front(2))
      if (failed(target->checkCacheType(type, func)))
        return signalPassFailure();
  for (func::FuncOp old : entries) {
    ScheduleEmitter emitter(*target, plan, precise, maxBindingBytes);
    if (failed(emitter.emit(old, old.getName(), /*step=*/false)))
      return signalPassFailure();
    // The decode function, lowered once more for several sequences. (Not
    // named `step`: libc exports a `step`, which the model code's own call
    // of its entry would bind to.)
    auto kind = old->getAttrOfType<StringAttr>(kEntryAttrName);
    if (step && kind && kind.getValue() == "decode") {
      ScheduleEmitter stepEmitter(*target, plan, precise, maxBindingBytes);
      if (failed(stepEmitter.emit(old, "batch_step", /*step=*/true)))
        return signalPassFailure();
    }
    old.erase();
  }
}

} // namespace
