# Cross-compiling the runtime and xfmr-run for 64-bit ARM Linux (glibc) with
# Debian's cross toolchain (g++-aarch64-linux-gnu). The arm64 builds of the
# tokenizers' libraries (PCRE2, utf8proc, SentencePiece) come from the sysroot
# scripts/setup.sh unpacks ($XFMR_AARCH64_SYSROOT, default
# /opt/xfmr/sysroot-aarch64). Used by scripts/build-runtime.sh --arch aarch64.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

if(DEFINED ENV{XFMR_AARCH64_SYSROOT})
  set(XFMR_AARCH64_SYSROOT $ENV{XFMR_AARCH64_SYSROOT})
else()
  set(XFMR_AARCH64_SYSROOT /opt/xfmr/sysroot-aarch64)
endif()
if(NOT EXISTS ${XFMR_AARCH64_SYSROOT}/usr/include/pcre2.h)
  message(FATAL_ERROR "no arm64 tokenizer libraries in ${XFMR_AARCH64_SYSROOT} "
                      "(run scripts/setup.sh)")
endif()
set(CMAKE_FIND_ROOT_PATH ${XFMR_AARCH64_SYSROOT} /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# pkg-config reads the sysroot's .pc files and prefixes their paths with it.
set(ENV{PKG_CONFIG_LIBDIR} ${XFMR_AARCH64_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig)
set(ENV{PKG_CONFIG_SYSROOT_DIR} ${XFMR_AARCH64_SYSROOT})
# The sysroot's libraries link against each other by their sonames.
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "-Wl,-rpath-link,${XFMR_AARCH64_SYSROOT}/usr/lib/aarch64-linux-gnu")
