"""Bad input fails early with a message that names the bad value; fallbacks are pinned."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

from jaxmarl_coop.envs import Spread, checked, make, register, registered
from jaxmarl_coop.envs.physics import MAX_DISCS
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


def test_out_of_range_discrete_actions_are_no_ops_and_counted():
    env, params = make("spread-v3")
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(agent_vel=jnp.ones_like(state.agent_vel))
    step = jax.jit(env.step)
    noop, ts = step(jax.random.PRNGKey(0), state, jnp.zeros(3, jnp.int32), params)
    assert float(ts.info["invalid_actions"]) == 0.0
    for bad, count in (([-1, 5, 99], 3), ([7, 0, 5], 2), ([0, 2**31 - 1, 0], 1)):
        out, ts = step(jax.random.PRNGKey(0), state, jnp.array(bad, jnp.int32), params)
        np.testing.assert_array_equal(np.asarray(out.agent_vel), np.asarray(noop.agent_vel))
        assert float(ts.info["invalid_actions"]) == count


def test_out_of_range_continuous_actions_are_clipped_nan_is_zero_and_both_are_counted():
    env, params = make("spread-v3", continuous_actions=True)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    step = jax.jit(env.step)
    clipped = jnp.array([[0, 0, 1, 0, 1]] * 3, jnp.float32)
    wild = jnp.array([[5, -3, 7, jnp.nan, 2], [0, 0, 1, 0, 1], [0, 0, 1, jnp.nan, 1]],
                     jnp.float32)
    a, ts_a = step(jax.random.PRNGKey(0), state, clipped, params)
    b, ts_b = step(jax.random.PRNGKey(0), state, wild, params)
    np.testing.assert_array_equal(np.asarray(a.agent_vel), np.asarray(b.agent_vel))
    assert float(ts_a.info["invalid_actions"]) == 0.0
    assert float(ts_b.info["invalid_actions"]) == 2.0  # agents 0 and 2


def test_invalid_actions_in_a_common_payoff_game_pay_the_tables_minimum():
    """climbing-v1 used to read [7, 7] as (0, 0): the optimum, 11."""
    env, params = make("climbing-v1", history=True)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    step = jax.jit(env.step)
    for bad, count in (([7, 7], 2), ([0, -1], 1), ([3, 0], 1)):
        new, ts = step(jax.random.PRNGKey(0), state, jnp.array(bad), params)
        np.testing.assert_array_equal(np.asarray(ts.reward), [-30.0, -30.0])
        assert float(ts.info["optimal"]) == 0.0 and float(ts.info["payoff"]) == -30.0
        assert float(ts.info["invalid_actions"]) == count
        np.testing.assert_array_equal(np.asarray(env.obs_index(ts.obs)), [0, 0])  # slot 0
        assert env.render(new).shape[-1] == 3  # drawn without a played cell
    # a host int beyond int32 stays out of range (it does not wrap around to action 0)
    _, ts = env.step(jax.random.PRNGKey(0), state, np.array([2**32, 0]), params)
    assert float(ts.reward[0]) == -30.0 and float(ts.info["invalid_actions"]) == 1.0
    _, ts = env.step(jax.random.PRNGKey(0), state, [2**70, 0], params)
    assert float(ts.reward[0]) == -30.0
    penalty, p_params = make("penalty-v1", k=-7.0)
    s, _ = penalty.reset(jax.random.PRNGKey(0), p_params)
    _, ts = penalty.step(jax.random.PRNGKey(0), s, jnp.array([0, 3]), p_params)
    np.testing.assert_array_equal(np.asarray(ts.reward), [-7.0, -7.0])


def test_invalid_actions_in_the_prisoners_dilemma():
    """The invalid agent gets its smallest payoff; a valid partner its worst given its own
    action (as if the invalid agent had defected)."""
    env, params = make("prisoners-dilemma-v1", reward=3.0, sucker=-1.0, temptation=5.0,
                       punishment=1.0)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    step = jax.jit(env.step)
    for bad, want in (([0, 2], [-1.0, -1.0]), ([1, 2], [1.0, -1.0]), ([-1, 1], [-1.0, 1.0]),
                      ([2, 2], [-1.0, -1.0])):
        _, ts = step(jax.random.PRNGKey(0), state, jnp.array(bad), params)
        np.testing.assert_array_equal(np.asarray(ts.reward), want)
        assert float(ts.info["mutual_cooperation"]) == 0.0


def test_invalid_dispatch_goes_where_the_job_would_wait_longest():
    env, params = make("load-balancing-v1", num_dispatchers=2, num_servers=3,
                       service_rate=[1.0, 2.0, 4.0], queue_capacity=10.0)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(queue=jnp.array([1.0, 8.0, 0.0]), job_size=jnp.array([3.0, 2.0]))
    step = jax.jit(env.step)
    # dispatcher 0: (q + 3) / mu = 4, 5.5, 0.75 -> server 1, where 8 + 3 > 10: dropped;
    # dispatcher 1 sends its job to server 9 (invalid) as well: 3, 5, 0.5 -> server 1, fits
    new, ts = step(jax.random.PRNGKey(1), state, jnp.array([9, -4]), params)
    np.testing.assert_array_equal(np.asarray(new.dropped), [True, False])
    np.testing.assert_array_equal(np.asarray(new.last_server), [1, 1])
    assert float(ts.info["dropped"]) == 1.0 and float(ts.info["invalid_actions"]) == 2.0
    valid, ts_valid = step(jax.random.PRNGKey(1), state, jnp.array([1, 1]), params)
    np.testing.assert_array_equal(np.asarray(new.queue), np.asarray(valid.queue))
    np.testing.assert_array_equal(np.asarray(ts.reward), np.asarray(ts_valid.reward))
    assert float(ts_valid.info["invalid_actions"]) == 0.0


def test_an_invalid_dispatch_is_not_a_free_drop():
    """Why an invalid dispatch is routed and not simply dropped: on one server with 5 units
    of room, admitting dispatcher 0's job of 5 crowds out the two jobs of 1 behind it, so the
    only valid action pays -(20 - 1) - 2 drops = -21; dropping job 0 instead would pay
    -(17 - 1) - 1 = -17, more than every valid action."""
    env, params = make("load-balancing-v1", num_dispatchers=3, num_servers=1,
                       service_rate=[1.0], queue_capacity=20.0)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(queue=jnp.array([15.0]), job_size=jnp.array([5.0, 1.0, 1.0]))
    _, valid = env.step(jax.random.PRNGKey(1), state, jnp.array([0, 0, 0]), params)
    _, invalid = env.step(jax.random.PRNGKey(1), state, jnp.array([1, 0, 0]), params)
    np.testing.assert_array_equal(np.asarray(valid.reward), [-21.0] * 3)
    np.testing.assert_array_equal(np.asarray(invalid.reward), np.asarray(valid.reward))


@pytest.mark.parametrize("actions", [None, "abc", ["a", "b", "c"], {"agent_0": 1}, [[0], [1, 2]]])
def test_actions_that_are_no_numbers_name_what_to_pass(actions):
    env, params = make("spread-v3")
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    with pytest.raises(TypeError, match=r"spread-v3: actions must be an array of integers in "
                                        r"\[0, 5\) of shape \(3,\)"):
        env.step(jax.random.PRNGKey(0), state, actions, params)


def test_debug_mode_turns_out_of_range_actions_into_errors():
    env, params = make("spread-v3", debug=True)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    step = jax.jit(checked(env.step))
    err, _ = step(jax.random.PRNGKey(0), state, jnp.array([0, 1, 2], jnp.int32), params)
    err.throw()  # legal: no error
    err, _ = step(jax.random.PRNGKey(0), state, jnp.array([0, 9, 2], jnp.int32), params)
    with pytest.raises(checkify.JaxRuntimeError, match=r"\[0, 5\)"):
        err.throw()
    # eagerly the check raises at once; staged without checkify, a message says what to do
    with pytest.raises(checkify.JaxRuntimeError, match=r"\[0, 5\)"):
        env.step(jax.random.PRNGKey(0), state, jnp.array([0, 9, 2], jnp.int32), params)
    with pytest.raises(ValueError, match=r"debug=True.*envs\.checked"):
        jax.jit(env.step)(jax.random.PRNGKey(0), state, jnp.array([0, 1, 2], jnp.int32), params)
    # a jitted function inside checked() is fine
    err, _ = jax.jit(checked(jax.jit(env.step)))(jax.random.PRNGKey(0), state,
                                                 jnp.array([0, 1, 2], jnp.int32), params)
    err.throw()


@pytest.mark.parametrize(("env_id", "kwargs"), [
    ("spread-v3", {"num_agents": 1000}),
    ("spread-v3", {"num_agents": MAX_DISCS + 1}),
    ("tracking-v1", {"num_agents": 200}),
    ("tag-v3", {"num_adversaries": MAX_DISCS, "num_good": 1}),
])
def test_particle_teams_above_the_limit_are_refused_not_compiled_for_minutes(env_id, kwargs):
    with pytest.raises(ValueError, match=rf"at most {MAX_DISCS} moving agents.*compile"):
        make(env_id, **kwargs)
    largest = {k: v for k, v in kwargs.items() if k != "num_adversaries"}
    if "num_agents" in kwargs:
        largest["num_agents"] = MAX_DISCS
    else:
        largest["num_adversaries"] = MAX_DISCS - 1
    env, _ = make(env_id, **largest)  # the limit itself is accepted (built, not compiled)
    assert env.num_agents >= MAX_DISCS - 1


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


@pytest.mark.parametrize(("env_id", "kwargs", "match"), [
    ("spread-v3", {"max_steps": "abc"}, r"SpreadParams\.max_steps must be an integer.*'abc'"),
    ("spread-v3", {"max_steps": 2.5}, r"max_steps must be an integer.*2\.5"),
    ("spread-v3", {"max_steps": True}, r"max_steps must be an integer.*True"),
    ("spread-v3", {"max_steps": float("nan")}, r"max_steps must be an integer.*nan"),
    ("spread-v3", {"local_ratio": "0.5"}, r"local_ratio must be a number.*'0\.5' \(str\)"),
    ("spread-v3", {"local_ratio": [0.1, 0.2]}, r"local_ratio must be a number.*\(list\)"),
    ("spread-v3", {"world": "x"}, r"SpreadParams\.world must be a WorldParams, got 'x'"),
    ("penalty-v1", {"k": "x"}, r"PenaltyParams\.k must be a number.*'x'"),
    ("load-balancing-v1", {"service_rate": "1,2,3,4"}, r"service_rate must be a number or an "
                                                       r"array"),
    ("load-balancing-v1", {"service_rate": [1, "a", 3, 4]}, "service_rate"),
    ("load-balancing-v1", {"max_job_size": 2.5}, r"max_job_size must be an integer"),
    ("spread-v3", {"continuous_actions": "yes"}, r"continuous_actions must be True or False.*"
                                                 r"'yes'"),
    ("tag-v3", {"continuous_actions": 0}, r"continuous_actions must be True or False, got 0"),
    ("climbing-v1", {"history": 1}, r"history must be True or False, got 1"),
    ("intersection-v1", {"debug": "no"}, r"debug must be True or False, got 'no'"),
])
def test_params_and_options_of_the_wrong_type_are_refused_at_build(env_id, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(env_id, **kwargs)


def test_integral_floats_and_arrays_are_accepted_where_numbers_are_expected():
    _, params = make("spread-v3", max_steps=20.0)  # an integral float: accepted, as is
    assert params.max_steps == 20.0
    _, lb = make("load-balancing-v1", service_rate=[1, 2, 3, 4])  # a list for an array param
    np.testing.assert_array_equal(np.asarray(lb.service_rate), [1, 2, 3, 4])
    with pytest.raises(ValueError, match="max_steps must be an integer"):
        params.replace(max_steps="abc")
    with pytest.raises(ValueError, match=r"max_steps must be an integer.*10\.5"):
        params.replace(max_steps=jnp.array([10.5, 20.0]))  # a stacked sweep checks each value
    params.replace(max_steps=jnp.array([10.0, 20.0]), local_ratio=np.array([0.1, 0.9]))


@pytest.mark.parametrize("env_id", sorted(registered()))
def test_every_param_of_every_env_refuses_a_string_naming_itself(env_id):
    """Every field (nested ones too) is type-checked, so a new param cannot forget it."""

    def fields(params, prefix=""):
        for f in dataclasses.fields(params):
            value = getattr(params, f.name)
            if dataclasses.is_dataclass(value):
                yield from ((f"{prefix}{f.name}.{n}", r, v)
                            for n, r, v in fields(value, f"{prefix}{f.name}."))
            yield f.name, params, value

    _, params = make(env_id)
    names = 0
    for name, owner, _ in fields(params):
        leaf = name.split(".")[-1]
        with pytest.raises(ValueError, match=rf"{type(owner).__name__}\.{leaf} must be .*'abc'"):
            owner.replace(**{leaf: "abc"})
        names += 1
    assert names >= 2


def test_params_still_pass_through_jax_transformations():
    """The type checks run whenever JAX rebuilds params (flax dataclasses re-run
    __post_init__): tracers, abstract values, None in in_axes trees, placeholder objects and
    stacked (batched) arrays must all pass."""
    for env_id in ("spread-v3", "load-balancing-v1"):
        env, params = make(env_id)
        jax.tree.map(lambda _: object(), params)
        jax.tree.map(lambda _: None, params)
        jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), params)
        stacked = jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * 2), params)
        key = jax.random.PRNGKey(0)
        shapes = jax.eval_shape(env.reset, key, params)
        assert shapes[1].info["invalid_actions"].shape == ()
        out = jax.jit(jax.vmap(env.reset, in_axes=(None, 0)))(key, stacked)
        assert out[1].reward.shape == (2, env.num_agents)


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
