"""The ``evolve`` explorer: LLM-free search over the generalised-CMC family.

A genome (:mod:`autotts_jax.explorer.family`) is 13 linear beta schedules (intercept, slope)
and 6 structural switches.  The search is split in two, as an LLM explorer's is: the
*structure* (the switches) is proposed here, the *numbers* (the schedules) are set by the
engine's tuner (:mod:`autotts_jax.explorer.tune`), with every generation of every candidate of
a round in one vmapped ``simulate`` call per search backbone.

* Round 0: CMC's own genome (so the history contains CMC, scored like every candidate) and
  ``K - 1`` children of it.
* Islands: the best genome of each structure seen so far is an island; children come from the
  better of two islands drawn at random, either with one or two switches changed (a new
  structure, with the parent's schedules as the tuner's start) or with their schedules mutated
  (Gaussian steps of ``sigma`` times each gene's range, clipped; slopes keep CMC's sign, so
  spending still rises with beta).  ``sigma`` follows a 1/5-success-style rule: times
  ``sigma_up`` after a round that improved the best score, times ``sigma_down`` otherwise.
* ``strategy: random`` draws genomes uniformly from the family and tunes them by random
  search with the same number of evaluations: the baseline that says whether the search
  beats chance.
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
    """Per knob: (intercept range, slope range); slopes keep CMC's sign (free when 0)."""
    out = {}
    for k, (_, lo, hi, sign) in F.KNOBS.items():
        span = hi - lo
        slope = (0.0, span) if sign > 0 else (-span, 0.0) if sign < 0 else (-span, span)
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


def structure_of(g: Mapping[str, Any]) -> str:
    """The genome's structure (its switches): the niche it competes in."""
    return ",".join(f"{k}={int(g[k])}" for k in F.SWITCHES)


def random_genome(rng: np.random.Generator) -> dict[str, Any]:
    """A genome drawn uniformly from the family: every gene in its range, every switch."""
    g: dict[str, Any] = {}
    for k, ((alo, ahi), (slo, shi)) in RANGES.items():
        g[k] = [float(rng.uniform(alo, ahi)), float(rng.uniform(slo, shi))]
    for k, n in F.SWITCHES.items():
        g[k] = int(rng.integers(n))
    return _round4(g)


def flip_switches(g: Mapping[str, Any], rng: np.random.Generator, n_flips: int
                  ) -> dict[str, Any]:
    """``g`` with ``n_flips`` distinct switches set to another value (a new structure)."""
    out = dict(g)
    names = list(F.SWITCHES)
    for i in rng.choice(len(names), size=min(n_flips, len(names)), replace=False):
        k, n = names[int(i)], F.SWITCHES[names[int(i)]]
        out[k] = int((int(g[k]) + 1 + rng.integers(n - 1)) % n)
    return out


def elites(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The best accepted record of each structure (the islands), best first."""
    best: dict[str, Mapping[str, Any]] = {}
    for x in sorted((x for x in records if x.get("status") == "accepted" and x.get("genome")),
                    key=_rank):
        best.setdefault(structure_of(x["genome"]), x)
    return sorted(best.values(), key=_rank)


def _rank(x: Mapping[str, Any]) -> tuple:
    return (-float(x["score"]), float(x["mean_tokens"]), int(x["round"]), int(x["candidate"]))


def propose_generation(cfg: Mapping[str, Any], seed: int, r: int, k: int,
                       records: Sequence[Mapping[str, Any]], betas: Sequence[float]
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``k`` genomes of round ``r`` and a note on how they were made.

    ``strategy: evolve`` (islands): the parents are the best genome of each structure seen so
    far; a child takes a parent chosen by a size-2 tournament over those islands' ranks and
    either moves to a new structure (``flip_structure`` probability: one switch changed, two
    with probability ``flip``, its schedules kept) or stays on the parent's island with its
    schedules mutated (``sigma`` of each gene's range).  Islands keep the population from
    collapsing onto CMC's structure; the engine's tuner then sets each child's numbers.
    ``strategy: random``: genomes drawn uniformly from the family (the chance baseline).
    Both put CMC's genome first in round 0.
    """
    rng = np.random.default_rng([int(seed), int(r), 0xE70])
    strategy = str(cfg.get("strategy", "evolve"))
    if strategy not in ("evolve", "random"):
        raise ValueError(f"explorer.strategy must be evolve or random, got {strategy!r}")
    sigma = _sigma(cfg, records, r)
    flip = float(cfg.get("flip", 0.15))
    p_new = float(cfg.get("flip_structure", 0.6))
    islands = elites(records)[:max(1, int(cfg.get("parents", 8)))]
    parents = [x["genome"] for x in islands] or [F.CMC_GENOME]
    parent_ids = [x["id"] for x in islands] or ["cmc"]
    seen = {signature(x["genome"], betas) for x in records if x.get("genome")}
    seen |= {signature(x["untuned_genome"], betas) for x in records if x.get("untuned_genome")}
    out: list[dict[str, Any]] = []
    origin: list[str] = []
    if r == 0:
        out.append(_round4(F.CMC_GENOME))
        origin.append("CMC's genome (the anchor)")
        seen.add(signature(out[0], betas))
    while len(out) < k:
        for _attempt in range(20):
            if strategy == "random":
                child, why = random_genome(rng), "uniform draw from the family"
            else:
                a, b = (int(x) for x in rng.integers(len(parents), size=2))
                i = min(a, b)  # tournament of two on rank: the better island
                if rng.random() < p_new:
                    flips = 2 if rng.random() < flip else 1
                    child = _round4(flip_switches(parents[i], rng, flips))
                    why = f"{parent_ids[i]} with {flips} switch(es) changed"
                else:
                    child = mutate(parents[i], rng, sigma, 0.0)
                    why = f"{parent_ids[i]}'s schedules mutated"
            sig = signature(child, betas)
            if sig not in seen:
                break
        seen.add(sig)
        out.append(child)
        origin.append(why)
    note = {"strategy": strategy, "sigma": round(sigma, 4), "flip": flip,
            "flip_structure": p_new, "islands": parent_ids, "origin": origin}
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
