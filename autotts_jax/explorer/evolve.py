"""The ``evolve`` explorer: LLM-free search over the generalised-CMC family.

A genome (:mod:`autotts_jax.explorer.family`) is 12 linear beta schedules (intercept, slope)
and 5 structural switches.  Each round proposes ``K`` genomes and evaluates them -- K genomes x
the beta grid as configs of one family controller -- in **one vmapped ``simulate`` call per
search backbone**.

Search: a (mu + lambda) evolution strategy with a seeded NumPy generator.

* Round 0: CMC's own genome (so the history contains CMC, scored like every candidate) and
  ``K - 1`` mutants of it.
* Round r > 0: the ``mu`` best accepted genomes of the whole history are the parents; each child
  is a uniform crossover of two parents (chosen by rank), then mutated.
* Mutation: Gaussian steps of ``sigma`` times each gene's range on intercepts and slopes
  (clipped to the range; slopes keep CMC's sign, so spending still rises with beta), and each
  switch flipped with probability ``flip``.  ``sigma`` follows a 1/5-success-style rule: times
  ``sigma_up`` after a round that improved the best score, times ``sigma_down`` otherwise.
* A child whose schedule (every knob at every beta) equals one already evaluated is redrawn.

Fitness is the search-split score of :mod:`autotts_jax.experiments.metrics` (accuracy at matched
budget); a genome whose results break an invariant or whose spending is not monotone in beta is
rejected like any candidate.  Everything is a function of ``(seed, round, history)``, so a run
and its resume propose exactly the same genomes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autotts_jax.explorer import family as F


def _ranges() -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """Per knob: (intercept range, slope range); slopes keep CMC's sign."""
    out = {}
    for k, (_, lo, hi, sign) in F.KNOBS.items():
        span = hi - lo
        slope = (0.0, span) if sign > 0 else (-span, 0.0)
        out[k] = ((float(lo), float(hi)), slope)
    return out


RANGES = _ranges()


