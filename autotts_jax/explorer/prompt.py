"""The proposer's prompt: the environment, the protocol, worked examples, the objective, and the
history of the run so far -- all about the search split, nothing about held-out data.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autotts_jax.engine import static
from autotts_jax.experiments.metrics import N_BUDGETS

EXAMPLES = ("sc", "asc", "esc", "parallel_probe", "cmc")

_ENVIRONMENT = """\
Replay data: for each question of the search split (aime24, 30 questions) and each of the
backbones ({models}), 128 pre-sampled reasoning branches of the model.  Every branch was probed
every {freq} tokens: after interval k you can read the answer the branch would give then
("probe answer"); a branch has 1..80 probes and a final answer.  Branches are handed out in a
shuffled order (one order per shuffle seed, shared by all questions): slot 0, 1, 2, ...
An episode = one question under one shuffle order; its cost is the tokens it made the model
generate.

Cost of the effects (the upstream accounting, reproduced exactly):
* fx.full_read(obs, n): open the next n slots and read them to the end at once: costs each
  branch's total tokens bt; its final answer enters the completed-answer pool.
* fx.probe_new(obs, n): open the next n slots by one interval each: {freq} tokens each.
* fx.advance(obs, calls, order): advance opened live branches by calls[s] intervals each
  ({freq} tokens per interval); the call that finds a branch's end charges the remainder
  max(0, bt - {freq} * L) and puts its final answer into the pool (in ``order``).  Driving a
  branch to its end by probing costs max({freq} * L, bt) >= bt.
* fx.probe_more(obs, mask): one more interval on masked slots.  Probing a finished branch again
  re-charges its remainder (upstream quirk): a candidate that pays that is rejected.
* fx.prune(obs, mask): give branches up (they keep what they cost).
* fx.stop(obs, answer, reason, when): end the episode with ``answer`` where ``when`` holds.
A controller may open at most {max_branch} branches (the 64-branch ceiling, as upstream);
branches beyond that are not there.  Every effect returns the next ``obs``: always pass the
newest one on; an effect is applied whenever it is called (make it conditional with n=0, an
all-false mask or ``when``), and a round returns the ``obs`` of its last effect.

Details that cost earlier explorers a candidate each:
* Effects called after ``fx.stop`` in the same round are still applied and still charged:
  guard them, e.g. ``n_new = jnp.where(obs.done, 0, n)`` as CMC does.
* ``fx.advance(obs, calls, order)`` returns ``(obs, made)``: ``made`` is ``(S,) int32``, the
  explore calls actually made per slot (fewer than asked where a branch finished).
* Any answer a branch you opened has shown you is a valid answer to stop with: a probe
  answer (``obs.latest``) as well as a final one; ``-1`` means no answer.
* Inside init/step/finish, ``params`` is what make_params returned (a NamedTuple, as in the
  examples, or a dict) with every scalar traced: Python ints become int32, floats float64,
  bools bool (a field that is an int at some betas and a float at others becomes float64).
  Do Python arithmetic on them only in make_params.
* An episode that has not called ``fx.stop`` after {max_rounds} rounds is cut off (stop
  reason ``round_cap``, no answer), and the candidate is rejected.

