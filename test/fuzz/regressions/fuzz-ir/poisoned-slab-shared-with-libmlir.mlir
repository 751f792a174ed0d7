

func.func @split_heads_dynamic(%x: tensor<?x64xf32>) {
  // expected-ads and head_dim must bf32>
  return
}

arith