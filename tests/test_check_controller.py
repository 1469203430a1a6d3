"""The conformance harness: every built-in controller passes it, and each kind of broken
controller fails it with a message naming the problem."""

from __future__ import annotations

import itertools
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from registry import CONTROLLERS

from autotts_jax.controllers import get_controller
from autotts_jax.engine.check import check_controller, random_store
from autotts_jax.engine.env import NO_ANSWER
from autotts_jax.engine.protocol import Controller
from autotts_jax.engine.votes import pool_majority
from autotts_jax.errors import AutoTTSError


@pytest.mark.parametrize("controller", CONTROLLERS, ids=lambda c: c.name)
def test_registered_controllers_pass(controller):
    # the defaults and the entry's examples (on the default store: questions with 16, 9, 3
    # and 1 branches, so branch exhaustion happens)
    check_controller(controller)


# -- broken controllers -------------------------------------------------------------------------


def _params(config):
    n = int(config["n"])
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return {"n": n}


def _init(env, params, fx):
    return env, ()


def _read_and_vote(env, cstate, params, fx):
    env = fx.full_read(env, params["n"])
    return fx.stop(env, pool_majority(env), "done"), cstate


def make(step=_read_and_vote, **kw) -> Controller:
    """A small controller: read ``n`` branches in full and answer their majority."""
    fields = {
        "name": "toy", "aliases": (), "defaults": {"n": 3}, "make_params": _params,
        "max_slots": lambda c: int(c["n"]), "init": _init, "step": step,
        "stop_reasons": ("done",),
    }
    return Controller(**{**fields, **kw})


def test_a_correct_custom_controller_passes():
    check_controller(make(), configs=[{"n": 1}, {"n": 4}, {"n": 20}])


def fails(controller, match, **kw):
    with pytest.raises(AutoTTSError, match=match) as info:
        check_controller(controller, **kw)
    assert "toy" in str(info.value)  # the message names the controller
    return str(info.value)


def test_a_controller_that_never_stops():
    def never(env, cstate, params, fx):
        return fx.full_read(env, 1), cstate

    msg = fails(make(never), "never stopped: it hit the round cap", max_rounds=40)
    assert "fx.stop" in msg and "seed 0, question 0" in msg


def test_an_answer_that_is_no_answer_of_the_question():
    def bad(env, cstate, params, fx):
        env = fx.full_read(env, 1)
        return fx.stop(env, jnp.int32(63), "done"), cstate  # a padding id of the vocabulary

    fails(make(bad), "answer 63 is not an answer id of the question")


def test_an_answer_never_shown():
    def guess(env, cstate, params, fx):
        env = fx.full_read(env, 1)
        return fx.stop(env, jnp.int32(3), "done"), cstate  # id 3 is never probed

    fails(make(guess), "was never shown to it: no branch it opened has that answer")


# -- reading what was not paid for: the observation has no such field, so each cheat reaches
# past it into the effects object, as an attacker would; the non-interference replay on a
# counterfactual store catches each one by its behaviour -----------------------------------


def _hidden(fx):
    return object.__getattribute__(fx, "_" + "env")


def _data(fx):
    return object.__getattribute__(fx, "_" + "data")


def test_reading_an_unopened_slot_fails_non_interference():
    def peek(obs, cstate, params, fx):
        env = _hidden(fx)
        obs = fx.full_read(obs, 1)
        return fx.stop(obs, env.final[env.n_avail - 1], "done"), cstate  # the last slot

    # the older answer-provenance check may see it first; either way it fails
    fails(make(peek, max_slots=lambda c: 16), "non-interference: .* changed|never shown to it")


def test_majority_of_unread_finals_fails_non_interference():
    # pays for one read, answers with the majority of the final answers of all 16 slots
    def unread(obs, cstate, params, fx):
        env = _hidden(fx)
        obs = fx.full_read(obs, 1)
        winner = fx.vote(env.final, env.slots < env.n_avail)[0]
        return fx.stop(obs, jnp.where(winner >= 0, winner, obs.latest[0]), "done"), cstate

    fails(make(unread, max_slots=lambda c: 16), "non-interference: .* changed")


def test_stopping_on_the_answer_key_fails_non_interference():
    # reads one branch per round and stops as soon as the pool's majority is correct
    def key(obs, cstate, params, fx):
        env, data = _hidden(fx), _data(fx)
        before = obs.opened
        obs = fx.full_read(obs, 1)
        winner = pool_majority(obs)
        right = data.is_correct[env.question, jnp.maximum(winner, 0)] & (winner >= 0)
        out = (obs.opened >= params["n"]) | (obs.opened == before)
        return fx.stop(obs, winner, "done", when=right | out), cstate

    fails(make(key, max_slots=lambda c: 16, defaults={"n": 16}),
          "non-interference: .* changed")


