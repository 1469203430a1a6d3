"""The candidate sandbox: static checks, the limited child process, result invariants."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TRAJECTORIES_DIR
from explorer_cases import (
    FORBIDDEN_IMPORT,
    OUT_OF_RANGE,
    PARAMS_LOOP,
    SYNTAX_ERROR,
    TRACE_LOOP,
    VALID,
    use_jax_cache,
)

from autotts_jax.engine.invariants import FIELDS, check_store
from autotts_jax.engine.static import check_source
from autotts_jax.store.split import SearchSplit
from autotts_jax.untrusted.sandbox import Limits, run_candidate

BETAS = [0.0, 0.5, 1.0]
SEEDS = [0]
QUICK = dict(betas=BETAS, seeds=SEEDS, conformance=False, determinism=False, n_traces=0)

STATIC_REJECTIONS = [
    ("syntax", SYNTAX_ERROR, "syntax error at line"),
    ("import os", FORBIDDEN_IMPORT, "import of 'os' is not allowed"),
    ("from subprocess", "from subprocess import run\n" + VALID, "import from 'subprocess'"),
    ("importlib", "import importlib\n" + VALID, "import of 'importlib'"),
    ("relative import", "from . import x\n" + VALID, "relative imports"),
    ("open", VALID + "\nDATA = open('/etc/passwd').read()\n", "use of 'open'"),
    ("__import__", VALID + "\nOS = __import__('os')\n", "use of '__import__'"),
    ("dunder attribute", VALID + "\nX = ().__class__.__bases__\n", "'__class__'"),
    ("private attribute", "import jax\n" + VALID + "\nX = jax._src\n", "'_src'"),
    ("exec", VALID + "\nexec('X = 1')\n", "use of 'exec'"),
    ("eval", VALID + "\nX = eval('1 + 1')\n", "use of 'eval'"),
    ("compile", VALID + "\nX = compile('1', 'f', 'eval')\n", "use of 'compile'"),
    ("getattr", VALID + "\nX = getattr(int, 'real')\n", "use of 'getattr'"),
    ("builtins", VALID + "\nX = __builtins__\n", "'__builtins__'"),
    ("np.load", "import numpy as np\n" + VALID + "\nX = np.load('x.npy')\n", "'load'"),
    ("jax.debug", "import jax\n" + VALID + "\njax.debug.print('x')\n", "'debug'"),
    ("dunder string", VALID + "\nX = {'__globals__': 1}\n", "interpreter internals"),
    ("global", VALID + "\ndef f():\n    global X\n", "'global' is not allowed"),
    ("no CONTROLLER", VALID.replace("CONTROLLER = Controller(", "CTRL = Controller("),
     "must define CONTROLLER"),
    # modules reached as attributes of allowed modules
    ("from typing import sys", "from typing import sys\n" + VALID,
     "importing 'sys' from 'typing' is not allowed"),
    ("from dataclasses import builtins", "from dataclasses import builtins\n" + VALID,
     "importing 'builtins' from 'dataclasses' is not allowed"),
    ("from-import of a module", "from typing import collections\n" + VALID,
     "typing.collections is the module 'collections', which is not allowed"),
    ("attribute chain to a module", "import typing\n" + VALID + "\nX = typing.collections.abc\n",
     "'typing.collections' is the module 'collections', which is not allowed"),
    ("alias of a host callback", "from jax import pure_callback as pc\n" + VALID,
     "importing 'pure_callback' from 'jax' is not allowed"),
    ("module as a value", "import jax.numpy as jnp\n" + VALID + "\nM = jnp\n",
     "the module 'jnp' may only be used as jnp.<name>"),
    # attributes read without attribute syntax
    ("match class pattern", VALID + "\nmatch 1:\n    case object(__globals__=g):\n        pass\n",
     "the class pattern keyword '__globals__'"),
    ("match private keyword", VALID + "\nmatch 1:\n    case int(_x=y):\n        pass\n",
     "the class pattern keyword '_x'"),
    ("dunder keyword argument", VALID + "\nX = dict(__globals__=1)\n",
     "the keyword argument '__globals__'"),
    ("dunder built at run time", VALID + "\nX = '__glob' + 'als__'\n", "interpreter internals"),
    ("private name string", VALID + "\nX = '_getframe'\n", "names a private or forbidden"),
    ("forbidden attribute string", VALID + "\nX = 'f_back'\n", "names a private or forbidden"),
    ("format-string attribute", VALID + "\nX = '{0.real}'.format(1)\n", "reads an attribute"),
    # array writers, interpreter modules, evaluated annotations, other objects of the process
    ("ndarray.dump", "import numpy as np\n" + VALID + "\nnp.zeros(3).dump('x')\n",
     "attribute 'dump'"),
    ("ndarray.tofile", "import numpy as np\n" + VALID + "\nnp.zeros(3).tofile('x')\n",
     "attribute 'tofile'"),
    ("ndarray.tobytes", "import numpy as np\n" + VALID + "\nX = np.zeros(3).tobytes()\n",
     "attribute 'tobytes'"),
    *[(f"name {m}", VALID + f"\nX = {m}\n", f"use of {m!r}")
      for m in ("sys", "gc", "weakref", "inspect", "pickle", "h5py")],
    ("sys.modules", "import jax\n" + VALID + "\nX = jax.modules\n", "attribute 'modules'"),
    ("get_type_hints", "import typing\n" + VALID + "\nX = typing.get_type_hints\n",
     "attribute 'get_type_hints'"),
    ("live_arrays", "import jax\n" + VALID + "\nX = jax.live_arrays()\n",
     "attribute 'live_arrays'"),
]


@pytest.fixture(autouse=True, scope="module")
def _jax_cache():
    with pytest.MonkeyPatch.context() as mp:
        use_jax_cache(mp)
        yield


@pytest.mark.parametrize(("source", "message"), [c[1:] for c in STATIC_REJECTIONS],
                         ids=[c[0] for c in STATIC_REJECTIONS])
def test_static_checks_reject(source, message):
    report = check_source(source)
    assert not report.ok
    assert message in report.message(), report.message()


def test_static_checks_accept_the_baselines_and_generated_modules():
    import autotts_jax.controllers as C
    from autotts_jax.explorer.evolve import genome_source
    from autotts_jax.explorer.family import CMC_GENOME

    assert check_source(VALID).ok
    honest = ("import jax\nimport jax.numpy as jnp\nfrom jax import lax, random\n" + VALID
              + "\nK = random.split(jax.random.PRNGKey(0))\nN = jnp.linalg.norm(jnp.ones(2))\n"
              "T = jax.tree_util.tree_map(lambda x: x, {'a': 1})\nL = lax.max(1, 2)\n"
              "S = f'{N:.3f}'\n")
    assert check_source(honest).ok, check_source(honest).message()
    root = Path(C.__file__).parent
    for name, var in (("cmc", "CMC"), ("asc", "ASC"), ("esc", "ESC"), ("sc", "SC"),
                      ("parallel_probe", "PARALLEL_PROBE")):
        src = (root / f"{name}.py").read_text() + f"\nCONTROLLER = {var}\n"
        assert check_source(src).ok, (name, check_source(src).message())
    assert check_source(genome_source(CMC_GENOME, "r0000c00", "test", BETAS)).ok


@pytest.fixture(scope="module")
def split():
    return SearchSplit(TRAJECTORIES_DIR)


@pytest.fixture(scope="module")
def valid(split):
    return run_candidate(VALID, split, betas=BETAS, seeds=SEEDS, conformance=False,
                         determinism=True, n_traces=0)


def test_valid_candidate_runs_in_the_sandbox_on_private_copies(valid):
    out = valid
    assert out.ok, out.reason
    assert out.arrays["answer"].shape == (4, len(BETAS), len(SEEDS), 30)
    assert out.stop_reasons == ("round_cap", "confident", "budget", "exhausted")
    assert out.name == "adaptive_reads"
    assert out.needs == [2, 33, 64]
    assert not out.denied
    root = str(TRAJECTORIES_DIR.resolve())
    assert not [p for p in out.opened if p.startswith(root)]
    assert not [p for p in out.opened if p.endswith(".h5")]  # stores were loaded before


def test_endless_loop_in_make_params_is_killed(split):
    t0 = time.monotonic()
    out = run_candidate(PARAMS_LOOP, split, limits=Limits(load_s=3), **QUICK)
    assert not out.ok and out.stage == "timeout"
    assert "phase 'load'" in out.reason and "process group was killed" in out.reason
    assert time.monotonic() - t0 < 60


def test_endless_loop_at_trace_time_is_killed(split):
    out = run_candidate(TRACE_LOOP, split, limits=Limits(trace_s=4), **QUICK)
    assert not out.ok and out.stage == "timeout"
    assert "phase 'trace'" in out.reason and "trace time" in out.reason


def test_wall_clock_limit_covers_compilation(split):
    out = run_candidate(VALID, split, limits=Limits(wall_s=2), **QUICK)
    assert not out.ok and out.stage == "timeout"
    assert "wall-clock limit of 2s (JIT compilation included)" in out.reason


def test_memory_limit(split):
    hog = "import numpy as np\n" + VALID.replace(
        "    b = min(1.0", "    hog = np.ones(600_000_000)  # 4.8 GB\n    b = min(1.0")
    assert check_source(hog).ok
    out = run_candidate(hog, split, limits=Limits(memory_mb=3000), **QUICK)
    assert not out.ok and out.stage == "memory", out.reason
    assert "memory limit of 3000 MiB" in out.reason


def test_cpu_time_limit(split):
    out = run_candidate(PARAMS_LOOP, split, limits=Limits(cpu_s=4, load_s=120), **QUICK)
    assert not out.ok and out.stage == "cpu", out.reason
    assert "CPU-time limit of 4s" in out.reason


def test_out_of_range_answers_break_the_invariants(split, valid):
    from autotts_jax.store import load

    out = run_candidate(OUT_OF_RANGE, split, **QUICK)
    assert out.ok, out.reason  # the sandbox runs it; the invariants reject it
    data = load(split.path(split.models[0]))
    problems = check_store({f: out.arrays[f][0] for f in FIELDS}, data, SEEDS, out.needs,
                           max_branch=64, cost_model="reference", stop_reasons=out.stop_reasons,
                           label=split.models[0], betas=BETAS)
    assert problems and "out of range" in problems[0]
    # The valid controller's results satisfy them (answers, tokens, branches).
    ok = valid
    for s, m in enumerate(split.models):
        assert not check_store({f: ok.arrays[f][s] for f in FIELDS}, load(split.path(m)),
                               SEEDS, ok.needs, max_branch=64, cost_model="reference",
                               stop_reasons=ok.stop_reasons, label=m, betas=BETAS)


def test_sandbox_refuses_held_out_files_processes_and_writes(split):
    """Code that got past the static checks still cannot reach held-out data."""
    held_out = TRAJECTORIES_DIR.resolve() / split.models[0] / "aime25.h5"
    assert held_out.is_file()
    direct = VALID + f"\nDATA = open({str(held_out)!r}, 'rb').read()\n"
    out = run_candidate(direct, split, **QUICK)
    assert not out.ok and out.stage == "load"
    assert "sandbox: opening" in out.reason and "not allowed" in out.reason
    sneaky = "import subprocess\n" + VALID + (
        "\ntry:\n"
        f"    open({str(held_out)!r}, 'rb')\n"
        "except Exception:\n    pass\n"
        "try:\n    subprocess.run(['true'])\nexcept Exception:\n    pass\n"
        "try:\n    open('/tmp/autotts-sandbox-escape.txt', 'w')\nexcept Exception:\n    pass\n")
    out = run_candidate(sneaky, split, **QUICK)
    assert not out.ok and out.stage == "sandbox", out.reason
    assert any("aime25.h5" in d for d in out.denied)
    assert any("subprocess.Popen" in d for d in out.denied)
    assert any("writing /tmp/autotts-sandbox-escape.txt" in d for d in out.denied)
    assert not Path("/tmp/autotts-sandbox-escape.txt").exists()


def test_scores_and_monotonicity():
    from autotts_jax.experiments import metrics as M

    anchors = {"m": {"low": 10_000.0, "high": 640_000.0}}
    cheap = {"m": [{"beta": 0.0, "accuracy": 50.0, "avg_tokens": 10_000.0},
                   {"beta": 1.0, "accuracy": 80.0, "avg_tokens": 100_000.0}]}
    dear = {"m": [{"beta": 0.0, "accuracy": 50.0, "avg_tokens": 10_000.0},
                  {"beta": 1.0, "accuracy": 80.0, "avg_tokens": 600_000.0}]}
    assert M.score_curves(cheap, anchors)["score"] > M.score_curves(dear, anchors)["score"]
    assert M.monotone_problem(M.score_curves(cheap, anchors)["mean_curve"], 0.05) is None
    falling = [{"beta": 0.0, "avg_tokens": 5.0}, {"beta": 1.0, "avg_tokens": 4.0}]
    assert "does not rise" in M.monotone_problem(falling, 0.05)
    dip = [{"beta": 0.0, "avg_tokens": 1.0}, {"beta": 0.5, "avg_tokens": 10.0},
           {"beta": 0.6, "avg_tokens": 8.0}, {"beta": 1.0, "avg_tokens": 20.0}]
    assert "not monotone" in M.monotone_problem(dip, 0.05)
    pos = M.position(cheap, {"SC@64": {"m": {"accuracy": 80.0, "avg_tokens": 640_000.0}}})
    assert pos[0]["mean_delta"] == 0.0 and pos[0]["tokens_to_match"]["m"] == pytest.approx(
        100_000 / 640_000, abs=1e-3)
    assert np.isclose(M.frontier([(1.0, 5.0), (2.0, 3.0)], 2.5), 5.0)
