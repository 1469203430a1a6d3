"""The packed trajectory store: one HDF5 file per (model, benchmark).

Layout (schema version 1).  ``Q`` questions, ``B`` branches (padded to the largest question),
``K`` probe intervals (padded to the longest branch), ``V`` answer ids (padded to the largest
per-question vocabulary).  Padding is ``-1`` for ids, ``0`` for counts, ``""`` for strings.

=====================  ==========  ===========================================================
dataset                shape       meaning
=====================  ==========  ===========================================================
``probe_answer``       [Q, B, K]   answer id after interval k of branch b
``n_probes``           [Q, B]      number of probes L of the branch (>= 1 for a real branch)
``branch_tokens``      [Q, B]      total tokens of the branch
``final_answer``       [Q, B]      answer id of the branch's final answer
``n_branches``         [Q]         real branches of the question
``n_final_vocab``      [Q]         ids ``0..n_final_vocab-1`` are final answers
``n_vocab``            [Q]         ids ``0..n_vocab-1`` are used
``is_correct``         [Q, V]      id v of question q equals the gold answer (see below)
``vocab_utf8``         [N]         all answer strings, UTF-8 bytes, concatenated (gzip)
``vocab_offsets``      [Q, V+1]    string v of question q is ``vocab_utf8[o[q,v]:o[q,v+1]]``
``question``           [Q]         question text
``gold_answer``        [Q]         gold answer text
``final_answers_trace`` [Q, B']    ids of the upstream ``final_answers_trace`` list (-1 pad)
=====================  ==========  ===========================================================

Answers are interned per question: final answers first, in order of first appearance in file
order, then strings that only ever appear as probes.  Interning final answers first keeps the
completed-answer pool (which only ever holds final answers) a small ``[V_final]`` vector.

Under the default equivalence (``exact``) an id is one string and is correct when it equals
the gold string (plain ``==``); with the attribute ``equivalence = "math"`` an id stands for
all the answers of its question that are mathematically equal to its string, and correctness
was judged the same way (:mod:`autotts_jax.store.equivalence`).

Files are written with ``track_times=False`` and fixed chunking/compression so that packing the
same JSON twice gives byte-identical files; writing goes to a temporary name that is renamed
into place only when complete.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from autotts_jax.errors import AutoTTSError
from autotts_jax.store.equivalence import EXACT, apply_equivalence, verifier_name
from autotts_jax.store.upstream import Branch, QuestionRecord, UpstreamFile

SCHEMA_VERSION = 1
_STR = h5py.string_dtype("utf-8")


def _intern(q: QuestionRecord) -> tuple[list[str], int]:
    ids: dict[str, int] = {}
    for b in q.branches:
        ids.setdefault(b.final, len(ids))
    n_final = len(ids)
    for b in q.branches:
        for p in b.probes:
            ids.setdefault(p, len(ids))
    for a in q.final_answers_trace:
        ids.setdefault(a, len(ids))
    return list(ids), n_final


def _smallest_int(max_value: int) -> np.dtype:
    return np.dtype(np.int16) if max_value < 2**15 else np.dtype(np.int32)


def pack_arrays(
    src: UpstreamFile, correct: tuple[frozenset[str], ...] | None = None
) -> dict[str, np.ndarray]:
    """Turn a validated upstream file into the padded arrays of the store.

    ``correct`` names the correct answers of each question; by default an answer is correct
    when it equals the gold string (see :mod:`autotts_jax.store.equivalence` for the other).
    """
    qs = src.questions
    n_q = len(qs)
    vocabs = [_intern(q) for q in qs]
    n_b = max(len(q.branches) for q in qs)
    n_k = max(len(b.probes) for q in qs for b in q.branches)
    n_v = max(len(v) for v, _ in vocabs)
    n_t = max(max((len(q.final_answers_trace) for q in qs), default=0), 1)
    id_dtype = _smallest_int(n_v)

    probe_answer = np.full((n_q, n_b, n_k), -1, dtype=id_dtype)
    n_probes = np.zeros((n_q, n_b), dtype=np.int16 if n_k < 2**15 else np.int32)
    branch_tokens = np.zeros((n_q, n_b), dtype=np.int32)
    final_answer = np.full((n_q, n_b), -1, dtype=id_dtype)
    trace = np.full((n_q, n_t), -1, dtype=id_dtype)
    is_correct = np.zeros((n_q, n_v), dtype=bool)
    vocab = np.full((n_q, n_v), "", dtype=object)
    for qi, (q, (words, _)) in enumerate(zip(qs, vocabs, strict=True)):
        ids = {w: i for i, w in enumerate(words)}
        for bi, b in enumerate(q.branches):
            n_probes[qi, bi] = len(b.probes)
            probe_answer[qi, bi, : len(b.probes)] = [ids[p] for p in b.probes]
            if b.tokens >= 2**31:
                raise AutoTTSError(f"{src.path}: question {qi}.each_branch[{bi}][1]: too large")
            branch_tokens[qi, bi] = b.tokens
            final_answer[qi, bi] = ids[b.final]
        trace[qi, : len(q.final_answers_trace)] = [ids[a] for a in q.final_answers_trace]
        vocab[qi, : len(words)] = words
        if correct is None:
            is_correct[qi, : len(words)] = [w == q.gold_answer for w in words]
        else:
            is_correct[qi, : len(words)] = [w in correct[qi] for w in words]
    return {
        "probe_answer": probe_answer,
        "n_probes": n_probes,
        "branch_tokens": branch_tokens,
        "final_answer": final_answer,
        "n_branches": np.array([len(q.branches) for q in qs], dtype=np.int32),
        "n_final_vocab": np.array([nf for _, nf in vocabs], dtype=np.int32),
        "n_vocab": np.array([len(v) for v, _ in vocabs], dtype=np.int32),
        "n_trace": np.array([len(q.final_answers_trace) for q in qs], dtype=np.int32),
        "final_answers_trace": trace,
        "is_correct": is_correct,
        **_encode_vocab(vocab),
        "question": np.array([q.question for q in qs], dtype=object),
        "gold_answer": np.array([q.gold_answer for q in qs], dtype=object),
    }


def _encode_vocab(vocab: np.ndarray) -> dict[str, np.ndarray]:
    """Answer strings as one compressible UTF-8 blob plus offsets.

    Variable-length HDF5 strings live in an uncompressed global heap; the public vocabularies
    (up to ~900 strings per question) would triple the file size that way.
    """
    blobs = [s.encode("utf-8") for s in vocab.reshape(-1)]
    lengths = np.array([len(b) for b in blobs], dtype=np.int64).reshape(vocab.shape)
    starts = np.concatenate([[0], np.cumsum(lengths.reshape(-1))]).astype(np.int64)
    offsets = np.concatenate(
        [starts[:-1].reshape(vocab.shape), starts[1:].reshape(vocab.shape)[:, -1:]], axis=1
    )
    return {
        "vocab_utf8": np.frombuffer(b"".join(blobs), dtype=np.uint8).copy(),
        "vocab_offsets": offsets,
    }


def _decode_vocab(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    raw = blob.tobytes()
    n_q, n_v1 = offsets.shape
    out = np.empty((n_q, n_v1 - 1), dtype=object)
    for q in range(n_q):
        for v in range(n_v1 - 1):
            out[q, v] = raw[offsets[q, v] : offsets[q, v + 1]].decode("utf-8")
    return out


def _atomic_h5(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_store(
    src: UpstreamFile, out: str | Path, model: str, benchmark: str, *, equivalence: str = EXACT
) -> Path:
    """Pack ``src`` into ``out`` atomically (temporary file, then rename).

    ``equivalence`` other than ``exact`` merges equal answers first and is recorded in the
    attributes ``equivalence`` and ``equivalence_verifier``; an ``exact`` store has neither,
    so it stays byte-identical to a store written before equivalence modes existed.
    """
    out = Path(out)
    merged, correct = apply_equivalence(src, equivalence)
    arrays = pack_arrays(merged, correct)
    tmp = _atomic_h5(out)
    try:
        with h5py.File(tmp, "w", track_order=True) as f:
            for name, arr in arrays.items():
                if arr.dtype == object:
                    f.create_dataset(name, data=arr.astype(_STR), dtype=_STR, track_times=False)
                    continue
                kw = {}
                if arr.ndim == 1 and arr.size >= 1024:
                    kw = {"chunks": (min(arr.size, 1 << 16),), "compression": "gzip",
                          "compression_opts": 9}
                elif arr.ndim >= 2 and arr.size >= 1024:
                    chunks = (1,) + arr.shape[1:]
                    kw = {"chunks": chunks, "compression": "gzip", "compression_opts": 6,
                          "shuffle": True}
                f.create_dataset(name, data=arr, track_times=False, **kw)
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["probe_freq"] = src.probe_freq
            f.attrs["model"] = model
            f.attrs["benchmark"] = benchmark
            f.attrs["n_questions"] = len(src.questions)
            f.attrs["n_branches"] = int(arrays["n_branches"].max())
            f.attrs["source_file"] = src.path.name
            f.attrs["source_sha256"] = src.sha256
            if equivalence != EXACT:
                f.attrs["equivalence"] = equivalence
                f.attrs["equivalence_verifier"] = verifier_name()
        tmp.chmod(0o644)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def read_store_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Read every dataset and attribute of a store, validating the schema.

    Returns host numpy arrays (strings decoded to ``str``) and the attributes.
    """
    path = Path(path)
    if not path.is_file():
        raise AutoTTSError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise AutoTTSError(f"{path}: not a readable HDF5 file ({_one_line(exc)})") from None
    with f:
        try:
            version = f.attrs.get("schema_version")
            raw_attrs = dict(f.attrs.items())
        except (OSError, KeyError, RuntimeError) as exc:
            raise AutoTTSError(f"{path}: attributes unreadable ({_one_line(exc)})") from None
        if version is None:
            raise AutoTTSError(
                f"{path}: attribute 'schema_version' missing: not an autotts-jax store"
            )
        if not _is_int(version):
            raise AutoTTSError(
                f"{path}: schema_version {version!r} is not an integer: not an autotts-jax store"
            )
        if int(version) != SCHEMA_VERSION:
            raise AutoTTSError(
                f"{path}: schema_version {int(version)} is not supported (this build reads "
                f"{SCHEMA_VERSION}); re-pack it with `autotts-jax pack`"
            )
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in raw_attrs.items()}
        arrays: dict[str, np.ndarray] = {}
        for name in _EXPECTED:
            if name not in f:
                raise AutoTTSError(f"{path}: dataset '{name}' missing")
            ds = f[name]
            if not isinstance(ds, h5py.Dataset):
                raise AutoTTSError(f"{path}: '{name}' is not a dataset")
            try:
                if h5py.check_string_dtype(ds.dtype) is not None:
                    arrays[name] = ds.asstr()[()]
                else:
                    arrays[name] = ds[()]
            except (OSError, ValueError, RuntimeError, UnicodeDecodeError) as exc:
                # A damaged chunk (bad checksum, failed gzip filter) surfaces only on read.
                raise AutoTTSError(
                    f"{path}: dataset '{name}' is unreadable ({_one_line(exc)})"
                ) from None
    _validate(path, arrays, attrs)
    arrays["vocab"] = _decode_vocab(arrays.pop("vocab_utf8"), arrays.pop("vocab_offsets"))
    return arrays, attrs


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