What a controller may use: only ``obs`` -- what a live controller could have paid for.  Every
candidate is replayed a second time, in a separate process, on a counterfactual store that
differs only in what none of its episodes observed (probe answers beyond the depth reached,
lengths and final answers of branches not read to the end, unopened branches, the answer ids'
labels, the gold answer); it is rejected if any decision changes.  The stores it runs on hold
no gold answers at all: it is scored outside, from the answer ids it returns.
"""

_OBJECTIVE = """\
Objective: accuracy first, then tokens.  Your controller takes ONE knob, beta in [0, 1]
(defaults={{"beta": 0.5}}), mapped by make_params(config) through a smooth monotone schedule
(like CMC's): spending must rise with beta, from a low budget at beta 0 to a conservative,
near-full budget at beta 1.  It is evaluated at beta in {betas} on every search backbone,
{seeds} shuffle seeds x 30 questions each.

Score = accuracy at matched budget: per backbone, the best accuracy your betas reach within a
token budget, averaged over {n_budgets} budgets spaced evenly in log tokens from the cost of
{floor} full reads (SC@{floor}) to the cost of SC@64 (no credit below your cheapest beta, none
for spending beyond SC@64); then averaged over backbones (in accuracy points).  Higher is
better; ties go to fewer tokens.  Beat the baselines' scores below, and in particular reach
SC@64's accuracy with far fewer tokens.

The score gives no credit below your cheapest beta, so beta 0 should cost no more than
SC@{floor} on every backbone; SC@64's cost is where the window ends:

{anchors}

"Spending rises with beta" is checked on the mean over backbones (the mean curve), not per
backbone: the mean tokens at beta 1 must exceed those at beta 0, and may never drop by more
than {tolerance:g}% from one beta to the next.

Rejected (with the reason fed back to you): code that fails the static checks; a module that
does not define CONTROLLER or has knobs other than beta; max_slots above {max_branch}; a Python
loop that never ends; a run over {wall_s:g}s of wall time (compilation included) or
{memory_mb} MiB of memory; an episode that never calls fx.stop (round cap); answers that are
not an answer of a branch it opened; tokens outside [what its branches cost at least, their
cost driven to the end]; non-deterministic results; decisions that change on the
counterfactual store; mean tokens falling as beta rises.
"""

_RULES = """\
Rules for the code (checked before it runs):
* imports only from: {imports};
* no file, process or network access, no open/exec/eval/compile/__import__/getattr/globals,
  no dunder names or attributes and no attribute starting with "_", no "global" (the two
  exceptions the examples use are allowed: ``from __future__ import annotations`` and reading
  ``__doc__`` / ``__name__``);
* pure JAX inside init/step/finish: no Python control flow on traced values (use jnp.where and
  masks), fixed shapes and dtypes in cstate, no randomness except from keys you keep in cstate;
* make_params(config) runs on the host with plain Python numbers: return a NamedTuple or a
  dict of scalars (int / float / bool); max_slots(config) returns the number of branches the
  config may open.
"""

_FORMAT = """\
Answer with the complete module in ONE ```python code block.  It must define

    CONTROLLER = Controller(
        name="...", aliases=(), defaults={"beta": 0.5}, make_params=..., max_slots=...,
        init=..., step=..., stop_reasons=(...), trace_fields=..., finish=...,
    )

(trace_fields and finish are optional).  Briefly state your idea in the module docstring.
"""


_KNOBS = """\
The engine can set your numbers for you.  Declare them as a literal ``KNOBS`` table and read
them in make_params through ``knob_values`` (``from autotts_jax.engine.knobs import Knob,
knob_values``):

    KNOBS = {{
        # kind, low, high, direction in beta (+1 rises, -1 falls, 0 free), intercept, slope
        "conf_thr": Knob("float", 0.5, 0.999, +1, 0.85, 0.12),
        "max_branches": Knob("int", 2, 64, +1, 4, 60),
    }}

    def make_params(config):
        p = knob_values(KNOBS, config["beta"])  # value = intercept + slope * beta, rounded,
        return {{**p, "other": 3}}               # clipped to [low, high]

Before your candidate is scored, the engine searches its schedules ({strategy}:
{evaluations} schedules, {population} per generation x {generations}, every beta of
{tune_betas}, on {tune_seeds} seeds of the search split), keeping the directions and bounds
you declare, and writes the best table back into your module; then the module is validated
and scored as usual.  So propose the *structure* (what to observe, when to widen, deepen,
prune, stop, how to vote) and honest bounds; the engine finds the numbers.  The history shows
the tuned values and which knobs mattered.  Keep ``max_slots`` consistent with the knobs
(e.g. ``max_slots=lambda c: make_params(c)["max_branches"]``).
"""


def _source(name: str) -> str:
    import autotts_jax.controllers as C

    path = Path(C.__file__).with_name(f"{name}.py")
    return path.read_text(encoding="utf-8")


def protocol_text() -> str:
    """The controller protocol, from the engine's own code and docstrings."""
    from autotts_jax.engine import env as E
    from autotts_jax.engine import protocol as P
    from autotts_jax.engine import votes as V

    parts = ["## The controller protocol (autotts_jax.engine.protocol)", "",
             (P.__doc__ or "").strip(), "", "```python", inspect.getsource(P.Controller), "```",
             "", "Effects (``fx``):", "", "```python", inspect.getsource(P.Effects), "```", "",
             "What the controller sees, ``obs`` (everything else about the episode stays "
             "behind ``fx``):", "",
             "```python", inspect.getsource(E._SlotViews), "",
             inspect.getsource(E.Observation), "```", "",
             f"``NO_ANSWER = {E.NO_ANSWER}`` (from autotts_jax.engine.env).  Helpers in "
             "autotts_jax.engine.votes:", ""]
    for fn in (V.pool_stats, V.confidence, V.vote, V.pool_majority):
        sig = str(inspect.signature(fn))
        doc = (inspect.getdoc(fn) or "").splitlines()
        parts += [f"* ``{fn.__name__}{sig}``" + (f": {doc[0]}" if doc else "")]
    return "\n".join(parts)


