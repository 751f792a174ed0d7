//===- IRFuzzer.cpp - the IR parser with the xfmr dialect -----------------===//
//
// What xfmr-compile, xfmr-opt and xfmr.ir do with .mlir text: the nesting
// guard, the parser with the xfmr dialect (types, attributes, custom
// assembly) and the verifiers.
//
//===----------------------------------------------------------------------===//

#include "FuzzTarget.h"

#include "dialects/Xfmr/XfmrDialect.h"
#include "import/ImportUtil.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static mlir::MLIRContext *context = [] {
    mlir::DialectRegistry registry;
    registry.insert<xfmr::XfmrDialect, mlir::func::FuncDialect,
                    mlir::arith::ArithDialect>();
    auto *context = new mlir::MLIRContext(registry);
    context->loadAllAvailableDialects();
    context->disableMultithreading();
    return context;
  }();
  llvm::StringRef text(reinterpret_cast<const char *>(data), size);
  if (xfmr::nestsDeeperThan(text, xfmr::kMaxIRDepth, "([{<", ")]}>"))
    return 0;
  mlir::ScopedDiagnosticHandler quiet(
      context, [](mlir::Diagnostic &) { return mlir::success(); });
  // As the tools read .mlir files: a copy that ends in NUL, which MLIR's
  // lexer relies on (it reads the terminator; libFuzzer's buffer has none).
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(text, "fuzz.mlir"), llvm::SMLoc());
  mlir::ParserConfig config(context);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceFile<mlir::ModuleOp>(sourceMgr, config);
  if (module && mlir::succeeded(mlir::verify(*module))) {
    std::string printed;
    llvm::raw_string_ostream os(printed);
    module->print(os);
  }
  return 0;
}
