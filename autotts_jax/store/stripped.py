"""Replay data for untrusted code: the arrays a replay needs, without the answer key.

Candidate controllers run in a sandbox process that must never hold what they could cheat
with.  The one thing a replay does not need is the answer key: which answer is correct.  A
*stripped* store keeps the padded replay arrays (so compiled shapes are unchanged) and nothing
else -- no answer strings, no question text, no gold answer, no provenance -- and its
``is_correct`` is a *decoy*: one answer id per question drawn at random from its answers,
redrawn for every sandbox run.  It carries no information about the gold answer, and a
candidate that reads it anyway makes decisions that change from one run to the next, which
the non-interference replay reports.  Episodes come back as answer ids, and :func:`score`
marks them correct on the trusted side, with the real store.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from autotts_jax.store.load import ReplayData

_FIELDS = ("probe_answer", "n_probes", "branch_tokens", "final_answer", "n_branches",
           "is_correct", "probe_freq")


def decoy_key(data: ReplayData, seed: int) -> np.ndarray:
    """(Q, V) bool: one answer id per question, drawn from the ids its branches use."""
    rng = np.random.default_rng(seed)
    probes = np.asarray(data.probe_answer)
    finals = np.asarray(data.final_answer)
    key = np.zeros(np.asarray(data.is_correct).shape, bool)
    for q in range(key.shape[0]):
        used = np.union1d(probes[q][probes[q] >= 0], finals[q][finals[q] >= 0])
        if used.size:
            key[q, int(rng.choice(used))] = True
    return key


def save_stripped(data: ReplayData, path: str | Path, decoy: int = 0) -> Path:
    """Write ``data`` to ``path`` (``.npz``, atomically) with a decoy answer key drawn from
    seed ``decoy`` in place of the real one."""
    path = Path(path)
    arrays = {f: np.asarray(getattr(data, f)) for f in _FIELDS}
    arrays["is_correct"] = decoy_key(data, decoy)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.chmod(tmp, 0o644)  # a sandbox may read it as another user; it holds no secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_stripped(path: str | Path) -> ReplayData:
    """Read a store written by :func:`save_stripped` (no pickles: plain arrays only)."""
    with np.load(path, allow_pickle=False) as z:
        missing = [f for f in _FIELDS if f not in z.files]
        if missing:
            raise ValueError(f"{path}: not a stripped store (missing {', '.join(missing)})")
        return ReplayData(**{f: np.asarray(z[f]) for f in _FIELDS})


def score(answer: np.ndarray, data: ReplayData) -> np.ndarray:
    """Correct flags of answer ids ``answer[..., Q]`` (the last axis is the question) against
    ``data``'s answer key; ``-1`` and ids outside the vocabulary are wrong."""
    answer = np.asarray(answer)
    table = np.asarray(data.is_correct)
    n_q, n_v = table.shape
    if answer.shape[-1] != n_q:
        raise ValueError(f"answers for {answer.shape[-1]} questions, the store has {n_q}")
    q = np.broadcast_to(np.arange(n_q), answer.shape)
    ok = (answer >= 0) & (answer < n_v)
    return ok & table[q, np.where(ok, answer, 0)]
