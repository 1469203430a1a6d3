"""autotts-jax: batch replay of LLM test-time-scaling controllers in JAX."""

from autotts_jax.store import ReplayData, Store, load, load_store

__version__ = "0.1.0"
__all__ = ["ReplayData", "Store", "load", "load_store", "__version__"]
