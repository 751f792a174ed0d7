/* xfmr-peak: the arithmetic peak of this machine's cores, measured from the
 * instruction rate rather than from a clock /proc/cpuinfo may not report (VMs
 * show the base clock, cores run at their boost clock). Every thread runs 12
 * independent chains of vector FMAs (vfmadd231ps: 2 flops per f32 lane) and,
 * where the CPU has AVX512-BF16, of bf16 dot products (vdpbf16ps: 2 products
 * and 2 additions per f32 lane, 64 flops per instruction) and, where it has
 * AVX512-VNNI, of int8 dot products (vpdpbusd: 4 byte products and 4
 * additions per i32 lane, 128 operations per instruction) for a fixed count,
 * and the best of 3 passes counts. Prints one JSON object:
 *   {"threads": N, "f32_fma_gflops": X, "bf16_dot_gflops": Y or null,
 *    "int8_dot_gops": Z or null}
 *
 * Usage: xfmr-peak [threads]
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { kChains = 12, kIterations = 20000000 };

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static volatile float sink;
/* Read through volatile: constant operands would let the compiler turn
 * fma(1, b, acc) into an addition. */
static volatile float factor = 0.999f, step = 1e-9f;
static volatile int factor_byte = 3;

__attribute__((target("avx512f"))) static double fma512(void) {
  __m512 acc[kChains];
  __m512 a = _mm512_set1_ps(factor), b = _mm512_set1_ps(step);
  for (int j = 0; j < kChains; ++j)
    acc[j] = _mm512_set1_ps((float)j);
  for (long i = 0; i < kIterations; ++i)
    for (int j = 0; j < kChains; ++j)
      acc[j] = _mm512_fmadd_ps(a, b, acc[j]);
  for (int j = 1; j < kChains; ++j)
    acc[0] = _mm512_add_ps(acc[0], acc[j]);
  sink = _mm512_reduce_add_ps(acc[0]);
  return 2.0 * 16 * kChains * (double)kIterations;
}

__attribute__((target("avx2,fma"))) static double fma256(void) {
  __m256 acc[kChains];
  __m256 a = _mm256_set1_ps(factor), b = _mm256_set1_ps(step);
  for (int j = 0; j < kChains; ++j)
    acc[j] = _mm256_set1_ps((float)j);
  for (long i = 0; i < kIterations; ++i)
    for (int j = 0; j < kChains; ++j)
      acc[j] = _mm256_fmadd_ps(a, b, acc[j]);
  for (int j = 1; j < kChains; ++j)
    acc[0] = _mm256_add_ps(acc[0], acc[j]);
  float out[8];
  _mm256_storeu_ps(out, acc[0]);
  sink = out[0];
  return 2.0 * 8 * kChains * (double)kIterations;
}

__attribute__((target("avx512f,avx512bf16"))) static double dot512(void) {
  __m512 acc[kChains];
  __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80); /* 1.0 */
  __m512bh b = (__m512bh)_mm512_set1_epi16(0x3089); /* 1e-9 */
  for (int j = 0; j < kChains; ++j)
    acc[j] = _mm512_set1_ps((float)j);
  for (long i = 0; i < kIterations; ++i)
    for (int j = 0; j < kChains; ++j)
      acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  for (int j = 1; j < kChains; ++j)
    acc[0] = _mm512_add_ps(acc[0], acc[j]);
  sink = _mm512_reduce_add_ps(acc[0]);
  return 4.0 * 16 * kChains * (double)kIterations;
}

__attribute__((target("avx512f,avx512vnni"))) static double vnni512(void) {
  __m512i acc[kChains];
  __m512i a = _mm512_set1_epi8((char)factor_byte), b = _mm512_set1_epi8(1);
  for (int j = 0; j < kChains; ++j)
    acc[j] = _mm512_set1_epi32(j);
  for (long i = 0; i < kIterations; ++i)
    for (int j = 0; j < kChains; ++j)
      acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
  for (int j = 1; j < kChains; ++j)
    acc[0] = _mm512_add_epi32(acc[0], acc[j]);
  sink = (float)_mm512_reduce_add_epi32(acc[0]);
  return 8.0 * 16 * kChains * (double)kIterations;
}

/* GFLOP/s of `kernel` on `threads` threads, best of 3 passes. */
static double peak(double (*kernel)(void), int threads) {
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    double flops = 0, begin = now();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
    flops += kernel();
    double rate = flops / (now() - begin) / 1e9;
    if (rate > best)
      best = rate;
  }
  return best;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : omp_get_num_procs();
  if (threads < 1) {
    fprintf(stderr, "usage: xfmr-peak [threads >= 1]\n");
    return 2;
  }
  __builtin_cpu_init();
  double f32 = __builtin_cpu_supports("avx512f") ? peak(fma512, threads)
                                                  : peak(fma256, threads);
  printf("{\"threads\": %d, \"f32_fma_gflops\": %.1f, \"bf16_dot_gflops\": ",
         threads, f32);
  if (__builtin_cpu_supports("avx512bf16"))
    printf("%.1f, ", peak(dot512, threads));
  else
    printf("null, ");
  printf("\"int8_dot_gops\": ");
  if (__builtin_cpu_supports("avx512vnni"))
    printf("%.1f}\n", peak(vnni512, threads));
  else
    printf("null}\n");
  return 0;
}
