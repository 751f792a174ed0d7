/* xfmr-bandwidth: the memory read bandwidth of this machine, measured the way
 * decode reads weights (a large buffer streamed once per pass by every thread
 * in parallel). Prints one JSON object: {"threads": N, "read_gb_per_s": X}.
 *
 * Usage: xfmr-bandwidth [threads] [MiB]
 */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  size_t mib = argc > 2 ? (size_t)atoi(argv[2]) : 1024;
  if (threads < 1 || mib < 64) {
    fprintf(stderr, "usage: xfmr-bandwidth [threads >= 1] [MiB >= 64]\n");
    return 2;
  }
  size_t count = mib * 1024 * 1024 / sizeof(uint64_t);
  uint64_t *data = aligned_alloc(4096, count * sizeof(uint64_t));
  if (!data) {
    fprintf(stderr, "xfmr-bandwidth: cannot allocate %zu MiB\n", mib);
    return 1;
  }
  omp_set_num_threads(threads);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < count; ++i)
    data[i] = i;
  double best = 0;
  uint64_t checksum = 0;
  for (int pass = 0; pass < 5; ++pass) {
    double start = now();
    uint64_t sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (size_t i = 0; i < count; ++i)
      sum += data[i];
    double seconds = now() - start;
    checksum += sum;
    double rate = count * sizeof(uint64_t) / seconds / 1e9;
    if (rate > best)
      best = rate;
  }
  printf("{\"threads\": %d, \"buffer_mib\": %zu, \"read_gb_per_s\": %.2f, "
         "\"checksum\": %llu}\n",
         threads, mib, best, (unsigned long long)(checksum & 0xffff));
  free(data);
  return 0;
}
