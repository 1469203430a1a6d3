# Attempts: hold the sandbox forever with an endless loop while the module is imported (plain
# Python: only the load-phase time limit can stop it).
n = 0
while True:
    n += 1


from autotts_jax.engine.protocol import Controller  # noqa: E402

CONTROLLER = Controller(
    name="plain", aliases=(), defaults={"beta": 0.5}, make_params=lambda c: {},
    max_slots=lambda c: 2, init=lambda env, p, fx: (env, ()),
    step=lambda env, cs, p, fx: (fx.stop(env, 0, "done"), cs), stop_reasons=("done",),
)
