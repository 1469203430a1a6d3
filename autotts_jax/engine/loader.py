"""Loading a controller module from a file (an exported discovery, or any hand-written one).

It sits with the engine, below the controllers, so that ``get_controller("file.py")`` resolves
a module file like a built-in name without the controllers knowing who wrote it (the explorer
and ``evaluate`` use it too).  A file that is not trusted is only wrapped
(:class:`UntrustedModule`) and replayed by :mod:`autotts_jax.untrusted.sandbox`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from autotts_jax.errors import AutoTTSError


def load_controller_module(path: str | Path, *, check: bool = True):
    """The ``CONTROLLER`` defined by the module at ``path``.

    With ``check`` (the default) the source must first pass the static checks for candidate code
    (:func:`autotts_jax.engine.static.check_source`): the module runs in this process.
    Raises :class:`AutoTTSError` naming the file and the problem.
    """
    from autotts_jax.engine.protocol import Controller

    path = Path(path)
    if not path.is_file():
        raise AutoTTSError(f"{path}: no such controller module")
    source = path.read_text(encoding="utf-8")
    if check:
        from autotts_jax.engine.static import check_source

        report = check_source(source)
        if not report.ok:
            raise AutoTTSError(f"{path}: fails the static checks: {report.message()}")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"autotts_controller_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AutoTTSError(f"{path}: cannot be imported as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise AutoTTSError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from exc
    controller = getattr(module, "CONTROLLER", None)
    if not isinstance(controller, Controller):
        raise AutoTTSError(f"{path}: must define CONTROLLER = Controller(...), found "
                           f"{type(controller).__name__}")
    return controller


class UntrustedModule:
    """A controller module file that is never imported in this process.

    Module files are untrusted by default (``controller.module.trusted=false``): code an LLM
    wrote, or a file from elsewhere.  Such a module runs only in the sandbox
    (:func:`autotts_jax.untrusted.sandbox.replay_untrusted`), on stores without the answer
    key, and its answers are scored here.  Without running its code nothing is known about
    its knobs, so an untrusted module takes ``beta`` only (what ``discover`` exports); the
    sandbox validates the configs.  ``name`` is the file's stem until the sandbox reports the
    controller's own name.
    """

    aliases: tuple[str, ...] = ()
    defaults: dict = {"beta": 0.5}  # noqa: RUF012 -- read-only class attribute

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise AutoTTSError(f"{path}: no such controller module")
        self.source = self.path.read_text(encoding="utf-8")
        self.name = self.path.stem

    def config(self, overrides=None) -> dict:
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - {"beta"})
        if unknown:
            raise ValueError(f"{self.path.name}: an untrusted module takes beta only, got "
                             f"{unknown} (controller.module.trusted=true runs it in this "
                             f"process with its own knobs)")
        return {**self.defaults, **overrides}

    def make_params(self, config) -> dict:
        return {}
