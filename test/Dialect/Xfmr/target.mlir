// The module's #xfmr.target round-trips; features default to none, sve_bits
// to 0 (omitted).
// RUN: xfmr-opt %s --split-input-file | FileCheck %s
// RUN: xfmr-opt %s --split-input-file --mlir-print-op-generic | xfmr-opt --split-input-file | FileCheck %s

// CHECK: module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "sapphirerapids", features = "+amx-bf16,+amx-tile,+avx512bf16,+avx512f">}
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "sapphirerapids", features = "+amx-bf16,+amx-tile,+avx512bf16,+avx512f">} {
}

// -----

// CHECK: module attributes {xfmr.target = #xfmr.target<kind = "cuda", triple = "nvptx64-nvidia-cuda", chip = "sm_90a">}
module attributes {xfmr.target = #xfmr.target<kind = "cuda", triple = "nvptx64-nvidia-cuda", chip = "sm_90a">} {
}

// -----

// CHECK: module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "aarch64-unknown-linux-gnu", chip = "neoverse-v1", features = "+i8mm,+neon,+sve", sve_bits = 256>}
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "aarch64-unknown-linux-gnu", chip = "neoverse-v1", features = "+i8mm,+neon,+sve", sve_bits = 256>} {
}
