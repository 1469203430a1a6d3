"""The discovery loop: R rounds of K candidates, each proposed, validated, evaluated on the
search split and appended to the run's history; then selection, export, and (in a separate
step, after the loop) the held-out evaluation.

Per round ``r`` (LLM and command backends):

1. render the prompt from the history of rounds ``< r`` (so a resumed round gets the same
   prompt): protocol, worked examples, objective, baselines, the best candidates with their
   curves, position and diagnostics, and the errors of rejected candidates;
2. for each candidate ``c`` not yet done: ask the proposer (or reuse the response recorded
   before an interruption), extract the module, check it statically, run it in the sandbox
   (:mod:`autotts_jax.untrusted.sandbox`), check the invariants of its results, score it;
3. write everything to ``rounds/r<r>/c<c>/`` and commit the candidate's record.

The ``evolve`` backend proposes a whole generation at once and evaluates it in one vmapped
call per backbone, in this process (its code is the trusted family; the generated module is
still checked statically and its results by the same invariants).

No candidate can crash the loop: every failure becomes a rejected record with its reason.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autotts_jax.engine.invariants import check_store
from autotts_jax.engine.static import check_source
from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments import metrics as M
from autotts_jax.explorer import tune as T
from autotts_jax.explorer.context import (
    SearchContext,
    compute_baselines,
    load_context,
    restore_baselines,
)
from autotts_jax.explorer.history import History
from autotts_jax.store.split import SearchSplit, held_out_guard
from autotts_jax.untrusted import digest as D
from autotts_jax.untrusted.sandbox import limits_of, resolve_containment, run_candidate

Log = Callable[[str], None]


def _log(msg: str) -> None:
    print(msg, flush=True)


def cid(r: int, c: int) -> str:
    return f"r{r:04d}c{c:02d}"


def run_spec(conf: Mapping[str, Any], models: Sequence[str]) -> dict[str, Any]:
    """What identifies a run (resume refuses to continue a run with other settings)."""
    explorer = {k: v for k, v in dict(conf["explorer"]).items()
                if k not in ("timeout_s", "retries", "backoff_s")}
    return {
        "format": "autotts-jax discovery run", "version": 1,
        "explorer": explorer, "rounds": int(conf["rounds"]),
        "candidates": int(conf["candidates"]), "seed": int(conf["seed"]),
        "seeds": int(conf["seeds"]), "betas": [float(b) for b in conf["betas"]],
        "cost_model": str(conf["cost_model"]), "max_rounds": int(conf["max_rounds"]),
        "max_branch": int(conf["max_branch"]), "models": list(models),
        "monotone_tolerance": float(conf["score"]["monotone_tolerance"]),
        "floor_reads": int(conf["score"]["floor_reads"]),
        "baselines": sorted((conf.get("controller") or {}).keys()),
        "containment": containment_of(conf),
    }


def containment_of(conf: Mapping[str, Any]) -> str:
    """How candidate code is contained in this run: ``bwrap`` or ``rlimits-only`` (see
    :mod:`autotts_jax.untrusted.sandbox`); ``in-process`` for ``evolve``, whose candidates are
    the trusted family evaluated in this process."""
    if str(conf["explorer"].get("name") or "") == "evolve":
        return "in-process"
    return resolve_containment(str(conf["sandbox"].get("containment", "auto")))


# --------------------------------------------------------------------------- assessment


def assess(ctx: SearchContext, arrays: Mapping[str, np.ndarray], needs: Sequence[int],
           stop_reasons: Sequence[str], tolerance: float) -> tuple[str, str, dict[str, Any]]:
    """(stage, reason, metrics): stage ``ok`` or why the results are rejected."""
    problems: list[str] = []
    for s, (m, data) in enumerate(zip(ctx.models, ctx.datas, strict=True)):
        problems += check_store({f: arrays[f][s] for f in M.FIELDS}, data, ctx.seeds, needs,
                                max_branch=ctx.max_branch, cost_model=ctx.cost_model,
                                stop_reasons=stop_reasons, label=m, betas=ctx.betas)
    if problems:
        return "invariant", "invariant: " + "\n".join(problems[:12]), {}
    summaries = M.summarize(arrays, stop_reasons)
    curve = M.curves(summaries, ctx.models, ctx.betas)
    scored = M.score_curves(curve, ctx.anchors)
    keep = ("beta", "accuracy", "avg_tokens", "avg_seq_tokens", "avg_branches", "avg_rounds",
            "stop_reasons")
    metrics = {
        **scored,
        "search": {m: [{k: p[k] for k in keep} for p in pts] for m, pts in curve.items()},
        "position": M.position(curve, ctx.references),
        "summaries": summaries,
    }
    mono = M.monotone_problem(scored["mean_curve"], tolerance)
    if mono:
        return "monotone", f"monotone: {mono}", metrics
    return "ok", "", metrics


def _record(r: int, c: int, backend: str, stage: str, reason: str, metrics: Mapping[str, Any],
            source: str | None, seconds: Mapping[str, float], **extra) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "round": r, "candidate": c, "id": cid(r, c),
        "status": "accepted" if stage == "ok" else "rejected",
        "stage": stage, "reason": reason, "backend": backend,
    }
    for k in ("score", "score_per_model", "peak_accuracy", "peak_beta", "tokens_at_peak",
              "mean_tokens", "mean_curve", "search"):
        if k in metrics:
            rec[k] = metrics[k]
    if metrics.get("position"):
        rec["position"] = metrics["position"]
    if source is not None:
        rec["source_sha256"] = hashlib.sha256(source.encode("utf-8")).hexdigest()
    rec.update(extra)
    rec["seconds"] = {k: round(float(v), 3) for k, v in seconds.items()}
    return rec


def _write_metrics(history: History, r: int, c: int, metrics: Mapping[str, Any]) -> None:
    if metrics:
        history.write(r, c, "metrics.json", {k: v for k, v in metrics.items()
                                             if k != "summaries"} | {
            "per_store": metrics.get("summaries")})


# --------------------------------------------------------------------------- LLM rounds


def _evaluate_source(ctx: SearchContext, conf: Mapping[str, Any], history: History, r: int,
                     c: int, source: str, backend: str, seconds: dict[str, float],
                     log: Log) -> dict[str, Any]:
    report = check_source(source)
    validation: dict[str, Any] = {"static": {"ok": report.ok, "problems": list(report.problems)}}
    if not report.ok:
        history.write(r, c, "validation.json", validation)
        return _record(r, c, backend, "static", "static: " + "\n".join(report.problems), {},
                       source, seconds)
    tuning: dict[str, Any] | None = None
    settings = tune_settings(conf)
    if settings.generations:
        t0 = time.perf_counter()
        tuning, tuned = _tune_module(ctx, conf, settings, source, r, c)
        seconds["tune"] = time.perf_counter() - t0
        if tuned is not None and check_source(tuned).ok:
            history.write(r, c, "candidate_untuned.py", source)
            history.write(r, c, "candidate.py", tuned)
            source = tuned
        if tuning is not None:
            log(f"discover: {cid(r, c)} tuning: {tuning['status']}"
                + (f", low-fidelity score {tuning['untuned_score_low']} -> "
                   f"{tuning['score_low']}" if tuning["status"] == "tuned" else ""))
    extra = {} if tuning is None else {"tuning": tuning,
                                       "untuned_score_low": tuning.get("untuned_score_low")}
    t0 = time.perf_counter()
    sb = conf["sandbox"]
    outcome = run_candidate(
        source, ctx.split, betas=ctx.betas, seeds=ctx.seeds, sc64=ctx.sc64_correct,
        limits=limits_of(conf), conformance=bool(sb["conformance"]),
        determinism=bool(sb["determinism"]), non_interference=bool(sb["non_interference"]),
        n_traces=int(conf["prompt"]["traces"]), trace_rows=int(conf["prompt"]["trace_rows"]),
        max_branch=ctx.max_branch, datas=ctx.datas, seed=int(conf.get("seed", 0)) + 1000 * r + c,
        containment=str(sb.get("containment", "auto")), **ctx.sim_kw(),
    )
    seconds["sandbox"] = time.perf_counter() - t0
    if "eval" in outcome.timing:
        seconds["eval"] = float(outcome.timing["eval"])
    validation["sandbox"] = {"ok": outcome.ok, "stage": outcome.stage, "reason": outcome.reason,
                             "timing": outcome.timing, "denied": outcome.denied,
                             "opened": outcome.opened, "log_tail": outcome.log_tail,
                             "containment": outcome.containment}
    if not outcome.ok:
        history.write(r, c, "validation.json", validation)
        return _record(r, c, backend, outcome.stage, outcome.reason, {}, source, seconds,
                       **extra)
    stage, reason, metrics = assess(ctx, outcome.arrays, outcome.needs, outcome.stop_reasons,
                                    float(conf["score"]["monotone_tolerance"]))
    validation["invariants"] = {"ok": stage != "invariant", "problems": reason
                                if stage == "invariant" else ""}
    validation["monotone"] = {"ok": stage != "monotone",
                              "problem": reason if stage == "monotone" else ""}
    history.write(r, c, "validation.json", validation)
    _write_metrics(history, r, c, metrics)
    if stage == "ok":
        text = D.render(outcome.arrays, metrics["summaries"], ctx.sc64_correct, ctx.models,
                        ctx.betas, outcome.traces)
        history.write(r, c, "digest.md", text)
        history.write_arrays(r, c, "episodes.npz", outcome.arrays)
    return _record(r, c, backend, stage, reason, metrics, source, seconds,
                   name=outcome.name, **extra)


class _TuneFailed(Exception):
    pass


def _tune_module(ctx: SearchContext, conf: Mapping[str, Any], settings: T.TuneSettings,
                 source: str, r: int, c: int) -> tuple[dict[str, Any] | None, str | None]:
    """Tune an LLM candidate's ``KNOBS`` schedules in the sandbox (one run per generation,
    low fidelity); the tuning record and the source with the tuned table (``None`` when the
    module declares no knobs, or tuning failed: it is then scored as written)."""
    from autotts_jax.engine.knobs import parse_knobs, with_knobs
    from autotts_jax.untrusted.sandbox import tune_untrusted

    try:
        knobs = parse_knobs(source)
    except (ValueError, SyntaxError) as exc:
        return {"status": f"not tuned: {exc}"}, None
    if knobs is None:
        return None, None
    space, start = T.space_of_knobs(knobs)
    betas = T.tuning_betas(ctx.betas, settings.beta_stride)
    low = ctx.seeds[:max(1, settings.seeds)]
    tol = float(conf["score"]["monotone_tolerance"])
    sb = conf["sandbox"]

    def evaluate(genomes):
        out = tune_untrusted(source, ctx.datas, [{k: g[k] for k in space} for g in genomes],
                             betas=betas, seeds=low, limits=limits_of(conf),
                             containment=str(sb.get("containment", "auto")),
                             max_branch=ctx.max_branch, **ctx.sim_kw())
        if not out.ok:
            raise _TuneFailed(f"{out.stage}: {out.reason}")
        nb = len(betas)
        return [{f: out.arrays[f][:, i * nb:(i + 1) * nb] for f in ("correct", "tokens")}
                for i in range(len(genomes))]

    def score(results):
        return T.score_population(results, ctx.models, betas, ctx.anchors, tol)

    rng = np.random.default_rng([int(conf["seed"]), r, c, 0x7E7E])
    try:
        res = T.tune_all([start], evaluate, score, [rng], settings, space)[0]
    except _TuneFailed as exc:
        return {"status": "failed", "reason": str(exc)[:600]}, None
    best = res.pop("genome")
    res.update(status="tuned", declared=start, tuned={k: best[k] for k in space})
    if best == {k: [round(a, 4), round(s, 4)] for k, (a, s) in start.items()}:
        return res, None
    tuned = {k: v._replace(intercept=best[k][0], slope=best[k][1]) for k, v in knobs.items()}
    return res, with_knobs(source, tuned)


def _llm_round(ctx: SearchContext, conf: Mapping[str, Any], history: History, proposer,
               r: int, log: Log) -> None:
    from autotts_jax.explorer.prompt import render
    from autotts_jax.explorer.proposers import ProposerError, extract_code

    k = int(conf["candidates"])
    pending = [c for c in range(k) if history.record(r, c) is None]
    if not pending:
        return
    p = conf["prompt"]
    backend = str(conf["explorer"]["name"])
    for c in pending:
        # Candidates of a round are proposed one after another: each prompt also shows the
        # results of the round's earlier candidates.
        records = history.records()
        prompt = render(ctx=ctx, records=[x for x in records if int(x["round"]) < r],
                        this_round=[x for x in records if int(x["round"]) == r
                                    and int(x["candidate"]) < c],
                        history=history, round_index=r, limits=limits_of(conf),
                        n_best=int(p["history"]), n_errors=int(p["errors"]),
                        examples=bool(p["examples"]), max_rounds=int(conf["max_rounds"]),
                        tolerance=float(conf["score"]["monotone_tolerance"]),
                        tuning=tune_settings(conf))
        seconds: dict[str, float] = {}
        t_all = time.perf_counter()
        history.write(r, c, "prompt.md", prompt)
        response = history.read(r, c, "response.txt")
        if response is None:
            t0 = time.perf_counter()
            try:
                response = proposer.propose(prompt, round=r, candidate=c,
                                            seed=r * k + c)
            except ProposerError as exc:
                seconds["propose"] = time.perf_counter() - t0
                rec = _record(r, c, backend, "proposer", f"proposer: {exc}", {}, None, seconds)
                history.commit(rec)
                log(f"discover: {cid(r, c)} rejected: {rec['reason'].splitlines()[0]}")
                continue
            seconds["propose"] = time.perf_counter() - t0
            history.write(r, c, "response.txt", response)
        source = extract_code(response)
        if source is None:
            rec = _record(r, c, backend, "response", "response: no Python code block defining "
                          "CONTROLLER found in the reply", {}, None, seconds)
        else:
            history.write(r, c, "candidate.py", source)
            try:
                rec = _evaluate_source(ctx, conf, history, r, c, source, backend, seconds, log)
            except Exception as exc:  # noqa: BLE001 -- never let a candidate stop the run
                rec = _record(r, c, backend, "error", f"error: {type(exc).__name__}: {exc}",
                              {}, source, seconds)
        seconds["total"] = time.perf_counter() - t_all
        rec["seconds"]["total"] = round(seconds["total"], 3)
        history.commit(rec)
        _announce(rec, log)


def _announce(rec: Mapping[str, Any], log: Log) -> None:
    if rec["status"] == "accepted":
        log(f"discover: {rec['id']} accepted: score {rec['score']:.2f}, peak accuracy "
            f"{rec['peak_accuracy']:.1f}% at beta {rec['peak_beta']:g}, mean tokens "
            f"{rec['mean_tokens'] / 1000:.1f}k ({rec['seconds'].get('total', 0):.0f}s)")
    else:
        first = (rec.get("reason") or "").splitlines()[0][:160] if rec.get("reason") else ""
        log(f"discover: {rec['id']} rejected ({rec['stage']}): {first}")


# --------------------------------------------------------------------------- evolve rounds


def tune_settings(conf: Mapping[str, Any]) -> T.TuneSettings:
    """The tuner's settings; ``explorer.strategy: random`` tunes by random search too."""
    cfg = dict(conf.get("tune") or {})
    if conf["explorer"].get("strategy", "evolve") == "random":
        cfg["strategy"] = "random"
    return T.TuneSettings.of(cfg)


