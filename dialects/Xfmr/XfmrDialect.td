//===- XfmrDialect.td - the xfmr dialect definition -------*- tablegen -*-===//

#ifndef XFMR_DIALECT_TD
#define XFMR_DIALECT_TD

include "mlir/IR/OpBase.td"

def Xfmr_Dialect : Dialect {
  let name = "xfmr";
  let cppNamespace = "::xfmr";
  let summary = "Transformer language models as a graph of model-level concepts";
  let description = [{
    The `xfmr` dialect describes a transformer language model at the level of
    its concepts: embedding lookups, RMSNorm, linear layers, RoPE, attention
    over an explicit KV cache, multi-head latent attention (MLA), SwiGLU and
    Mixture-of-Experts routing, and quantization with explicit scale layouts.

    Weights live outside the IR in a parameter store and are referenced by
    name (`xfmr.weight`), so a 70B-parameter model's IR stays a few hundred
    kilobytes. Ops have value semantics on tensors; the KV cache is an SSA
    value that attention ops consume and return, so cache updates are visible
    to passes.
  }];
  let useDefaultAttributePrinterParser = 1;
  let useDefaultTypePrinterParser = 1;
  let hasOperationAttrVerify = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
    void registerTypes();
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
}

class Xfmr_Op<string mnemonic, list<Trait> traits = []>
    : Op<Xfmr_Dialect, mnemonic, traits>;

#endif // XFMR_DIALECT_TD