def _fmt_tok(t: float) -> str:
    return f"{t / 1000:.1f}k"


def curve_table(curve: Mapping[str, Sequence[Mapping[str, Any]]], key: str = "beta") -> str:
    models = list(curve)
    lines = ["| " + key + " | " + " | ".join(f"{m} acc / tokens" for m in models) + " |",
             "|---|" + "---|" * len(models)]
    n = len(next(iter(curve.values())))
    for i in range(n):
        first = curve[models[0]][i]
        if key == "beta" and first.get("beta") is not None:
            k = f"{float(first['beta']):g}"
        else:
            cfg = first.get("config") or {}
            k = ", ".join(f"{a}={b}" for a, b in cfg.items()) if cfg else str(i)
        cells = [f"{curve[m][i]['accuracy']:.1f}% / {_fmt_tok(curve[m][i]['avg_tokens'])}"
                 for m in models]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def position_text(position: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for p in position:
        per = ", ".join(f"{m} {d:+.1f}" for m, d in p["delta_at_budget"].items())
        match = ", ".join(f"{m} {'never' if r is None else f'{r:.2f}x'}"
                          for m, r in p["tokens_to_match"].items())
        lines.append(f"* vs {p['reference']}: accuracy at its budget {p['mean_delta']:+.2f} "
                     f"points on average ({per}); tokens needed to match its accuracy: {match}")
    return "\n".join(lines)


def anchors_table(ctx) -> str:
    floor = next(iter(ctx.anchors.values()))["floor_reads"]
    lines = [f"| backbone | SC@{floor} tokens (the budget window's floor) | SC@64 tokens | "
             "SC@64 accuracy |",
             "|---|---|---|---|"]
    for m in ctx.models:
        a = ctx.anchors[m]
        lines.append(f"| {m} | {_fmt_tok(a['low'])} | {_fmt_tok(a['high'])} | "
                     f"{a['sc64_accuracy']:.1f}% |")
    return "\n".join(lines)


def probe_table(ctx) -> str:
    """The early-probe reliability statistic of :func:`~autotts_jax.explorer.context.
    probe_reliability` as a table."""
    from autotts_jax.explorer.context import probe_reliability

    rows = probe_reliability(ctx)
    ks = [x["k"] for x in rows[0]["k"]]
    cols = [f"k={k}: running / = final / correct / wrong when 2 agree" for k in ks]
    head = "| backbone | " + " | ".join(cols) + " | finals: wrong when 2 agree |"
    lines = [head, "|---|" + "---|" * (len(ks) + 1)]
    for row in rows:
        cells = [f"{x['running']:.0f}% / {x['is_final']:.0f}% / {x['correct']:.0f}% / "
                 + ("-" if x["wrong_when_agree"] is None else f"{x['wrong_when_agree']:.0f}%")
                 for x in row["k"]]
        fin = row["final_wrong_when_agree"]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " | "
                     + ("-" if fin is None else f"{fin:.0f}%") + " |")
    return "\n".join(lines)


