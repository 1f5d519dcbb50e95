"""The flashbax replay buffer used by DQN, round trip inside jit."""

from __future__ import annotations

import flashbax as fbx
import jax
import jax.numpy as jnp
import numpy as np


def test_trajectory_buffer_round_trip_inside_jit():
    envs, steps, n_step = 4, 10, 3
    buffer = fbx.make_trajectory_buffer(add_batch_size=envs, sample_batch_size=64,
                                        sample_sequence_length=n_step, period=1,
                                        min_length_time_axis=n_step, max_length_time_axis=50)

    @jax.jit
    def fill_and_sample(key):
        state = buffer.init({"t": jnp.zeros((), jnp.int32), "env": jnp.zeros((), jnp.int32),
                             "obs": jnp.zeros((2, 3))})
        t = jnp.broadcast_to(jnp.arange(steps), (envs, steps))
        env = jnp.broadcast_to(jnp.arange(envs)[:, None], (envs, steps))
        obs = (t * 10 + env)[..., None, None] * jnp.ones((2, 3))
        state = buffer.add(state, {"t": t, "env": env, "obs": obs})
        return buffer.can_sample(state), buffer.sample(state, key).experience

    ok, sample = fill_and_sample(jax.random.PRNGKey(0))
    assert bool(ok)
    t, env, obs = (np.asarray(sample[k]) for k in ("t", "env", "obs"))
    assert t.shape == (64, n_step) and obs.shape == (64, n_step, 2, 3)
    # each sampled sequence is consecutive steps of one env, and the data came back intact
    np.testing.assert_array_equal(np.diff(t, axis=1), 1)
    np.testing.assert_array_equal(env, np.broadcast_to(env[:, :1], env.shape))
    np.testing.assert_array_equal(obs[..., 0, 0], t * 10 + env)
    assert t.max() <= steps - 1
