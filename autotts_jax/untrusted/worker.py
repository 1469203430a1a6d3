"""The sandbox child: ``python -m autotts_jax.untrusted.worker DIR``.

Runs one candidate controller from ``DIR/candidate.py`` over the stores listed in
``DIR/request.json`` (private copies of the search split, in ``DIR``) and writes
``DIR/result.json`` and ``DIR/episodes.npz``.  The parent
(:mod:`autotts_jax.untrusted.sandbox`) enforces the wall-clock limits and kills the process
group; this side sets its own memory (address space) and CPU-time limits first, and reports its
progress in ``DIR/phase`` so the parent can apply per-phase limits.

Before any candidate code runs, an audit hook is installed that records every path opened and
refuses (``PermissionError``): opening anything under the real trajectories directory, any
held-out store, any ``.h5`` file outside ``DIR``, writing outside ``DIR``, starting processes,
sockets, ``ctypes``, and deleting or renaming files outside ``DIR``.  A refusal fails the
candidate even if its code swallowed the exception.

The stores here are *stripped* (:mod:`autotts_jax.store.stripped`): replay arrays without
the answer key.  Results are answer ids; the parent scores them.

Phases: ``start`` (imports, stores), ``load`` (run the module, check the beta-only interface,
make params for every beta), ``trace`` (trace ``init`` and ``step`` once, without compiling),
``conformance`` (``autotts_jax.engine.check.check_controller``), ``eval`` (one ``simulate``
call per store, with the per-slot ledger), ``determinism`` (the first store again, compared
episode by episode), ``traces`` (execution traces of the episodes the parent picked); see
:func:`main` for which run in which mode.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

from autotts_jax.store.split import is_held_out_path

DENY_EVENTS = frozenset({
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "os.kill", "os.killpg", "pty.spawn", "socket.connect", "socket.bind",
    "socket.sendto", "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname",
    "urllib.Request", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
    "webbrowser.open", "os.chdir", "os.chroot", "os.setuid", "resource.setrlimit",
    "resource.prlimit", "sys.addaudithook", "sys.settrace", "sys.setprofile", "shutil.rmtree",
})
PATH_EVENTS = frozenset({
    "os.remove", "os.rmdir", "os.rename", "os.truncate", "os.chmod", "os.chown", "os.symlink",
    "os.link", "os.mkdir", "os.utime", "shutil.copyfile", "shutil.move", "shutil.copytree",
})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class SandboxDenied(PermissionError):
    """The candidate did something the sandbox refused, and swallowed the refusal."""


class Sandbox:
    """The audit hook's state."""

    def __init__(self, home: Path, forbidden: list[str], writable: list[str] = ()) -> None:
        self.home = str(home.resolve())
        self.forbidden = [str(Path(f).resolve()) for f in forbidden]
        # JAX's persistent compilation cache, when the user enabled one, may be written.
        self.writable = [self.home, *(str(Path(w).resolve()) for w in writable if w)]
        self.opened: list[str] = []
        # The interpreter's and the virtualenv's own files (lazy imports) are not recorded.
        self.quiet = tuple({str(Path(p).resolve()) + "/" for p in (sys.prefix, sys.base_prefix)})
        self.denied: list[str] = []
        self.active = False

    def _inside(self, path: str, root: str) -> bool:
        return path == root or path.startswith(root.rstrip("/") + "/")

    def _deny(self, what: str) -> None:
        if len(self.denied) < 50:
            self.denied.append(what)
        raise PermissionError(f"sandbox: {what} is not allowed")

    def _path(self, raw) -> str | None:
        if isinstance(raw, int):
            return None
        try:
            return os.path.abspath(os.fsdecode(raw))
        except (TypeError, ValueError):
            return None

    def hook(self, event: str, args: tuple) -> None:
        if not self.active:
            return
        if event == "open":
            path = self._path(args[0]) if args else None
            if path is None:
                return
            if len(self.opened) < 10_000 and not path.startswith(self.quiet):
                self.opened.append(path)
            mode = args[1] if len(args) > 1 else None
            flags = args[2] if len(args) > 2 else 0
            write = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & _WRITE_FLAGS))
            if any(self._inside(path, f) for f in self.forbidden) or is_held_out_path(path):
                self._deny(f"opening {path}")
            if path.endswith((".h5", ".hdf5", ".json", ".jsonl", ".csv")) and not (
                    self._inside(path, self.home) or path.startswith(self.quiet)):
                self._deny(f"opening data file {path}")
            if write and not any(self._inside(path, w) for w in self.writable):
                self._deny(f"writing {path}")
        elif event in DENY_EVENTS:
            self._deny(f"{event}")
        elif event in PATH_EVENTS:
            for raw in args[:2]:
                path = self._path(raw)
                if path is not None and not any(self._inside(path, w) for w in self.writable):
                    self._deny(f"{event} on {path}")


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _phase(home: Path, name: str) -> None:
    _write_json(home / "phase", {"phase": name, "time": time.time()})


