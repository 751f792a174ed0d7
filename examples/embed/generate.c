/* generate.c - greedy (or sampled) generation through xfmr's C API.
 *
 *   generate MODEL.xfmr N ID... [--temperature T --seed S] [--parallel P]
 *            [--paged]
 *
 * Prints the N generated token ids on one line, as `xfmr-run --prompt-ids`
 * does; stops early at an end-of-sequence id only with --stop-at-eos. With
 * --parallel P it generates P sequences side by side (the same prompt and
 * sampling settings), advancing all of them in one batched call per token
 * (xfmr_sequences_step), and prints one line per sequence. With --paged the
 * sequences' KV caches are blocks of one pool (xfmr_block_pool_create):
 * the first sequence runs the prompt, the others map the blocks holding it
 * (xfmr_sequence_reuse_prefix, reported on stderr) and run only the rest. */
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
                    "[--seed S] [--stop-at-eos] [--parallel P] [--paged]\n");
    return 2;
  }
  xfmr_sampling sampling = {0.0f, 0, 1.0f, 0};
  int stop_at_eos = 0;
  int parallel = 1;
  int paged = 0;
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
    else if (strcmp(argv[i], "--parallel") == 0 && i + 1 < argc)
      parallel = atoi(argv[++i]);
    else if (strcmp(argv[i], "--paged") == 0)
      paged = 1;
    else
      prompt[count++] = (int32_t)atol(argv[i]);
  }

  if (parallel < 1 || parallel > 64) {
    fprintf(stderr, "generate: --parallel must be in [1, 64]\n");
    return 2;
  }

  xfmr_model *model = NULL;
  if (xfmr_model_open(argv[1], NULL, &model) != XFMR_OK)
    return failed("open");
  int64_t vocab = xfmr_model_vocab_size(model);
  int32_t eos[16];
  size_t eos_count = xfmr_model_end_of_sequence_ids(model, eos, 16);
  xfmr_sequence *sequences[64] = {0};
  xfmr_sampler *samplers[64] = {0};
  xfmr_block_pool *pool = NULL;
  if (paged && xfmr_block_pool_create(model, 0, parallel, 0, &pool) != XFMR_OK)
    return failed("block pool");
  for (int p = 0; p < parallel; ++p) {
    xfmr_status made =
        paged ? xfmr_sequence_create_paged(model, pool, 0, &sequences[p])
              : xfmr_sequence_create(model, 0, &sequences[p]);
    if (made != XFMR_OK)
      return failed("sequence");
    if (xfmr_sampler_create(&sampling, &samplers[p]) != XFMR_OK)
      return failed("sampler");
  }

  float *logits = malloc(sizeof(float) * (size_t)vocab * (size_t)parallel);
  int32_t *tokens = malloc(sizeof(int32_t) * (size_t)parallel * (size_t)steps);
  const int32_t *inputs[64];
  size_t counts[64];
  for (int p = 0; p < parallel; ++p) {
    inputs[p] = prompt;
    counts[p] = count;
  }
  int status = 0, generated = 0, ended = 0;
  for (; generated < steps && !ended; ++generated) {
    /* Feed the prompt, then each sampled token (the last one is not fed:
     * nothing needs its logits). Paged, the first sequence runs the prompt
     * first and the others take what they can of it from the pool. */
    int first = 0;
    if (paged && parallel > 1 && generated == 0) {
      if (xfmr_sequence_step(sequences[0], inputs[0], counts[0], logits) !=
          XFMR_OK) {
        status = failed("step");
        break;
      }
      for (int p = 1; p < parallel; ++p) {
        size_t reused = 0;
        if (xfmr_sequence_reuse_prefix(sequences[p], prompt, count, &reused) !=
            XFMR_OK) {
          status = failed("reuse prefix");
          break;
        }
        fprintf(stderr, "generate: sequence %d reused %zu prompt tokens\n", p,
                reused);
        inputs[p] = prompt + reused;
        counts[p] = count - reused;
      }
      if (status)
        break;
      first = 1;
    }
    xfmr_status run =
        parallel - first == 1
            ? xfmr_sequence_step(sequences[first], inputs[first], counts[first],
                                 logits + first * vocab)
            : xfmr_sequences_step(sequences + first, inputs + first,
                                  counts + first, (size_t)(parallel - first),
                                  logits + first * vocab);
    if (run != XFMR_OK) {
      status = failed("step");
      break;
    }
    for (int p = 0; p < parallel; ++p) {
      int32_t *token = &tokens[p * steps + generated];
      if (xfmr_sampler_sample(samplers[p], logits + p * vocab, vocab, token) !=
          XFMR_OK) {
        status = failed("sample");
        break;
      }
      for (size_t e = 0; e < eos_count && e < 16; ++e)
        ended |= stop_at_eos && parallel == 1 && *token == eos[e];
      inputs[p] = token;
      counts[p] = 1;
    }
    if (status)
      break;
  }
  for (int p = 0; p < parallel; ++p) {
    for (int i = 0; i < generated; ++i)
      printf(i ? " %d" : "%d", tokens[p * steps + i]);
    printf("\n");
  }
  free(tokens);
  free(logits);
  free(prompt);
  for (int p = 0; p < parallel; ++p) {
    xfmr_sampler_free(samplers[p]);
    xfmr_sequence_free(sequences[p]);
  }
  xfmr_block_pool_free(pool);
  xfmr_model_free(model);
  return status;
}
