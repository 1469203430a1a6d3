"""Run an oracle controller over (seed, question) episodes and aggregate as upstream does.

Upstream (``ModelandTask.evaluate`` with ``bootstrap_iter=1``, ``REFERENCE_SEMANTICS.md``
§1.5-1.6) loops seed-major over shuffle seeds 0..99 and the 30 questions, builds a fresh
``Question`` per episode, scores ``answer == gold`` and the episode's accumulated cost, checks
that the active prefix of ``cost_per_branch`` sums to the cost, and reports
``round(100*K/n, 2)`` and ``int(T/n)``.  We keep the integer totals ``K`` and ``T`` so that a
comparison never depends on float summation order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from autotts_jax.oracle.env import OracleQuestion, n_questions, permutation, question_view


def evaluate_oracle(
    arrays,
    probe_freq: int,
    make_controller: Callable[[], object],
    seeds: Iterable[int] = range(100),
    questions: Iterable[int] | None = None,
    cost_model: str = "reference",
    trace: bool = False,
) -> dict:
    """Evaluate ``make_controller()`` on every (seed, question) episode.

    ``arrays`` are store arrays (see :func:`~autotts_jax.oracle.env.question_view`).  One
    controller object serves all episodes, as upstream (``solve`` resets its state).

    Returns per-episode arrays of shape ``[n_seeds, n_questions]`` (``answer`` with -1 for
    ``None``, ``correct``, ``tokens``, ``seq_tokens``, ``seq_tokens_max_branch`` (SCOUT's
    accounting, windowed by the controller's ``seq_window`` if it has one), ``stop_reason``,
    ``rounds``) and the aggregate: ``n_correct`` (K), ``total_tokens`` (T),
    ``acc = round(100*K/n, 2)``, ``avg_cost = T/n`` and ``avg_cost_int = T // n`` (upstream
    prints ``int(avg)``).

    With ``trace=True`` also ``trace``: per episode the list of
    :class:`~autotts_jax.oracle.env.RoundRow` of its rounds (``OracleQuestion.round_rows``).

    Raises RuntimeError("Token cost mismatch") when an episode's active per-slot costs do not
    sum to its cost (upstream's check; e.g. after ``probe_more(next)``).
    """
    seeds = [int(s) for s in seeds]
    if questions is None:
        questions = range(n_questions(arrays))
    questions = [int(q) for q in questions]
    views = {q: question_view(arrays, q) for q in questions}
    controller = make_controller()

    shape = (len(seeds), len(questions))
    answer = np.full(shape, -1, dtype=np.int64)
    correct = np.zeros(shape, dtype=bool)
    tokens = np.zeros(shape, dtype=np.int64)
    seq_tokens = np.zeros(shape, dtype=np.int64)
    seq_tokens_max_branch = np.zeros(shape, dtype=np.int64)
    seq_window = getattr(controller, "seq_window", None)  # windowed max_branch accounting (ESC)
    stop_reason = np.full(shape, "", dtype=object)
    rounds = np.zeros(shape, dtype=np.int64)
    rows = np.empty(shape, dtype=object)
    perms: dict[tuple[int, int], list[int]] = {}

    for si, seed in enumerate(seeds):
        for qi, q in enumerate(questions):
            view = views[q]
            key = (seed, view.n_branches)
            if key not in perms:  # upstream: a fresh Random(seed) per question
                perms[key] = permutation(seed, view.n_branches)
            env = OracleQuestion(
                view, perm=perms[key], probe_freq=probe_freq, cost_model=cost_model
            )
            ans = controller.solve(env)
            if sum(env.get_cost_per_branch_active()) != env.cost:
                raise RuntimeError("Token cost mismatch")
            answer[si, qi] = -1 if ans is None else int(ans)
            correct[si, qi] = view.is_correct(ans)
            tokens[si, qi] = env.cost
            seq_tokens[si, qi] = env.seq_tokens()
            seq_tokens_max_branch[si, qi] = env.seq_tokens_max_branch(seq_window)
            stop_reason[si, qi] = getattr(controller, "stop_reason", None) or ""
            rounds[si, qi] = getattr(controller, "rounds", 0)
            if trace:
                rows[si, qi] = env.round_rows()

    n = answer.size
    k = int(correct.sum())
    t = int(tokens.sum())
    return {
        "seeds": np.array(seeds, dtype=np.int64),
        "questions": np.array(questions, dtype=np.int64),
        "answer": answer,
        "correct": correct,
        "tokens": tokens,
        "seq_tokens": seq_tokens,
        "seq_tokens_max_branch": seq_tokens_max_branch,
        "stop_reason": stop_reason,
        "rounds": rounds,
        "n_episodes": n,
        "n_correct": k,
        "total_tokens": t,
        "acc": round(100 * k / n, 2) if n else 0.0,
        "avg_cost": t / n if n else 0.0,
        "avg_cost_int": t // n if n else 0,
        "avg_seq_cost": float(seq_tokens.sum()) / n if n else 0.0,
        **({"trace": rows} if trace else {}),
    }
