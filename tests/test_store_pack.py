"""Packing upstream JSON into the HDF5 store, loading it back, and the committed trajectories.

* the committed ``trajectories/`` are exactly what ``autotts-jax pack`` makes of the upstream
  replay data (byte for byte), and unpack back to data equal to the source JSON;
* a tiny synthetic file (no ``shared/`` needed) packs, loads as a padded pytree and round-trips;
* ``trajectories/SHA256SUMS`` matches the committed files;
* the store summaries reproduce the published replay-data facts.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import STORES, TRAJECTORIES_DIR, UPSTREAM_DIR, files_under, requires_shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import autotts_jax
from autotts_jax.cli import main
from autotts_jax.store import pack
from autotts_jax.store.hdf5 import SCHEMA_VERSION, read_store_arrays, unpack_records
from autotts_jax.store.info import summarize
from autotts_jax.store.load import bucket, load_store


def _unpack(path: Path) -> list[dict]:
    arrays, attrs = read_store_arrays(path)
    return unpack_records(arrays, int(attrs["probe_freq"]))


# --------------------------------------------------------------------------- committed store


def test_committed_trajectories_are_the_twelve_stores():
    found = sorted(p.relative_to(TRAJECTORIES_DIR).as_posix() for p in files_under(TRAJECTORIES_DIR)
                   if p.suffix == ".h5")
    assert found == sorted(f"{s}.h5" for s in STORES)


@requires_shared
def test_pack_tree_reproduces_committed_trajectories_byte_for_byte(tmp_path, capsys):
    out = tmp_path / "trajectories"
    assert main(["pack", str(UPSTREAM_DIR), str(out)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == len(STORES)
    written = sorted(p.relative_to(out).as_posix() for p in files_under(out))
    assert written == sorted(f"{s}.h5" for s in STORES), "pack wrote unexpected or temporary files"
    differing = [
        name for name in written
        if (out / name).read_bytes() != (TRAJECTORIES_DIR / name).read_bytes()
    ]
    assert not differing, (
        f"re-packed stores differ from the committed ones: {differing} "
        f"(h5py {h5py.version.version}, HDF5 {h5py.version.hdf5_version})"
    )


@requires_shared
@pytest.mark.parametrize("store", STORES)
def test_committed_store_round_trips_to_source_json(store):
    source = UPSTREAM_DIR / f"{store}.json"
    packed = TRAJECTORIES_DIR / f"{store}.h5"
    with open(source, encoding="utf-8") as f:
        expected = json.load(f)
    assert _unpack(packed) == expected
    with h5py.File(packed, "r") as f:
        assert f.attrs["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert f.attrs["source_file"] == source.name
        assert int(f.attrs["schema_version"]) == SCHEMA_VERSION
        model, benchmark = store.split("/")
        assert (f.attrs["model"], f.attrs["benchmark"]) == (model, benchmark)


@requires_shared
def test_cli_unpack_gives_the_source_json(tmp_path, capsys):
    store = "Qwen3-8B/aime24"
    out = tmp_path / "unpacked" / "aime24.json"
    assert main(["unpack", str(TRAJECTORIES_DIR / f"{store}.h5"), str(out)]) == 0
    assert capsys.readouterr().err == ""
    with open(out, encoding="utf-8") as f, open(UPSTREAM_DIR / f"{store}.json") as g:
        assert json.load(f) == json.load(g)
    assert files_under(out.parent) == [out]


def _read_sha256sums() -> dict[str, str]:
    """``trajectories/SHA256SUMS`` in ``sha256sum`` format: ``<hex digest>  <relative path>``."""
    sums = {}
    for line in (TRAJECTORIES_DIR / "SHA256SUMS").read_text().splitlines():
        m = re.fullmatch(r"([0-9a-f]{64}) [ *](\S.*)", line)
        assert m, f"not a sha256sum line: {line!r}"
        sums[m.group(2)] = m.group(1)
    return sums


def test_sha256sums_match_committed_files():
    sums = _read_sha256sums()
    assert sorted(sums) == sorted(f"{s}.h5" for s in STORES)
    for name, digest in sums.items():
        assert hashlib.sha256((TRAJECTORIES_DIR / name).read_bytes()).hexdigest() == digest, name


# Published replay-data facts (shared/reference/README.md): pass@1 and maj@128 in percent.
PUBLISHED = {
    "Qwen3-8B/aime24": (75.7, 80.0),
    "Qwen3-8B/aime25": (67.1, 76.7),
    "Qwen3-8B/hmmt25": (39.7, 50.0),
    "Qwen3-0.6B/aime24": (10.9, 23.3),
}


@pytest.mark.parametrize("store", sorted(PUBLISHED))
def test_summary_reproduces_published_facts(store):
    s = summarize(TRAJECTORIES_DIR / f"{store}.h5")
    pass1, maj = PUBLISHED[store]
    assert round(s["pass@1"], 1) == pass1
    assert round(s["maj@128"], 1) == maj
    assert s["questions"] == 30 and s["branches"] == 128 and s["probe_freq"] == 500


# --------------------------------------------------------------------------- synthetic data


def test_tiny_file_packs_loads_and_round_trips(make_upstream, tmp_path):
    src = make_upstream()
    out = tmp_path / "store.h5"
    assert pack(src, out) == [out]
    assert files_under(tmp_path / "store.h5") == [out]
    with open(src, encoding="utf-8") as f:
        assert _unpack(out) == json.load(f)

    with h5py.File(out, "r") as f:
        assert f.attrs["model"] == "TinyModel" and f.attrs["benchmark"] == "tiny"
        assert f.attrs["probe_freq"] == 1000
        assert f.attrs["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
        assert f["probe_answer"].shape == (2, 3, 4)  # Q, largest B, longest branch

    data = autotts_jax.load(out)
    q, b, k, v = data.shape
    assert (q, b, k, v) == (2, 128, 128, 1024)  # default minimum buckets
    for name in ("probe_answer", "n_probes", "branch_tokens", "final_answer", "n_branches"):
        assert getattr(data, name).dtype == np.int32, name
    assert data.is_correct.dtype == np.bool_
    assert data.probe_freq.shape == () and int(data.probe_freq) == 1000
    assert data.n_branches.tolist() == [3, 1]
    assert data.n_probes[0, :4].tolist() == [2, 1, 3, 0]
    assert data.n_probes[1, :2].tolist() == [4, 0]
    assert data.branch_tokens[0, :4].tolist() == [2000, 900, 2600, 0]
    # question 0 interning: finals "1", "2" first, then probe-only "3", then trace-only "9"
    assert data.final_answer[0, :4].tolist() == [0, 1, 0, -1]
    assert data.probe_answer[0, 0, :3].tolist() == [0, 0, -1]
    assert data.probe_answer[0, 2, :4].tolist() == [2, 1, 0, -1]
    assert np.all(data.probe_answer[:, 3:, :] == -1)
    assert data.is_correct[0, :5].tolist() == [True, False, False, False, False]
    # question 1: final "7" is id 0, "\frac{1}{2}" (probe only) is id 1
    assert data.probe_answer[1, 0, :5].tolist() == [1, 0, 0, 0, -1]
    assert data.is_correct[1, :3].tolist() == [True, False, False]
    assert int(data.is_correct.sum()) == 2

    store = load_store(out, min_branches=1, min_depth=1, min_vocab=1)
    assert store.data.shape == (2, bucket(3, 1), bucket(4, 1), bucket(4, 1)) == (2, 4, 4, 4)
    assert store.meta.model == "TinyModel" and store.meta.n_final_vocab == 2
    assert store.meta.vocab[0, :4].tolist() == ["1", "2", "3", "9"]


def test_tiny_file_pack_is_reproducible(make_upstream, tmp_path):
    src = make_upstream()
    a, b = pack(src, tmp_path / "a.h5")[0], pack(src, tmp_path / "b.h5")[0]
    assert a.read_bytes() == b.read_bytes()


def test_tree_pack_writes_model_benchmark_layout(make_upstream, tmp_path, capsys):
    root = tmp_path / "tree"
    make_upstream(root=root, model="M1", benchmark="b1")
    make_upstream(root=root, model="M2", benchmark="b2")
    out = tmp_path / "out"
    assert main(["pack", str(root), str(out)]) == 0
    assert [p.relative_to(out).as_posix() for p in files_under(out)] == ["M1/b1.h5", "M2/b2.h5"]
    assert "wrote" in capsys.readouterr().out


def test_single_file_into_directory(make_upstream, tmp_path):
    src = make_upstream(model="M", benchmark="bench")
    out = tmp_path / "dir"
    assert pack(src, out) == [out / "M" / "bench.h5"]


def test_repack_over_existing_output_replaces_it(make_upstream, tmp_path):
    src = make_upstream()
    out = tmp_path / "store.h5"
    out.write_bytes(b"stale")
    pack(src, out)
    assert files_under(tmp_path / "store.h5") == [out]
    assert _unpack(out) == json.loads(src.read_text(encoding="utf-8"))


# Answers (probe, final, trace) live in a UTF-8 blob, so even a NUL survives; question and
# gold_answer are HDF5 variable-length strings, where a NUL is rejected at validation.
_gold = st.sampled_from(["0", "1", "2", "42", "\\frac{1}{2}", "x\u00e9", "", " "])
_answer = st.one_of(_gold, st.just("a\x00b"))
_text = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=20)
_branch = st.tuples(
    st.lists(_answer, min_size=1, max_size=6),
    st.integers(min_value=0, max_value=2**31 - 1),
    _answer,
).map(list)
_record = st.fixed_dictionaries({
    "question": _text,
    "final_answers_trace": st.lists(_answer, max_size=5),
    "each_branch": st.lists(_branch, min_size=1, max_size=5),
    "gold_answer": _gold,
})


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(_record, min_size=1, max_size=4), freq=st.integers(1, 10_000))
def test_random_files_round_trip(tmp_path, records, freq):
    for r in records:
        r["probe_freq"] = freq
    src = tmp_path / "M" / "b.json"
    src.parent.mkdir(exist_ok=True)
    src.write_text(json.dumps(records), encoding="utf-8")
    out = pack(src, tmp_path / "b.h5")[0]
    assert _unpack(out) == records
    data = autotts_jax.load(out, min_branches=1, min_depth=1, min_vocab=1)
    assert data.n_branches.tolist() == [len(r["each_branch"]) for r in records]