def _candidate_traceback(exc: BaseException, limit: int = 24) -> str:
    """The traceback lines that point into the candidate, and the exception itself."""
    lines = traceback.format_exception(exc)
    keep: list[str] = []
    for chunk in lines:
        if 'File "candidate.py"' in chunk:
            keep.append(chunk.rstrip())
    keep.append(lines[-1].rstrip() if lines else repr(exc))
    text = "\n".join(keep)
    return "\n".join(text.splitlines()[-limit:])


def _limits(memory_mb: int, cpu_s: int, *, fsize_mb: int = 0, nproc: int = 0,
            run_as: int | None = None) -> None:
    """Resource limits on this process (inherited by anything it starts), then, when the parent
    asks (a root discovery process under bwrap), become the unprivileged ``run_as`` user:
    ``RLIMIT_NPROC`` does not bind root, and root could write files it merely reads now."""
    if memory_mb > 0:
        b = int(memory_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (b, b))
    if cpu_s > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_s), int(cpu_s) + 5))
    if fsize_mb > 0:
        b = int(fsize_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (b, b))
    if nproc > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (int(nproc), int(nproc)))
    if run_as is not None:
        os.setgroups([])
        os.setresgid(run_as, run_as, run_as)
        os.setresuid(run_as, run_as, run_as)
        if os.getuid() != run_as or os.geteuid() != run_as:
            raise SystemExit(f"could not drop privileges to uid {run_as}")


def _is_memory_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return isinstance(exc, MemoryError) or any(
        w in text for w in ("RESOURCE_EXHAUSTED", "Out of memory", "bad_alloc",
                            "Cannot allocate memory", "Unable to allocate"))


def _check_interface(controller, betas, max_branch: int):
    from autotts_jax.engine.protocol import Controller

    if not isinstance(controller, Controller):
        raise TypeError(f"CONTROLLER must be a Controller, got {type(controller).__name__}")
    if not isinstance(controller.name, str) or not controller.name:
        raise TypeError("CONTROLLER.name must be a non-empty string")
    keys = sorted(controller.defaults)
    if keys != ["beta"]:
        raise ValueError(f"the controller must have exactly one knob: defaults={{'beta': 0.5}}, "
                         f"got keys {keys}")
    reasons = controller.stop_reasons
    if not isinstance(reasons, tuple) or not all(isinstance(r, str) for r in reasons) or (
            "round_cap" in reasons or len(set(reasons)) != len(reasons)):
        raise ValueError(f"stop_reasons must be a tuple of distinct names without 'round_cap', "
                         f"got {reasons!r}")
    configs, needs = [], []
    for b in betas:
        config = controller.config({"beta": b})
        params = controller.make_params(config)
        _check_params(params)
        need = controller.max_slots(config)
        if isinstance(need, bool) or not isinstance(need, int) or not 1 <= need <= max_branch:
            raise ValueError(f"max_slots(beta={b}) must be an int in [1, {max_branch}] (the "
                             f"{max_branch}-branch ceiling), got {need!r}")
        configs.append(config)
        needs.append(int(need))
    return configs, needs


def _check_params(params) -> None:
    """``make_params`` returns a pytree of host scalars (a dict or a NamedTuple of them, as the
    built-in controllers do); anything else fails later inside jit with a worse message."""
    import jax
    import numpy as np

    leaves = jax.tree.leaves(params)
    if not isinstance(params, dict | tuple) or not all(
            isinstance(v, bool | int | float | np.bool_ | np.integer | np.floating)
            for v in leaves):
        raise TypeError(f"make_params must return a dict or NamedTuple of int / float / bool "
                        f"scalars, got {type(params).__name__} {params!r:.200}")


