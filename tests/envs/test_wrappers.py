"""Auto-reset, episode statistics, agent ids and the env batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmarl_coop.envs import AgentID, AutoReset, EpisodeStats, VecEnv, make, random_policy, wrap


def _rollout(env, params, steps, key=0):
    policy = random_policy(env)

    def body(carry, key):
        state, ts = carry
        k_act, k_step = jax.random.split(key)
        state, ts = env.step(k_step, state, policy(k_act, ts, ())[0], params)
        return (state, ts), ts

    state, ts = env.reset(jax.random.PRNGKey(key), params)
    return jax.jit(lambda s, t: jax.lax.scan(body, (s, t), jax.random.split(
        jax.random.PRNGKey(key + 1), steps)))(state, ts)[1]


def test_auto_reset_keeps_the_true_final_observation():
    base, params = make("spread-v3")
    params = params.replace(max_steps=5)
    env = AutoReset(base)
    traj = _rollout(env, params, 12)
    done = np.asarray(traj.truncated)
    np.testing.assert_array_equal(done, (np.arange(1, 13) % 5) == 0)
    obs, final = np.asarray(traj.obs), np.asarray(traj.info["final_obs"])
    for t in range(12):
        if done[t]:
            # the new episode starts at rest with fresh positions; the final obs is the old one
            assert not np.allclose(obs[t], final[t])
            np.testing.assert_array_equal(obs[t][:, :2], 0.0)  # velocity zero after reset
            # the final obs continues the old episode: its positions follow from step t-1
            prev = obs[t - 1]
            np.testing.assert_allclose(final[t][:, 2:4], prev[:, 2:4] + 0.1 * prev[:, :2],
                                       atol=1e-5)
        else:
            np.testing.assert_array_equal(obs[t], final[t])
    np.testing.assert_array_equal(np.asarray(traj.info["final_global_state"])[~done],
                                  np.asarray(traj.global_state)[~done])


def test_auto_reset_step_counter_restarts():
    base, params = make("tracking-v1", max_steps=3)
    env = AutoReset(base)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    steps = []
    for i in range(7):
        state, _ts = env.step(jax.random.PRNGKey(i), state, jnp.zeros(2, jnp.int32), params)
        steps.append(int(state.step))
    assert steps == [1, 2, 0, 1, 2, 0, 1]


def test_episode_stats_reports_finished_episodes():
    base, params = make("tracking-v1", max_steps=4)
    env = EpisodeStats(AutoReset(base))
    traj = _rollout(env, params, 9)
    done = np.asarray(traj.info["episode_done"])
    np.testing.assert_array_equal(done, (np.arange(1, 10) % 4) == 0)
    rewards = np.asarray(traj.reward)
    returns = np.asarray(traj.info["episode_return"])
    np.testing.assert_allclose(returns[3], rewards[:4].sum(0), rtol=1e-5)
    np.testing.assert_allclose(returns[7], rewards[4:8].sum(0), rtol=1e-5)
    np.testing.assert_allclose(returns[4:7], np.broadcast_to(returns[3], (3, 2)))  # held
    np.testing.assert_array_equal(np.asarray(traj.info["episode_length"])[[3, 7]], [4, 4])
    dist = np.asarray(traj.info["mean_distance"])
    np.testing.assert_allclose(np.asarray(traj.info["episode_mean_distance"])[7],
                               dist[4:8].mean(), rtol=1e-5)
    cap = np.asarray(traj.info["captured"])
    np.testing.assert_allclose(np.asarray(traj.info["episode_captured"])[3], cap[:4].mean())


def test_agent_id_appends_one_hot_and_reaches_final_obs():
    base, params = make("spread-v3", max_steps=2)
    env = wrap(base, agent_id=True)
    assert env.obs_dim == base.obs_dim + 3
    traj = _rollout(env, params, 2)
    np.testing.assert_array_equal(np.asarray(traj.obs)[:, :, -3:], np.broadcast_to(np.eye(3),
                                                                                    (2, 3, 3)))
    np.testing.assert_array_equal(np.asarray(traj.info["final_obs"])[1][:, -3:], np.eye(3))
    assert isinstance(env.unwrapped, type(base))
    assert env.num_agents == 3 and env.name == "spread-v3"


def test_vec_env_lanes_match_single_envs():
    base, params = make("tag-v3")
    env = AutoReset(AgentID(base))
    vec = VecEnv(env, 4)
    key = jax.random.PRNGKey(5)
    state, ts = vec.reset(key, params)
    assert ts.obs.shape == (4, 4, env.obs_dim)
    actions = jnp.tile(jnp.arange(4, dtype=jnp.int32), (4, 1))
    _state2, ts2 = jax.jit(vec.step)(key, state, actions, params)
    lane_keys = jax.random.split(key, 4)
    s1, _ = env.reset(lane_keys[2], params)
    _, t1 = env.step(lane_keys[2], s1, actions[2], params)
    np.testing.assert_allclose(np.asarray(ts2.obs[2]), np.asarray(t1.obs), atol=1e-6)