# name -> (number of dimensions, kind) ; kinds: i = integer, b = bool, s = string
_EXPECTED = {
    "probe_answer": (3, "i"),
    "n_probes": (2, "i"),
    "branch_tokens": (2, "i"),
    "final_answer": (2, "i"),
    "n_branches": (1, "i"),
    "n_final_vocab": (1, "i"),
    "n_vocab": (1, "i"),
    "n_trace": (1, "i"),
    "final_answers_trace": (2, "i"),
    "is_correct": (2, "b"),
    "vocab_utf8": (1, "i"),
    "vocab_offsets": (2, "i"),
    "question": (1, "s"),
    "gold_answer": (1, "s"),
}


def _validate(path: Path, a: dict[str, np.ndarray], attrs: dict[str, object]) -> None:
    for name, (ndim, kind) in _EXPECTED.items():
        arr = a[name]
        if arr.ndim != ndim:
            raise AutoTTSError(
                f"{path}: dataset '{name}' has {arr.ndim} dimensions, expected {ndim}"
            )
        ok = {
            "i": np.issubdtype(arr.dtype, np.integer),
            "b": arr.dtype == np.bool_,
            "s": arr.dtype == object,
        }[kind]
        if not ok:
            raise AutoTTSError(f"{path}: dataset '{name}' has dtype {arr.dtype}, expected {kind}")
    n_q, n_b, n_k = a["probe_answer"].shape
    n_v = a["is_correct"].shape[1]
    shapes = {
        "n_probes": (n_q, n_b), "branch_tokens": (n_q, n_b), "final_answer": (n_q, n_b),
        "n_branches": (n_q,), "n_final_vocab": (n_q,), "n_vocab": (n_q,), "n_trace": (n_q,),
        "vocab_offsets": (n_q, n_v + 1), "question": (n_q,), "gold_answer": (n_q,),
    }
    for name, shape in shapes.items():
        if a[name].shape != shape:
            raise AutoTTSError(
                f"{path}: dataset '{name}' has shape {a[name].shape}, expected {shape}"
            )
    if a["final_answers_trace"].shape[0] != n_q:
        raise AutoTTSError(f"{path}: dataset 'final_answers_trace' has the wrong number of rows")
    real = np.arange(n_b)[None, :] < a["n_branches"][:, None]
    if np.any(a["n_probes"][real] < 1) or np.any(a["n_probes"] > n_k):
        raise AutoTTSError(f"{path}: dataset 'n_probes' out of range [1, {n_k}]")
    if np.any(a["final_answer"][real] < 0) or np.any(
        a["final_answer"] >= a["n_final_vocab"][:, None]
    ):
        raise AutoTTSError(f"{path}: dataset 'final_answer' has ids outside the final vocabulary")
    if np.any(a["probe_answer"] >= a["n_vocab"][:, None, None]):
        raise AutoTTSError(f"{path}: dataset 'probe_answer' has ids outside the vocabulary")
    for key in ("probe_freq", "model", "benchmark"):
        if key not in attrs:
            raise AutoTTSError(f"{path}: attribute '{key}' missing")


def unpack_records(arrays: dict[str, np.ndarray], probe_freq: int) -> list[dict]:
    """Rebuild the upstream JSON records from store arrays (inverse of :func:`pack_arrays`)."""
    out = []
    for qi in range(arrays["probe_answer"].shape[0]):
        words = arrays["vocab"][qi]
        branches = []
        for bi in range(int(arrays["n_branches"][qi])):
            n = int(arrays["n_probes"][qi, bi])
            branches.append(Branch(
                tuple(str(words[i]) for i in arrays["probe_answer"][qi, bi, :n]),
                int(arrays["branch_tokens"][qi, bi]),
                str(words[arrays["final_answer"][qi, bi]]),
            ))
        trace = arrays["final_answers_trace"][qi, : int(arrays["n_trace"][qi])]
        out.append({
            "question": str(arrays["question"][qi]),
            "final_answers_trace": [str(words[i]) for i in trace],
            "each_branch": [[list(b.probes), b.tokens, b.final] for b in branches],
            "gold_answer": str(arrays["gold_answer"][qi]),
            "probe_freq": probe_freq,
        })
    return out