def test_reading_hidden_lengths_fails_non_interference():
    # opens four branches, then explores only the one that will be shortest
    def lengths(obs, cstate, params, fx):
        env = _hidden(fx)
        obs = fx.probe_new(obs, 4)
        short = jnp.argmin(jnp.where(obs.is_open, env.n_probes, 10**6))
        obs, _ = fx.advance(obs, jnp.where(obs.slots == short, 100, 0))
        return fx.stop(obs, obs.latest[short], "done"), cstate

    fails(make(lengths, max_slots=lambda c: 4), "non-interference: .* changed")


def test_answer_id_order_fails_non_interference():
    # prefers the smallest answer id seen: ids are labels, their order says nothing
    def smallest(obs, cstate, params, fx):
        obs = fx.probe_new(obs, 3)
        pick = jnp.min(jnp.where(obs.is_open & (obs.latest >= 0), obs.latest, 10**6))
        return fx.stop(obs, jnp.where(pick < 10**6, pick, NO_ANSWER), "done"), cstate

    fails(make(smallest, max_slots=lambda c: 3), "non-interference: .* changed")


def test_python_control_flow_on_traced_values():
    def branchy(env, cstate, params, fx):
        if env.opened > 0:  # a traced value: fails under jit
            return fx.stop(env, NO_ANSWER, "done"), cstate
        return fx.full_read(env, 1), cstate

    fails(make(branchy), r"simulate failed under jit .*Tracer")


def test_an_undeclared_stop_reason():
    def stop_elsewhere(env, cstate, params, fx):
        return fx.stop(fx.full_read(env, 1), NO_ANSWER, "bored"), cstate

    fails(make(stop_elsewhere), "unknown stop reason 'bored'")


def test_a_loop_state_that_changes_type():
    def grow(env, cstate, params, fx):
        return _read_and_vote(env, cstate, params, fx)[0], (jnp.zeros(2),)

    fails(make(grow), "simulate failed under jit")


def test_results_that_change_between_runs():
    counter = itertools.count()

    def drifting(config):  # host-side state leaks into the params
        return {"n": 1 + next(counter) % 3}

    fails(make(make_params=drifting), "not deterministic")


def test_opening_more_branches_than_declared():
    fails(make(max_slots=lambda c: 2), r"opened 3 branches, more than its max_slots \(2\)")


def test_opening_branches_without_paying():
    def cheat(obs, cstate, params, fx):
        obs = replace(obs, opened=obs.opened + 2)  # free branches
        return fx.stop(obs, NO_ANSWER, "done"), cstate

    fails(make(cheat), "stale or rebuilt observation")


def test_returning_a_forged_observation():
    def forge(obs, cstate, params, fx):
        obs = fx.stop(fx.full_read(obs, 2), NO_ANSWER, "done")
        return replace(obs, cost=obs.cost * 0), cstate  # tokens it did not pay for

    fails(make(forge), "must return the observation returned by the last effect")


def test_an_undone_effect():
    def undo(obs, cstate, params, fx):
        read = fx.full_read(obs, 2)
        obs = jax.tree.map(lambda a, b: jnp.where(obs.opened > 5, a, b), read, obs)
        return fx.stop(obs, NO_ANSWER, "done"), cstate

    fails(make(undo), "stale or rebuilt observation")


def _reprobe(env, cstate, params, fx):
    # Open one branch, then probe every open slot -- finished ones included -- for 20 rounds.
    env = fx.probe_new(env, jnp.where(env.opened == 0, 1, 0))
    env = fx.probe_more(env, env.is_open)
    return fx.stop(env, env.latest[0], "done", when=env.rounds >= 20), cstate


def test_reprobing_finished_branches_breaks_the_reference_bound():
    msg = fails(make(_reprobe, max_slots=lambda c: 1), "re-probes finished branches")
    assert "reference tokens" in msg and "QUIRK 1" in msg
    # allowed explicitly, the corrected-model bound (sum of bt) still holds
    check_controller(make(_reprobe, max_slots=lambda c: 1), allow_reprobe=True)


def test_bad_configs_and_declarations():
    fails(make(), r"config \{'m': 2\} is rejected: ValueError: toy: unknown parameter",
          configs=[{"m": 2}])
    fails(make(), r"config \{'n': 0\} is rejected: ValueError: n must be >= 1",
          configs=[{"n": 0}])
    fails(make(max_slots=lambda c: 0), "max_slots.* must be a positive int")
    fails(make(stop_reasons=("done", "round_cap")), "reserved")
    with pytest.raises(AutoTTSError, match="expected a Controller"):
        check_controller(get_controller)


def test_random_store_shape():
    data = random_store()
    assert data.shape == (4, 16, 16, 64)
    assert np.asarray(data.n_branches).tolist() == [16, 9, 3, 1]
    assert not np.asarray(data.is_correct)[-1].any()  # no branch can be right on the last one
