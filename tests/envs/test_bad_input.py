"""Bad input fails early with a message that names the bad value; fallbacks are pinned."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

from jaxmarl_coop.envs import Spread, checked, make, register
from jaxmarl_coop.envs.registry import unregister


@pytest.mark.parametrize("env_id", ["spread-v3", "tag-v3", "tracking-v1"])
def test_wrong_action_shape_fails_at_trace_time_naming_the_shape(env_id):
    env, params = make(env_id)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    n = env.num_agents
    with pytest.raises(ValueError, match=rf"shape \({n},\)"):
        jax.jit(env.step)(jax.random.PRNGKey(0), state, jnp.zeros((n + 1,), jnp.int32), params)
    with pytest.raises(TypeError, match="integers"):
        jax.jit(env.step)(jax.random.PRNGKey(0), state, jnp.zeros((n,), jnp.float32), params)
    cont, params_c = make(env_id, continuous_actions=True)
    state_c, _ = cont.reset(jax.random.PRNGKey(0), params_c)
    with pytest.raises(ValueError, match=rf"shape \({n}, 5\)"):
        jax.jit(cont.step)(jax.random.PRNGKey(0), state_c, jnp.zeros((n,), jnp.float32),
                           params_c)
    with pytest.raises(TypeError, match="floats"):
        cont.step(jax.random.PRNGKey(0), state_c, jnp.zeros((n, 5), jnp.int32), params_c)


def test_out_of_range_discrete_actions_are_no_ops():
    env, params = make("spread-v3")
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(agent_vel=jnp.ones_like(state.agent_vel))
    step = jax.jit(env.step)
    noop, _ = step(jax.random.PRNGKey(0), state, jnp.zeros(3, jnp.int32), params)
    for bad in ([-1, 5, 99], [7, -100, 5]):
        out, _ = step(jax.random.PRNGKey(0), state, jnp.array(bad, jnp.int32), params)
        np.testing.assert_array_equal(np.asarray(out.agent_vel), np.asarray(noop.agent_vel))


def test_out_of_range_continuous_actions_are_clipped_and_nan_is_zero():
    env, params = make("spread-v3", continuous_actions=True)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    step = jax.jit(env.step)
    clipped = jnp.array([[0, 0, 1, 0, 1]] * 3, jnp.float32)
    wild = jnp.array([[5, -3, 7, jnp.nan, 2]] * 3, jnp.float32)
    a, _ = step(jax.random.PRNGKey(0), state, clipped, params)
    b, _ = step(jax.random.PRNGKey(0), state, wild, params)
    np.testing.assert_array_equal(np.asarray(a.agent_vel), np.asarray(b.agent_vel))


def test_debug_mode_turns_out_of_range_actions_into_errors():
    env, params = make("spread-v3", debug=True)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    step = jax.jit(checked(env.step))
    err, _ = step(jax.random.PRNGKey(0), state, jnp.array([0, 1, 2], jnp.int32), params)
    err.throw()  # legal: no error
    err, _ = step(jax.random.PRNGKey(0), state, jnp.array([0, 9, 2], jnp.int32), params)
    with pytest.raises(checkify.JaxRuntimeError, match=r"\[0, 5\)"):
        err.throw()


@pytest.mark.parametrize(("env_id", "kwargs", "match"), [
    ("spread-v3", {"num_agents": 0}, "num_agents"),
    ("spread-v3", {"num_agents": 2.5}, "num_agents"),
    ("spread-v3", {"max_steps": 0}, "max_steps"),
    ("spread-v3", {"agent_size": -0.1}, "agent_size"),
    ("spread-v3", {"local_ratio": 1.5}, "local_ratio"),
    ("tag-v3", {"num_adversaries": 0}, "num_adversaries"),
    ("tag-v3", {"good_size": -1.0}, "good_size"),
    ("tag-v3", {"obstacle_size": -0.2}, "obstacle_size"),
    ("tag-v3", {"prey_policy": "sleepy"}, "prey_policy"),
    ("tag-v3", {"good_max_speed": float("nan")}, "good_max_speed"),
    ("tracking-v1", {"num_agents": -1}, "num_agents"),
    ("tracking-v1", {"max_steps": 0}, "max_steps"),
    ("tracking-v1", {"agent_size": 0.0}, "agent_size"),
    ("tracking-v1", {"agent_size": 2.0}, "arena"),
    ("tracking-v1", {"flee_weight": 2.0}, "flee_weight"),
    ("tracking-v1", {"target_speed": -1.0}, "target_speed"),
])
def test_invalid_env_or_params_raise_value_error_naming_it(env_id, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(env_id, **kwargs)


def test_invalid_params_rejected_when_built_directly():
    env, params = make("spread-v3")
    with pytest.raises(ValueError, match="max_steps"):
        params.replace(max_steps=0)
    with pytest.raises(ValueError, match="dt"):
        params.replace(world=params.world.replace(dt=0.0))
    with pytest.raises(TypeError, match="SpreadParams"):
        env.reset(jax.random.PRNGKey(0), make("tag-v3")[1])


def test_registry_errors_and_user_envs():
    with pytest.raises(ValueError, match=r"unknown env id .nope-v1.*spread-v3"):
        make("nope-v1")
    with pytest.raises(ValueError, match=r"no option .bogus.*local_ratio"):
        make("spread-v3", bogus=1)
    with pytest.raises(ValueError, match="name-vN"):
        register("noversion", Spread)
    with pytest.raises(ValueError, match="already registered"):
        register("spread-v3", Spread)
    register("my-spread-v0", lambda num_agents=2: Spread(num_agents=num_agents))
    try:
        env, params = make("my-spread-v0", num_agents=4, local_ratio=0.25)
        assert env.num_agents == 4 and params.local_ratio == 0.25
        assert env.name == "my-spread-v0"
    finally:
        unregister("my-spread-v0")
    with pytest.raises(ValueError, match="unknown env id"):
        unregister("my-spread-v0")


def test_reference_policies_are_registered_per_env_and_go_with_it():
    from jaxmarl_coop.envs import random_policy, reference_policies, register_reference_policy

    env, _ = make("tracking-v1")
    assert "greedy_chase" in reference_policies(env)
    assert set(reference_policies("tracking-v1")) == set(reference_policies(env))
    with pytest.raises(ValueError, match="unknown env id 'nope-v1'"):
        register_reference_policy("nope-v1", "x", random_policy)
    register("my-spread-v0", Spread)
    try:
        register_reference_policy("my-spread-v0", "random_again", random_policy)
        register_reference_policy("my-spread-v0", "with_params", lambda env, params: params)
        refs = reference_policies("my-spread-v0")
        assert set(refs) == {"random_again", "with_params"}
        env, params = make("my-spread-v0")
        assert refs["with_params"](env, params) is params  # called with the params
        assert callable(refs["random_again"](env, params))  # one-argument factory, wrapped
    finally:
        unregister("my-spread-v0")
    assert reference_policies("my-spread-v0") == {}
