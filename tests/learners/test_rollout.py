"""Rollout collection: true next observations at episode ends, per-update episode metrics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmarl_coop.envs import make
from jaxmarl_coop.learners.base import batch_env
from jaxmarl_coop.learners.rollout import RolloutState, collect, episode_metrics


def _constant_policy(key, ts):
    return jnp.full(ts.obs.shape[:-1], 2, jnp.int32), {"marker": jnp.ones(ts.obs.shape[:1])}


def test_transitions_carry_the_true_next_observation():
    env, params = make("spread-v3", max_steps=3)
    venv = batch_env(env, 2)
    state, ts = venv.reset(jax.random.PRNGKey(0), params)
    rollout, tr, info = jax.jit(lambda r, k: collect(venv, params, _constant_policy, r, k, 7))(
        RolloutState(state, ts), jax.random.PRNGKey(1))
    assert tr.obs.shape == (7, 2, 3, env.obs_dim) and tr.extras["marker"].shape == (7, 2)
    done = np.asarray(tr.truncated)
    np.testing.assert_array_equal(done[:, 0], [0, 0, 1, 0, 0, 1, 0])
    obs, next_obs = np.asarray(tr.obs), np.asarray(tr.next_obs)
    for t in range(6):
        if done[t, 0]:
            # next_obs continues the old episode: position advanced by 0.1 * velocity
            np.testing.assert_allclose(next_obs[t][..., 2:4], obs[t][..., 2:4]
                                       + 0.1 * obs[t][..., 0:2], atol=1e-5)
            np.testing.assert_array_equal(obs[t + 1][..., 0:2], 0.0)  # new episode at rest
        else:
            np.testing.assert_array_equal(next_obs[t], obs[t + 1])
    # the rollout state continues where the scan stopped
    np.testing.assert_array_equal(np.asarray(rollout.timestep.obs), next_obs[6])

    metrics = episode_metrics(info)
    assert float(metrics["episodes"]) == 4.0  # two episodes in each of two envs
    returns = np.asarray(tr.reward).sum(-1)  # team reward per step, (T, B)
    expected = np.mean([returns[0:3, 0].sum(), returns[3:6, 0].sum(), returns[0:3, 1].sum(),
                        returns[3:6, 1].sum()])
    np.testing.assert_allclose(float(metrics["episode_return"]), expected, rtol=1e-5)
    assert float(metrics["episode_length"]) == 3.0


def test_no_finished_episode_gives_nan_not_zero():
    env, params = make("tracking-v1")
    venv = batch_env(env, 2)
    state, ts = venv.reset(jax.random.PRNGKey(0), params)
    _, _, info = collect(venv, params, _constant_policy, RolloutState(state, ts),
                         jax.random.PRNGKey(1), 3)
    metrics = episode_metrics(info)
    assert float(metrics["episodes"]) == 0.0 and np.isnan(float(metrics["episode_return"]))
