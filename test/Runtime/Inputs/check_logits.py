"""Checks xfmr-run's --dump-logits against the NumPy float64 reference.

    check_logits.py CHECKPOINT "PROMPT IDS" IDS_FILE LOGITS.npy [--greedy]

Teacher-forces the reference with the prompt and the generated ids, so one
near-tie that flips a token cannot make the whole comparison diverge. Row i of
the dump must match the reference's row for the position that produced
generated token i; with --greedy each token must be the argmax of its row.
Prints "OK ..." on success, exits 1 with the first difference otherwise.
"""

import sys

import numpy as np

import xfmr.reference


def main() -> int:
    checkpoint, prompt_text, ids_path, npy_path = sys.argv[1:5]
    greedy = "--greedy" in sys.argv[5:]
    prompt = [int(x) for x in prompt_text.split()]
    with open(ids_path) as f:
        lines = f.read().splitlines()
    if len(lines) != 1:
        print(f"FAIL: expected one line of ids on stdout, got {len(lines)}")
        return 1
    generated = [int(x) for x in lines[0].split()]
    dumped = np.load(npy_path)
    model = xfmr.reference.load(checkpoint)
    if dumped.dtype != np.float32 or dumped.shape != (len(generated), model.vocab_size):
        print(f"FAIL: dump is {dumped.dtype} {dumped.shape}, expected float32 "
              f"({len(generated)}, {model.vocab_size})")
        return 1
    reference = model.forward(prompt + generated[:-1], model.new_cache())
    reference = reference[len(prompt) - 1:]
    diff = np.abs(dumped.astype(np.float64) - reference).max(initial=0.0)
    # f32 kernels against a float64 reference: logits are O(10).
    if not diff < 1e-3:
        print(f"FAIL: max |logit difference| {diff:.3g} >= 1e-3")
        return 1
    if greedy:
        for i, (token, row) in enumerate(zip(generated, dumped)):
            if token != int(np.argmax(row)):
                print(f"FAIL: token {i} is {token}, the argmax of its row is {np.argmax(row)}")
                return 1
    print(f"OK {len(generated)} tokens, max |logit difference| {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
