"""``autotts-jax collect``: probe trajectories from a live OpenAI-compatible server.

For every question and each of its ``branches`` reasoning branches::

    interval k = 0, 1, ...:
        generate: prompt + text so far, max_tokens = min(probe_freq, max_tokens - tokens)
                  -> append the text; tokens += usage.completion_tokens
        probe:    prompt + text so far + probe_suffix, max_tokens = probe_max_tokens
                  -> probes[k] = answer extracted from probe_suffix + reply
    until the branch ends: finish_reason is not "length" (the model stopped), or the server
    returned fewer tokens than asked (its context is full), or ``max_tokens`` tokens, or
    ``max_probes`` intervals.

The branch's tokens are the sum of ``usage.completion_tokens`` of its generation requests
(probe replies are not part of the branch).  Its final answer is the last probe.  When the
model stopped by itself and its text has a ``\\boxed{}`` answer, that answer is the last probe
and no probe request is sent; otherwise the probe asks, as after every interval.  This is the
upstream replay format (``each_branch = [[probes, tokens, final], ...]``, the last probe
equal to the final answer), so the result is packed by :func:`~autotts_jax.store.hdf5.write_store`
like the public data.

**Checkpoints.**  ``checkpoint_dir`` holds ``collect.json`` (the settings; a resume with other
settings is refused), one ``qNNNNN.journal.jsonl`` per question in progress (one line per
answered request, appended and flushed before the next request of that branch is sent) and one
``qNNNNN.json`` per finished question (written atomically, then the journal is removed);
one collection at a time may use a directory (``.lock``).  A
re-run skips finished questions and continues every branch from its last journalled request,
so a killed collection repeats at most the requests that were in flight -- at most
``concurrency`` of them.  A journal line cut short by the kill is dropped.

Per-request seeds are derived from ``(seed, question, branch, interval, kind)``, so a server
that honours ``seed`` gives the same trajectories on a re-run.

The parts: :mod:`.settings` (what is collected, how the server is reached), :mod:`.branch`
(a branch's state and its next request), :mod:`.journal` (the checkpoint log),
:mod:`.progress` (the progress line); this module runs questions and branches on a thread
pool and writes the checkpoint records and the store.
"""

from __future__ import annotations

import fcntl
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from autotts_jax.collect.answers import NO_ANSWER, get_normalizer
from autotts_jax.collect.branch import BranchState, next_event
from autotts_jax.collect.client import CompletionClient
from autotts_jax.collect.journal import Journal
from autotts_jax.collect.problems import Problem, ProblemSet
from autotts_jax.collect.progress import Progress
from autotts_jax.collect.settings import CollectSettings, Connection
from autotts_jax.errors import AutoTTSError
from autotts_jax.utils.atomic import atomic_write_text

MANIFEST = "collect.json"


@dataclass
class _Question:
    index: int
    problem: Problem
    gold: str
    branches: list[BranchState]
    journal: Journal
    done_path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def header(self) -> dict:
        return {"e": "question", "question": self.problem.question, "gold_answer": self.gold}


@dataclass(frozen=True)
class CollectResult:
    output: Path
    upstream_json: Path
    stats: dict[str, int]


