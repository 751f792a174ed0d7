"""Compares the logits xfmr-run dumped (--dump-logits) with the float64 NumPy
reference: same greedy ids, and each row within 1e-4 of the row's max-abs.

Usage: compare_reference.py CHECKPOINT PROMPT_IDS IDS LOGITS.npy
Prints one line and exits 0 when they match, 1 when they do not.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from xfmr import reference  # noqa: E402


def main(argv):
    checkpoint, prompt, ids, logits_path = argv
    prompt = [int(x) for x in prompt.split()]
    ids = [int(x) for x in ids.split()]
    rows = np.load(logits_path)
    expected_ids, expected_rows = reference.load(checkpoint).generate_greedy(prompt, len(ids))
    scale = np.max(np.abs(expected_rows), axis=-1)
    error = float(np.max(np.max(np.abs(rows - expected_rows), axis=-1) / scale))
    same = ids == [int(i) for i in expected_ids]
    verdict = "matches" if same and error < 1e-4 else "DOES NOT MATCH"
    print(f"{verdict} the NumPy float64 reference: ids {'equal' if same else 'differ'}, "
          f"max logit error {error:.2e} of the row's max-abs (tolerance 1e-4)")
    return 0 if verdict == "matches" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