def _trace_once(controller, data, config, slots: int, pool_size: int, cost_model: str) -> None:
    """Trace init and one step (no compilation) and compare the cstate structures."""
    import jax
    import jax.numpy as jnp

    from autotts_jax.engine import env as E
    from autotts_jax.engine.protocol import Effects, play_round
    from autotts_jax.engine.simulate import stack_params

    data = jax.device_put(data)
    params = jax.tree.map(lambda v: jnp.asarray(v[0]), stack_params(controller, [config]))
    env0 = E.reset(data, jnp.int32(0), jnp.arange(slots, dtype=jnp.int32), pool_size)
    reasons = controller.all_stop_reasons

    def one(env, p):
        env1, cs = play_round(Effects(data, cost_model, reasons, env),
                              lambda o, fx: controller.init(o, p, fx))
        _, cs2 = play_round(Effects(data, cost_model, reasons, env1),
                            lambda o, fx: controller.step(o, cs, p, fx))
        return cs, cs2

    cs, cs2 = jax.eval_shape(one, env0, params)
    t1, t2 = jax.tree.structure(cs), jax.tree.structure(cs2)
    if t1 != t2:
        raise TypeError(f"step must return a cstate with the same structure as init's: "
                        f"{t1} vs {t2}")
    for a, b in zip(jax.tree.leaves(cs), jax.tree.leaves(cs2), strict=True):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise TypeError(f"step changed a cstate leaf from {a.dtype}{list(a.shape)} to "
                            f"{b.dtype}{list(b.shape)}; keep shapes and dtypes fixed")


def _check_configs(controller, configs, max_branch: int):
    """Generic interface check (``mode=replay`` with explicit configs, e.g. ``evaluate``)."""
    from autotts_jax.engine.protocol import Controller

    if not isinstance(controller, Controller):
        raise TypeError(f"CONTROLLER must be a Controller, got {type(controller).__name__}")
    full, needs = [], []
    for c in configs:
        config = controller.config(c)
        controller.make_params(config)
        need = controller.max_slots(config)
        if isinstance(need, bool) or not isinstance(need, int) or not 1 <= need <= max_branch:
            raise ValueError(f"max_slots({c}) must be an int in [1, {max_branch}], got {need!r}")
        full.append(config)
        needs.append(int(need))
    return full, needs


def _tunable(controller, namespace: dict, schedules, betas, max_branch: int):
    """``mode=tune``: the controller with its ``KNOBS`` table swapped for each schedule.

    A config is ``{"beta", "variant"}``; ``make_params`` and ``max_slots`` run with the
    variant's knobs in the module's ``KNOBS`` table (restored afterwards), so every schedule x
    beta is one config of one controller: one ``simulate`` call per store.
    """
    from dataclasses import replace

    from autotts_jax.engine.knobs import check_knobs

    _check_interface(controller, betas, max_branch)
    knobs = namespace.get("KNOBS")
    check_knobs(knobs)
    if not isinstance(knobs, dict):
        raise TypeError("KNOBS must be a dict")
    declared = dict(knobs)
    variants = []
    for sched in schedules:
        unknown = sorted(set(sched) - set(declared))
        if unknown:
            raise ValueError(f"tuned schedule names unknown knobs {unknown}")
        variants.append({k: declared[k]._replace(intercept=float(a), slope=float(b))
                         for k, (a, b) in sched.items()})

    def swapped(fn):
        def call(config):
            knobs.update(variants[int(config["variant"])])
            try:
                return fn({"beta": config["beta"]})
            finally:
                knobs.clear()
                knobs.update(declared)
        return call

    tuned = replace(controller, defaults={"beta": 0.5, "variant": 0},
                    make_params=swapped(controller.make_params),
                    max_slots=swapped(controller.max_slots))
    configs = [{"beta": float(b), "variant": i} for i in range(len(variants)) for b in betas]
    full, needs = _check_configs(tuned, configs, max_branch)
    return tuned, full, needs


