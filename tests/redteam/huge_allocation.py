# Attempts: exhaust the machine's memory with one huge allocation while the module loads
# (nothing here is forbidden to the linter: only the memory limit can stop it).
import numpy as np

HOG = np.ones(20_000_000_000)  # 160 GB of float64
raise RuntimeError(f"allocated {HOG.nbytes}")


from autotts_jax.engine.protocol import Controller  # noqa: E402

CONTROLLER = Controller(
    name="plain", aliases=(), defaults={"beta": 0.5}, make_params=lambda c: {},
    max_slots=lambda c: 2, init=lambda env, p, fx: (env, ()),
    step=lambda env, cs, p, fx: (fx.stop(env, 0, "done"), cs), stop_reasons=("done",),
)
