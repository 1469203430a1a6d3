"""The built-in controllers, one module each, and lookup by name or upstream alias."""

from __future__ import annotations

from autotts_jax.controllers.asc import ASC
from autotts_jax.controllers.cmc import CMC
from autotts_jax.controllers.convergence import CONVERGENCE, SC_CONVERGENCE
from autotts_jax.controllers.esc import ESC
from autotts_jax.controllers.parallel_probe import PARALLEL_PROBE
from autotts_jax.controllers.pp_prune_vote import PP_PRUNE_VOTE
from autotts_jax.controllers.sc import SC
from autotts_jax.engine.protocol import Controller
from autotts_jax.errors import AutoTTSError

BUILTIN: tuple[Controller, ...] = (
    SC, ASC, ESC, PARALLEL_PROBE, CMC, CONVERGENCE, SC_CONVERGENCE, PP_PRUNE_VOTE,
)


_FROM_FILES: dict[str, Controller] = {}


def get_controller(name: str, *, trusted: bool = False):
    """A controller by canonical name or alias (case-sensitive aliases, lower-case names), or
    a module file when ``name`` ends in ``.py`` (a controller exported by ``autotts-jax
    discover``, or any hand-written one).  A module file is untrusted unless ``trusted``:
    it is then an :class:`~autotts_jax.engine.loader.UntrustedModule`, never imported
    here, replayed in the sandbox.  A trusted one is imported (after the static checks) and
    its ``CONTROLLER`` returned."""
    if name.endswith(".py"):
        from pathlib import Path

        from autotts_jax.engine.loader import UntrustedModule, load_controller_module

        if not trusted:
            return UntrustedModule(name)
        key = str(Path(name).resolve())
        if key not in _FROM_FILES:
            _FROM_FILES[key] = load_controller_module(name)
        return _FROM_FILES[key]
    for c in BUILTIN:
        if name == c.name or name in c.aliases or name.lower() == c.name:
            return c
    known = ", ".join(f"{c.name} ({'/'.join(c.aliases)})" for c in BUILTIN)
    raise AutoTTSError(f"unknown controller {name!r}; known: {known}")


__all__ = [
    "ASC", "BUILTIN", "CMC", "CONVERGENCE", "ESC", "PARALLEL_PROBE", "PP_PRUNE_VOTE", "SC",
    "SC_CONVERGENCE", "get_controller",
]
