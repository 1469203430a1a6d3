"""The ``collect`` and ``import-hf`` subcommands (argparse), added to ``autotts-jax``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from autotts_jax.errors import AutoTTSError

if TYPE_CHECKING:
    from autotts_jax.collect.settings import CollectSettings, Connection


def _text_or_file(value: str) -> str:
    """``@path`` reads the file (UTF-8, kept byte for byte); anything else is the text."""
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AutoTTSError(f"{path}: cannot read ({exc})") from None


def settings_from_args(args: argparse.Namespace) -> CollectSettings:
    """The collection settings of the options :func:`add_settings_args` registered (shared by
    ``collect`` and ``run-live``, so that a live run generates exactly as ``collect`` does)."""
    from autotts_jax.collect.settings import CollectSettings

    try:
        extra = json.loads(args.extra_body) if args.extra_body else {}
    except json.JSONDecodeError as exc:
        raise AutoTTSError(f"--extra-body: not valid JSON ({exc})") from None
    if not isinstance(extra, dict):
        raise AutoTTSError("--extra-body: expected a JSON object")
    return CollectSettings(
        model=args.model,
        branches=args.branches,
        probe_freq=args.probe_freq,
        max_tokens=args.max_tokens,
        max_probes=args.max_probes,
        temperature=args.temperature,
        seed=None if args.no_seed else args.seed,
        prompt_template=_text_or_file(args.prompt_template),
        probe_suffix=_text_or_file(args.probe_suffix),
        probe_max_tokens=args.probe_max_tokens,
        probe_temperature=args.probe_temperature,
        extractor=args.extractor,
        normalize=args.normalize,
        extra_body=extra,
    )


def connection_from_args(args: argparse.Namespace) -> Connection:
    """The server connection of the options :func:`add_connection_args` registered."""
    from autotts_jax.collect.settings import Connection

    return Connection(
        base_url=args.base_url,
        concurrency=args.concurrency,
        timeout=args.timeout,
        retries=args.retries,
        backoff=args.backoff,
        api_key=os.environ.get(args.api_key_env) or None,
    )


def add_settings_args(p: argparse.ArgumentParser, *, branches_help: str) -> None:
    """The server, problem, sampling and template options of ``collect``."""
    from autotts_jax.collect.answers import EXTRACTORS, NORMALIZERS
    from autotts_jax.collect.settings import DEFAULT_PROBE_SUFFIX, DEFAULT_PROMPT_TEMPLATE

    p.add_argument("--base-url", required=True,
                   help="server base URL, e.g. http://127.0.0.1:8000/v1 (POSTs <url>/completions)")
    p.add_argument("--model", required=True, help="model name as the server knows it")
    p.add_argument("--problems", default="builtin",
                   help="JSONL/JSON/Parquet file with question+answer per record, a Hugging "
                   "Face dataset folder (save_to_disk, hub cache or --local-dir download), or "
                   "'builtin' (default: five built-in AIME-style questions)")
    p.add_argument("--limit", type=int, help="only the first LIMIT questions")
    _add_input_flags(p, "question, else problem", "answer, else gold_answer")
    p.add_argument("--branches", "-n", type=int, default=8, help=branches_help)
    p.add_argument("--probe-freq", type=int, default=500, help="tokens per interval (500)")
    p.add_argument("--max-tokens", type=int, default=16384, help="tokens per branch (16384)")
    p.add_argument("--max-probes", type=int, default=128, help="intervals per branch (128)")
    p.add_argument("--temperature", type=float, default=0.6, help="generation temperature")
    p.add_argument("--seed", type=int, default=0,
                   help="base of the per-request seeds (0); see --no-seed")
    p.add_argument("--no-seed", action="store_true", help="send no seed (server without seed)")
    p.add_argument("--prompt-template", default=DEFAULT_PROMPT_TEMPLATE,
                   help="prompt with a {question} placeholder, or @FILE (include the model's "
                   "chat template: /v1/completions sends raw text)")
    p.add_argument("--probe-suffix", default=DEFAULT_PROBE_SUFFIX,
                   help="text appended to the branch to ask for its answer, or @FILE "
                   "(default ends in '\\boxed{')")
    p.add_argument("--probe-max-tokens", type=int, default=32, help="tokens per probe (32)")
    p.add_argument("--probe-temperature", type=float, default=0.0, help="probe temperature")
    p.add_argument("--extractor", choices=sorted(EXTRACTORS), default="boxed-or-last-number")
    p.add_argument("--normalize", choices=sorted(NORMALIZERS), default="math",
                   help="answer normaliser applied to answers and gold answers (math)")
    p.add_argument("--extra-body", help="JSON object merged into every request, e.g. "
                   "'{\"top_p\": 0.95}'")


def add_connection_args(p: argparse.ArgumentParser) -> None:
    """Concurrency, timeouts, retries and the API key of ``collect``."""
    p.add_argument("--concurrency", "-j", type=int, default=8, help="requests in flight (8)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request (300)")
    p.add_argument("--retries", type=int, default=5, help="retries per request (5)")
    p.add_argument("--backoff", type=float, default=1.0,
                   help="first retry delay in seconds, doubled each retry (1.0)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding a bearer token, if the server needs one")


def _cmd_collect(args: argparse.Namespace) -> int:
    from autotts_jax.collect.answers import NO_ANSWER
    from autotts_jax.collect.collector import collect, default_checkpoint_dir
    from autotts_jax.collect.problems import load_problems
    from autotts_jax.collect.settings import cost_estimate

    settings = settings_from_args(args)
    settings.validate()
    problems = load_problems(args.problems, limit=args.limit, question_field=args.question_field,
                             answer_field=args.answer_field, split=args.split)
    est = cost_estimate(settings, len(problems.problems))
    print(
        f"collect: {len(problems.problems)} questions x {settings.branches} branches, "
        f"<= {est['depth']} intervals of {settings.probe_freq} tokens: at most "
        f"{est['max_requests']:,} requests and {est['max_completion_tokens']:,} completion "
        "tokens (requests ~ questions x branches x (depth + probes))",
        file=sys.stderr,
    )
    if args.estimate:
        return 0
    conn = connection_from_args(args)
    t0 = time.monotonic()
    ckpt = args.checkpoint_dir or default_checkpoint_dir(args.output)
    try:
        result = collect(
            settings, conn, problems, args.output, checkpoint_dir=ckpt,
            benchmark=args.benchmark, store_model=args.store_model,
            progress=None if args.quiet else sys.stderr, equivalence=args.equivalence,
        )
    except KeyboardInterrupt:
        print(f"\ninterrupted: collected requests are kept in {ckpt}; run the same command "
              "again to resume", file=sys.stderr)
        return 130
    st = result.stats
    retried = {k[len("client_"):]: v for k, v in st.items()
               if k.startswith("client_") and k not in ("client_attempts", "client_replies",
                                                         "client_retries")}
    print(
        f"this run: {st['gen_requests']} generation and {st['probe_requests']} probe requests, "
        f"{st['tokens']:,} + {st['probe_tokens']:,} completion tokens, "
        f"{st.get('client_retries', 0)} retries"
        + (f" ({', '.join(f'{v} {k}' for k, v in sorted(retried.items()))})" if retried else "")
        + f", {st['no_answer_probes']} probes without an answer ({NO_ANSWER!r}), "
        f"{time.monotonic() - t0:.1f} s"
    )
    print(f"wrote {result.output} ({result.output.stat().st_size:,} bytes); upstream JSON "
          f"{result.upstream_json}")
    return 0


def _cmd_import_hf(args: argparse.Namespace) -> int:
    from autotts_jax.collect.hf_import import import_hf

    for path in import_hf(args.inputs, args.output, model=args.model, benchmark=args.benchmark,
                          probe_freq=args.probe_freq, normalize=args.normalize,
                          question_field=args.question_field, answer_field=args.answer_field,
                          split=args.split, equivalence=args.equivalence):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


def add_equivalence_flag(p: argparse.ArgumentParser) -> None:
    """``--equivalence``, shared by every command that writes a store."""
    from autotts_jax.store.equivalence import EQUIVALENCES, EXACT

    p.add_argument("--equivalence", choices=EQUIVALENCES, default=EXACT,
                   help="exact (default): an answer is its string; math: mathematically equal "
                   "answers of a question share one answer id and are judged against the gold "
                   "answer the same way (math-verify, from the [hf] extra)")


def _add_input_flags(p: argparse.ArgumentParser, question: str, answer: str) -> None:
    p.add_argument("--question-field", metavar="NAME",
                   help=f"column holding the question (default: {question})")
    p.add_argument("--answer-field", metavar="NAME",
                   help=f"column holding the gold answer (default: {answer})")
    p.add_argument("--split", help="split to read from a Hugging Face dataset folder with "
                   "several (train, test, ...)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``collect`` and ``import-hf`` on the ``autotts-jax`` subparsers."""
    from autotts_jax.collect.answers import NORMALIZERS

    p = sub.add_parser(
        "collect",
        help="collect probe trajectories from an OpenAI-compatible completions server -> HDF5",
        description="Generate BRANCHES branches per question PROBE_FREQ tokens at a time, ask "
        "for an answer after every interval, and write the HDF5 store. Interrupted runs resume "
        "from the checkpoint directory.",
    )
    add_settings_args(p, branches_help="branches per question (8)")
    p.add_argument("-o", "--output", required=True, help="the .h5 store to write")
    p.add_argument("--benchmark", help="benchmark name in the store (default: problem file stem)")
    p.add_argument("--store-model", help="model name in the store (default: --model)")
    add_equivalence_flag(p)
    add_connection_args(p)
    p.add_argument("--checkpoint-dir", help="checkpoint directory (default: OUTPUT.ckpt)")
    p.add_argument("--estimate", action="store_true",
                   help="print the request/token upper bounds and exit without requests")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser(
        "import-hf",
        help="raw released probe datasets (probe_matrix_mxn records, local files) -> HDF5",
    )
    p.add_argument("inputs", nargs="+", help="raw .json/.jsonl/.parquet files or Hugging Face "
                   "dataset folders")
    p.add_argument("output", help="a .h5 file (one input) or a directory (<model>/<bench>.h5)")
    p.add_argument("--model", help="model name (default: from <model>__<bench>__... file name)")
    p.add_argument("--benchmark", help="benchmark name (default: from the file name)")
    p.add_argument("--probe-freq", type=int,
                   help="tokens per probe when records lack probe_freq (default: __fr<N> in the "
                   "file name)")
    p.add_argument("--normalize", choices=sorted(NORMALIZERS), default="none",
                   help="answer normaliser (none: answers as released)")
    _add_input_flags(p, "question, else problem", "gold_answer, else answer")
    add_equivalence_flag(p)
    p.set_defaults(func=_cmd_import_hf)
