// The module's #xfmr.target round-trips; features default to none.
// RUN: xfmr-opt %s --split-input-file | FileCheck %s
// RUN: xfmr-opt %s --split-input-file --mlir-print-op-generic | xfmr-opt --split-input-file | FileCheck %s

// CHECK: module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "sapphirerapids", features = "+amx-bf16,+amx-tile,+avx512bf16,+avx512f">}
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "sapphirerapids", features = "+amx-bf16,+amx-tile,+avx512bf16,+avx512f">} {
}

// -----

// CHECK: module attributes {xfmr.target = #xfmr.target<kind = "cuda", triple = "nvptx64-nvidia-cuda", chip = "sm_90a">}
module attributes {xfmr.target = #xfmr.target<kind = "cuda", triple = "nvptx64-nvidia-cuda", chip = "sm_90a">} {
}
