"""n-step targets on a hand-made trajectory with a terminal and a truncated end."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxmarl_coop.learners.returns import nstep_targets, nstep_targets_batch

# t:          0     1     2 (terminal)  3     4 (truncated)  5     6
REWARDS = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], np.float32)
TERMINATED = np.array([0, 0, 1, 0, 0, 0, 0], bool)
TRUNCATED = np.array([0, 0, 0, 0, 1, 0, 0], bool)
BOOTSTRAP = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0], np.float32)  # V(next obs)
GAMMA = 0.5


def _target(t, n):
    s = slice(t, t + n)
    return float(nstep_targets(jnp.asarray(REWARDS[s]), jnp.asarray(TERMINATED[s]),
                               jnp.asarray(TRUNCATED[s]), jnp.asarray(BOOTSTRAP[s]), GAMMA))


def test_one_step_targets():
    assert _target(0, 1) == 1.0 + 0.5 * 10.0
    assert _target(2, 1) == 3.0  # terminal: nothing after
    assert _target(4, 1) == 5.0 + 0.5 * 50.0  # truncated: bootstrap from the final obs


def test_three_step_targets_stop_at_episode_ends():
    assert _target(0, 3) == 1.0 + 0.5 * 2.0 + 0.25 * 3.0  # ends terminal at t=2
    assert _target(1, 3) == 2.0 + 0.5 * 3.0  # terminal inside: later rewards ignored
    assert _target(3, 3) == 4.0 + 0.5 * 5.0 + 0.25 * 50.0  # truncated at t=4: its bootstrap
    assert _target(4, 3) == 5.0 + 0.5 * 50.0  # next episode's reward (t=5) never leaks in


def test_no_end_uses_the_last_bootstrap():
    assert _target(5, 2) == 6.0 + 0.5 * 7.0 + 0.25 * 70.0


def test_batched_with_agent_axis():
    rewards = jnp.stack([jnp.asarray(REWARDS[:3]), jnp.asarray(REWARDS[3:6])])  # (2, 3)
    rewards = jnp.stack([rewards, 2 * rewards], axis=-1)  # (2, 3, N=2)
    term = jnp.stack([jnp.asarray(TERMINATED[:3]), jnp.asarray(TERMINATED[3:6])])[..., None]
    trunc = jnp.stack([jnp.asarray(TRUNCATED[:3]), jnp.asarray(TRUNCATED[3:6])])[..., None]
    boot = jnp.stack([jnp.asarray(BOOTSTRAP[:3]), jnp.asarray(BOOTSTRAP[3:6])])
    boot = jnp.stack([boot, boot], axis=-1)
    out = np.asarray(nstep_targets_batch(rewards, term, trunc, boot, GAMMA))
    np.testing.assert_allclose(out[:, 0], [_target(0, 3), _target(3, 3)])
    np.testing.assert_allclose(out[0, 1], 2 * 1.0 + 0.5 * 2 * 2.0 + 0.25 * 2 * 3.0)
