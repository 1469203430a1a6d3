"""Bootstrap confidence intervals of accuracy: resample *questions* with replacement.

Questions are the unit of sampling (the shuffle seeds of one question are not independent
draws from the question population), so each resample draws ``Q`` question indices with
replacement and averages the per-question accuracy (mean over seeds) of the drawn questions.
The draws come from ``jax.random`` with an explicit seed, so the same seed gives the same
interval on any machine; all ``B`` resamples are one matrix product (no loop over resamples).
The interval is the percentile interval at ``level``.

Every config of one store shares the same ``B x Q`` draws, so intervals of different
controllers on the same questions are paired.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def resample_counts(n_questions: int, samples: int, seed: int) -> np.ndarray:
    """``[samples, n_questions]`` int: how often each question is drawn in each resample."""
    if n_questions < 1:
        raise ValueError("bootstrap: no questions to resample")
    if samples < 1:
        raise ValueError(f"bootstrap.samples must be >= 1, got {samples}")
    key = jax.random.key(int(seed))
    idx = np.asarray(
        jax.random.randint(key, (samples, n_questions), 0, n_questions, dtype=jnp.int32)
    )
    counts = np.zeros((samples, n_questions), dtype=np.int64)
    np.add.at(counts, (np.arange(samples)[:, None], idx), 1)
    return counts


def accuracy_ci(
    correct: np.ndarray, *, samples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy and its bootstrap interval, in percent.

    ``correct``: bool ``[..., seeds, questions]`` (e.g. ``Episodes.correct``, ``[C, N, Q]``).
    Returns ``(accuracy, low, high)``, each of shape ``[...]``.
    """
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"bootstrap.level must be in (0, 1), got {level}")
    correct = np.asarray(correct, dtype=np.float64)
    if correct.ndim < 2:
        raise ValueError("accuracy_ci: expected [..., seeds, questions]")
    per_question = correct.mean(axis=-2)  # [..., Q]
    n_q = per_question.shape[-1]
    counts = resample_counts(n_q, samples, seed)  # [B, Q]
    boot = per_question @ counts.T.astype(np.float64) / n_q  # [..., B]
    tail = (1.0 - float(level)) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail], axis=-1)
    point = per_question.mean(axis=-1)
    return 100.0 * point, 100.0 * low, 100.0 * high
