"""Evaluation of fixed policies."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmarl_coop.envs import feed_forward, make
from jaxmarl_coop.learners.evaluation import evaluate


def test_evaluate_matches_a_hand_rolled_episode():
    env, params = make("spread-v3", max_steps=6)

    def policy(key, ts):
        return jnp.array([1, 2, 4], jnp.int32)

    out = jax.jit(lambda k: evaluate(env, params, feed_forward(policy), k, num_episodes=3))(
        jax.random.PRNGKey(0))
    assert out["return"].shape == (3,) and out["agent_returns"].shape == (3, 3)
    np.testing.assert_array_equal(np.asarray(out["length"]), [6, 6, 6])
    assert np.all(np.asarray(out["completed"]))

    # episode 1 by hand: same key plumbing as evaluate (reset with the wrapped env's key)
    key = jax.random.split(jax.random.PRNGKey(0), 3)[1]
    k_reset, _ = jax.random.split(key)
    state, _ = env.reset(k_reset, params)
    total, distances = np.zeros(3), []
    for _ in range(6):
        state, ts = env.step(jax.random.PRNGKey(0), state, jnp.array([1, 2, 4]), params)
        total += np.asarray(ts.reward)
        distances.append(float(ts.info["landmark_distance"]))
    np.testing.assert_allclose(np.asarray(out["agent_returns"][1]), total, rtol=1e-5)
    np.testing.assert_allclose(float(out["return"][1]), total.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(out["landmark_distance"][1]), np.mean(distances),
                               rtol=1e-5)


def test_episode_longer_than_the_budget_is_marked_incomplete():
    env, params = make("tracking-v1", max_steps=10)
    out = evaluate(env, params, feed_forward(lambda k, ts: jnp.zeros(2, jnp.int32)),
                   jax.random.PRNGKey(1), num_episodes=2, max_steps=5)
    assert not np.any(np.asarray(out["completed"]))
