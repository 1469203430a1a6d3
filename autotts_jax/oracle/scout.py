"""SCOUT's solvers and branch strategies for the oracle environment (``SCOUT_SEMANTICS.md``).

SCOUT (the Parallel-Probe testbed) composes a *solver* with a *branch strategy*: the strategy
produces one sample (``execute(question)``), the solver decides how many samples to draw and
how to combine them.  The classes below keep SCOUT's class names, parameter names, defaults
and control flow, written against the imperative API of
:class:`~autotts_jax.oracle.env.OracleQuestion`; :func:`make_solver` builds a solver from
SCOUT's ``(solver, strategy, {"solver": {...}, "strategy": {...}})`` the way SCOUT's driver
does.  A solver's ``solve(question)`` returns an answer id or ``None``; ``stop_reason``,
``rounds`` and (ESC) ``seq_window`` serve :func:`~autotts_jax.oracle.evaluate_oracle`.

Sequential tokens: SCOUT's own metric is ``OracleQuestion.seq_tokens_max_branch`` (windowed
by ``ESCSolver.seq_window``), which does not depend on the schedule.  Round boundaries
(``question.new_round()``) serve our critical-path metric and follow the JAX controllers: SC
reads everything in one round, ASC one read per round, ESC one window per round, the parallel
controllers one step per round, and a convergence-probed branch one trigger per round.
``MajorityVoteSolver`` over ``ConvergenceProbeStrategy`` therefore runs its samples in lock
step (``lockstep=True``, the default); SCOUT runs them one after another
(``lockstep=False``).  Samples are independent, so answers, costs and SCOUT's sequential
tokens are the same either way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Mapping
from typing import Any

from autotts_jax.oracle.controllers import conf, majority

# -- branch strategies (§3, §5) ------------------------------------------------------------------


class FullReadStrategy:
    """One full read of the next branch (IndexError past the end)."""

    def execute(self, q):
        return q.get_new_branch_final_answer()


class ConvergenceProbeStrategy:
    """Probe one new branch until ``n`` equal answers in a row (§3.2)."""

    exhausted_reason = "no_branches"

    def __init__(self, n: int = 3, warmup_steps: int = 0, probe_burst: int = 1) -> None:
        if n < 1 or warmup_steps < 0 or probe_burst < 1:
            raise ValueError("need n >= 1, warmup_steps >= 0, probe_burst >= 1")
        self.n = n
        self.warmup_steps = warmup_steps
        self.probe_burst = probe_burst

    def steps(self, q) -> Generator[None, None, tuple[Any, str]]:
        """The strategy as a generator: it pauses after the opening probe and after every
        trigger, and returns ``(answer, how)`` with ``how`` ``converged`` or ``branch_end``.
        Running it to the end is SCOUT's ``execute``."""
        try:
            cur, slot, finished = q.probe_new()
        except (ValueError, IndexError) as exc:
            raise IndexError("no more branches") from exc
        if self.n <= 1 or finished:
            return cur, "converged"
        last, streak, t = cur, 1, 0
        while not finished:
            yield
            for _ in range(self.probe_burst):
                cur, finished = q.probe_more(slot)
                if finished:
                    break
            if cur == last:
                streak += 1
            else:
                streak, last = 1, cur
            t += 1
            if t >= self.warmup_steps and streak >= self.n:
                return cur, "converged"
        return cur, "branch_end"

    def execute(self, q):
        return _drain(self.steps(q))[0]