def paired_text(ctx, arrays: Mapping[str, Any] | None, baseline: str = "cmc") -> str | None:
    """Paired bootstrap of a candidate against a baseline (same seeds and questions) per
    backbone and pooled: accuracy at beta 0.5 and the search score (matched budget)."""
    from autotts_jax.experiments.paired import Curve, compare_pairs

    base = ctx.baseline_episodes.get(baseline)
    if arrays is None or base is None or "correct" not in arrays:
        return None
    b_betas = [p.get("beta") for p in ctx.baselines[baseline]["curve"][ctx.models[0]]]
    if None in b_betas:
        return None

    def mid(betas):
        return int(min(range(len(betas)), key=lambda i: abs(float(betas[i]) - 0.5)))

    curves = {"cand": {}, "base": {}}
    for s, m in enumerate(ctx.models):
        curves["cand"][m] = Curve(np.asarray(arrays["correct"][s]),
                                  np.asarray(arrays["tokens"][s]), mid(ctx.betas))
        curves["base"][m] = Curve(base["correct"][s], base["tokens"][s], mid(b_betas))
    rows = compare_pairs(curves, [("cand", "base")], metrics=("accuracy", "matched_budget"),
                         anchors=ctx.anchors, pools={"mean over backbones": list(ctx.models)},
                         samples=1000, seed=0)
    label = ctx.baselines[baseline]["label"]
    out = [f"Paired against {label} (same seeds and questions; 95% bootstrap intervals over "
           "questions, seeds nested; share of resamples above zero):", "",
           "| backbone | accuracy at beta 0.5 | score (accuracy at matched budget) |",
           "|---|---|---|"]
    by = {}
    for r in rows:
        by.setdefault(r["store"], {})[r["metric"]] = r
    for store, per in by.items():
        cells = [f"{x['difference']:+.2f} [{x['ci_low']:+.2f}, {x['ci_high']:+.2f}], "
                 f"{100 * x['p_above_zero']:.0f}% > 0"
                 for x in (per["accuracy"], per["matched_budget"])]
        out.append(f"| {store} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def tuning_text(rec: Mapping[str, Any]) -> str | None:
    """What the engine's tuner did for a candidate: scores before and after, which knobs
    mattered, the values it found."""
    t = rec.get("tuning")
    if not t or t.get("status", "tuned") != "tuned":
        return f"Tuning: {t['status']}." if t and t.get("status") else None
    out = [f"Tuning ({t.get('strategy', 'cem')}, {t.get('evaluations')} schedules on "
           f"{t.get('seeds')} seeds): low-fidelity score {t.get('untuned_score_low')} as "
           f"proposed -> {t.get('score_low')} tuned"
           + (f"; untuned full score {rec['untuned_score']:.2f}"
              if rec.get("untuned_score") is not None else "") + "."]
    sens = t.get("sensitivity") or {}
    if sens:
        top = list(sens.items())[:4]
        out.append("Knobs that mattered (score points across each knob's range, least squares "
                   "over the tuner's schedules): " + ", ".join(f"{k} {v:.2f}" for k, v in top)
                   + ".")
    declared, tuned = t.get("declared"), t.get("tuned")
    if declared and tuned:
        out.append("Schedules [intercept, slope], declared -> tuned: " + "; ".join(
            f"{k} {declared[k]} -> {tuned[k]}" for k in tuned))
    return " ".join(out)


def render(*, ctx, records: Sequence[Mapping[str, Any]], history, round_index: int,
           limits, n_best: int = 3, n_errors: int = 5, examples: bool = True,
           this_round: Sequence[Mapping[str, Any]] = (), max_rounds: int = 1024,
           tolerance: float = 0.05, tuning=None) -> str:
    """The prompt of one candidate of round ``round_index``: the history of the earlier
    rounds, and the results of this round's earlier candidates (``this_round``)."""
    freq = int(ctx.datas[0].probe_freq)
    models = ", ".join(ctx.models)
    out = [
        "# Discover a better test-time-scaling controller",
        "",
        "You design a controller that decides, while an LLM reasons about a question, how many "
        "reasoning branches to open (width), how far to run each (depth, in intervals), when "
        "to prune a branch, and when to stop and answer.  It is replayed in batch on recorded "
        "data, so only its decisions matter.",
        "",
        "## The environment",
        "",
        _ENVIRONMENT.format(models=models, freq=freq, max_branch=ctx.max_branch,
                            max_rounds=max_rounds),
        protocol_text(),
        "",
        "## Objective and validation",
        "",
        _OBJECTIVE.format(betas=[f"{b:g}" for b in ctx.betas], seeds=len(ctx.seeds),
                          n_budgets=N_BUDGETS, max_branch=ctx.max_branch,
                          floor=next(iter(ctx.anchors.values()))["floor_reads"],
                          wall_s=limits.wall_s, memory_mb=limits.memory_mb,
                          anchors=anchors_table(ctx), tolerance=100 * tolerance),
        _RULES.format(imports=", ".join(sorted(static.ALLOWED_IMPORTS - {"__future__"}))),
    ]
    if tuning is not None and tuning.generations:
        from autotts_jax.explorer.tune import tuning_betas

        out += ["## Tunable knobs", "",
                _KNOBS.format(strategy="cross-entropy search" if tuning.strategy == "cem"
                              else "random search", evaluations=tuning.evaluations,
                              population=tuning.population, generations=tuning.generations,
                              tune_betas=[f"{b:g}" for b in tuning_betas(
                                  ctx.betas, tuning.beta_stride)],
                              tune_seeds=tuning.seeds)]
    out += ["## How far early probe answers can be trusted", "",
            "Per backbone and probe interval k (search split, all 128 branches): the share of "
            "branches still running at k; of their k-th probe answers, the share equal to the "
            "branch's own final answer and the share correct; and when two branches of a "
            "question give the same k-th probe answer, how often that shared answer is wrong "
            "(last column: the same for two agreeing *final* answers).  Early agreement is "
            "weak evidence: branches often share one wrong early guess.", "",
            probe_table(ctx), ""]
    if examples:
        out += ["## Worked examples: the baselines", "",
                "Every baseline below is an ordinary controller module like the one you write "
                "(CMC is the controller AutoTTS discovered; it is driven by beta alone).", ""]
        for name in EXAMPLES:
            out += [f"### {name}.py", "", "```python", _source(name).rstrip(), "```", ""]
    out += ["## Baselines on the search split", "",
            "| baseline | score | peak accuracy (mean over backbones) | mean tokens |",
            "|---|---|---|---|"]
    for b in sorted(ctx.baselines.values(), key=lambda b: -b["score"]):
        out.append(f"| {b['label']} | {b['score']:.2f} | {b['peak_accuracy']:.1f}% | "
                   f"{_fmt_tok(b['mean_tokens'])} |")
    out.append("")
    refs = ctx.references
    if refs:
        out += ["Reference points (accuracy / tokens per question):", "",
                "| reference | " + " | ".join(ctx.models) + " |",
                "|---|" + "---|" * len(ctx.models)]
        for name, per in refs.items():
            out.append(f"| {name} | " + " | ".join(
                f"{per[m]['accuracy']:.1f}% / {_fmt_tok(per[m]['avg_tokens'])}"
                for m in ctx.models) + " |")
        out.append("")
    accepted = sorted((r for r in records if r.get("status") == "accepted"),
                      key=lambda r: (-float(r["score"]), float(r["mean_tokens"])))
    rejected = [r for r in records if r.get("status") == "rejected"]
    out += [f"## History so far (round {round_index}; {len(accepted)} accepted, "
            f"{len(rejected)} rejected candidates)", ""]
    if not accepted:
        out += ["No candidate has been accepted yet.", ""]
    for rank, rec in enumerate(accepted[:n_best]):
        out += [f"### #{rank + 1}: {rec['id']} ({rec.get('name', '')}): score "
                f"{rec['score']:.2f}, peak accuracy {rec['peak_accuracy']:.1f}% at beta "
                f"{rec['peak_beta']:g}, mean tokens {_fmt_tok(rec['mean_tokens'])}", "",
                curve_table(rec["search"]), ""]
        if rec.get("position"):
            out += ["Against the references:", "", position_text(rec["position"]), ""]
        tuned = tuning_text(rec)
        if tuned:
            out += [tuned, ""]
        r_, c_ = int(rec["round"]), int(rec["candidate"])
        if rank == 0:
            paired = paired_text(ctx, history.read_arrays(r_, c_, "episodes.npz"))
            if paired:
                out += [paired, ""]
        r, c = int(rec["round"]), int(rec["candidate"])
        digest = history.read(r, c, "digest.md")
        if digest and rank < 2:
            out += ["Diagnostics:", "", digest.strip(), ""]
        src = history.read(r, c, "candidate.py")
        if src and rank == 0:
            out += ["Its source:", "", "```python", src.rstrip(), "```", ""]
    if rejected:
        out += ["## Rejected candidates (most recent first)", ""]
        for rec in list(reversed(rejected))[:n_errors]:
            reason = str(rec.get("reason") or "").strip()
            lines = reason.splitlines()
            if len(lines) > 25:
                reason = "\n".join(lines[:25] + ["..."])
            out += [f"* {rec['id']} ({rec.get('stage', '')}):", "", "```", reason, "```", ""]
    if this_round:
        out += [f"## This round so far (round {round_index})", "",
                "Proposed before you in this round (not yet in the history above):", ""]
        for rec in this_round:
            if rec.get("status") == "accepted":
                line = (f"* {rec['id']} ({rec.get('name', '')}): accepted, score "
                        f"{rec['score']:.2f}, peak accuracy {rec['peak_accuracy']:.1f}% at beta "
                        f"{rec['peak_beta']:g}, mean tokens {_fmt_tok(rec['mean_tokens'])}")
            else:
                first = str(rec.get("reason") or "").strip().splitlines()
                line = (f"* {rec['id']}: rejected ({rec.get('stage', '')}): "
                        f"{first[0][:300] if first else ''}")
            out.append(line)
            tuned = tuning_text(rec)
            if tuned:
                out.append(f"  {tuned}")
        out.append("")
    out += ["## Your answer", "", _FORMAT]
    return "\n".join(out)
