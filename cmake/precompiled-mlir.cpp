// The source of the XfmrPrecompiledHeaders target, which compiles
// cmake/precompiled-mlir.h once for the libraries that reuse it.