def _save_episodes(path: Path, per_store) -> None:
    """Episode arrays ``[stores, configs, seeds, questions(, slots)]``, written atomically.
    No ``correct``: the stores here hold no answer key; the parent scores the answers."""
    import numpy as np

    from autotts_jax.engine.invariants import FIELDS

    names = [f for f in FIELDS if f != "correct"]
    arrays = {f: np.stack([np.asarray(getattr(e, f)) for e in per_store]) for f in names}
    if per_store[0].slot_depth is not None:
        width = max(e.slot_depth.shape[-1] for e in per_store)
        for f in ("slot_depth", "slot_end"):
            parts = [np.asarray(getattr(e, f)) for e in per_store]
            arrays[f] = np.stack([np.pad(a, [(0, 0)] * 3 + [(0, width - a.shape[-1])])
                                  for a in parts])
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def main(home: Path) -> int:  # noqa: C901 -- one linear script of phases
    """Modes (``request.json``'s ``mode``):

    * ``evaluate`` (default): load, interface check, trace, conformance, the beta sweep with
      the per-slot ledger, determinism; writes ``episodes.npz``;
    * ``replay``: load, interface check, one ``simulate`` per store (configs or betas given),
      with the ledger when asked; writes ``episodes.npz`` (the non-interference replay on
      counterfactual stores, held-out evaluation, ``evaluate controller=module``);
    * ``trace``: execution traces of the picked episodes (``result.json``'s ``traces``);
    * ``tune``: every schedule of ``schedules`` x every beta of the module's ``KNOBS``
      (:func:`_tunable`), one ``simulate`` per store; writes ``episodes.npz``.
    """
    req = json.loads((home / "request.json").read_text())
    _limits(int(req.get("memory_mb", 0)), int(req.get("cpu_s", 0)),
            fsize_mb=int(req.get("fsize_mb", 0)), nproc=int(req.get("nproc", 0)),
            run_as=req.get("run_as"))
    sys.dont_write_bytecode = True
    mode = str(req.get("mode", "evaluate"))
    phase = "start"
    _phase(home, phase)
    timing: dict[str, float] = {}
    box = Sandbox(home, req.get("forbidden", []),
                  [os.environ.get("JAX_COMPILATION_CACHE_DIR", "")])
    result: dict = {"ok": False}
    try:
        t0 = time.perf_counter()
        import jax

        import autotts_jax.engine  # noqa: F401  (float64)
        from autotts_jax.engine.simulate import simulate
        from autotts_jax.store import bucket
        from autotts_jax.store.stripped import load_stripped
        from autotts_jax.untrusted import digest

        datas = [jax.device_put(load_stripped(home / s)) for s in req["stores"]]
        seeds = [int(s) for s in req["seeds"]]
        sim_kw = dict(cost_model=req["cost_model"], max_rounds=int(req["max_rounds"]),
                      pool_size=int(req["pool_size"]))
        source = (home / "candidate.py").read_text()
        code = compile(source, "candidate.py", "exec")
        # Warm up tracing with a built-in controller, so that the 'trace' phase (and its
        # limit) measures the candidate, not JAX's first-use initialisation.
        from autotts_jax.controllers import SC

        _trace_once(SC, datas[0], SC.config({}), 8, sim_kw["pool_size"], sim_kw["cost_model"])
        timing["start"] = time.perf_counter() - t0

        phase = "load"
        _phase(home, phase)
        t0 = time.perf_counter()
        sys.addaudithook(box.hook)
        box.active = True
        namespace: dict = {"__name__": "candidate"}
        exec(code, namespace)
        if "CONTROLLER" not in namespace:
            raise NameError("the module does not define CONTROLLER")
        controller = namespace["CONTROLLER"]
        if mode == "tune":
            controller, configs, needs = _tunable(
                controller, namespace, req["schedules"], [float(b) for b in req["betas"]],
                int(req["max_branch"]))
        elif req.get("betas") is not None:
            betas = [float(b) for b in req["betas"]]
            configs, needs = _check_interface(controller, betas, int(req["max_branch"]))
        else:
            configs, needs = _check_configs(controller, req["configs"], int(req["max_branch"]))
        timing["load"] = time.perf_counter() - t0
        if box.denied:  # refused at import time, and the module swallowed the error
            raise SandboxDenied("; ".join(box.denied[:5]))

        n_q = int(datas[0].probe_answer.shape[0])
        n_ep = len(configs) * len(seeds) * n_q
        chunk = digest.chunk_size(n_ep, int(req.get("chunk_size", 4096)))
        result_extra: dict = {}
        if mode == "trace":
            phase = "traces"
            _phase(home, phase)
            t0 = time.perf_counter()
            traces = []
            for p in req["picks"]:
                traces += digest.trace_many(
                    controller, datas[p["store"]], [p], configs, seeds,
                    max_rows=int(req.get("trace_rows", 24)), **sim_kw)
            result_extra["traces"] = traces
            timing["traces"] = time.perf_counter() - t0
        else:
            if mode == "evaluate":
                phase = "trace"
                _phase(home, phase)
                t0 = time.perf_counter()
                n_b = int(datas[0].probe_answer.shape[1])
                slots = min(bucket(max(needs), 8), n_b)
                for c in (configs[0], configs[-1]):
                    _trace_once(controller, datas[0], c, slots, sim_kw["pool_size"],
                                sim_kw["cost_model"])
                timing["trace"] = time.perf_counter() - t0
            if mode == "evaluate" and req.get("conformance", True):
                phase = "conformance"
                _phase(home, phase)
                t0 = time.perf_counter()
                from autotts_jax.engine.check import check_controller

                picks = [configs[0], configs[len(configs) // 2], configs[-1]]
                # No nested process here: the parent runs the adversarial non-interference
                # replay in a second sandbox; this one catches honest mistakes early.
                check_controller(controller, configs=[{"beta": c["beta"]} for c in picks],
                                 isolate=False)
                timing["conformance"] = time.perf_counter() - t0

            phase = "eval"
            _phase(home, phase)
            ledger = bool(req.get("ledger", mode == "evaluate"))
            per_store = []
            timing["eval_per_store"] = []
            t_eval = time.perf_counter()
            for data in datas:
                t0 = time.perf_counter()
                per_store.append(simulate(controller, data, configs, seeds, chunk_size=chunk,
                                          ledger=ledger, **sim_kw))
                timing["eval_per_store"].append(time.perf_counter() - t0)
            timing["eval"] = time.perf_counter() - t_eval

            if mode == "evaluate" and req.get("determinism", True):
                phase = "determinism"
                _phase(home, phase)
                t0 = time.perf_counter()
                again = simulate(controller, datas[0], configs, seeds, chunk_size=chunk,
                                 ledger=ledger, **sim_kw)
                for f in ("answer", "tokens", "seq_tokens", "branches", "rounds",
                          "stop_reason", "slot_depth", "slot_end"):
                    a, b = getattr(again, f), getattr(per_store[0], f)
                    if a is not None and not (a.shape == b.shape and (a == b).all()):
                        raise RuntimeError(f"not deterministic: two identical runs on the "
                                           f"first store differ in {f!r}")
                timing["determinism"] = time.perf_counter() - t0
            box.active = False
            _save_episodes(home / "episodes.npz", per_store)
            result_extra["stop_reasons"] = list(per_store[0].stop_reasons)

        box.active = False
        result = {"ok": True, "needs": needs, "name": controller.name, "chunk_size": chunk,
                  **result_extra}
    except BaseException as exc:  # noqa: BLE001 -- every failure is the candidate's verdict
        box.active = False
        stage = "memory" if _is_memory_error(exc) else phase
        if isinstance(exc, SandboxDenied):
            stage = "sandbox"
        result = {"ok": False, "stage": stage, "error": f"{type(exc).__name__}: {exc}"[:2000],
                  "traceback": _candidate_traceback(exc)}
    box.active = False
    if box.denied and result.get("ok"):
        result = {"ok": False, "stage": "sandbox", "error": "; ".join(box.denied[:5]),
                  "traceback": ""}
    result["denied"] = box.denied
    result["opened"] = sorted(set(box.opened))[:2000]
    result["timing"] = timing
    result["phase"] = phase
    _write_json(home / "result.json", result)
    _phase(home, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