def _round4(g: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in F.KNOBS:
        out[k] = [round(float(g[k][0]), 4), round(float(g[k][1]), 4)]
    for k in F.SWITCHES:
        out[k] = int(g[k])
    return out


def mutate(g: Mapping[str, Any], rng: np.random.Generator, sigma: float, flip: float
           ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, ((alo, ahi), (slo, shi)) in RANGES.items():
        a, s = g[k]
        a = float(np.clip(a + rng.normal() * sigma * (ahi - alo), alo, ahi))
        s = float(np.clip(s + rng.normal() * sigma * (shi - slo), slo, shi))
        out[k] = [a, s]
    for k, n in F.SWITCHES.items():
        v = int(g[k])
        if rng.random() < flip:
            v = int((v + 1 + rng.integers(n - 1)) % n) if n > 1 else v
        out[k] = v
    return _round4(out)


def crossover(a: Mapping[str, Any], b: Mapping[str, Any], rng: np.random.Generator
              ) -> dict[str, Any]:
    return {k: (a[k] if rng.random() < 0.5 else b[k]) for k in [*F.KNOBS, *F.SWITCHES]}


def signature(g: Mapping[str, Any], betas: Sequence[float]) -> str:
    """The genome's behaviour: every knob at every beta (equal signature = same controller)."""
    return json.dumps([F.schedule(g, b) for b in betas], sort_keys=True)


def _sigma(cfg: Mapping[str, Any], records: Sequence[Mapping[str, Any]], r: int) -> float:
    sigma = float(cfg.get("sigma", 0.15))
    best = -np.inf
    for rr in range(r):
        scores = [float(x["score"]) for x in records
                  if int(x["round"]) == rr and x.get("status") == "accepted"]
        top = max(scores) if scores else -np.inf
        if rr > 0:
            sigma *= float(cfg.get("sigma_up", 1.25)) if top > best else float(
                cfg.get("sigma_down", 0.8))
        best = max(best, top)
    return float(np.clip(sigma, 0.02, 0.5))


def propose_generation(cfg: Mapping[str, Any], seed: int, r: int, k: int,
                       records: Sequence[Mapping[str, Any]], betas: Sequence[float]
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``k`` genomes of round ``r`` and a note on how they were made."""
    rng = np.random.default_rng([int(seed), int(r), 0xE70])
    sigma = _sigma(cfg, records, r)
    flip = float(cfg.get("flip", 0.15))
    mu = max(1, int(cfg.get("parents", 3)))
    accepted = sorted((x for x in records if x.get("status") == "accepted" and x.get("genome")),
                      key=lambda x: (-float(x["score"]), float(x["mean_tokens"]),
                                     int(x["round"]), int(x["candidate"])))
    parents = [x["genome"] for x in accepted[:mu]] or [F.CMC_GENOME]
    parent_ids = [x["id"] for x in accepted[:mu]] or ["cmc"]
    seen = {signature(x["genome"], betas) for x in records if x.get("genome")}
    out: list[dict[str, Any]] = []
    origin: list[str] = []
    if r == 0:
        out.append(_round4(F.CMC_GENOME))
        origin.append("CMC's genome (the anchor)")
        seen.add(signature(out[0], betas))
    while len(out) < k:
        for _attempt in range(20):
            i = int(rng.integers(len(parents)))
            j = int(rng.integers(len(parents)))
            child = crossover(parents[i], parents[j], rng) if i != j else dict(parents[i])
            child = mutate(child, rng, sigma, flip)
            sig = signature(child, betas)
            if sig not in seen:
                break
        seen.add(sig)
        out.append(child)
        origin.append(f"mutant of {parent_ids[i]}" + (f" x {parent_ids[j]}" if i != j else ""))
    note = {"sigma": round(sigma, 4), "flip": flip, "parents": parent_ids, "origin": origin}
    return out, note


def genome_source(genome: Mapping[str, Any], cid: str, origin: str, betas: Sequence[float]
                  ) -> str:
    """A controller module with the genome baked in (what the history and export hold)."""
    g = _round4(genome)
    lines = [f"    {json.dumps(k)}: {json.dumps(v)}," for k, v in g.items()]
    table = []
    for b in (betas[0], betas[len(betas) // 2], betas[-1]):
        p = F.schedule(g, b)
        table.append(f"    beta {b:g}: " + ", ".join(f"{k}={v}" for k, v in p.items()))
    return (
        f'"""Evolved controller {cid}: a generalised CMC (autotts_jax.explorer.family).\n\n'
        f"Proposed by the evolve explorer ({origin}).  Knob values:\n\n"
        + "\n".join(table) + '\n"""\n\n'
        "from autotts_jax.explorer.family import make_controller\n\n"
        "GENOME = {\n" + "\n".join(lines) + "\n}\n\n"
        f'CONTROLLER = make_controller(GENOME, name="evolved_{cid}")\n'
    )


def evaluate_population(genomes: Sequence[Mapping[str, Any]], datas: Sequence[Any],
                        betas: Sequence[float], seeds: Sequence[int], *, cost_model: str,
                        max_rounds: int, pool_size: int) -> tuple[list[dict], list[int], dict]:
    """Per genome: arrays ``[stores, betas, seeds, questions]``; and its max_slots per beta.

    One ``simulate`` call per store evaluates every genome at every beta.
    """
    import time

    from autotts_jax.engine.invariants import FIELDS
    from autotts_jax.engine.simulate import simulate
    from autotts_jax.untrusted.digest import chunk_size

    configs = [c for g in genomes for c in F.family_configs(g, betas)]
    needs = [F.FAMILY.max_slots(c) for c in configs]
    n_ep = len(configs) * len(seeds) * int(datas[0].probe_answer.shape[0])
    chunk = chunk_size(n_ep)
    per_store = []
    timing = {"per_store": []}
    for data in datas:
        t0 = time.perf_counter()
        eps = simulate(F.FAMILY, data, configs, seeds, cost_model=cost_model,
                       max_rounds=max_rounds, pool_size=pool_size, chunk_size=chunk)
        timing["per_store"].append(round(time.perf_counter() - t0, 3))
        per_store.append(eps)
    nb = len(betas)
    out = []
    for i in range(len(genomes)):
        sl = slice(i * nb, (i + 1) * nb)
        out.append({f: np.stack([np.asarray(getattr(e, f))[sl] for e in per_store])
                    for f in FIELDS})
    return out, needs, timing