class _Collector:
    def __init__(self, settings: CollectSettings, conn: Connection, problems: ProblemSet,
                 ckpt: Path, progress: TextIO | None):
        self.s = settings
        self.conn = conn
        self.problems = problems
        self.ckpt = ckpt
        self.client = CompletionClient(
            conn.base_url, settings.model, timeout=conn.timeout, retries=conn.retries,
            backoff=conn.backoff, api_key=conn.api_key, extra_body=settings.extra_body,
        )
        self.normalize = get_normalizer(settings.normalize)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.stats: dict[str, int] = {
            "gen_requests": 0, "probe_requests": 0, "tokens": 0, "probe_tokens": 0,
            "no_answer_probes": 0, "rejected_probes": 0,
        }
        self._stats_lock = threading.Lock()
        self.progress_stream = progress
        self.progress: Progress | None = None

    # -- checkpoint files

    def _check_manifest(self) -> None:
        path = self.ckpt / MANIFEST
        mine = {"format": 1, "settings": asdict(self.s)}
        if path.exists():
            try:
                theirs = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise AutoTTSError(f"{path}: not valid JSON ({exc})") from None
            old = theirs.get("settings", {}) if isinstance(theirs, dict) else {}
            diff = [
                f"{k}: {old.get(k)!r} there, {v!r} here"
                for k, v in mine["settings"].items() if old.get(k) != v
            ]
            if diff:
                raise AutoTTSError(
                    f"{self.ckpt}: checkpoints were collected with other settings ("
                    + "; ".join(diff) + "); use the same settings or another --checkpoint-dir"
                )
            return
        self.ckpt.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(mine, indent=1, ensure_ascii=False))

    def _gold(self, p: Problem, where: str) -> str:
        gold = self.normalize(p.answer)
        if not gold.strip() or gold == NO_ANSWER:
            raise AutoTTSError(
                f"{self.problems.name}: {where}: gold answer {p.answer!r} normalises to "
                f"{gold!r}, which could never be matched"
            )
        return gold

    def _load_question(self, i: int, p: Problem) -> _Question | dict:
        """A finished question's record, or the question's state rebuilt from its journal."""
        stem = self.ckpt / f"q{i:05d}"
        done_path = stem.with_suffix(".json")
        journal = Journal(Path(f"{stem}.journal.jsonl"))
        gold = self._gold(p, f"question {i}")
        if done_path.exists():
            try:
                rec = json.loads(done_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise AutoTTSError(f"{done_path}: not valid JSON ({exc})") from None
            if rec.get("question") != p.question or rec.get("gold_answer") != gold:
                raise AutoTTSError(
                    f"{done_path}: collected for another question than question {i} of "
                    f"{self.problems.name}; use another --checkpoint-dir"
                )
            journal.path.unlink(missing_ok=True)  # killed between the record and the cleanup
            return rec
        q = _Question(i, p, gold, [BranchState() for _ in range(self.s.branches)], journal,
                      done_path)
        events = journal.read()
        if events:
            head = events[0]
            if head != q.header:
                raise AutoTTSError(
                    f"{journal.path}: collected for another question than question {i} of "
                    f"{self.problems.name}; use another --checkpoint-dir"
                )
            for n, ev in enumerate(events[1:], start=2):
                try:
                    q.branches[int(ev["b"])].apply(ev, self.s)
                except (KeyError, IndexError, TypeError, ValueError) as exc:
                    raise AutoTTSError(
                        f"{journal.path}: line {n}: does not continue the journal ({exc}); "
                        "delete this file to collect the question again"
                    ) from None
        else:
            journal.path.unlink(missing_ok=True)
            journal.append(q.header)
        return q

    def _finish_question(self, q: _Question) -> None:
        finals = [br.probes[-1] for br in q.branches]
        record = {
            "question": q.problem.question,
            "gold_answer": q.gold,
            "probe_freq": self.s.probe_freq,
            "final_answers_trace": finals,
            "each_branch": [[br.probes, br.tokens, br.probes[-1]] for br in q.branches],
        }
        atomic_write_text(q.done_path, json.dumps(record, ensure_ascii=False))
        q.journal.close()
        q.journal.path.unlink(missing_ok=True)

    # -- requests

    def _count(self, **kw: int) -> None:
        with self._stats_lock:
            for k, v in kw.items():
                self.stats[k] += v

    def _step(self, q: _Question, b: int) -> None:
        """Send the next request of branch ``b`` and journal its result."""
        event = next_event(self.client, self.s, self.normalize,
                           self.s.prompt(q.problem.question), q.index, b, q.branches[b])
        if event["e"] == "gen":
            self._count(gen_requests=1, tokens=event["tokens"])
            self._progress(requests=1, tokens=event["tokens"])
        elif event["via"] != "completion":
            self._count(probe_requests=1, probe_tokens=event["tokens"],
                        rejected_probes=int(event["via"] == "rejected"),
                        no_answer_probes=int(event["answer"] == NO_ANSWER))
            self._progress(requests=1)
        q.journal.append(event)
        q.branches[b].apply(event, self.s)

    def _progress(self, **kw: int) -> None:
        if self.progress is not None:
            self.progress.update(**kw)

    def _run_branch(self, q: _Question, b: int, remaining: list[int]) -> None:
        try:
            br = q.branches[b]
            while not br.complete:
                if self.stop.is_set():
                    return
                self._step(q, b)
            self._progress(branch=1)
            with q.lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self._finish_question(q)
                self._progress(question=1)
        except BaseException as exc:  # reported by run()
            with self._stats_lock:
                if self.error is None:
                    self.error = exc
            self.stop.set()

    def run(self) -> list[dict | _Question]:
        self.ckpt.mkdir(parents=True, exist_ok=True)
        with open(self.ckpt / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise AutoTTSError(
                    f"{self.ckpt}: another collection is using this checkpoint directory"
                ) from None
            return self._run_locked()

    def _run_locked(self) -> list[dict | _Question]:
        self._check_manifest()
        states = [self._load_question(i, p) for i, p in enumerate(self.problems.problems)]
        open_qs = [q for q in states if isinstance(q, _Question)]
        total = len(states) * self.s.branches
        done = total - sum(not br.complete for q in open_qs for br in q.branches)
        self.progress = Progress(total, done, len(states), len(states) - len(open_qs),
                                  self.progress_stream)
        try:
            with ThreadPoolExecutor(max_workers=self.conn.concurrency) as pool:
                futures = []
                for q in open_qs:
                    todo = [b for b, br in enumerate(q.branches) if not br.complete]
                    if not todo:  # every branch journalled, the record not yet written
                        self._finish_question(q)
                        self.progress.update(question=1)
                        continue
                    remaining = [len(todo)]
                    futures += [pool.submit(self._run_branch, q, b, remaining) for b in todo]
                try:
                    pending = set(futures)
                    while pending and not self.stop.is_set():
                        _, pending = wait(pending, timeout=0.1)
                finally:
                    # on an error or Ctrl-C: drop queued branches; running ones stop after
                    # their current request, which is journalled
                    self.stop.set()
                    for f in futures:
                        f.cancel()
        finally:
            for q in open_qs:
                q.journal.close()
            self.progress.close()
        if self.error is not None:
            raise self.error
        return states


def default_checkpoint_dir(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".ckpt")


def collect(
    settings: CollectSettings,
    conn: Connection,
    problems: ProblemSet,
    output: str | Path,
    *,
    checkpoint_dir: str | Path | None = None,
    benchmark: str | None = None,
    store_model: str | None = None,
    progress: TextIO | None = sys.stderr,
    equivalence: str = "exact",
) -> CollectResult:
    """Collect (or resume collecting) ``problems`` and write the HDF5 store ``output``.

    On an error that retries cannot cure the collected requests stay in ``checkpoint_dir``
    (default ``<output>.ckpt``) and the error is raised as :class:`AutoTTSError`; running the
    same call again resumes.  ``equivalence`` applies when the store is written (see
    :mod:`autotts_jax.store.equivalence`); the checkpoint and the upstream JSON keep the
    answers as extracted, so a finished collection can be written again either way.
    """
    from autotts_jax.store.equivalence import check_equivalence
    from autotts_jax.store.hdf5 import write_store
    from autotts_jax.store.upstream import read_upstream

    settings.validate()
    check_equivalence(equivalence)
    if conn.concurrency < 1:
        raise AutoTTSError(f"collect: concurrency must be at least 1, got {conn.concurrency}")
    output = Path(output)
    if output.suffix not in (".h5", ".hdf5"):
        raise AutoTTSError(f"{output}: the output must be an .h5 file")
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else default_checkpoint_dir(output)
    collector = _Collector(settings, conn, problems, ckpt, progress)
    try:
        states = collector.run()
    except AutoTTSError as exc:
        raise AutoTTSError(
            f"{exc} (collected requests are kept in {ckpt}; run the same command again to "
            "resume)"
        ) from None
    records = []
    for i, state in enumerate(states):
        if isinstance(state, _Question):
            state = json.loads(state.done_path.read_text(encoding="utf-8"))
        records.append({k: state[k] for k in (
            "question", "final_answers_trace", "each_branch", "gold_answer", "probe_freq")})
        assert len(state["each_branch"]) == settings.branches, i
    bench = benchmark or problems.name
    upstream_path = ckpt / f"{bench}.json"
    atomic_write_text(upstream_path, json.dumps(records, ensure_ascii=False))
    store = write_store(read_upstream(upstream_path), output, store_model or settings.model,
                        bench, equivalence=equivalence)
    stats = {**collector.stats, **{f"client_{k}": v for k, v in collector.client.stats.items()}}
    return CollectResult(store, upstream_path, stats)
