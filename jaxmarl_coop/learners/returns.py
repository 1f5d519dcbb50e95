"""Return estimation with terminated and truncated episode ends kept apart.

A transition ``t`` carries ``reward[t]``, ``terminated[t]`` (its next state is terminal:
worth 0) and ``truncated[t]`` (the time limit cut the episode: its next state — the true
final observation — is worth its estimated value). ``bootstrap[t]`` is the estimated value
of the state after transition ``t`` (for DQN ``max_a Q_target(next_obs_t, a)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def nstep_targets(rewards: jax.Array, terminated: jax.Array, truncated: jax.Array,
                  bootstrap: jax.Array, gamma: jax.Array | float) -> jax.Array:
    """The n-step TD target of the first transition of a sequence of length ``n``.

    Inputs have shape ``(n, ...)`` (time first; trailing axes, e.g. agents, broadcast).
    With ``m`` the number of transitions up to and including the first episode end (or
    ``n`` if none ends)::

        G = sum_{k < m} gamma^k r_k  +  gamma^m * (1 - terminated_{m-1}) * bootstrap_{m-1}

    so a terminal end adds nothing after it, and a truncated end bootstraps from the
    true final observation, never from the next episode.
    """
    n = rewards.shape[0]
    done = jnp.logical_or(terminated, truncated).astype(bool)
    # alive[k]: no episode end strictly before k
    ended_before = jnp.cumsum(done, axis=0) - done
    alive = (ended_before == 0).astype(rewards.dtype)
    discounts = gamma ** jnp.arange(n, dtype=rewards.dtype).reshape((n,) + (1,) *
                                                                    (rewards.ndim - 1))
    partial = jnp.sum(alive * discounts * rewards, axis=0)
    # the last transition taken: the first done one, or the last of the sequence
    is_last = alive * jnp.where(jnp.arange(n).reshape((n,) + (1,) * (rewards.ndim - 1))
                                == n - 1, 1.0, done.astype(rewards.dtype))
    tail = jnp.sum(is_last * discounts * gamma * (1.0 - terminated.astype(rewards.dtype))
                   * bootstrap, axis=0)
    return partial + tail


def nstep_targets_batch(rewards: jax.Array, terminated: jax.Array, truncated: jax.Array,
                        bootstrap: jax.Array, gamma: jax.Array | float) -> jax.Array:
    """``nstep_targets`` for sequences stacked on a leading batch axis ``(B, n, ...)``."""
    return jax.vmap(nstep_targets, in_axes=(0, 0, 0, 0, None))(rewards, terminated, truncated,
                                                                 bootstrap, gamma)


def gae(rewards: jax.Array, values: jax.Array, next_values: jax.Array, terminated: jax.Array,
        truncated: jax.Array, gamma: jax.Array | float, lam: jax.Array | float
        ) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates and value targets over a rollout, time first.

    ``values[t] = V(s_t)``; ``next_values[t]`` is the value of the state after transition
    ``t`` — of the true final observation when an episode ends there. Shapes ``(T, ...)``;
    ``terminated``/``truncated`` broadcast against the trailing axes::

        delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}

    so a terminal state is worth nothing, a truncated one is bootstrapped, and no estimate
    reaches across an episode end. Returns ``(advantages, advantages + values)``.
    """
    not_terminal = 1.0 - terminated.astype(rewards.dtype)
    not_done = 1.0 - jnp.logical_or(terminated, truncated).astype(rewards.dtype)
    deltas = rewards + gamma * not_terminal * next_values - values

    def backward(carry: jax.Array, x: tuple[jax.Array, jax.Array]):
        delta, keep = x
        advantage = delta + gamma * lam * keep * carry
        return advantage, advantage

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(deltas[0]),
                                 (deltas, jnp.broadcast_to(not_done, deltas.shape)),
                                 reverse=True)
    return advantages, advantages + values
