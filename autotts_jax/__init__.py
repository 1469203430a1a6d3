"""autotts-jax: batch replay of LLM test-time-scaling controllers in JAX.

The package is layered, lowest layer first.  A module imports from its own subpackage and from
layers below its own, never from above; names on one line are independent of each other.
``tests/test_layers.py`` reads this list and checks every import, function-level ones
included::

    errors utils oracle
    store
    autotts_jax
    engine collect
    controllers
    untrusted live
    experiments
    explorer
    apps
    cli

``oracle`` imports nothing of the package on purpose: it is the independent reference the
engine is checked against.  ``autotts_jax`` is this module (the store's API re-exported and
``__version__``).  Loading a controller from a module file is the engine's
(:mod:`autotts_jax.engine.loader`); running one that is not trusted is ``untrusted``'s, which
``evaluate`` and the explorer both use; the search/held-out split of the stores is the store's
(:mod:`autotts_jax.store.split`).
"""

from autotts_jax.store import ReplayData, Store, load, load_store

__version__ = "0.1.0"
__all__ = ["ReplayData", "Store", "load", "load_store", "__version__"]
