"""The ``autotts-jax`` command.

File-shaped commands (``pack``, ``unpack``, ``info``) take plain positional arguments.
Experiment-shaped commands (``parity``, ``evaluate``, ``report``, ...) are Hydra applications:
everything after the subcommand is a Hydra override (``key=value``, ``-m`` for multirun), so
they share Hydra's config groups, run directories and launchers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from autotts_jax.errors import AutoTTSError

log = logging.getLogger("autotts_jax.cli")


def _cmd_pack(args: argparse.Namespace) -> int:
    from autotts_jax.store.pack import pack

    for path in pack(args.input, args.output, equivalence=args.equivalence):
        log.info("wrote %s (%s bytes)", path, f"{path.stat().st_size:,}")
    return 0


def _cmd_unpack(args: argparse.Namespace) -> int:
    from autotts_jax.store.hdf5 import read_store_arrays, unpack_records
    from autotts_jax.utils.atomic import atomic_write_text

    arrays, attrs = read_store_arrays(args.file)
    records = unpack_records(arrays, int(attrs["probe_freq"]))
    atomic_write_text(args.output, json.dumps(records, ensure_ascii=False))
    log.info("wrote %s", args.output)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from autotts_jax.store.info import format_summary, summarize

    for i, path in enumerate(args.files):
        summary = summarize(path)
        if args.json:
            print(json.dumps(summary))
        else:
            print(("\n" if i else "") + format_summary(summary))
    return 0


def _file_parser() -> argparse.ArgumentParser:
    from autotts_jax.collect.cli import add_equivalence_flag

    parser = argparse.ArgumentParser(prog="autotts-jax")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "pack", help="upstream replay JSON (file or <model>/<bench>.json tree) -> HDF5"
    )
    p.add_argument("input")
    p.add_argument("output", help="a .h5 file (for one input file) or a directory")
    add_equivalence_flag(p)
    p.set_defaults(func=_cmd_pack)
    p = sub.add_parser("unpack", help="HDF5 store -> upstream replay JSON")
    p.add_argument("file")
    p.add_argument("output")
    p.set_defaults(func=_cmd_unpack)
    p = sub.add_parser("info", help="summary of packed stores")
    p.add_argument("files", nargs="+")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=_cmd_info)
    from autotts_jax.collect.cli import add_parsers as add_collect_parsers

    add_collect_parsers(sub)  # collect, import-hf
    from autotts_jax.live.cli import add_parsers as add_live_parsers

    add_live_parsers(sub)  # run-live
    for name, helptext in _HYDRA_HELP.items():
        sub.add_parser(name, help=helptext + " (Hydra overrides follow)", add_help=False)
    return parser


def _hydra_commands() -> dict[str, Callable[[], None]]:
    from autotts_jax import apps

    return apps.COMMANDS


_HYDRA_HELP = {
    "parity": "re-evaluate a published results CSV and compare, row by row",
    "evaluate": "controllers x betas on (model, benchmark) stores -> results CSV/JSON",
    "report": "main table, paper comparison, Pareto fronts and scaling plots",
    "compare": "paired bootstrap intervals of controller differences on the same stores",
    "discover": "search for controllers (LLM or evolve), sandboxed; held-out table at the end",
}


def main(argv: Sequence[str] | None = None) -> int:
    from autotts_jax.utils.logs import console

    argv = list(sys.argv[1:] if argv is None else argv)
    console()  # Hydra commands replace it with conf/hydra/job_logging/autotts.yaml
    try:
        if argv and argv[0] in _HYDRA_HELP:
            command = _hydra_commands()[argv[0]]
            # Hydra reads sys.argv itself; hand it the overrides only.
            sys.argv = [f"autotts-jax {argv[0]}", *argv[1:]]
            return int(command() or 0)
        args = _file_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except AutoTTSError as exc:
        log.error("error: %s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
