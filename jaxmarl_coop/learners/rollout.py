"""Collect ``T`` steps from a batch of auto-resetting envs, and summarise episodes.

The env is a batch (``VecEnv``) of ``EpisodeStats(AutoReset(...))`` envs, so every array
has leading ``(B, N)`` (or ``(B,)``) axes. A policy maps ``(key, timestep)`` of the batch
to ``(actions, extras)``; extras (log-probs, values, ...) are stored with the transition.

A recurrent learner keeps its policy's hidden state in ``RolloutState.carry`` (``()`` for a
feed-forward one); its policy is then ``(key, timestep, carry) -> (actions, extras, carry)``
and resets the carry itself where ``timestep.done`` marks an episode start (the auto-reset
timestep that ends an episode carries the next episode's first observation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxmarl_coop.envs.core import Env, TimeStep


class Transition(NamedTuple):
    """One step of a batch of envs; every field has leading (B,) or (B, N) axes."""

    obs: jax.Array  # (B, N, D) what the agents acted on
    action_mask: jax.Array  # (B, N, A)
    global_state: jax.Array  # (B, S)
    action: jax.Array  # (B, N) or (B, N, A) continuous
    reward: jax.Array  # (B, N)
    terminated: jax.Array  # (B,)
    truncated: jax.Array  # (B,)
    next_obs: jax.Array  # (B, N, D) the true next observation (final one at an episode end)
    next_action_mask: jax.Array  # (B, N, A)
    next_global_state: jax.Array  # (B, S)
    extras: dict[str, jax.Array]


class RolloutState(NamedTuple):
    env_state: Any
    timestep: TimeStep
    carry: Any = ()  # a recurrent policy's hidden state; () for a feed-forward one


#: the acting function of a learner's rollout: ``(key, timestep) -> (actions, extras)``, or
#: with a carry ``(key, timestep, carry) -> (actions, extras, carry)``
ActWithExtras = Callable[..., tuple[Any, ...]]


def collect(env: Env, env_params: Any, policy: ActWithExtras, rollout: RolloutState, key: jax.Array,
            num_steps: int) -> tuple[RolloutState, Transition, dict[str, jax.Array]]:
    """Run ``num_steps`` steps; returns the new rollout state, the transitions ``(T, B, ...)``
    and the per-step ``info`` ``(T, B, ...)`` (episode statistics included). With a
    non-empty ``rollout.carry`` the policy takes and returns the carry."""
    recurrent = bool(jax.tree.leaves(rollout.carry))

    def body(carry: RolloutState, key: jax.Array):
        k_act, k_env = jax.random.split(key)
        ts = carry.timestep
        if recurrent:
            actions, extras, memory = policy(k_act, ts, carry.carry)
        else:
            (actions, extras), memory = policy(k_act, ts), carry.carry
        env_state, next_ts = env.step(k_env, carry.env_state, actions, env_params)
        info = next_ts.info
        transition = Transition(
            obs=ts.obs, action_mask=ts.action_mask, global_state=ts.global_state,
            action=actions, reward=next_ts.reward, terminated=next_ts.terminated,
            truncated=next_ts.truncated, next_obs=info["final_obs"],
            next_action_mask=info["final_action_mask"],
            next_global_state=info["final_global_state"], extras=extras)
        stats = {k: v for k, v in info.items() if not k.startswith("final_")}
        return RolloutState(env_state, next_ts, memory), (transition, stats)

    rollout, (transitions, info) = jax.lax.scan(body, rollout, jax.random.split(key, num_steps))
    return rollout, transitions, info


def episode_metrics(info: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Means over the episodes that finished in a rollout's ``info`` (``(T, B, ...)``).

    ``episode_return`` is the team return (sum over agents); ``episodes`` counts finished
    episodes. With none finished, the means are NaN (not a made-up 0).
    """
    done = info["episode_done"].astype(jnp.float32)
    count = jnp.sum(done)

    def mean(x: jax.Array) -> jax.Array:
        return jnp.where(count > 0, jnp.sum(x * done) / jnp.maximum(count, 1.0), jnp.nan)

    out = {"episodes": count,
           "episode_return": mean(jnp.sum(info["episode_return"], axis=-1)),
           "episode_length": mean(info["episode_length"].astype(jnp.float32))}
    for k, v in info.items():
        if k.startswith("episode_") and k not in out and k != "episode_done" and \
                v.shape == done.shape:
            out[k] = mean(v.astype(jnp.float32))
    return out
