"""The replay engine: episode state, effects, votes, the controller protocol and simulate.

Importing it enables JAX's float64 mode: CMC's confidence EMA is compared against thresholds
and exact parity with the published numbers needs float64 (see ``controllers/cmc.py``).
Integer state stays int32.
"""

import jax

jax.config.update("jax_enable_x64", True)

from autotts_jax.engine.protocol import Controller, Effects  # noqa: E402
from autotts_jax.engine.simulate import Episodes, permutation, simulate  # noqa: E402

__all__ = ["Controller", "Effects", "Episodes", "permutation", "simulate"]
