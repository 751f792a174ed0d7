"""Pieces the accuracy benchmarks share (fp8_accuracy, kv_cache_accuracy,
kv_eviction_accuracy): sampling from a float64 reference model and summary statistics."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - np.max(logits, axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def sample_sequences(model, prompt: Sequence[int], n_seqs: int, n_tokens: int, seed: int,
                     temperature: float = 1.0):
    """`n_seqs` sequences of prompt + `n_tokens` ids sampled from `model` one token at a time
    (its default, uncompressed cache), with the logit rows that predicted each sampled token
    [n_tokens, vocab]: the reference's teacher-forced logits over the same tokens."""
    rng = np.random.default_rng(seed)
    seqs, rows = [], []
    for _ in range(n_seqs):
        cache = model.new_cache()
        ids = list(prompt)
        row = model.forward(ids, cache)[-1]
        seq_rows = []
        for i in range(n_tokens):
            seq_rows.append(row)
            p = np.exp(log_softmax(row / temperature))
            tok = int(rng.choice(len(p), p=p / p.sum()))
            ids.append(tok)
            if i + 1 < n_tokens:
                row = model.forward([tok], cache)[-1]
        seqs.append(ids)
        rows.append(np.stack(seq_rows))
    return seqs, rows


def stderr_of_mean(per_seq: List[float]) -> Optional[float]:
    """Standard error of the mean over sequences (None for a single sequence)."""
    return float(np.std(per_seq, ddof=1) / np.sqrt(len(per_seq))) if len(per_seq) > 1 else None


def plus_minus(stderr: Optional[float], digits: int) -> str:
    """" ± stderr" for a table cell, or nothing without one."""
    return "" if stderr is None else f" ± {stderr:.{digits}f}"
