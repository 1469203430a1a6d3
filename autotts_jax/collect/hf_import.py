"""``autotts-jax import-hf``: the raw per-model probe datasets, from local files, into HDF5.

The released per-model probe datasets (one file per model and benchmark, named like
``Qwen3-1.7B__aime24__br128__bg5120k__fr500__<date>.jsonl``) hold one record per question::

    {"question": str, "gold_answer": str, "probe_freq": int,
     "probe_matrix_mxn": [[probe answer or null, ...], ...],   # m branches x n probes
     "branch_tokens": [int, ...],                              # m
     "final_answers_trace": [str or null, ...]}                # m: each branch's final answer

Despite the suffix such a file may be one JSON list; a true JSONL file (one record per line)
and a single JSON object are read too.  ``problem`` is accepted for ``question`` and ``answer``
for ``gold_answer``; ``probe_freq`` may instead come from ``--probe-freq`` or an ``__fr<N>``
part of the file name, and the model and benchmark from the first two ``__`` parts of the name.

Each probe row loses its trailing ``null`` padding (the row of a shorter branch); a ``null``
before the last answer, and a ``null`` final answer, become the no-answer marker
``"<no-answer>"``.  A row that is all ``null`` (a branch that ended before its first probe) gets
its final answer as its one probe.  Answers and gold answers are kept as they are unless
``normalize`` names a normaliser (see :mod:`autotts_jax.collect.answers`).  Every input is
validated before anything is written; a problem is reported as one line naming the file, the
record and the field.  The same records are read from Parquet files and Hugging Face datasets on
disk (:mod:`autotts_jax.collect.tables`; a row of the table is a record).  Nothing here uses
the network.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from autotts_jax.collect.answers import NO_ANSWER, get_normalizer
from autotts_jax.collect.tables import is_table, read_table
from autotts_jax.errors import AutoTTSError
from autotts_jax.store.upstream import Branch, QuestionRecord, UpstreamFile

_FREQ_IN_NAME = re.compile(r"__fr(\d+)(?:__|$)")


def _stem(path: Path) -> str:
    """A file's name without its suffix; a folder's whole name (``Qwen3-1.7B__...`` has a dot)."""
    return path.name if path.is_dir() else path.stem


def names_from_filename(path: Path) -> tuple[str | None, str | None]:
    """``Qwen3-1.7B__aime24__...`` -> ("Qwen3-1.7B", "aime24"); (None, None) otherwise."""
    parts = _stem(path).split("__")
    if len(parts) >= 2 and parts[0] and parts[1]:
        return parts[0], parts[1]
    return None, None


def _records(path: Path, blob: bytes) -> list[tuple[str, object]]:
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AutoTTSError(f"{path}: not UTF-8 text ({exc})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as whole:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if len(lines) < 2:
            raise AutoTTSError(f"{path}: not valid JSON ({whole})") from None
        out = []
        for n, line in lines:
            try:
                out.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise AutoTTSError(f"{path}: line {n}: not valid JSON ({exc})") from None
        return out
    if isinstance(raw, dict):
        return [("record 0", raw)]
    if isinstance(raw, list):
        return [(f"record {i}", r) for i, r in enumerate(raw)]
    raise AutoTTSError(f"{path}: expected a JSON list of records, got {type(raw).__name__}")


class _Fields:
    def __init__(self, path: Path, where: str, rec: dict):
        self.path, self.where, self.rec = path, where, rec

    def fail(self, field: str, problem: str) -> AutoTTSError:
        return AutoTTSError(f"{self.path}: {self.where}: {field}: {problem}")

    def get(self, *names: str) -> tuple[str, object]:
        for name in names:
            if name in self.rec:
                return name, self.rec[name]
        raise AutoTTSError(
            f"{self.path}: {self.where}: missing field {' or '.join(repr(n) for n in names)}"
        )

    def text(self, field: str, value: object, *, nul_ok: bool = True) -> str:
        if not isinstance(value, str):
            raise self.fail(field, f"expected a string, got {type(value).__name__}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise self.fail(field, "not valid Unicode (lone surrogate escape)") from None
        if not nul_ok and "\x00" in value:
            raise self.fail(field, "contains a NUL character")
        return value

    def list_of(self, name: str, n: int | None) -> list:
        value = self.rec.get(name)
        if name not in self.rec:
            raise AutoTTSError(f"{self.path}: {self.where}: missing field '{name}'")
        if not isinstance(value, list):
            raise self.fail(name, f"expected a list, got {type(value).__name__}")
        if n is not None and len(value) != n:
            raise self.fail(
                name, f"has {len(value)} entries but probe_matrix_mxn has {n} branches"
            )
        return value


def _question(path: Path, where: str, rec: object, probe_freq: int | None,
              normalize, question_keys: tuple[str, ...],
              answer_keys: tuple[str, ...]) -> QuestionRecord:
    if not isinstance(rec, dict):
        raise AutoTTSError(f"{path}: {where}: expected an object, got {type(rec).__name__}")
    f = _Fields(path, where, rec)
    qkey, question = f.get(*question_keys)
    question = f.text(qkey, question, nul_ok=False)
    gkey, gold = f.get(*answer_keys)
    if isinstance(gold, int | float) and not isinstance(gold, bool):
        gold = str(gold)
    gold = normalize(f.text(gkey, gold, nul_ok=False))
    if not gold.strip() or gold == NO_ANSWER:
        raise f.fail(gkey, f"gold answer {gold!r} could never be matched")
    if "probe_freq" in rec:
        freq = rec["probe_freq"]
        if isinstance(freq, bool) or not isinstance(freq, int) or freq <= 0:
            raise f.fail("probe_freq", f"expected a positive integer, got {freq!r}")
    elif probe_freq is not None:
        freq = probe_freq
    else:
        raise AutoTTSError(
            f"{path}: {where}: missing field 'probe_freq' (pass --probe-freq, or name the file "
            "..._fr<N>_...)"
        )
    matrix = f.list_of("probe_matrix_mxn", None)
    if not matrix:
        raise f.fail("probe_matrix_mxn", "no branches")
    tokens = f.list_of("branch_tokens", len(matrix))
    finals = f.list_of("final_answers_trace", len(matrix))
    branches = []
    final_strs = []
    for b, (row, tok, final) in enumerate(zip(matrix, tokens, finals, strict=True)):
        field = f"probe_matrix_mxn[{b}]"
        if not isinstance(row, list):
            raise f.fail(field, f"expected a list of probe answers, got {type(row).__name__}")
        if isinstance(tok, bool) or not isinstance(tok, int):
            raise f.fail(f"branch_tokens[{b}]", f"expected an integer, got {tok!r}")
        if not 0 <= tok < 2**31:
            raise f.fail(f"branch_tokens[{b}]", f"token count {tok} out of range [0, 2^31)")
        if final is None:
            final_str = NO_ANSWER
        else:
            final_str = normalize(f.text(f"final_answers_trace[{b}]", final))
        while row and row[-1] is None:
            row = row[:-1]
        probes = tuple(
            NO_ANSWER if p is None else normalize(f.text(f"{field}[{k}]", p))
            for k, p in enumerate(row)
        ) or (final_str,)
        branches.append(Branch(probes, tok, final_str))
        final_strs.append(final_str)
    return QuestionRecord(question, gold, freq, tuple(final_strs), tuple(branches))


def read_hf_raw(path: str | Path, *, probe_freq: int | None = None,
                normalize: str = "none", question_field: str | None = None,
                answer_field: str | None = None, split: str | None = None) -> UpstreamFile:
    """Parse and validate one raw file (JSON, JSONL, Parquet) or Hugging Face dataset folder
    (:mod:`autotts_jax.collect.tables`) into the in-memory upstream format.

    ``question_field`` and ``answer_field`` name the question and gold-answer columns; by
    default ``question`` (else ``problem``) and ``gold_answer`` (else ``answer``).
    """
    path = Path(path)
    norm = get_normalizer(normalize)
    if probe_freq is None and (m := _FREQ_IN_NAME.search(_stem(path))):
        probe_freq = int(m.group(1))
    if is_table(path):
        table = read_table(path, _records, split=split)
        rows, digest = table.records, table.sha256
    else:
        if not path.is_file():
            raise AutoTTSError(f"{path}: no such file")
        if split is not None:
            raise AutoTTSError(f"{path}: --split applies to dataset folders only")
        blob = path.read_bytes()
        rows = [(path, where, rec) for where, rec in _records(path, blob)]
        digest = hashlib.sha256(blob).hexdigest()
    if not rows:
        raise AutoTTSError(f"{path}: no records")
    q_keys = (question_field,) if question_field else ("question", "problem")
    a_keys = (answer_field,) if answer_field else ("gold_answer", "answer")
    questions = tuple(_question(file, where, r, probe_freq, norm, q_keys, a_keys)
                      for file, where, r in rows)
    freqs = sorted({q.probe_freq for q in questions})
    if len(freqs) != 1:
        raise AutoTTSError(f"{path}: probe_freq: mixed values {freqs} in one file")
    return UpstreamFile(path, digest, freqs[0], questions)


def import_hf(
    inputs: list[str | Path],
    output: str | Path,
    *,
    model: str | None = None,
    benchmark: str | None = None,
    probe_freq: int | None = None,
    normalize: str = "none",
    question_field: str | None = None,
    answer_field: str | None = None,
    split: str | None = None,
    equivalence: str = "exact",
) -> list[Path]:
    """Import raw files into stores; every input is validated before the first write.

    One input and ``output`` ending in ``.h5``: that file.  Otherwise ``output`` is a directory
    and receives ``<model>/<benchmark>.h5`` per input.  ``equivalence`` is the answer
    equivalence of :mod:`autotts_jax.store.equivalence` (``exact``: answers as strings).
    """
    from autotts_jax.store.equivalence import check_equivalence
    from autotts_jax.store.hdf5 import write_store

    check_equivalence(equivalence)
    paths = [Path(p) for p in inputs]
    if not paths:
        raise AutoTTSError("import-hf: no input files")
    output = Path(output)
    single = len(paths) == 1 and output.suffix in (".h5", ".hdf5")
    if len(paths) > 1 and output.suffix in (".h5", ".hdf5"):
        raise AutoTTSError(f"{output}: several inputs need an output directory, not a .h5 file")
    planned = []
    for p in paths:
        up = read_hf_raw(p, probe_freq=probe_freq, normalize=normalize,
                         question_field=question_field, answer_field=answer_field, split=split)
        name_model, name_bench = names_from_filename(p)
        m, b = model or name_model, benchmark or name_bench
        if m is None or b is None:
            raise AutoTTSError(
                f"{p}: cannot tell the model and benchmark from the file name (expected "
                "<model>__<benchmark>__...); pass --model and --benchmark"
            )
        out = output if single else output / m / f"{b}.h5"
        planned.append((up, out, m, b))
    outs = [o for _, o, _, _ in planned]
    if len(set(outs)) != len(outs):
        raise AutoTTSError(
            "import-hf: two inputs would be written to the same store; import them separately"
        )
    return [write_store(up, out, m, b, equivalence=equivalence) for up, out, m, b in planned]