def _tune_round(ctx: SearchContext, conf: Mapping[str, Any], settings: T.TuneSettings,
                genomes: Sequence[Mapping[str, Any]], r: int, cands: Sequence[int]
                ) -> list[dict[str, Any]]:
    """Tune a round's genomes together: one population replay per generation and backbone,
    on the first ``tune.seeds`` seeds (low fidelity)."""
    from autotts_jax.explorer import evolve as EV

    low = ctx.seeds[:max(1, settings.seeds)]
    betas = T.tuning_betas(ctx.betas, settings.beta_stride)
    tol = float(conf["score"]["monotone_tolerance"])

    def evaluate(gs):
        return EV.evaluate_population(gs, ctx.datas, betas, low, **ctx.sim_kw())[0]

    def score(results):
        return T.score_population(results, ctx.models, betas, ctx.anchors, tol)

    rngs = [np.random.default_rng([int(conf["seed"]), r, c, 0x7E7E]) for c in cands]
    return T.tune_all(genomes, evaluate, score, rngs, settings)


def _evolve_round(ctx: SearchContext, conf: Mapping[str, Any], history: History, r: int,
                  log: Log) -> None:
    from autotts_jax.explorer import evolve as EV
    from autotts_jax.explorer import family as F

    k = int(conf["candidates"])
    pending = [c for c in range(k) if history.record(r, c) is None]
    if not pending:
        return
    previous = [x for x in history.records() if int(x["round"]) < r]
    genomes, note = EV.propose_generation(conf["explorer"], int(conf["seed"]), r, k, previous,
                                          ctx.betas)
    untuned = {c: genomes[c] for c in pending}
    t0 = time.perf_counter()
    tuning: dict[int, dict[str, Any]] = {}
    settings = tune_settings(conf)
    if settings.generations:
        tuned = _tune_round(ctx, conf, settings, [untuned[c] for c in pending], r, pending)
        for c, res in zip(pending, tuned, strict=True):
            genomes[c] = res.pop("genome")
            tuning[c] = res
    t_tune = time.perf_counter() - t0
    sources = {}
    for c in pending:
        origin = note["origin"][c]
        history.write(r, c, "prompt.md", "evolve: no prompt (LLM-free search).\n\n" + json.dumps(
            {**note, "origin": origin, "round": r, "candidate": c}, indent=1) + "\n")
        history.write(r, c, "response.txt", json.dumps(untuned[c], indent=1) + "\n")
        sources[c] = EV.genome_source(genomes[c], cid(r, c), origin, ctx.betas)
        history.write(r, c, "candidate.py", sources[c])
    t0 = time.perf_counter()
    # Tuned and untuned genomes at full fidelity in one population call (multi-fidelity: the
    # tuner saw only its low-fidelity seeds).
    extra = [untuned[c] for c in pending if c in tuning]
    try:
        results, needs, timing = EV.evaluate_population(
            [genomes[c] for c in pending] + extra, ctx.datas, ctx.betas, ctx.seeds,
            **ctx.sim_kw())
        error = None
    except Exception as exc:  # noqa: BLE001
        results, needs, timing, error = [], [], {}, f"error: {type(exc).__name__}: {exc}"
    wall = time.perf_counter() - t0
    per_candidate = (wall + t_tune) / max(1, len(pending))
    log(f"discover: round {r}: tuned {len(tuning)} genomes x {settings.evaluations} schedules "
        f"in {t_tune:.1f}s; evaluated {len(pending) + len(extra)} genomes x {len(ctx.betas)} "
        f"betas on {len(ctx.models)} backbones in {wall:.1f}s")
    untuned_scores: dict[int, float | None] = {}
    if error is None:
        tol = float(conf["score"]["monotone_tolerance"])
        scored = T.score_population(results[len(pending):], ctx.models, ctx.betas,
                                    ctx.anchors, tol)
        for c, sc in zip([c for c in pending if c in tuning], scored, strict=True):
            untuned_scores[c] = sc["score"] if sc["monotone"] else None
    nb = len(ctx.betas)
    recs: dict[int, dict[str, Any]] = {}
    assessed: dict[int, tuple[dict, dict]] = {}
    for i, c in enumerate(pending):
        seconds = {"eval": per_candidate, "population_eval": wall, "total": per_candidate}
        report = check_source(sources[c])
        validation = {"static": {"ok": report.ok, "problems": list(report.problems)},
                      "sandbox": {"ok": True, "stage": "in-process",
                                  "reason": "generated from the trusted family; evaluated in "
                                            "the population call", "timing": timing}}
        if not report.ok:
            recs[c] = _record(r, c, "evolve", "static", "static: " + "\n".join(report.problems),
                              {}, sources[c], seconds, genome=genomes[c])
        elif error is not None:
            recs[c] = _record(r, c, "evolve", "eval", error, {}, sources[c], seconds,
                              genome=genomes[c])
        else:
            tol = float(conf["score"]["monotone_tolerance"])
            arrays = results[i]
            stage, reason, metrics = assess(ctx, arrays, needs[i * nb:(i + 1) * nb],
                                            F.FAMILY.all_stop_reasons, tol)
            if c in tuning:
                # Multi-fidelity guard: the tuner saw a few seeds and every other beta; the
                # tuned schedule is kept only if it also passes and wins on the full grid.
                j = len(pending) + [x for x in pending if x in tuning].index(c)
                u_stage, u_reason, u_metrics = assess(
                    ctx, results[j], needs[j * nb:(j + 1) * nb], F.FAMILY.all_stop_reasons, tol)
                tuning[c]["tuned_score"] = metrics.get("score") if stage == "ok" else None
                tuning[c]["tuned_stage"] = stage if stage == "ok" else reason[:300]
                if u_stage == "ok" and (stage != "ok" or u_metrics["score"] > metrics["score"]):
                    tuning[c]["kept"] = "untuned"
                    genomes[c], arrays = untuned[c], results[j]
                    stage, reason, metrics = u_stage, u_reason, u_metrics
                    sources[c] = EV.genome_source(genomes[c], cid(r, c), note["origin"][c],
                                                  ctx.betas)
                    history.write(r, c, "candidate.py", sources[c])
                else:
                    tuning[c]["kept"] = "tuned"
            validation["invariants"] = {"ok": stage != "invariant",
                                        "problems": reason if stage == "invariant" else ""}
            validation["monotone"] = {"ok": stage != "monotone",
                                      "problem": reason if stage == "monotone" else ""}
            _write_metrics(history, r, c, metrics)
            extra_fields = {}
            if c in tuning:
                extra_fields = {"untuned_genome": untuned[c],
                                "untuned_score": untuned_scores.get(c),
                                "tuning": tuning[c]}
            recs[c] = _record(r, c, "evolve", stage, reason, metrics, sources[c], seconds,
                              genome=genomes[c], name=f"evolved_{cid(r, c)}",
                              origin=note["origin"][c], structure=EV.structure_of(genomes[c]),
                              **extra_fields)
            if stage == "ok":
                assessed[c] = (arrays, metrics)
        history.write(r, c, "validation.json", validation)
    # Diagnostics for every accepted genome; execution traces for the round's best.
    best = min(assessed, key=lambda c: M.rank_key(recs[c]), default=None)
    for c, (arrays, metrics) in assessed.items():
        traces = []
        n_traces = int(conf["prompt"]["traces"]) if c == best else 0
        if n_traces:
            configs = F.family_configs(genomes[c], ctx.betas)
            try:
                for p in D.pick_episodes(arrays, ctx.sc64_correct, ctx.betas, n_traces):
                    traces += D.trace_many(F.FAMILY, ctx.datas[p["store"]], [p], configs,
                                           ctx.seeds, max_rows=int(conf["prompt"]["trace_rows"]),
                                           name=f"evolved_{cid(r, c)}", **ctx.sim_kw())
            except Exception as exc:  # noqa: BLE001 -- diagnostics must not stop the run
                log(f"discover: traces of {cid(r, c)} failed: {exc}")
        history.write(r, c, "digest.md", D.render(arrays, metrics["summaries"],
                                                  ctx.sc64_correct, ctx.models, ctx.betas,
                                                  traces))
        history.write_arrays(r, c, "episodes.npz", arrays)
    for c in pending:
        history.commit(recs[c])
        _announce(recs[c], log)


