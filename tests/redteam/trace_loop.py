# Attempts: hold the sandbox forever with a Python loop that never ends while init is traced
# (a valid-looking controller otherwise: only the trace-phase time limit can stop it).
from autotts_jax.engine.protocol import Controller


def init(env, params, fx):
    while True:
        pass
    return env, ()


def step(env, cstate, params, fx):
    return env, cstate


CONTROLLER = Controller(
    name="spin", aliases=(), defaults={"beta": 0.5}, make_params=lambda c: {},
    max_slots=lambda c: 2, init=init, step=step, stop_reasons=("done",),
)
