"""Loading a packed store as one immutable pytree of arrays.

:class:`ReplayData` holds only arrays, so it can be passed straight to ``jax.device_put`` and
into jitted functions as an ordinary argument.  Its shapes are padded to *buckets* (powers of
two, at least 64) so that the four public backbones, whose vocabularies differ, share one
compiled program: only values change between them, never shapes.  Human-readable metadata
(strings, provenance) lives beside it in :class:`StoreMeta`, outside the traced world.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from autotts_jax.store.hdf5 import read_store_arrays


def bucket(n: int, minimum: int = 64) -> int:
    """Smallest power of two >= max(n, minimum)."""
    size = minimum
    while size < n:
        size *= 2
    return size


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ReplayData:
    """Padded replay tensors of one (model, benchmark).

    Padding: branches beyond ``n_branches`` and probes beyond ``n_probes`` hold ``-1`` ids;
    vocabulary ids beyond ``n_vocab`` are never correct.
    """

    probe_answer: np.ndarray  # (Q, B, K) int32 answer id after each interval, -1 pad
    n_probes: np.ndarray  # (Q, B) int32 probes L per branch (0 for padding)
    branch_tokens: np.ndarray  # (Q, B) int32 tokens of the whole branch
    final_answer: np.ndarray  # (Q, B) int32 final answer id, in [0, V_final)
    n_branches: np.ndarray  # (Q,) int32 real branches per question
    is_correct: np.ndarray  # (Q, V) bool answer id equals the gold string
    probe_freq: np.ndarray  # () int32 tokens per probe interval

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(questions, branches, probe depth, vocabulary) after padding."""
        q, b, k = self.probe_answer.shape
        return q, b, k, self.is_correct.shape[1]


@dataclass(frozen=True)
class StoreMeta:
    path: str
    model: str
    benchmark: str
    probe_freq: int
    n_final_vocab: int  # largest per-question final vocabulary (pool size needed)
    attrs: dict = field(default_factory=dict, compare=False)
    vocab: np.ndarray | None = field(default=None, compare=False, repr=False)  # (Q, V) str
    question: np.ndarray | None = field(default=None, compare=False, repr=False)
    gold_answer: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Store:
    data: ReplayData
    meta: StoreMeta


def _pad(arr: np.ndarray, shape: tuple[int, ...], fill) -> np.ndarray:
    out = np.full(shape, fill, dtype=arr.dtype)
    out[tuple(slice(0, s) for s in arr.shape)] = arr
    return out


def from_arrays(
    arrays: dict[str, np.ndarray],
    probe_freq: int,
    *,
    min_branches: int = 128,
    min_depth: int = 128,
    min_vocab: int = 1024,
) -> ReplayData:
    """Build padded :class:`ReplayData` from store arrays (see :mod:`autotts_jax.store.hdf5`)."""
    n_q, n_b, n_k = arrays["probe_answer"].shape
    n_v = arrays["is_correct"].shape[1]
    real = np.arange(n_b)[None, :] < np.asarray(arrays["n_branches"])[:, None]
    if np.any(np.asarray(arrays["n_probes"])[real] < 1):
        raise ValueError("n_probes: every real branch needs at least one probe")
    b, k, v = bucket(n_b, min_branches), bucket(n_k, min_depth), bucket(n_v, min_vocab)
    i32 = np.int32
    return ReplayData(
        probe_answer=_pad(arrays["probe_answer"].astype(i32), (n_q, b, k), -1),
        n_probes=_pad(arrays["n_probes"].astype(i32), (n_q, b), 0),
        branch_tokens=_pad(arrays["branch_tokens"].astype(i32), (n_q, b), 0),
        final_answer=_pad(arrays["final_answer"].astype(i32), (n_q, b), -1),
        n_branches=arrays["n_branches"].astype(i32),
        is_correct=_pad(arrays["is_correct"].astype(bool), (n_q, v), False),
        probe_freq=np.asarray(probe_freq, dtype=i32),
    )


def load_store(path: str | Path, **pad) -> Store:
    """Load and validate a packed store; ``pad`` overrides the minimum bucket sizes."""
    arrays, attrs = read_store_arrays(path)
    data = from_arrays(arrays, int(attrs["probe_freq"]), **pad)
    meta = StoreMeta(
        path=str(path),
        model=str(attrs["model"]),
        benchmark=str(attrs["benchmark"]),
        probe_freq=int(attrs["probe_freq"]),
        n_final_vocab=int(arrays["n_final_vocab"].max()),
        attrs=attrs,
        vocab=arrays["vocab"],
        question=arrays["question"],
        gold_answer=arrays["gold_answer"],
    )
    return Store(data, meta)


def load(path: str | Path, **pad) -> ReplayData:
    """Load a packed store as a :class:`ReplayData` pytree (validated, padded to buckets)."""
    return load_store(path, **pad).data
