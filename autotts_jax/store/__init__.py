"""The packed trajectory store: upstream JSON in, padded HDF5 tensors out, pytrees back."""

from autotts_jax.store.load import ReplayData, Store, StoreMeta, bucket, load, load_store
from autotts_jax.store.pack import pack

__all__ = ["ReplayData", "Store", "StoreMeta", "bucket", "load", "load_store", "pack"]
