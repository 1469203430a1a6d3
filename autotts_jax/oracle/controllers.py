"""Upstream-style controllers for the oracle environment (``REFERENCE_SEMANTICS.md`` §2).

Each controller only calls the imperative API of :class:`~autotts_jax.oracle.env.OracleQuestion`
(full reads, ``probe_new``, ``probe_more``), with the upstream class names, parameter names and
defaults, and follows the reference pseudo-code step by step, including the order in which
answers enter each vote (that order decides ties).  ``solve(question)`` returns an answer id
or ``None``; afterwards ``stop_reason`` says why it stopped (our names, the engine's: upstream
has none) and ``rounds`` how many rounds it used.  Round boundaries (for sequential tokens)
are part of each controller's definition and are marked with ``question.new_round()``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

from scipy.stats import beta as _beta_dist

# -- shared helpers (§2.0) ----------------------------------------------------------------------


def majority(answers: Sequence[Hashable]):
    """Most common answer, ``None`` for an empty list.

    ``Counter.most_common(1)``: ties go to the answer whose first occurrence is earliest,
    because ``Counter`` keeps insertion order and ``max`` returns the first maximum.
    """
    if not answers:
        return None
    return Counter(answers).most_common(1)[0][0]


def vote_stats(answers: Sequence[Hashable]) -> tuple[object, int, int, int]:
    """``(winner, top1, top2, total)`` from ``most_common(2)``; ``top2`` is 0 if unopposed."""
    if not answers:
        return None, 0, 0, 0
    top = Counter(answers).most_common(2)
    top2 = top[1][1] if len(top) > 1 else 0
    return top[0][0], top[0][1], top2, len(answers)


_CONF: dict[tuple[int, int], float] = {}


def conf(top1: int, top2: int) -> float:
    """P[p > 1/2] under Beta(top1+1, top2+1), as SciPy computes it (0.0 if ``top1 <= 0``).

    SciPy's value differs from the exact dyadic rational by a few ulp in some cells, and CMC
    compares an EMA of these values against thresholds, so parity needs SciPy's float64
    value, not the closed form.  Cached: ``beta.cdf`` is slow.
    """
    if top1 <= 0:
        return 0.0
    key = (int(top1), int(top2))
    value = _CONF.get(key)
    if value is None:
        value = float(1.0 - _beta_dist.cdf(0.5, top1 + 1, top2 + 1))
        _CONF[key] = value
    return value


def _safe_full_read(q):
    try:
        return q.get_new_branch_final_answer()
    except (IndexError, ValueError):
        return None


def _safe_probe_new(q):
    try:
        return q.probe_new()
    except (IndexError, ValueError):
        return None


def _safe_probe_more(q, i: int):
    try:
        return q.probe_more(i)
    except (IndexError, ValueError):
        return None


class _Controller:
    """Common bookkeeping: ``stop_reason`` and ``rounds`` of the last ``solve``."""

    stop_reason: str | None = None
    rounds: int = 0

    def _finish(self, answer, reason: str, rounds: int):
        self.stop_reason = reason
        self.rounds = rounds
        return answer


# -- SC@N (§2.5) --------------------------------------------------------------------------------


class SC(_Controller):
    """Self-consistency: full-read slots ``0..max_samples-1`` in one round, majority vote.

    Upstream has no SC class; this equals ``ASCMethod(max_samples, threshold=2.0)`` and
    ``ESCMethod(max_samples, window_size=max_samples)``.
    """

    def __init__(self, max_samples: int = 64) -> None:
        self.max_samples = max_samples

    def solve(self, q):
        cands = []
        reason = "max_samples"
        for _ in range(self.max_samples):
            a = _safe_full_read(q)
            if a is None:
                reason = "exhausted"
                break
            cands.append(a)
        q.new_round()
        return self._finish(majority(cands), reason, int(bool(cands)))


# -- ASC (§2.1) ---------------------------------------------------------------------------------


class ASCMethod(_Controller):
    """Adaptive self-consistency: read one branch at a time until the vote is confident.

    Each full read is its own round (the stopping rule looks at every read before the next).
    """

    def __init__(self, max_samples: int = 40, threshold: float = 0.95) -> None:
        self.max_samples = max_samples
        self.threshold = threshold

    def solve(self, q):
        cands = []
        for _ in range(self.max_samples):
            a = _safe_full_read(q)
            if a is None:
                return self._finish(majority(cands), "exhausted", len(cands))
            q.new_round()
            cands.append(a)
            if len(cands) < 2:  # no confidence check with a single sample
                continue
            winner, t1, t2, _ = vote_stats(cands)
            if conf(t1, t2) > self.threshold:  # strict '>'
                return self._finish(winner, "confident", len(cands))
        return self._finish(majority(cands), "max_samples", len(cands))


# -- ESC (§2.2) ---------------------------------------------------------------------------------


class ESCMethod(_Controller):
    """Early-stopping self-consistency: windows of full reads, stop at a unanimous window.

    ``max_samples // window_size`` windows (a remainder is dropped); each window is one round.
    """

    def __init__(self, max_samples: int = 32, window_size: int = 5) -> None:
        if max_samples < 1 or window_size < 1:
            raise ValueError("max_samples and window_size must be >= 1")
        self.max_samples = max_samples
        self.window_size = window_size

    @property
    def seq_window(self) -> int:
        """Windows run one after another in the max_branch (SCOUT) sequential accounting."""
        return self.window_size

    def solve(self, q):
        every = []
        windows = 0
        exhausted = False
        for _ in range(self.max_samples // self.window_size):
            win = []
            for _ in range(self.window_size):
                a = _safe_full_read(q)
                if a is None:
                    exhausted = True
                    break
                win.append(a)
            if not win:
                continue  # exhausted: every later window is empty too
            windows += 1
            q.new_round()
            every.extend(win)
            if len(set(win)) == 1:  # a short window counts if all its reads agree
                return self._finish(win[0], "unanimous_window", windows)
        reason = "exhausted" if exhausted else "max_samples"
        return self._finish(majority(every), reason, windows)


# -- Parallel-Probe (§2.3) ----------------------------------------------------------------------


class Parallel_Probe(_Controller):  # noqa: N801 - upstream class name
    """Probe ``num_chains`` branches in lock-step, prune off-track ones, stop when stable.

    ``K``, ``eps_inter`` and ``eps_intra`` are stored but unused, as upstream.  The opening
    burst of ``probe_new`` calls is round 0; each step's forward pass is one more round.
    """

    def __init__(
        self,
        num_chains: int = 64,
        K: int = 5,  # noqa: N803 - upstream parameter name
        T: int = 14,  # noqa: N803
        eps_inter: float = 5.0,
        eps_intra: float = 5.0,
        prune_patience: int = 8,
        warm_up: int = 10,
        probe_burst: int = 1,
        max_steps: int = 100,
    ) -> None:
        self.num_chains = num_chains
        self.K = K
        self.T = T
        self.eps_inter = eps_inter
        self.eps_intra = eps_intra
        self.prune_patience = prune_patience
        self.warm_up = warm_up
        self.probe_burst = probe_burst
        self.max_steps = max_steps

    def solve(self, q):
        idx, finished, pruned, hist, off = [], [], [], [], []
        for _ in range(self.num_chains):
            r = _safe_probe_new(q)
            if r is None:
                break
            ans, slot, fin = r
            idx.append(slot)
            finished.append(fin)
            pruned.append(False)
            hist.append([ans])
            off.append(0)
        if not idx:  # upstream returns None from here as when all are resolved
            return self._finish(None, "no_branches", 0)
        q.new_round()
        rounds = 1
        n = len(idx)
        stable, prev, step = 0, None, 0
        while step < self.max_steps:
            act, ans_act = [], []
            for i in range(n):  # forward pass, spawn order
                if pruned[i]:
                    continue
                if not finished[i]:
                    last = hist[i][-1]
                    for _ in range(self.probe_burst):
                        if finished[i]:
                            break
                        r = _safe_probe_more(q, idx[i])
                        if r is None:
                            finished[i] = True
                            break
                        last, finished[i] = r
                    hist[i].append(last)
                act.append(i)  # finished, unpruned branches vote with their final answer
                ans_act.append(hist[i][-1])
            q.new_round()
            rounds += 1
            if not act:
                return self._finish(prev, "all_pruned", rounds)
            win = majority(ans_act)
            if step >= self.warm_up and len(act) > 1:
                for i in act:
                    if not finished[i]:
                        off[i] = off[i] + 1 if hist[i][-1] != win else 0
                any_pruned = False
                for i in act:
                    if not finished[i] and off[i] >= self.prune_patience:
                        pruned[i] = True
                        any_pruned = True
                if any_pruned:
                    act = [i for i in act if not pruned[i]]
                    ans_act = [hist[i][-1] for i in act]
                    if not act:
                        return self._finish(prev, "all_pruned", rounds)
                    win = majority(ans_act)
            stable = stable + 1 if win == prev else 0
            prev = win
            if stable >= self.T:
                return self._finish(win, "stable", rounds)
            if all(finished[i] or pruned[i] for i in range(n)):
                return self._finish(win, "all_resolved", rounds)
            step += 1
        return self._finish(prev, "max_steps", rounds)


# -- CMC, the discovered controller (§2.4) ------------------------------------------------------

_MAX_BRANCH = 64
_MAX_OUTER = 500


def cmc_schedule(beta: float) -> dict[str, float | int]:
    """CMC's knobs as functions of ``beta`` (clipped to [0, 1]).

    Python float64 with the builtin ``round`` (half to even: 7.5 -> 8, 2.5 -> 2), and the
    4-dp roundings applied to the stored values, exactly as upstream; the parity of the
    published numbers depends on these integers and on the rounded floats.
    """
    b = min(1.0, max(0.0, float(beta)))
    return {
        "beta": b,
        "n_init": max(2, round(2 + 6 * b)),
        "max_branch_use": min(_MAX_BRANCH, round(4 + 60 * b)),
        "warm_up": max(2, round(2 + 8 * b)),
        "abandon_patience": max(3, round(3 + 9 * b)),
        "T_ema": max(2, round(2 + 6 * b)),
        "ema_alpha": round(0.70 - 0.40 * b, 4),
        "conf_thr": round(0.85 + 0.12 * b, 4),
        "delta_slack": round(0.04 - 0.03 * b, 4),
        "burst_aligned": max(1, round(1 + 2 * b)),
        "widen_burst": max(1, round(1 + 3 * b)),
        "trend_thr": round(0.04 - 0.03 * b, 4),
        "min_complete": max(2, round(2 + 3 * b)),
    }


class _CMCBranch:
    __slots__ = ("idx", "latest", "finished", "abandoned", "probe_count", "disagree")

    def __init__(self, idx: int, latest, finished: bool) -> None:
        self.idx = idx
        self.latest = latest
        self.finished = finished
        self.abandoned = False
        self.probe_count = 0
        self.disagree = 0

    @property
    def alive(self) -> bool:
        return not (self.abandoned or self.finished)


def _pool_stats(pool):
    winner, t1, t2, _ = vote_stats(pool)
    return winner, t1, t2, conf(t1, t2)


class OptimalController(_Controller):
    """CMC (r0004): EMA-gated confidence over completed answers, with widening and abandonment.

    Round 0 opens ``n_init`` branches; each outer step (probing, then widening) is one round.
    Every quirk of the reference is kept: the EMA is updated twice per step (before and after
    probing, the second overwriting the window entry), abandonment keeps at least two branches
    alive, probing order is a stable sort by descending probe count, and widening happens only
    while some branch is alive.
    """

    def __init__(self, config: dict | None = None) -> None:
        config = config or {}
        self.config = config
        for key, value in cmc_schedule(config.get("beta", 0.5)).items():
            setattr(self, key, value)

    def _spawn(self, q, branches, pool) -> bool:
        r = _safe_probe_new(q)
        if r is None:
            return False
        ans, slot, fin = r
        branches.append(_CMCBranch(slot, ans, fin))
        if fin:
            pool.append(ans)
        return True

    def solve(self, q):
        branches: list[_CMCBranch] = []
        pool = []  # completed final answers, in completion order
        for _ in range(self.n_init):
            if not self._spawn(q, branches, pool):
                break
        if not branches:  # upstream returns None from here as when all are resolved
            return self._finish(None, "no_branches", 0)
        q.new_round()
        rounds = 1
        alpha = self.ema_alpha
        ema = 0.0
        hist: list[float] = []
        reason = "max_outer"
        for step in range(_MAX_OUTER):
            winner, _, _, c = _pool_stats(pool)
            warm = step >= self.warm_up
            ema = (1.0 - alpha) * ema + alpha * c  # EMA update #1 (pre-probe pool)
            hist.append(ema)
            if len(hist) > self.T_ema:
                hist.pop(0)
            if warm and winner is not None:
                alive = [br for br in branches if br.alive]
                for br in alive:
                    br.disagree = br.disagree + 1 if br.latest != winner else 0
                cand = [br for br in alive if br.disagree >= self.abandon_patience]
                cand.sort(key=lambda br: -br.disagree)  # stable: ties keep spawn order
                for br in cand[: max(0, len(alive) - 2)]:
                    br.abandoned = True
            order = [br for br in branches if br.alive]
            order.sort(key=lambda br: -br.probe_count)
            for br in order:  # ``winner`` and ``warm`` are still the pre-probe values
                aligned = warm and winner is not None and br.latest == winner
                for _ in range(self.burst_aligned if aligned else 1):
                    if br.finished:
                        break
                    r = _safe_probe_more(q, br.idx)
                    if r is None:
                        br.finished = True
                        if br.latest is not None:
                            pool.append(br.latest)
                        break
                    br.probe_count += 1
                    br.latest, br.finished = r
                    if br.finished:
                        pool.append(br.latest)
                        break
            winner, _, _, c = _pool_stats(pool)
            ema = (1.0 - alpha) * ema + alpha * c  # EMA update #2 overwrites this step's entry
            hist[-1] = ema
            delta = hist[-1] - hist[0] if len(hist) >= 2 else 0.0
            if (
                warm
                and len(pool) >= self.min_complete
                and ema >= self.conf_thr
                and delta >= -self.delta_slack
            ):
                q.new_round()
                return self._finish(winner, "ema_gate", rounds + 1)
            if all(not br.alive for br in branches):
                reason = "all_resolved"
                q.new_round()
                rounds += 1
                break
            spawned = len(branches)
            if (
                spawned < self.max_branch_use
                and spawned < _MAX_BRANCH
                and delta <= self.trend_thr
                and step >= max(1, self.warm_up // 2)
                and ema < self.conf_thr
            ):
                for _ in range(self.widen_burst):
                    if len(branches) >= self.max_branch_use or len(branches) >= _MAX_BRANCH:
                        break
                    if not self._spawn(q, branches, pool):
                        break
            q.new_round()
            rounds += 1
        answer = majority(pool)
        if answer is None:
            answer = majority(
                [br.latest for br in branches if not br.abandoned and br.latest is not None]
            )
        return self._finish(answer, reason, rounds)


CMC = OptimalController


def cmc(beta: float = 0.5) -> OptimalController:
    """CMC from its one knob, the engine's config ``{"beta": ...}`` (upstream passes a dict)."""
    return OptimalController({"beta": beta})
