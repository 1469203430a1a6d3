"""The explorer: an LLM (or an LLM-free search) writes controllers; each is checked
(:mod:`autotts_jax.engine.static`), run in a sandbox (:mod:`autotts_jax.untrusted`), scored on
the search split by batched replay, and fed back through an on-disk history.

Entry points: ``autotts-jax discover`` (:func:`autotts_jax.explorer.loop.discover`), and
:func:`load_controller_module` (the engine's loader) to use an exported controller like a
built-in one.
"""

from autotts_jax.engine.loader import load_controller_module

__all__ = ["load_controller_module"]
