"""Matrix games: pinned payoff tables, the traced penalty ``k``, history and its index."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmarl_coop.envs import AgentID, make, wrap

JOINT = np.array([(a0, a1) for a0 in range(3) for a1 in range(3)], np.int32)


def _one_round(env, params, joint, key=0):
    """Reward and info of one round from reset, for every joint action in ``joint``."""

    def play(actions):
        state, _ = env.reset(jax.random.PRNGKey(key), params)
        _, ts = env.step(jax.random.PRNGKey(key + 1), state, actions, params)
        return ts

    return jax.jit(jax.vmap(play))(jnp.asarray(joint))


def test_climbing_payoffs_for_every_joint_action():
    env, params = make("climbing-v1")
    ts = _one_round(env, params, JOINT)
    expected = np.array([11, -30, 0, -30, 7, 6, 0, 0, 5], np.float32)  # row-major (a0, a1)
    np.testing.assert_array_equal(np.asarray(ts.reward), np.stack([expected, expected], -1))
    np.testing.assert_array_equal(np.asarray(ts.info["payoff"]), expected)
    np.testing.assert_array_equal(np.asarray(ts.info["optimal"]), [1, 0, 0, 0, 0, 0, 0, 0, 0])


def test_penalty_payoffs_for_every_joint_action():
    env, params = make("penalty-v1")
    assert params.k == -25.0
    ts = _one_round(env, params, JOINT)
    expected = np.array([10, 0, -25, 0, 2, 0, -25, 0, 10], np.float32)
    np.testing.assert_array_equal(np.asarray(ts.reward), np.stack([expected, expected], -1))
    np.testing.assert_array_equal(np.asarray(ts.info["payoff"]), expected)
    np.testing.assert_array_equal(np.asarray(ts.info["optimal"]), [1, 0, 0, 0, 0, 0, 0, 0, 1])


def test_penalty_k_is_a_vmappable_param():
    env, params = make("penalty-v1")
    ks = jnp.array([-100.0, -25.0, -1.0, 0.0])

    def table(k):
        return _one_round(env, params.replace(k=k), JOINT)

    ts = jax.jit(jax.vmap(table))(ks)  # reward: (4 k, 9 joint actions, 2 agents)
    for i, k in enumerate(np.asarray(ks)):
        expected = np.array([10, 0, k, 0, 2, 0, k, 0, 10], np.float32)
        np.testing.assert_array_equal(np.asarray(ts.reward[i]),
                                      np.stack([expected, expected], -1))
        # the optima stay (0, 0) and (2, 2) for every k <= 0
        np.testing.assert_array_equal(np.asarray(ts.info["optimal"][i]),
                                      [1, 0, 0, 0, 0, 0, 0, 0, 1])


def test_prisoners_dilemma_payoffs_per_agent():
    env, params = make("prisoners-dilemma-v1")
    joint = np.array([(0, 0), (0, 1), (1, 0), (1, 1)], np.int32)  # CC, CD, DC, DD
    ts = _one_round(env, params, joint)
    np.testing.assert_array_equal(np.asarray(ts.reward), [[3, 3], [0, 5], [5, 0], [1, 1]])
    np.testing.assert_array_equal(np.asarray(ts.info["payoff"]), [3, 2.5, 2.5, 1])
    np.testing.assert_array_equal(np.asarray(ts.info["mutual_cooperation"]), [1, 0, 0, 0])
    assert "optimal" not in ts.info
    custom = params.replace(reward=4.0, sucker=-1.0, temptation=6.0, punishment=0.5)
    ts = _one_round(env, custom, joint)
    np.testing.assert_array_equal(np.asarray(ts.reward),
                                  [[4, 4], [-1, 6], [6, -1], [0.5, 0.5]])
    assert env.teams == {"agent_0": (0,), "agent_1": (1,)}


@pytest.mark.parametrize("env_id", ["climbing-v1", "penalty-v1", "prisoners-dilemma-v1"])
def test_reward_noise(env_id):
    env, params = make(env_id, reward_noise_std=2.0)
    keys = jnp.arange(4000)

    def play(key):
        state, _ = env.reset(jax.random.PRNGKey(0), params)
        _, ts = env.step(jax.random.PRNGKey(key), state, jnp.zeros(2, jnp.int32), params)
        return ts.reward

    reward = np.asarray(jax.jit(jax.vmap(play))(keys))
    clean = np.asarray(_one_round(env, params.replace(reward_noise_std=0.0),
                                  np.zeros((1, 2), np.int32)).reward[0])
    noise = reward - clean
    np.testing.assert_allclose(noise.mean(axis=0), 0.0, atol=0.15)  # 4.7 standard errors
    np.testing.assert_allclose(noise.std(axis=0), 2.0, rtol=0.06)
    if env_id == "prisoners-dilemma-v1":  # one draw per agent
        assert abs(np.corrcoef(noise.T)[0, 1]) < 0.1
    else:  # one draw shared: the payoff stays common
        np.testing.assert_array_equal(noise[:, 0], noise[:, 1])


def test_stateless_observation_and_index():
    env, params = make("climbing-v1")
    assert env.obs_dim == env.state_dim == 1 and env.num_obs_indices == 1
    state, ts = env.reset(jax.random.PRNGKey(0), params)
    np.testing.assert_array_equal(np.asarray(ts.obs), [[1.0], [1.0]])
    np.testing.assert_array_equal(np.asarray(ts.global_state), [1.0])
    assert ts.info == {"payoff": 0.0, "optimal": 0.0, "invalid_actions": 0.0}
    _, ts = env.step(jax.random.PRNGKey(1), state, jnp.array([2, 1]), params)
    np.testing.assert_array_equal(np.asarray(ts.obs), [[1.0], [1.0]])
    np.testing.assert_array_equal(np.asarray(env.obs_index(ts.obs)), [0, 0])
    batch = jnp.ones((4, 7, 2, 1))
    np.testing.assert_array_equal(np.asarray(env.obs_index(batch)), np.zeros((4, 7, 2)))


@pytest.mark.parametrize(("env_id", "num_actions"),
                         [("penalty-v1", 3), ("prisoners-dilemma-v1", 2)])
def test_history_observation_is_the_previous_joint_action(env_id, num_actions):
    env, params = make(env_id, history=True, max_steps=25)
    a = num_actions
    assert env.obs_dim == env.state_dim == env.num_obs_indices == a * a + 1
    rng = np.random.default_rng(0)
    joint = rng.integers(0, a, size=(25, 2)).astype(np.int32)

    def body(state, actions):
        state, ts = env.step(jax.random.PRNGKey(0), state, actions, params)
        return state, ts

    state, ts0 = env.reset(jax.random.PRNGKey(0), params)
    _, traj = jax.jit(lambda s: jax.lax.scan(body, s, jnp.asarray(joint)))(state)
    slots = 1 + joint[:, 0] * a + joint[:, 1]
    np.testing.assert_array_equal(np.asarray(ts0.obs), np.eye(a * a + 1)[[0, 0]])
    np.testing.assert_array_equal(np.asarray(env.obs_index(ts0.obs)), [0, 0])
    obs = np.asarray(traj.obs)  # (25, 2, A² + 1)
    np.testing.assert_array_equal(obs, np.eye(a * a + 1)[np.stack([slots, slots], -1)])
    np.testing.assert_array_equal(np.asarray(traj.global_state), obs[:, 0])
    np.testing.assert_array_equal(np.asarray(env.obs_index(traj.obs)),
                                  np.stack([slots, slots], -1))
    np.testing.assert_array_equal(np.asarray(traj.truncated), np.arange(1, 26) >= 25)
    assert not np.any(np.asarray(traj.terminated))
    assert np.all(np.asarray(traj.action_mask))


def test_history_index_of_final_obs_under_auto_reset_and_agent_id():
    base, params = make("climbing-v1", history=True, max_steps=3)
    env = wrap(base, agent_id=True)
    assert env.num_obs_indices == 10 and env.obs_dim == 12
    joint = np.array([(0, 0), (1, 2), (2, 1), (0, 2), (1, 1), (2, 2), (0, 1)], np.int32)

    def body(state, actions):
        state, ts = env.step(jax.random.PRNGKey(0), state, actions, params)
        return state, ts

    state, _ = env.reset(jax.random.PRNGKey(0), params)
    _, traj = jax.jit(lambda s: jax.lax.scan(body, s, jnp.asarray(joint)))(state)
    slots = 1 + joint[:, 0] * 3 + joint[:, 1]
    done = np.asarray(traj.truncated)
    np.testing.assert_array_equal(done, [0, 0, 1, 0, 0, 1, 0])
    # the new episode starts at slot 0; the kept final obs still shows the last joint action
    index, final_index = (np.asarray(env.obs_index(traj.obs)),
                          np.asarray(env.obs_index(traj.info["final_obs"])))
    np.testing.assert_array_equal(index[:, 0], np.where(done, 0, slots))
    np.testing.assert_array_equal(final_index[:, 0], slots)
    # the appended agent-id columns do not disturb the index
    np.testing.assert_array_equal(np.asarray(traj.obs)[:, :, 10:], np.tile(np.eye(2), (7, 1, 1)))
    plain = AgentID(base)
    _, ts = plain.reset(jax.random.PRNGKey(0), params)
    np.testing.assert_array_equal(np.asarray(plain.obs_index(ts.obs)), [0, 0])


def test_obs_index_rejects_a_wrong_shape():
    env, _ = make("penalty-v1", history=True)
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, >= 10\)"):
        env.obs_index(jnp.zeros((2, 9)))
    with pytest.raises(ValueError, match=r"got \(3, 10\)"):
        env.obs_index(jnp.zeros((3, 10)))


@pytest.mark.parametrize(("env_id", "kwargs", "match"), [
    ("penalty-v1", {"k": 1.0}, r"k must be ≤ 0\.0, got 1\.0"),
    ("penalty-v1", {"k": float("nan")}, r"k must be a finite number"),
    ("climbing-v1", {"max_steps": 0}, r"max_steps must be ≥ 1, got 0"),
    ("prisoners-dilemma-v1", {"max_steps": 0}, r"max_steps must be ≥ 1, got 0"),
    ("climbing-v1", {"reward_noise_std": -1.0}, r"reward_noise_std .*got -1\.0"),
    ("prisoners-dilemma-v1", {"temptation": float("inf")}, r"temptation .*got inf"),
    ("climbing-v1", {"continuous_actions": True}, r"continuous_actions=True"),
    ("penalty-v1", {"continuous_actions": True}, r"continuous_actions=True"),
    ("prisoners-dilemma-v1", {"continuous_actions": True}, r"continuous_actions=True"),
])
def test_bad_params_raise_value_error_naming_the_value(env_id, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(env_id, **kwargs)
