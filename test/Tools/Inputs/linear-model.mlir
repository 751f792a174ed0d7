// A hand-written model without an xfmr.model description: one linear layer
// over an embedding, no KV cache. Its vocabulary (64) comes from the logits.
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x64xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<64x32xf32>
  %h = xfmr.embedding %e[%ids] : tensor<64x32xf32>, tensor<?xi32> -> tensor<?x32xf32>
  %w = xfmr.weight "w" : tensor<64x32xf32>
  %y = xfmr.linear %h, %w : tensor<?x32xf32>, tensor<64x32xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
func.func @decode(%ids: tensor<1xi32>, %start: index) -> tensor<1x64xf32> attributes {xfmr.entry = "decode"} {
  %e = xfmr.weight "embed" : tensor<64x32xf32>
  %h = xfmr.embedding %e[%ids] : tensor<64x32xf32>, tensor<1xi32> -> tensor<1x32xf32>
  %w = xfmr.weight "w" : tensor<64x32xf32>
  %y = xfmr.linear %h, %w : tensor<1x32xf32>, tensor<64x32xf32> -> tensor<1x64xf32>
  return %y : tensor<1x64xf32>
}
