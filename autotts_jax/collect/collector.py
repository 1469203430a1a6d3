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
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from autotts_jax.collect.answers import (
    NO_ANSWER,
    answer_from,
    find_boxed,
    get_extractor,
    get_normalizer,
)
from autotts_jax.collect.client import CompletionClient, RequestRejected
from autotts_jax.collect.problems import Problem, ProblemSet
from autotts_jax.errors import AutoTTSError
from autotts_jax.utils.atomic import atomic_write_text

DEFAULT_PROMPT_TEMPLATE = (
    "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{}.\n"
)
DEFAULT_PROBE_SUFFIX = (
    "\n\nI have to stop reasoning here and commit to an answer.\n\n**Final Answer**\n\\boxed{"
)
PLACEHOLDER = "{question}"
MANIFEST = "collect.json"
_RESERVED = frozenset({"model", "prompt", "max_tokens", "temperature", "seed", "n", "stream"})


@dataclass(frozen=True)
class CollectSettings:
    """Everything that decides what is collected (a checkpoint is tied to these)."""

    model: str
    branches: int = 8
    probe_freq: int = 500
    max_tokens: int = 16384
    max_probes: int = 128
    temperature: float = 0.6
    seed: int | None = 0
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    probe_suffix: str = DEFAULT_PROBE_SUFFIX
    probe_max_tokens: int = 32
    probe_temperature: float = 0.0
    extractor: str = "boxed-or-last-number"
    normalize: str = "math"
    extra_body: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        for name in ("branches", "probe_freq", "max_tokens", "max_probes", "probe_max_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AutoTTSError(f"collect: {name} must be a positive integer, got {value!r}")
        for name in ("temperature", "probe_temperature"):
            if not getattr(self, name) >= 0:
                raise AutoTTSError(f"collect: {name} must be >= 0, got {getattr(self, name)!r}")
        if not self.model:
            raise AutoTTSError("collect: a model name is required")
        if PLACEHOLDER not in self.prompt_template:
            raise AutoTTSError(f"collect: the prompt template has no {PLACEHOLDER} placeholder")
        get_extractor(self.extractor)
        get_normalizer(self.normalize)
        clash = sorted(_RESERVED & set(self.extra_body))
        if clash:
            raise AutoTTSError(f"collect: extra request fields may not set {', '.join(clash)}")

    @property
    def depth(self) -> int:
        """The most intervals a branch can have."""
        return min(self.max_probes, math.ceil(self.max_tokens / self.probe_freq))

    def prompt(self, question: str) -> str:
        return self.prompt_template.replace(PLACEHOLDER, question)


@dataclass(frozen=True)
class Connection:
    """How to talk to the server (free to change between a run and its resume)."""

    base_url: str
    concurrency: int = 8
    timeout: float = 300.0
    retries: int = 5
    backoff: float = 1.0
    api_key: str | None = None


def cost_estimate(settings: CollectSettings, n_questions: int) -> dict[str, int]:
    """Upper bounds: every branch runs to ``depth`` intervals and probes after each."""
    d = settings.depth
    branches = n_questions * settings.branches
    return {
        "branches": branches,
        "depth": d,
        "max_requests": branches * 2 * d,
        "max_completion_tokens": branches
        * (min(settings.max_tokens, d * settings.probe_freq) + d * settings.probe_max_tokens),
    }


def request_seed(base: int | None, q: int, b: int, k: int, kind: str) -> int | None:
    if base is None:
        return None
    digest = hashlib.sha256(f"{base}:{q}:{b}:{k}:{kind}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


# --------------------------------------------------------------------------- branch state


@dataclass
class BranchState:
    """One branch as far as it was generated and probed (rebuilt from journalled events)."""

    chunks: list[str] = field(default_factory=list)
    tokens: int = 0
    gens: int = 0
    probes: list[str | None] = field(default_factory=list)  # None: a probe not sent
    ended: bool = False
    last_finish: str = ""

    @property
    def complete(self) -> bool:
        return self.ended and len(self.probes) == self.gens

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def apply(self, event: dict, settings: CollectSettings) -> None:
        """Advance by one journalled event; raises ValueError if it does not fit."""
        kind, k = event["e"], event["k"]
        if kind == "gen":
            if self.complete or k != self.gens or len(self.probes) != self.gens:
                raise ValueError(f"generation {k} out of order")
            n = int(event["tokens"])
            self.chunks.append(str(event["text"]))
            self.tokens += n
            self.gens += 1
            self.last_finish = str(event["finish"])
            self.ended = (
                self.last_finish != "length"
                or n < int(event["max_tokens"])
                or self.tokens >= settings.max_tokens
                or self.gens >= settings.max_probes
            )
        elif kind == "probe":
            if k != len(self.probes) or self.gens != k + 1:
                raise ValueError(f"probe {k} out of order")
            answer = event["answer"]
            self.probes.append(None if answer is None else str(answer))
        else:
            raise ValueError(f"unknown event {kind!r}")


def next_event(client: CompletionClient, s: CollectSettings, normalize: Callable[[str], str],
               prompt: str, q: int, b: int, br: BranchState) -> dict:
    """Send the next request of branch ``b`` of question ``q`` (state ``br``, not changed) and
    return its event, to be journalled and applied with :meth:`BranchState.apply`.

    The one place that decides what a branch sends next -- a generation of the next interval,
    or the probe of the interval just generated -- so that ``collect`` and live runs send the
    same requests (prompt, probe suffix, seeds) and read the same answers from them.
    ``prompt_tokens`` is the server's ``usage.prompt_tokens`` (0 when it does not say).
    """
    if len(br.probes) == br.gens:
        k = br.gens
        ask = min(s.probe_freq, s.max_tokens - br.tokens)
        reply = client.complete(
            prompt + br.text, max_tokens=ask, temperature=s.temperature,
            seed=request_seed(s.seed, q, b, k, "gen"),
        )
        return {"e": "gen", "b": b, "k": k, "text": reply.text,
                "tokens": reply.completion_tokens, "finish": reply.finish_reason,
                "max_tokens": ask, "prompt_tokens": reply.prompt_tokens}
    k = len(br.probes)
    event: dict[str, Any] = {"e": "probe", "b": b, "k": k}
    boxed = None
    if br.ended and br.last_finish != "length" and s.extractor != "last-number":
        boxed = find_boxed(br.text)
    if boxed is not None and (answer := normalize(boxed)).strip():
        event.update(answer=answer, via="completion", tokens=0, prompt_tokens=0)
        return event
    try:
        reply = client.complete(
            prompt + br.text + s.probe_suffix, max_tokens=s.probe_max_tokens,
            temperature=s.probe_temperature, seed=request_seed(s.seed, q, b, k, "probe"),
        )
    except RequestRejected as exc:
        # e.g. prompt + suffix beyond the context: no answer at this depth
        event.update(answer=NO_ANSWER, via="rejected", tokens=0, prompt_tokens=0,
                     error=str(exc))
    else:
        answer = answer_from(s.probe_suffix + reply.text, s.extractor, s.normalize)
        event.update(answer=answer, via="request", tokens=reply.completion_tokens,
                     prompt_tokens=reply.prompt_tokens)
    return event


class Journal:
    """Append-only JSONL log of answered requests of one question."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None
        self._lock = threading.Lock()

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        blob = self.path.read_bytes()
        events, good_end, pos = [], 0, 0
        while pos < len(blob):
            nl = blob.find(b"\n", pos)
            if nl == -1:
                break  # a line cut short by a kill: dropped below
            try:
                events.append(json.loads(blob[pos:nl]))
            except (json.JSONDecodeError, UnicodeDecodeError):
                if blob.find(b"\n", nl + 1) != -1 or nl + 1 < len(blob):
                    raise AutoTTSError(
                        f"{self.path}: byte {pos}: corrupt journal line (not a torn last line); "
                        "delete this file to collect the question again"
                    ) from None
                break
            pos = good_end = nl + 1
        if good_end != len(blob):
            os.truncate(self.path, good_end)
        return events

    def append(self, event: dict) -> None:
        line = json.dumps(event, ensure_ascii=False) + "\n"
        with self._lock:
            if self._fh is None:
                self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(line)
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


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


# --------------------------------------------------------------------------- progress


class _Progress:
    def __init__(self, total: int, done: int, questions: int, q_done: int,
                 stream: TextIO | None):
        self.total, self.done, self.questions, self.q_done = total, done, questions, q_done
        self.requests = 0
        self.tokens = 0
        self.stream = stream
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    def update(self, *, requests: int = 0, tokens: int = 0, branch: int = 0,
               question: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.tokens += tokens
            self.done += branch
            self.q_done += question
            self._render(final=False)

    def _render(self, final: bool) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not final and now - self._last < (0.2 if self.tty else 30.0):
            return
        self._last = now
        width = 24
        filled = width * self.done // max(self.total, 1)
        line = (
            f"collect [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} branches, "
            f"{self.q_done}/{self.questions} questions, {self.requests} requests, "
            f"{self.tokens:,} tokens, {now - self.t0:.0f}s"
        )
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        with self._lock:
            self._render(final=True)


# --------------------------------------------------------------------------- collection


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
        self.progress: _Progress | None = None

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
        self.progress = _Progress(total, done, len(states), len(states) - len(open_qs),
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
