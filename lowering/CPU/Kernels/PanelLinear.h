//===- PanelLinear.h - y = x W^T over weights stored in panels --*- C++ -*-===//
//
// The prefill-and-decode linear of CPU-only artifacts. xfmr-plan-memory
// stores its bf16 weight [out, in] in panels of `panel` rows, each pair of
// input columns of a panel's rows together: [ceil(out / panel)]
// [ceil(in / 2)][panel][2] (zero-padded). One 32-element load is then one
// input pair of 16 output rows, the operand `vdpbf16ps` multiplies with a
// broadcast activation pair, and the sums of 16 outputs stay in one vector:
// no horizontal reductions, no transposes, one sequential stream per panel.
//
// A register tile is R activation rows x one panel (4 vectors of 16 sums per
// row). With AVX512-BF16 the activations are rounded to bf16 pairs once and
// each step is R x 4 `vdpbf16ps`; otherwise (or with f32 activations for
// --precise) each weight pair widens to two f32 vectors (a shift and a mask)
// and feeds two FMAs.
//
// FP8 weights are exact, code x scale, in every variant. The FMA tiles widen
// the codes to f32 and scale them. The dot products multiply the codes
// themselves as bf16 (exact: at most 4 significant bits) and scale the sums
// of each block of inputs: widening is then two `vpermi2b` table lookups per
// 64 codes with AVX512-VBMI (an f32 round trip without). Decode widens as it
// reads; from two tokens on, a panel is converted once per call. On AArch64
// with the bf16 extension, `bfdot` (the same pairwise product and sum into
// f32 lanes) does the work of `vdpbf16ps` on 16-byte quarters.
//
// Int8 (W8A8) weights are stored in quads instead, [ceil(out / panel)]
// [ceil(in / 4)][panel][4], each code plus 128 (an unsigned byte), with one
// scale per row. Each token's input is quantized first (scale = max |x| /
// 127, codes to nearest even, as xfmr.quantize), into quads of codes and
// the sum of its codes. With AVX512-VNNI one `vpdpbusd` multiplies a
// 64-byte load (16 rows x a quad) by a broadcast quad and adds the products
// to 16 int32 sums: sum((w + 128) x) = sum(w x) + 128 sum(x), so each sum
// loses 128 times the token's code sum and becomes exact sum(w x) before it
// is scaled by both scales. On AArch64, `usdot` (i8mm: unsigned x signed,
// as vpdpbusd) does the same on 16-byte quarters of the load; with only
// `sdot` (dotprod: signed x signed) the weight bytes are flipped back to
// their codes (xor 0x80), whose sums need no correction. Without either the
// same sums are built from the four bytes of each lane with int32 multiplies.
//
// Int4 (W4A8) weights are stored in octets, [ceil(out / panel)]
// [ceil(in / 8)][panel][4] bytes: each row's 8 codes + 8 as nibbles, inputs
// 0-3 of the octet low, 4-7 high, with f16 scales per row and group of G
// inputs stored [ceil(out / panel)][groups][panel]. A 64-byte load is two
// quad operands after a mask and a shift; the same quad products as int8
// (vpdpbusd, usdot, or sdot, exact here as nibbles are below 128) sum a
// group in int32, which loses 8 x the group's activation code sum, and the
// group's sums are scaled by its 16 f16 scales and added up in f32. With
// AVX2 but no VNNI, vpmaddubsw + vpmaddwd make the same sums (llama.cpp's
// Q4_0 way; exact for nibbles, not for int8 codes + 128). On AArch64 with
// i8mm, pairs of tokens multiply 2 rows x 8 inputs at a time with `usmmla`
// (the low and high quads of two rows zipped into one operand).
//
// With SVE at a fixed vector length (256 or 512 bits, `sveBits`), each of
// these AArch64 products is SVE's on a whole register of 128-bit segments,
// which it treats as NEON treats one: the same layouts and arithmetic, two
// or four times the work per instruction.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_CPU_KERNELS_PANELLINEAR_H
#define XFMR_LOWERING_CPU_KERNELS_PANELLINEAR_H

#include "lowering/CPU/Kernels/KernelBuilder.h"

namespace xfmr::kernels {

struct PanelLinear {
  /// f32 [tokens, in].
  mlir::Value x;
  /// [ceil(out / panel), ceil(in / 2), 2 * panel] in `format`: bf16, or FP8
  /// codes with block `scale`s (`blockScale` rows a multiple of `panel`,
  /// columns even), multiplied as code x scale in every variant; or I8:
  /// [ceil(out / panel), ceil(in / 4), 4 * panel], code + 128; or I4:
  /// [ceil(out / panel), ceil(in / 8), 4 * panel] bytes of two codes + 8.
  mlir::Value w;
  WeightFormat format = WeightFormat::BF16;
  /// FP8: f32 [ceil(out / bm), ceil(in / bn)] and the block [bm, bn]; the
  /// FNUZ decode table. I8: f32 [out], one scale per row. I4: f16
  /// [ceil(out / panel), ceil(in / groupSize), panel], one scale per row and
  /// group.
  mlir::Value scale;
  std::pair<int64_t, int64_t> blockScale{0, 0};
  mlir::Value table;
  /// [out] in `biasFormat`, or none.
  mlir::Value bias;
  WeightFormat biasFormat = WeightFormat::F32;
  /// f32 [tokens, out].
  mlir::Value y;
  int64_t in = 0, out = 0, panel = 0;
  /// Round the activations to bf16 (nearest even) before the products.
  bool bf16Activations = true;
  /// Multiply with `vdpbf16ps` (needs bf16Activations and AVX512-BF16), or
  /// for I8 with `vpdpbusd` (AVX512-VNNI).
  bool dotProducts = false;
  /// The dot products are AArch64's `bfdot` (the bf16 extension) on
  /// 16-byte quarters of each vector, not `vdpbf16ps`.
  bool armBFDot = false;
  /// FP8 with dot products: widen the codes by byte-table lookups (needs
  /// AVX512-VBMI).
  bool byteTables = false;
  /// I4 on x86 without AVX512-VNNI: the quad products from AVX2's
  /// vpmaddubsw + vpmaddwd (their i16 pair sums would saturate for int8).
  bool avx2Madd = false;
  /// I4 (and I8 with whole octets of inputs) on AArch64 with i8mm: pairs of
  /// tokens go through `usmmla` (2 x 8 by 8 x 2 blocks), a lone token
  /// through the quad products. BF16 with `armBFDot` and whole quads of
  /// inputs: pairs of tokens through `bfmmla` (2 x 4 by 4 x 2), a lone one
  /// through `bfdot`.
  bool armMatmul = false;
  /// I8 on AArch64: the dot-product instruction for the quads, if any.
  enum class ArmDot { None, Sdot, Usdot };
  ArmDot armDot = ArmDot::None;
  /// AArch64: the code's fixed SVE vector length in bits (256 or 512): the
  /// dot and matrix products above are SVE's, a register of 128-bit
  /// segments each, instead of NEON's one. 0: NEON's.
  int64_t sveBits = 0;
  /// I4: inputs per weight scale (a multiple of 8).
  int64_t groupSize = 0;
  /// Activation rows per register tile.
  int64_t tileRows = 6;
};

/// Emits the whole product for every token of `op.x`.
void emitPanelLinear(mlir::OpBuilder &b, mlir::Location loc,
                     const PanelLinear &op);

} // namespace xfmr::kernels

#endif // XFMR_LOWERING_CPU_KERNELS_PANELLINEAR_H
