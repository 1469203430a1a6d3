"""The ``run-live`` subcommand (argparse), added to ``autotts-jax``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from autotts_jax.errors import AutoTTSError


def parse_config(items: list[str] | None, beta: float | None) -> dict[str, Any]:
    """``--config key=value`` (values read as JSON when they parse, else as strings) and
    ``--beta`` (the same as ``--config beta=...``)."""
    config: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AutoTTSError(f"--config: expected key=value, got {item!r}")
        try:
            config[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            config[key.strip()] = value
    if beta is not None:
        if "beta" in config:
            raise AutoTTSError("give beta once: --beta or --config beta=...")
        config["beta"] = beta
    return config


def _cmd_run_live(args: argparse.Namespace) -> int:
    from autotts_jax.collect.cli import connection_from_args, settings_from_args
    from autotts_jax.collect.problems import load_problems
    from autotts_jax.controllers import get_controller
    from autotts_jax.live.runner import run_live

    if args.controller.endswith(".py") and not Path(args.controller).is_file():
        raise AutoTTSError(f"{args.controller}: no such controller file")
    # Running live is deploying: the controller runs here, in this process, so a module file
    # given to run-live is code its user chose to run (trusted), unlike evaluate's default.
    controller = get_controller(args.controller, trusted=True)
    config = parse_config(args.config, args.beta)
    try:  # a config the controller refuses, before anything else
        controller.make_params(controller.config(config))
    except ValueError as exc:
        raise AutoTTSError(str(exc)) from None
    settings = settings_from_args(args)
    problems = load_problems(args.problems, limit=args.limit, question_field=args.question_field,
                             answer_field=args.answer_field, split=args.split)
    try:
        summary = run_live(
            controller, config, settings, connection_from_args(args), problems, args.output,
            cost_model=args.cost_model, question_concurrency=args.question_concurrency,
            max_rounds=args.max_rounds, answer_capacity=args.answer_capacity,
            store=args.store, replay_seeds=args.replay_seeds,
            save_trajectories=args.save_trajectories,
            progress=None if args.quiet else sys.stderr,
        )
    except KeyboardInterrupt:
        print(f"\ninterrupted: answered requests are kept in {args.output}; run the same "
              "command again to resume", file=sys.stderr)
        return 130
    server, latency = summary["server"], summary["latency"]
    print(f"{summary['controller']} on {summary['questions']} questions: accuracy "
          f"{summary['accuracy']:.2f}%, {summary['avg_tokens']:.1f} tokens "
          f"({summary['avg_seq_tokens']:.1f} sequential) per question; server: "
          f"{server['requests']} requests, {server['avg_gen_completion_tokens']:.1f} generated "
          f"+ {server['avg_probe_completion_tokens']:.1f} probe completion tokens and "
          f"{server['avg_prompt_tokens']:.1f} prompt tokens per question; "
          f"{latency['mean_wall_s']:.2f} s per question")
    if "replay" in summary:
        r = summary["replay"]
        print(f"replay prediction ({r['store']}, {r['seeds']} shuffles): accuracy "
              f"{r['accuracy']:.2f}%, {r['avg_tokens']:.1f} tokens "
              f"({r['avg_seq_tokens']:.1f} sequential)")
        if "same_order" in r:
            print(f"replay in the live branch order: {r['same_order']['identical']}/"
                  f"{r['same_order']['questions']} questions identical")
    if "trajectories" in summary:
        t = summary["trajectories"]
        print(f"saved {t['branches']} ended of {t['branches_started']} branches started "
              f"({t['questions']} questions) to {t['store']}")
    print(f"wrote {Path(args.output) / 'results.csv'} and {Path(args.output) / 'summary.json'}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``run-live`` on the ``autotts-jax`` subparsers."""
    from autotts_jax.collect.cli import add_connection_args, add_settings_args
    from autotts_jax.engine.env import COST_MODELS
    from autotts_jax.engine.simulate import DEFAULT_MAX_ROUNDS
    from autotts_jax.live.episode import DEFAULT_POOL_SIZE

    p = sub.add_parser(
        "run-live",
        help="run a controller live on an OpenAI-compatible completions server",
        description="Each question is one episode of the controller, whose effects send the "
        "requests collect would send (same prompt, probe suffix, seeds, extraction). Writes "
        "OUTPUT/results.csv and OUTPUT/summary.json; re-running the same command resumes.",
    )
    p.add_argument("--controller", required=True,
                   help="built-in controller name (cmc, sc, asc, ...) or a controller module .py")
    p.add_argument("--beta", type=float, help="the controller's beta (same as --config beta=)")
    p.add_argument("--config", action="append", metavar="KEY=VALUE",
                   help="a controller parameter (repeatable); values are read as JSON")
    add_settings_args(p, branches_help="branches a question may open (8): the n_branches "
                      "of a collected store the run is compared with")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--cost-model", choices=COST_MODELS, default="corrected",
                   help="token accounting of the 'tokens' column and of the replay prediction "
                   "(corrected: exactly the generated completion tokens; reference: upstream's, "
                   "which charges a whole interval per probe)")
    p.add_argument("--question-concurrency", type=int, default=4,
                   help="questions run at a time (4)")
    p.add_argument("--max-rounds", type=int, default=DEFAULT_MAX_ROUNDS,
                   help=f"round cap per question ({DEFAULT_MAX_ROUNDS})")
    p.add_argument("--answer-capacity", type=int, default=DEFAULT_POOL_SIZE,
                   help=f"distinct answers a question may produce ({DEFAULT_POOL_SIZE})")
    p.add_argument("--store", help="a collected store of this model and benchmark: the summary "
                   "adds the controller's replay prediction on it")
    p.add_argument("--replay-seeds", type=int, default=100,
                   help="shuffles of the replay prediction (100)")
    p.add_argument("--save-trajectories", metavar="STORE.h5",
                   help="also write the branches the run generated to their end as a store "
                   "(full reads then probe every interval: more probe requests)")
    add_connection_args(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no per-question lines")
    p.set_defaults(func=_cmd_run_live)
