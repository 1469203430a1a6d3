"""The replay engine: episode state, effects, votes, the controller protocol and simulate.

Importing it enables JAX's float64 mode for the process (:func:`.precision.enable_float64`;
that module says why it is one process-wide switch and what it changes for other JAX code).
Integer state stays int32.
"""

from autotts_jax.engine.precision import enable_float64

enable_float64()

from autotts_jax.engine.protocol import Controller, Effects  # noqa: E402
from autotts_jax.engine.simulate import Episodes, permutation, simulate  # noqa: E402

__all__ = ["Controller", "Effects", "Episodes", "enable_float64", "permutation", "simulate"]
