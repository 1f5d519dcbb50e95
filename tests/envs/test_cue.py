"""cue-v1: the cue's timing, the goal, the hold, the memoryless bound and the reference
policies (a recurrent one that remembers the cue beats the best memoryless script)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmarl_coop.envs import (
    AutoReset,
    cue_memory_policy,
    cue_memoryless_policy,
    make,
    random_policy,
    reference_policies,
    reset_carry,
)
from jaxmarl_coop.envs.cue import geometric_median, memoryless_bound, ring_landmarks


@pytest.fixture(scope="module")
def task():
    return make("cue-v1")


def _rollout(env, params, policy, key, steps, auto_reset=False, reset=True):
    """``steps`` steps from a reset (through ``AutoReset`` if asked, resetting the carry at
    episode starts unless ``reset=False``): per step the state before it, the timestep
    before it, the carry the policy was given, and the reward after it."""
    run_env = AutoReset(env) if auto_reset else env

    def body(carry, key):
        state, ts, memory = carry
        k_act, k_step = jax.random.split(key)
        actions, new_memory = policy(k_act, ts, memory)
        new_state, new_ts = run_env.step(k_step, state, actions, params)
        if reset:
            new_memory = reset_carry(policy, new_memory, new_ts.done)
        return (new_state, new_ts, new_memory), (state, ts, memory, new_ts.reward)

    k0, k1 = jax.random.split(key)
    state, ts = run_env.reset(k0, params)
    _, out = jax.lax.scan(body, (state, ts, policy.initial_carry()), jax.random.split(k1, steps))
    return out


@pytest.fixture(scope="module", params=["ring", "random"])
def returns(request):
    """Team returns (sum over agents and steps) of 200 episodes per policy, and the
    memoryless bound B (module docstring) on the same starts, for each landmark layout."""
    env, params = make("cue-v1", landmarks=request.param)
    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    out = {}
    for name, policy in (("memory", cue_memory_policy(env, params)),
                         ("memoryless", cue_memoryless_policy(env, params)),
                         ("random", random_policy(env))):
        run = jax.jit(jax.vmap(lambda k, p=policy: _rollout(env, params, p, k,
                                                            params.max_steps)[3]))
        out[name] = np.asarray(run(keys)).sum(axis=(1, 2))

    def bound(key):
        state, _ = env.reset(jax.random.split(key)[0], params)  # _rollout's reset key
        return memoryless_bound(env, state, params)

    out["bound"] = np.asarray(jax.jit(jax.vmap(bound))(keys))
    return out


def test_cue_shown_for_cue_steps_while_the_agents_are_held(task):
    env, params = task
    k = env.num_landmarks
    run = jax.jit(lambda key, p: _rollout(env, p, random_policy(env), key, 12))
    for cue_steps in (3, 0, 7):  # a traced param: one compile
        states, timesteps, _, _ = run(jax.random.PRNGKey(cue_steps),
                                      params.replace(cue_steps=cue_steps))
        goal = np.asarray(states.goal)
        assert np.all(goal == goal[0])
        one_hot = np.eye(k)[goal[0]]
        cue = np.asarray(timesteps.obs[:, :, 4 + 2 * k:4 + 3 * k])  # (t, N, K)
        for t in range(12):
            expected = one_hot if t < cue_steps else np.zeros(k)
            np.testing.assert_array_equal(cue[t], np.broadcast_to(expected, cue[t].shape))
        np.testing.assert_allclose(np.asarray(timesteps.obs[:, :, -1]),
                                   np.broadcast_to(np.arange(12)[:, None] / 25, (12, 2)),
                                   rtol=1e-6)
        # the goal is in the global state at every step
        np.testing.assert_array_equal(
            np.asarray(timesteps.global_state[:, 4 * 2 + 2 * k:4 * 2 + 3 * k]),
            np.broadcast_to(one_hot, (12, k)))
        # held while the cue is shown (state t is the state before step t), moving after
        pos = np.asarray(states.agent_pos)
        for t in range(1, cue_steps + 1):
            np.testing.assert_array_equal(pos[t], pos[0])
        assert not np.array_equal(pos[-1], pos[0])


def test_goal_fixed_in_an_episode_and_redrawn_uniformly_at_reset(task):
    env, params = task
    policy = random_policy(env)
    states, _, _, _ = jax.jit(lambda key: _rollout(env, params, policy, key, 4 * 25,
                                                   auto_reset=True))(jax.random.PRNGKey(1))
    goal = np.asarray(states.goal).reshape(4, 25)
    assert np.all(goal == goal[:, :1])  # one goal per episode
    landmarks = np.asarray(states.landmark_pos).reshape(4, 25, 3, 2)
    # the default layout: the same ring at every reset, the first landmark straight up
    np.testing.assert_allclose(landmarks, np.broadcast_to(
        0.8 * np.array([[0.0, 1.0], [-np.sqrt(3) / 2, -0.5], [np.sqrt(3) / 2, -0.5]]),
        landmarks.shape), atol=1e-6)
    goals = jax.jit(jax.vmap(lambda key: env.reset(key, params)[0].goal))(
        jax.random.split(jax.random.PRNGKey(2), 6000))
    freq = np.bincount(np.asarray(goals), minlength=3) / 6000
    np.testing.assert_allclose(freq, 1 / 3, atol=0.025)  # 4 standard deviations


def test_random_landmarks_are_redrawn_at_reset_and_the_ring_radius_is_a_param():
    env, params = make("cue-v1", landmarks="random")
    first, second = (env.reset(jax.random.PRNGKey(i), params)[0].landmark_pos for i in (0, 1))
    assert not np.array_equal(np.asarray(first), np.asarray(second))  # a new layout at reset
    assert np.all(np.abs(np.asarray(first)) <= 1.0)
    env, params = make("cue-v1", num_landmarks=4, ring_radius=0.5)
    state = jax.jit(env.reset)(jax.random.PRNGKey(0), params)[0]
    np.testing.assert_allclose(np.asarray(state.landmark_pos),
                               [[0, 0.5], [-0.5, 0], [0, -0.5], [0.5, 0]], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(ring_landmarks(4, params)),
                                  np.asarray(state.landmark_pos))


def test_reward_is_minus_the_mean_distance_to_the_goal(task):
    env, params = task
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(agent_pos=jnp.array([[0.0, 0.0], [0.3, 0.4]]),
                          landmark_pos=jnp.array([[0.0, 0.05], [0.9, 0.9], [-0.5, 0.0]]),
                          goal=jnp.array(0, jnp.int32))
    reward, info = env._reward(state, params)
    np.testing.assert_allclose(np.asarray(reward), -(0.05 + np.hypot(0.3, 0.35)) / 2, rtol=1e-6)
    np.testing.assert_allclose(float(info["at_goal"]), 0.5)  # 0.05 <= goal_radius 0.1


def test_memory_beats_the_memoryless_bound_and_script_by_a_clear_margin(returns):
    means = {name: float(np.mean(r)) for name, r in returns.items()}
    # measured (1000 episodes, `python -m experiments.reference`): ring landmarks (the
    # default): memory -23.3, bound -41.9, memoryless -43.5, random -54.3; random landmarks
    # (200 episodes here; 95 % half-widths 1.2 to 2.4): memory -23.3, bound -31.4,
    # memoryless -36.0, random -54.1
    assert means["memory"] > means["memoryless"] + 10.0, means
    assert means["memory"] > means["bound"] + 5.0, means  # than any memoryless team can
    # the bound is on the expected return: the best memoryless script stays under it
    assert means["random"] + 10.0 < means["memoryless"] <= means["bound"], means


def test_the_memory_carry_is_reset_at_episode_start(task):
    env, params = task
    policy = cue_memory_policy(env, params)
    assert policy.recurrent and not cue_memoryless_policy(env, params).recurrent
    assert policy.initial_carry().shape == (2,) and policy.initial_carry(5).shape == (5, 2)
    np.testing.assert_array_equal(np.asarray(policy.initial_carry()), -1)
    for reset in (True, False):
        states, _, carries, _ = jax.jit(lambda key, reset=reset: _rollout(
            env, params, policy, key, 3 * 25, auto_reset=True, reset=reset))(
                jax.random.PRNGKey(3))
        goal = np.asarray(states.goal).reshape(3, 25)
        carry = np.asarray(carries).reshape(3, 25, 2)
        np.testing.assert_array_equal(carry[0, 0], -1)
        # the goal is remembered from the first cue on, until the episode ends
        np.testing.assert_array_equal(carry[:, 1:], np.broadcast_to(goal[:, 1:, None],
                                                                    (3, 24, 2)))
        assert len(set(goal[:, 0].tolist())) > 1  # the episodes have different goals
        if reset:
            np.testing.assert_array_equal(carry[:, 0], -1)  # a fresh carry every episode
        else:  # without reset_carry the last episode's goal leaks into the next one
            np.testing.assert_array_equal(carry[1:, 0], np.broadcast_to(goal[:-1, :1],
                                                                        (2, 2)))
    # with no cue at all the memory policy knows no goal and behaves as the memoryless one
    blind = params.replace(cue_steps=0)
    key = jax.random.PRNGKey(4)
    a = jax.jit(lambda: _rollout(env, blind, cue_memory_policy(env, blind), key, 25)[3])()
    b = jax.jit(lambda: _rollout(env, blind, cue_memoryless_policy(env, blind), key, 25)[3])()
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_reference_policies_are_registered_and_work_with_continuous_actions():
    env, params = make("cue-v1", continuous_actions=True, num_agents=1, num_landmarks=4)
    assert set(reference_policies(env)) == {"memory", "memoryless"}
    policy = reference_policies(env)["memory"](env, params)
    rewards = jax.jit(jax.vmap(lambda key: _rollout(env, params, policy, key, 25)[3]))(
        jax.random.split(jax.random.PRNGKey(5), 16))
    assert float(np.median(-rewards[:, -1, 0])) < 0.05  # on the goal at the end
    with pytest.raises(TypeError, match="cue-v1"):
        cue_memory_policy(make("spread-v3")[0])


def test_geometric_median():
    equilateral = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    np.testing.assert_allclose(np.asarray(geometric_median(equilateral)),
                               [0.5, np.sqrt(3) / 6], atol=1e-5)
    # an angle of 120 degrees or more: the median is that vertex
    obtuse = jnp.array([[0.0, 0.0], [1.0, 0.05], [-1.0, 0.05]])
    np.testing.assert_allclose(np.asarray(geometric_median(obtuse)), [0.0, 0.0], atol=1e-3)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"cue_steps": -1}, "cue_steps must be ≥ 0"),
    ({"cue_steps": 25}, r"cue_steps \(must leave the agents a move"),
    ({"cue_steps": 1.5}, "cue_steps must be an integer"),
    ({"max_steps": 0}, "max_steps"),
    ({"num_landmarks": 1}, "num_landmarks must be an int >= 2"),
    ({"num_agents": 0}, "num_agents must be an int >= 1"),
    ({"agent_size": 0.0}, "agent_size must be > 0"),
    ({"goal_radius": float("nan")}, "goal_radius must be a finite number"),
    ({"continuous_actions": "yes"}, "continuous_actions must be True or False"),
    ({"cue": 3}, "cue-v1 has no option 'cue'"),
    ({"landmarks": "grid"}, r"landmarks must be one of \('ring', 'random'\), got 'grid'"),
    ({"ring_radius": -0.1}, "ring_radius must be ≥ 0"),
])
def test_bad_options_and_params_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make("cue-v1", **kwargs)
