"""Bring your own model: collect probe trajectories from a live OpenAI-compatible server
(:func:`collect`), or import the raw released probe datasets from local files
(:func:`import_hf`).  Both write the HDF5 store of :mod:`autotts_jax.store.hdf5`.
"""

from autotts_jax.collect.answers import NO_ANSWER, answer_from, find_boxed, find_last_number
from autotts_jax.collect.collector import CollectResult, collect
from autotts_jax.collect.hf_import import import_hf, read_hf_raw
from autotts_jax.collect.problems import load_problems
from autotts_jax.collect.settings import CollectSettings, Connection, cost_estimate

__all__ = [
    "NO_ANSWER",
    "CollectResult",
    "CollectSettings",
    "Connection",
    "answer_from",
    "collect",
    "cost_estimate",
    "find_boxed",
    "find_last_number",
    "import_hf",
    "load_problems",
    "read_hf_raw",
]
