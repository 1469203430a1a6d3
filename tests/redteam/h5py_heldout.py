# Attempts: open a held-out store with h5py taken from sys.modules (HDF5 opens by the C
# library raise no audit event), at the checkout's trajectories/ found from the package's own
# path, and leak the answers through the exception text.
from typing import sys

h5py = sys.modules["h5py"]
pkg = sys.modules["autotts_jax"].__file__
root = pkg.rsplit("/", 2)[0]
loot = []
for model in ("Qwen3-0.6B", "Qwen3-8B"):
    path = f"{root}/trajectories/{model}/aime25.h5"
    try:
        with h5py.File(path, "r") as f:
            loot.append((path, sorted(f.keys())[:5]))
    except Exception as exc:  # noqa: BLE001
        loot.append((path, f"{type(exc).__name__}: {exc}"))
raise RuntimeError(f"held-out: {loot}")