def _drain(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


class _ParallelEST:
    """Constructor storage shared by the two parallel controllers (``ParallelEST``)."""

    exhausted_reason = "exhausted"

    def __init__(self, num_chains, K, T, eps_inter, eps_intra, max_steps):  # noqa: N803
        self.num_chains = num_chains
        self.K = K  # never read
        self.T = T
        self.eps_inter = eps_inter  # never read
        self.eps_intra = eps_intra  # never read
        self.max_steps = max_steps
        self.stop_reason: str | None = None
        self.rounds = 0


class ParallelESTPruning(_ParallelEST):
    """§5.1: one ``finished`` flag for natural completion and pruning; every chain votes."""

    def __init__(self, num_chains=4, K=1000, T=3, eps_inter=5, eps_intra=5,  # noqa: N803
                 prune_patience=8, warm_up=10, max_steps=100) -> None:
        super().__init__(num_chains, K, T, eps_inter, eps_intra, max_steps)
        self.prune_patience = prune_patience
        self.warm_up = warm_up

    def execute(self, q):
        self.rounds = 0
        self.stop_reason = self.exhausted_reason  # until the initialisation has succeeded
        slots, hist, finished, off = [], [], [], []
        for _ in range(self.num_chains):  # not wrapped: running out raises ValueError
            a, slot, fin = q.probe_new()
            slots.append(slot)
            hist.append([a])
            finished.append(fin)
            off.append(0)
        q.new_round()
        self.rounds = 1
        stable, prev, step = 0, None, 0
        self.stop_reason = "max_steps"
        while step < self.max_steps:
            votes, alive = [], 0
            for i in range(len(slots)):
                if not finished[i]:
                    a, finished[i] = q.probe_more(slots[i])
                    hist[i].append(a)
                votes.append(hist[i][-1])  # running, finished and pruned chains all vote
                alive += not finished[i]
            q.new_round()
            self.rounds += 1
            win = majority(votes)
            if step >= self.warm_up and alive > 1:
                for i in range(len(slots)):
                    if not finished[i]:
                        off[i] = off[i] + 1 if hist[i][-1] != win else 0
                        if off[i] >= self.prune_patience:
                            finished[i] = True  # pruned: keeps its (frozen) vote
            stable = stable + 1 if win == prev else 0
            prev = win
            if stable >= self.T:
                self.stop_reason = "stable"
                return win
            if all(finished):
                self.stop_reason = "all_resolved"
                break
            step += 1
        return prev


class ParallelESTPruningBurstMajorityOnActiveBranches(_ParallelEST):
    """§5.2 (= AutoTTS ``Parallel_Probe`` while the branches last): pruned chains leave the
    vote, the winner is recomputed after pruning, ``probe_burst`` probes per step."""

    def __init__(self, num_chains=64, K=5, T=14, eps_inter=5, eps_intra=5,  # noqa: N803
                 prune_patience=8, warm_up=10, probe_burst=1, max_steps=100) -> None:
        if probe_burst < 1:
            raise ValueError("probe_burst must be >= 1")
        super().__init__(num_chains, K, T, eps_inter, eps_intra, max_steps)
        self.prune_patience = prune_patience
        self.warm_up = warm_up
        self.probe_burst = probe_burst

    def execute(self, q):
        self.rounds = 0
        self.stop_reason = self.exhausted_reason  # until the initialisation has succeeded
        slots, hist, finished, pruned, off = [], [], [], [], []
        for _ in range(self.num_chains):  # not wrapped: running out raises ValueError
            a, slot, fin = q.probe_new()
            slots.append(slot)
            hist.append([a])
            finished.append(fin)
            pruned.append(False)
            off.append(0)
        q.new_round()
        self.rounds = 1
        n = len(slots)
        stable, prev, step = 0, None, 0
        self.stop_reason = "max_steps"
        while step < self.max_steps:
            act = []
            for i in range(n):
                if pruned[i]:
                    continue
                if not finished[i]:
                    last = hist[i][-1]
                    for _ in range(self.probe_burst):
                        last, finished[i] = q.probe_more(slots[i])
                        if finished[i]:
                            break
                    hist[i].append(last)
                act.append(i)
            q.new_round()
            self.rounds += 1
            if not act:
                self.stop_reason = "all_pruned"
                break
            win = majority([hist[i][-1] for i in act])
            if step >= self.warm_up and len(act) > 1:
                for i in act:
                    if not finished[i]:
                        off[i] = off[i] + 1 if hist[i][-1] != win else 0
                        if off[i] >= self.prune_patience:
                            pruned[i] = True
                act = [i for i in act if not pruned[i]]
                if not act:
                    self.stop_reason = "all_pruned"
                    break
                win = majority([hist[i][-1] for i in act])
            stable = stable + 1 if win == prev else 0
            prev = win
            if stable >= self.T:
                self.stop_reason = "stable"
                return win
            if all(finished[i] or pruned[i] for i in range(n)):
                self.stop_reason = "all_resolved"
                break
            step += 1
        return prev


STRATEGIES = {
    cls.__name__: cls
    for cls in (FullReadStrategy, ConvergenceProbeStrategy, ParallelESTPruning,
                ParallelESTPruningBurstMajorityOnActiveBranches)
}

# -- solvers (§4) ---------------------------------------------------------------------------------


class BaseSolver:
    """A solver draws samples through ``branch_strategy`` (attached by the driver)."""

    branch_strategy: Any = None
    stop_reason: str | None = None
    rounds: int = 0

    def _get_one_sample(self, q):
        """One sample; ``None`` if the strategy raised IndexError or ValueError (charges
        already made stay charged)."""
        try:
            return self.branch_strategy.execute(q)
        except (IndexError, ValueError):
            return None


class GreedySolver(BaseSolver):
    """The single sample of one ``execute`` call."""

    def solve(self, q):
        s = self.branch_strategy
        if isinstance(s, ConvergenceProbeStrategy):  # stepwise: one trigger per round
            try:
                gen = s.steps(q)
                rounds = 0
                while True:
                    try:
                        next(gen)
                    except StopIteration as stop:
                        answer, self.stop_reason = stop.value
                        q.new_round()
                        self.rounds = rounds + 1
                        return answer
                    q.new_round()
                    rounds += 1
            except IndexError:
                self.stop_reason, self.rounds = s.exhausted_reason, 0
                return None
        answer = self._get_one_sample(q)
        if isinstance(s, _ParallelEST):
            self.stop_reason, self.rounds = s.stop_reason, s.rounds
        else:  # a full read
            q.new_round()
            self.stop_reason, self.rounds = ("exhausted" if answer is None else "done"), 1
        return answer


class MajorityVoteSolver(BaseSolver):
    """``n`` samples, majority in sample (= slot) order; missing samples are dropped."""

    def __init__(self, n: int = 16, lockstep: bool = True) -> None:
        self.n = n
        self.lockstep = lockstep

    def solve(self, q):
        s = self.branch_strategy
        if isinstance(s, ConvergenceProbeStrategy) and self.lockstep:
            samples = self._lockstep(q, s)
        else:
            samples = [self._get_one_sample(q) for _ in range(self.n)]
            q.new_round()
            self.rounds = 1
        kept = [a for a in samples if a is not None]
        self.stop_reason = "max_samples" if len(kept) == len(samples) else "exhausted"
        return majority(kept)

    def _lockstep(self, q, s: ConvergenceProbeStrategy) -> list:
        samples: list = [None] * self.n
        running = []
        for k in range(self.n):  # round 0: every sample's opening probe, in slot order
            gen = s.steps(q)
            try:
                next(gen)
                running.append((k, gen))
            except StopIteration as stop:
                samples[k] = stop.value[0]
            except IndexError:
                samples[k] = None
        q.new_round()
        self.rounds = 1
        while running:  # round r: every unconverged sample's r-th trigger
            still = []
            for k, gen in running:
                try:
                    next(gen)
                    still.append((k, gen))
                except StopIteration as stop:
                    samples[k] = stop.value[0]
            q.new_round()
            self.rounds += 1
            running = still
        return samples


class ASCSolver(BaseSolver):
    """Draw one sample per round until the Beta confidence of the top two counts is strictly
    above ``threshold`` (at least two samples); SCOUT keeps looping past missing samples."""

    def __init__(self, n: int = 40, threshold: float = 0.95) -> None:
        self.n = n
        self.threshold = threshold

    def solve(self, q):
        cands = []
        missing = False
        self.rounds = 0
        for _ in range(self.n):
            a = self._get_one_sample(q)
            q.new_round()
            self.rounds += 1
            if a is None:
                missing = True
            else:
                cands.append(a)
            if len(cands) < 2:
                continue
            top = Counter(cands).most_common(2)
            v2 = top[1][1] if len(top) > 1 else 0
            if conf(top[0][1], v2) > self.threshold:
                self.stop_reason = "confident"
                return top[0][0]
        self.stop_reason = "exhausted" if missing else "max_samples"
        return majority(cands)


class ESCSolver(BaseSolver):
    """Windows of ``window_size`` samples (one round each); stop at a unanimous window."""

    def __init__(self, n: int = 32, window_size: int = 5) -> None:
        self.n = n
        self.window_size = window_size

    @property
    def seq_window(self) -> int:
        """SCOUT's sequential tokens: sum over windows of the window's largest branch."""
        return self.window_size

    def solve(self, q):
        every = []
        self.rounds = 0
        self.stop_reason = "max_samples"
        for _ in range(self.n // self.window_size):
            win = [self._get_one_sample(q) for _ in range(self.window_size)]
            if None in win:
                self.stop_reason = "exhausted"
            win = [a for a in win if a is not None]
            q.new_round()
            self.rounds += 1
            if not win:
                continue
            every.extend(win)
            if len(set(win)) == 1:
                self.stop_reason = "unanimous_window"
                return win[0]
        return majority(every)


SOLVERS = {cls.__name__: cls for cls in (GreedySolver, MajorityVoteSolver, ASCSolver, ESCSolver)}


def make_solver(solver: str, strategy: str, config: Mapping[str, Any] | None = None,
                **solver_options) -> BaseSolver:
    """A solver with its strategy attached, from SCOUT's names and nested config."""
    config = dict(config or {})
    obj = SOLVERS[solver](**dict(config.get("solver") or {}), **solver_options)
    obj.branch_strategy = STRATEGIES[strategy](**dict(config.get("strategy") or {}))
    return obj


# -- the engine's SCOUT controllers, from their flat configs (``twin(**config)``) ---------------


def convergence(**strategy) -> BaseSolver:
    """``convergence``: one convergence-probed sample."""
    return make_solver("GreedySolver", "ConvergenceProbeStrategy", {"strategy": strategy})


def sc_convergence(solver_n: int = 16, **strategy) -> BaseSolver:
    """``sc_convergence``: the majority of ``solver_n`` convergence-probed samples."""
    return make_solver("MajorityVoteSolver", "ConvergenceProbeStrategy",
                       {"solver": {"n": solver_n}, "strategy": strategy})


def pp_prune_vote(**strategy) -> BaseSolver:
    """``pp_prune_vote``: ``ParallelESTPruning`` under ``GreedySolver``."""
    return make_solver("GreedySolver", "ParallelESTPruning", {"strategy": strategy})