# --------------------------------------------------------------------------- the run


def confirm(ctx: SearchContext, conf: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
            log: Log) -> dict[str, Any] | None:
    """Multi-fidelity selection (evolve): re-score the ``confirm_top`` best accepted genomes,
    and CMC's as the yardstick, on ``confirm_seeds`` seeds of the search split, in one
    population call.  The best of many on a few seeds is optimistic (the winner's curse); the
    re-scored order is the one the export follows."""
    from autotts_jax.explorer import evolve as EV
    from autotts_jax.explorer import family as F

    top = int(conf["explorer"].get("confirm_top", 0))
    accepted = sorted((x for x in records if x.get("status") == "accepted" and x.get("genome")),
                      key=M.rank_key)[:max(0, top)]
    if not accepted:
        return None
    seeds = list(range(int(conf["explorer"].get("confirm_seeds", 40))))
    genomes = [x["genome"] for x in accepted] + [F.CMC_GENOME]
    t0 = time.perf_counter()
    results = EV.evaluate_population(genomes, ctx.datas, ctx.betas, seeds, **ctx.sim_kw())[0]
    scores = T.score_population(results, ctx.models, ctx.betas, ctx.anchors,
                                float(conf["score"]["monotone_tolerance"]))
    rows = [{"id": x["id"], "score": x["score"], "confirmed_score": s["score"],
             "confirmed_mean_tokens": s["mean_tokens"], "monotone": s["monotone"]}
            for x, s in zip(accepted, scores, strict=False)]
    ok = [r for r in rows if r["monotone"]] or rows
    best = max(ok, key=lambda r: (r["confirmed_score"], -r["confirmed_mean_tokens"]))
    out = {"seeds": len(seeds), "candidates": rows, "best": best["id"],
           "cmc_confirmed_score": scores[-1]["score"],
           "seconds": round(time.perf_counter() - t0, 2)}
    log(f"discover: confirmed the top {len(rows)} on {len(seeds)} seeds in {out['seconds']}s: "
        + ", ".join(f"{r['id']} {r['score']:.2f} -> {r['confirmed_score']:.2f}" for r in rows)
        + f" (CMC {out['cmc_confirmed_score']:.2f}); exporting {best['id']}")
    return out


