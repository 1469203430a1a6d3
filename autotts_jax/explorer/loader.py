"""Loading a controller module from a file (an exported discovery, or any hand-written one)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from autotts_jax.errors import AutoTTSError


def load_controller_module(path: str | Path, *, check: bool = True):
    """The ``CONTROLLER`` defined by the module at ``path``.

    With ``check`` (the default) the source must first pass the explorer's static checks
    (:func:`autotts_jax.explorer.static.check_source`): the module runs in this process.
    Raises :class:`AutoTTSError` naming the file and the problem.
    """
    from autotts_jax.engine.protocol import Controller

    path = Path(path)
    if not path.is_file():
        raise AutoTTSError(f"{path}: no such controller module")
    source = path.read_text(encoding="utf-8")
    if check:
        from autotts_jax.explorer.static import check_source

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
