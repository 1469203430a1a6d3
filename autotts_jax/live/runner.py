"""``autotts-jax run-live``: a controller answers a problem set on a live server.

Every question is one live episode (:func:`~autotts_jax.live.episode.run_episode`).  Questions
run ``question_concurrency`` at a time; the branches one effect touches run concurrently, at
most ``Connection.concurrency`` requests in flight over the whole run.

**Output directory.**  ``live.json`` (what the run is: controller, config, cost model,
collection settings, problems; a resume with anything else is refused), per question
``questions/qNNNNN.journal.jsonl`` while it runs (one line per answered request, flushed before
its branch moves on) and ``questions/qNNNNN.json`` once it finished (written atomically, then
the journal is removed), and at the end ``results.csv`` (one row per question) and
``summary.json``.  Re-running the same command sends no request for finished questions, and a
question that was cut short replays its journal: its controller runs again from the start and
every request already answered is served from the journal, so at most the requests in flight
at the kill are sent twice (its ``wall_s`` is then the time of the resumed part).  With
``save_trajectories``, also ``trajectories.json`` (upstream replay JSON) and the store.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from autotts_jax.collect.answers import get_normalizer
from autotts_jax.collect.client import CompletionClient
from autotts_jax.collect.journal import Journal
from autotts_jax.collect.problems import ProblemSet
from autotts_jax.collect.settings import CollectSettings, Connection
from autotts_jax.engine.env import COST_MODELS
from autotts_jax.engine.protocol import Controller
from autotts_jax.engine.simulate import DEFAULT_MAX_ROUNDS
from autotts_jax.errors import AutoTTSError
from autotts_jax.live.episode import (
    DEFAULT_POOL_SIZE,
    LiveQuestion,
    Stopped,
    run_episode,
    warm_up,
)
from autotts_jax.utils.atomic import atomic_write_text

MANIFEST = "live.json"
RESULT_COLUMNS = ("question", "answer", "correct", "tokens", "seq_tokens", "rounds",
                  "stop_reason", "wall_s", "branches", "gen_requests", "probe_requests",
                  "gen_tokens", "probe_tokens", "prompt_tokens")


def _manifest(controller: Controller, config: Mapping[str, Any], settings: CollectSettings,
              problems: ProblemSet, cost_model: str, max_rounds: int, capacity: int,
              probe_all: bool) -> dict:
    return {"format": 1, "controller": controller.name, "config": dict(config),
            "cost_model": cost_model, "max_rounds": max_rounds, "answer_capacity": capacity,
            "settings": asdict(settings), "problems": problems.sha256,
            "probe_full_reads": probe_all}


def _check_manifest(out: Path, mine: dict) -> None:
    path = out / MANIFEST
    if path.exists():
        try:
            theirs = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AutoTTSError(f"{path}: not valid JSON ({exc})") from None
        diff = [k for k in mine if theirs.get(k) != mine[k]]
        if diff:
            raise AutoTTSError(
                f"{out}: holds a live run with other {', '.join(diff)}; use the same "
                "command to resume, or another output directory")
        return
    atomic_write_text(path, json.dumps(mine, indent=1, ensure_ascii=False))


def _summary(rows: list[dict], controller: Controller, config: Mapping[str, Any],
             settings: CollectSettings, problems: ProblemSet, cost_model: str,
             wall_s: float) -> dict:
    n = len(rows)
    mean = lambda key: sum(r[key] for r in rows) / n  # noqa: E731
    walls = [r["wall_s"] for r in rows]
    requests = sum(r["gen_requests"] + r["probe_requests"] for r in rows)
    prompt = sum(r["prompt_tokens"] for r in rows)
    return {
        "controller": controller.name,
        "config": controller.config(config),
        "cost_model": cost_model,
        "model": settings.model,
        "benchmark": problems.name,
        "questions": n,
        "n_correct": sum(bool(r["correct"]) for r in rows),
        "accuracy": round(100 * sum(bool(r["correct"]) for r in rows) / n, 2),
        "avg_tokens": mean("tokens"),
        "avg_seq_tokens": mean("seq_tokens"),
        "avg_rounds": mean("rounds"),
        "avg_branches": mean("branches"),
        "stop_reasons": dict(Counter(r["stop_reason"] for r in rows)),
        "server": {
            "requests": requests,
            "gen_requests": sum(r["gen_requests"] for r in rows),
            "probe_requests": sum(r["probe_requests"] for r in rows),
            "avg_gen_completion_tokens": mean("gen_tokens"),
            "avg_probe_completion_tokens": mean("probe_tokens"),
            "avg_prompt_tokens": mean("prompt_tokens"),
            "prompt_tokens_per_request": prompt / requests if requests else 0.0,
        },
        "latency": {
            "mean_wall_s": statistics.fmean(walls),
            "median_wall_s": statistics.median(walls),
            "max_wall_s": max(walls),
        },
        "run_wall_s": wall_s,
    }


def replay_prediction(controller: Controller, config: Mapping[str, Any], store_path: str | Path,
                      problems: ProblemSet, rows: list[dict], *, cost_model: str, seeds: int,
                      max_rounds: int, pool_size: int) -> dict:
    """The same controller replayed on a collected store: the mean over ``seeds`` shuffles,
    and, when the store holds exactly these questions, the replay in the live run's branch
    order (slot ``j`` = the ``j``-th branch started), question by question."""
    from autotts_jax.engine.simulate import simulate
    from autotts_jax.store.load import load_store

    store = load_store(store_path)
    eps = simulate(controller, store.data, [config], range(seeds), cost_model=cost_model,
                   max_rounds=max_rounds, pool_size=pool_size)
    s = eps.summary(0)
    out: dict[str, Any] = {
        "store": str(store_path), "model": store.meta.model, "benchmark": store.meta.benchmark,
        "seeds": seeds, "accuracy": s["accuracy"], "avg_tokens": s["avg_tokens"],
        "avg_seq_tokens": s["avg_seq_tokens"], "avg_rounds": s["avg_rounds"],
        "stop_reasons": s["stop_reasons"],
    }
    texts = [p.question for p in problems.problems]
    if [str(q) for q in store.meta.question] != texts:
        return out
    n_b = store.data.probe_answer.shape[1]
    orders = np.tile(np.arange(n_b, dtype=np.int32), (1, len(texts), 1))
    same = simulate(controller, store.data, [config], cost_model=cost_model,
                    max_rounds=max_rounds, pool_size=pool_size, orders=orders)
    agree = 0
    for q, r in enumerate(rows):
        a = int(same.answer[0, 0, q])
        replayed = (str(store.meta.vocab[q][a]) if a >= 0 else None,
                    int(same.tokens[0, 0, q]), int(same.seq_tokens[0, 0, q]),
                    int(same.rounds[0, 0, q]), same.stop_reasons[int(same.stop_reason[0, 0, q])])
        agree += replayed == (r["answer"], r["tokens"], r["seq_tokens"], r["rounds"],
                              r["stop_reason"])
    out["same_order"] = {"questions": len(rows), "identical": agree,
                         "accuracy": same.summary(0)["accuracy"],
                         "avg_tokens": same.summary(0)["avg_tokens"]}
    return out


def save_trajectories_store(out: Path, path: str | Path, settings: CollectSettings,
                            problems: ProblemSet) -> dict:
    """Write the branches the run generated to their end as a store at ``path``.

    Only ended branches are replay branches (a pruned or unfinished one has no final answer),
    so the store is partial: per question, the ended branches in the order they were started,
    questions without one left out.  They are the branches this controller chose to finish,
    not a random sample: fine for inspecting the run or extending a collection, biased as a
    store to tune controllers on by itself.
    """
    from autotts_jax.store.hdf5 import write_store
    from autotts_jax.store.upstream import read_upstream

    records, kept, total = [], 0, 0
    for i in range(len(problems.problems)):
        rec = json.loads((out / "questions" / f"q{i:05d}.json").read_text(encoding="utf-8"))
        rec = rec["record"]
        total += len(rec["each_branch"])
        ended = [br for br in rec["each_branch"] if br[2] is not None]
        kept += len(ended)
        if ended:
            records.append({**rec, "each_branch": ended,
                            "final_answers_trace": [br[2] for br in ended]})
    if not records:
        raise AutoTTSError(f"{path}: no branch ended, so there are no trajectories to save")
    upstream = out / "trajectories.json"
    atomic_write_text(upstream, json.dumps(records, ensure_ascii=False))
    write_store(read_upstream(upstream), path, settings.model, problems.name)
    return {"store": str(path), "questions": len(records), "branches": kept,
            "branches_started": total}


def run_live(
    controller: Controller,
    config: Mapping[str, Any],
    settings: CollectSettings,
    conn: Connection,
    problems: ProblemSet,
    out_dir: str | Path,
    *,
    cost_model: str = "corrected",
    question_concurrency: int = 4,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    answer_capacity: int = DEFAULT_POOL_SIZE,
    store: str | Path | None = None,
    replay_seeds: int = 100,
    save_trajectories: str | Path | None = None,
    progress: TextIO | None = sys.stderr,
) -> dict:
    """Run (or resume) ``controller`` live on ``problems``; write ``out_dir`` (see the module
    docstring) and return the summary.  ``save_trajectories`` (an ``.h5`` path) also writes
    what the run generated as a store (see :func:`save_trajectories`)."""
    settings.validate()
    config = controller.config(config)
    controller.make_params(config)  # validate before any request
    if cost_model not in COST_MODELS:
        raise AutoTTSError(f"cost model must be one of {COST_MODELS}, got {cost_model!r}")
    for name, value in (("concurrency", conn.concurrency),
                        ("question concurrency", question_concurrency),
                        ("max rounds", max_rounds), ("answer capacity", answer_capacity)):
        if value < 1:
            raise AutoTTSError(f"run-live: {name} must be at least 1, got {value}")
    if store is not None and not Path(store).is_file():
        raise AutoTTSError(f"{store}: no such store")
    if save_trajectories is not None and Path(save_trajectories).suffix not in (".h5", ".hdf5"):
        raise AutoTTSError(f"{save_trajectories}: the trajectories must go to an .h5 file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "questions").mkdir(exist_ok=True)
    with open(out / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise AutoTTSError(f"{out}: another live run is using this directory") from None
        _check_manifest(out, _manifest(controller, config, settings, problems, cost_model,
                                       max_rounds, answer_capacity, save_trajectories is not None))
        t0 = time.monotonic()
        rows = _run_questions(controller, config, settings, conn, problems, out,
                              cost_model=cost_model, question_concurrency=question_concurrency,
                              max_rounds=max_rounds, capacity=answer_capacity,
                              probe_all=save_trajectories is not None, progress=progress)
        summary = _summary(rows, controller, config, settings, problems, cost_model,
                           time.monotonic() - t0)
        if store is not None:
            summary["replay"] = replay_prediction(
                controller, config, store, problems, rows, cost_model=cost_model,
                seeds=replay_seeds, max_rounds=max_rounds, pool_size=answer_capacity)
        if save_trajectories is not None:
            summary["trajectories"] = save_trajectories_store(
                out, save_trajectories, settings, problems)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, RESULT_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(out / "results.csv", buf.getvalue())
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, ensure_ascii=False))
    return summary


def _run_questions(controller: Controller, config: Mapping[str, Any],
                   settings: CollectSettings, conn: Connection, problems: ProblemSet, out: Path,
                   *, cost_model: str, question_concurrency: int, max_rounds: int,
                   capacity: int, probe_all: bool, progress: TextIO | None) -> list[dict]:
    normalize = get_normalizer(settings.normalize)
    client = CompletionClient(conn.base_url, settings.model, timeout=conn.timeout,
                              retries=conn.retries, backoff=conn.backoff, api_key=conn.api_key,
                              extra_body=settings.extra_body)
    stop = threading.Event()
    rows: list[dict | None] = [None] * len(problems.problems)
    todo = []
    for i in range(len(problems.problems)):
        done = out / "questions" / f"q{i:05d}.json"
        if done.exists():
            try:
                rec = json.loads(done.read_text(encoding="utf-8"))
                rows[i] = rec["result"]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
                raise AutoTTSError(f"{done}: not a finished question ({exc})") from None
            # killed between the result and the journal's removal
            done.with_name(f"q{i:05d}.journal.jsonl").unlink(missing_ok=True)
        else:
            todo.append(i)
    lock = threading.Lock()
    if todo:
        warm_up(controller, config, settings, cost_model=cost_model, pool_size=capacity)

    def one(i: int) -> None:
        p = problems.problems[i]
        gold = normalize(p.answer)
        stem = out / "questions" / f"q{i:05d}"
        journal = Journal(Path(f"{stem}.journal.jsonl"))
        header = {"e": "question", "question": p.question, "gold_answer": gold}
        live = LiveQuestion(client, settings, p.question, gold, i, branch_pool, capacity,
                            journal, stop=stop, probe_all=probe_all)
        try:
            events = journal.read()
            if events and events[0] != header:
                raise AutoTTSError(f"{journal.path}: journal of another question")
            try:
                live.restore(events[1:])
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise AutoTTSError(f"{journal.path}: does not continue the journal ({exc}); "
                                   "delete it to run the question again") from None
            if not events:
                journal.append(header)
            ep = run_episode(controller, config, live, cost_model=cost_model,
                             max_rounds=max_rounds, pool_size=capacity)
        finally:
            journal.close()
        row = {"question": i, **ep.row()}
        atomic_write_text(stem.with_suffix(".json"), json.dumps(
            {"result": row, "record": live.record()}, ensure_ascii=False))
        journal.path.unlink(missing_ok=True)
        with lock:
            rows[i] = row
            if progress is not None:
                finished = sum(r is not None for r in rows)
                progress.write(f"run-live: question {i}: {ep.answer!r} "
                               f"({'correct' if ep.correct else 'wrong'}), {ep.tokens} tokens, "
                               f"{ep.rounds} rounds, {ep.stop_reason}, {ep.wall_s:.1f} s "
                               f"[{finished}/{len(rows)}]\n")
                progress.flush()

    with ThreadPoolExecutor(conn.concurrency) as branch_pool, \
            ThreadPoolExecutor(question_concurrency) as question_pool:
        futures = [question_pool.submit(one, i) for i in todo]
        error: BaseException | None = None
        try:
            for f in futures:
                try:
                    f.result()
                except Stopped:
                    pass
                except BaseException as exc:
                    if error is None:
                        error = exc
                    stop.set()
                    for g in futures:
                        g.cancel()
        except KeyboardInterrupt:
            stop.set()
            for g in futures:
                g.cancel()
            raise
        if error is not None:
            if isinstance(error, AutoTTSError):
                raise AutoTTSError(f"{error} (answered requests are kept in {out}; run the "
                                   "same command again to resume)") from None
            raise error
    return [r for r in rows if r is not None]