def select_best(records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    accepted = [x for x in records if x.get("status") == "accepted"]
    return dict(min(accepted, key=M.rank_key)) if accepted else None


def export_best(history: History, best: Mapping[str, Any]) -> Path:
    src = history.read(int(best["round"]), int(best["candidate"]), "candidate.py") or ""
    header = (f"# Exported by `autotts-jax discover` from candidate {best['id']} of the run in "
              f"this directory.\n# Search-split score {best['score']:.2f} (accuracy at matched "
              f"budget); peak accuracy {best['peak_accuracy']:.2f}% at beta "
              f"{best['peak_beta']:g}.\n# Load it with "
              "autotts_jax.explorer.load_controller_module(path).\n")
    return history.write_file("best_controller.py", header + src)


_REQUIRED = {"openai": ("base_url", "model"), "command": ("command",), "replay": ("from_dir",)}


def check_explorer(explorer: Mapping[str, Any]) -> None:
    """Fail before any work when a backend's required setting is missing or malformed."""
    name = str(explorer.get("name") or "")
    for key in _REQUIRED.get(name, ()):
        value = explorer.get(key)
        if value is None or str(value).strip() in ("", "???"):
            raise AutoTTSError(f"explorer.{key} is required with explorer={name} "
                               f"(e.g. explorer.{key}=...)")
    if name == "openai" and not str(explorer["base_url"]).startswith(("http://", "https://")):
        raise AutoTTSError(f"explorer.base_url must be an http(s) URL, got "
                           f"{explorer['base_url']!r}")


def prepare(conf: Mapping[str, Any]) -> tuple[History, SearchSplit]:
    split = SearchSplit(conf["trajectories"], conf["search"]["models"])
    if int(conf["rounds"]) < 0 or int(conf["candidates"]) < 1:
        raise AutoTTSError("rounds must be >= 0 and candidates >= 1")
    if int(conf["seeds"]) < 1:
        raise AutoTTSError(f"seeds must be >= 1, got {conf['seeds']}")
    if not conf["betas"]:
        raise AutoTTSError("betas: empty beta grid")
    for b in conf["betas"]:
        if not 0.0 <= float(b) <= 1.0:
            raise AutoTTSError(f"betas: {b} is outside [0, 1]")
    name = str(conf["explorer"].get("name") or "")
    if name not in ("evolve", "openai", "command", "replay"):
        raise AutoTTSError(f"explorer: unknown backend {name!r} (evolve, openai, command, "
                           "replay)")
    check_explorer(conf["explorer"])
    history = History(conf["out"])
    history.start(run_spec(conf, split.models), resume=bool(conf["resume"]))
    return history, split


def run_loop(conf: Mapping[str, Any], log: Log = _log) -> dict[str, Any]:
    """The search: every round, on the search split only.  Returns a summary."""
    t_start = time.perf_counter()
    history, split = prepare(conf)
    proposer = None
    if conf["explorer"]["name"] != "evolve":
        from autotts_jax.explorer.proposers import make_proposer

        proposer = make_proposer(conf["explorer"], split.paths())
    with held_out_guard():
        ctx = load_context(split, seeds=range(int(conf["seeds"])), betas=conf["betas"],
                           cost_model=str(conf["cost_model"]),
                           max_rounds=int(conf["max_rounds"]),
                           max_branch=int(conf["max_branch"]))
        saved = history.read_json("baselines.json")
        sc64_path = history.root / "baselines_sc64.npy"
        episodes_path = history.root / "baselines_episodes.npz"
        if saved is not None and sc64_path.is_file():
            episodes = None
            if episodes_path.is_file():
                with np.load(episodes_path, allow_pickle=False) as z:
                    episodes = {k: np.asarray(z[k]) for k in z.files}
            restore_baselines(ctx, saved, np.load(sc64_path), episodes)
        else:
            log(f"discover: evaluating the baselines on the search split "
                f"({', '.join(ctx.models)}; {len(ctx.seeds)} seeds)")
            base = compute_baselines(ctx, conf.get("controller") or {}, log=log,
                                     floor_reads=int(conf["score"]["floor_reads"]))
            import io

            from autotts_jax.utils.atomic import atomic_write_bytes

            buf = io.BytesIO()
            np.save(buf, ctx.sc64_correct)
            atomic_write_bytes(sc64_path, buf.getvalue())
            buf = io.BytesIO()
            np.savez_compressed(buf, **{f"{k}.{f}": v for k, e in ctx.baseline_episodes.items()
                                        for f, v in e.items()})
            atomic_write_bytes(episodes_path, buf.getvalue())
            history.write_file("baselines.json", base)
        for r in range(int(conf["rounds"])):
            t0 = time.perf_counter()
            if conf["explorer"]["name"] == "evolve":
                _evolve_round(ctx, conf, history, r, log)
            else:
                _llm_round(ctx, conf, history, proposer, r, log)
            log(f"discover: round {r} done in {time.perf_counter() - t0:.1f}s")
        records = history.records()
        confirmed = None
        if conf["explorer"]["name"] == "evolve":
            confirmed = confirm(ctx, conf, records, log)
            if confirmed is not None:
                history.write_file("confirm.json", confirmed)
    best = select_best(records)
    if confirmed is not None:
        best = next(x for x in records if x["id"] == confirmed["best"])
    summary: dict[str, Any] = {
        "candidates": len(records),
        "accepted": sum(x["status"] == "accepted" for x in records),
        "rejected": sum(x["status"] == "rejected" for x in records),
        "best": None if best is None else {k: best[k] for k in (
            "id", "score", "peak_accuracy", "peak_beta", "tokens_at_peak", "mean_tokens")},
        "baselines": {b["label"]: {"score": b["score"], "peak_accuracy": b["peak_accuracy"],
                                   "mean_tokens": b["mean_tokens"]}
                      for b in ctx.baselines.values()},
        "loop_seconds": round(time.perf_counter() - t_start, 2),
    }
    if confirmed is not None:
        summary["confirmed"] = {k: confirmed[k] for k in ("seeds", "best", "cmc_confirmed_score")}
        summary["best"]["confirmed_score"] = next(
            r["confirmed_score"] for r in confirmed["candidates"] if r["id"] == confirmed["best"])
    if best is not None:
        path = export_best(history, best)
        summary["best_controller"] = str(path)
    history.write_file("summary.json", summary)
    return summary


def print_summary(summary: Mapping[str, Any], log: Log = _log) -> None:
    log(f"discover: {summary['candidates']} candidates, {summary['accepted']} accepted, "
        f"{summary['rejected']} rejected; loop wall time {summary['loop_seconds']:.1f}s")
    lines = [("candidate/baseline", "search score", "peak acc %", "mean tokens")]
    for label, b in sorted(summary["baselines"].items(), key=lambda kv: -kv[1]["score"]):
        lines.append((label, f"{b['score']:.2f}", f"{b['peak_accuracy']:.1f}",
                      f"{b['mean_tokens'] / 1000:.1f}k"))
    if summary.get("best"):
        b = summary["best"]
        lines.append((f"best: {b['id']}", f"{b['score']:.2f}", f"{b['peak_accuracy']:.1f}",
                      f"{b['mean_tokens'] / 1000:.1f}k"))
    width = max(len(x[0]) for x in lines)
    for row in lines:
        log(f"  {row[0]:<{width}}  {row[1]:>12}  {row[2]:>10}  {row[3]:>11}")
    if summary.get("best_controller"):
        log(f"discover: best controller written to {summary['best_controller']}")


def discover(conf: Mapping[str, Any], log: Log = _log) -> dict[str, Any]:
    """The whole command: the loop, then (outside it) the held-out evaluation."""
    summary = run_loop(conf, log)
    print_summary(summary, log)
    held = conf.get("heldout") or {}
    if held.get("enabled", True) and summary.get("best_controller"):
        from autotts_jax.explorer.heldout import evaluate_heldout

        t0 = time.perf_counter()
        result = evaluate_heldout(conf, Path(summary["best_controller"]),
                                  summary["best"]["id"], log=log)
        summary["heldout"] = result
        summary["heldout_seconds"] = round(time.perf_counter() - t0, 2)
        History(conf["out"]).write_file("summary.json", summary)
    elif not summary.get("best_controller"):
        print("discover: no candidate was accepted; nothing to evaluate on the held-out split",
              file=sys.stderr)
    return summary
