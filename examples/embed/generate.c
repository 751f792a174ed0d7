/* generate.c - greedy (or sampled) generation through xfmr's C API.
 *
 *   generate MODEL.xfmr N ID... [--temperature T --seed S]
 *
 * Prints the N generated token ids on one line, as `xfmr-run --prompt-ids`
 * does; stops early at an end-of-sequence id only with --stop-at-eos. */
#include <xfmr/xfmr.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failed(const char *what) {
  fprintf(stderr, "generate: %s: %s\n", what, xfmr_last_error());
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: generate MODEL.xfmr N ID... [--temperature T] "
                    "[--seed S] [--stop-at-eos]\n");
    return 2;
  }
  xfmr_sampling sampling = {0.0f, 0, 1.0f, 0};
  int stop_at_eos = 0;
  int steps = atoi(argv[2]);
  int32_t *prompt = malloc(sizeof(int32_t) * (size_t)argc);
  size_t count = 0;
  for (int i = 3; i < argc; ++i) {
    if (strcmp(argv[i], "--temperature") == 0 && i + 1 < argc)
      sampling.temperature = (float)atof(argv[++i]);
    else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
      sampling.seed = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--stop-at-eos") == 0)
      stop_at_eos = 1;
    else
      prompt[count++] = (int32_t)atol(argv[i]);
  }

  xfmr_model *model = NULL;
  if (xfmr_model_open(argv[1], NULL, &model) != XFMR_OK)
    return failed("open");
  int64_t vocab = xfmr_model_vocab_size(model);
  int32_t eos[16];
  size_t eos_count = xfmr_model_end_of_sequence_ids(model, eos, 16);
  xfmr_sequence *sequence = NULL;
  if (xfmr_sequence_create(model, 0, &sequence) != XFMR_OK)
    return failed("sequence");
  xfmr_sampler *sampler = NULL;
  if (xfmr_sampler_create(&sampling, &sampler) != XFMR_OK)
    return failed("sampler");

  float *logits = malloc(sizeof(float) * (size_t)vocab);
  int status = 0;
  const int32_t *input = prompt;
  size_t input_count = count;
  int32_t token = 0;
  for (int generated = 0; generated < steps; ++generated) {
    /* Feed the prompt, then each sampled token (the last one is not fed:
     * nothing needs its logits). */
    if (xfmr_sequence_step(sequence, input, input_count, logits) != XFMR_OK) {
      status = failed("step");
      break;
    }
    if (xfmr_sampler_sample(sampler, logits, vocab, &token) != XFMR_OK) {
      status = failed("sample");
      break;
    }
    printf(generated ? " %d" : "%d", token);
    int is_eos = 0;
    for (size_t e = 0; e < eos_count && e < 16; ++e)
      is_eos |= token == eos[e];
    if (stop_at_eos && is_eos)
      break;
    input = &token;
    input_count = 1;
  }
  printf("\n");
  free(logits);
  free(prompt);
  xfmr_sampler_free(sampler);
  xfmr_sequence_free(sequence);
  xfmr_model_free(model);
  return status;
}
