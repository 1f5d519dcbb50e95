"""Pure evaluation of a policy: whole episodes on a batch of envs, one jitted call.

A policy is a ``jaxmarl_coop.envs.Policy``, ``policy(key, timestep, carry) -> (actions,
carry)`` (a reference script, or a trained network's greedy or sampled actions); its carry
starts from ``policy.initial_carry()`` and is reset at every episode start. ``evaluate``
plays one episode in each of ``num_episodes`` envs and returns per-episode figures: the team
return (sum over agents of each agent's return), per-agent returns, length, and the episode
mean of every scalar metric the env reports in ``info``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxmarl_coop.envs.core import Env, check_count, episode_limit
from jaxmarl_coop.envs.policy import Policy, check_policy, reset_carry
from jaxmarl_coop.envs.wrappers import AutoReset, EpisodeStats


def evaluate(env: Env, params: Any, policy: Policy, key: jax.Array, num_episodes: int,
             max_steps: int | None = None) -> dict[str, jax.Array]:
    """One episode per env in a batch of ``num_episodes``; jittable and vmappable.

    ``max_steps`` bounds the scan (default: ``envs.core.episode_limit``, ``params.max_steps``,
    which must then be concrete, or the env's ``max_episode_steps``); an episode still
    running after it is reported with ``completed = False``.
    Returns ``return`` (E,), ``agent_returns`` (E, N), ``length`` (E,), ``completed`` (E,)
    and one (E,) array per env metric.
    """
    num_episodes = check_count("num_episodes", num_episodes, 1)
    policy = check_policy(policy, "evaluate")
    if max_steps is None:
        max_steps = episode_limit(env, params)
    max_steps = check_count("max_steps", max_steps, 1)
    stats_env = EpisodeStats(AutoReset(env))

    def one_episode(key: jax.Array) -> dict[str, jax.Array]:
        k_reset, k_run = jax.random.split(key)
        state, ts = stats_env.reset(k_reset, params)
        first = _episode_figures(ts.info)
        empty = jax.tree.map(jnp.zeros_like, first)

        def body(carry, key):
            state, ts, memory, done_before, record = carry
            k_act, k_step = jax.random.split(key)
            actions, memory = policy(k_act, ts, memory)
            state, ts = stats_env.step(k_step, state, actions, params)
            memory = reset_carry(policy, memory, ts.info["episode_done"])
            now = ts.info["episode_done"] & ~done_before
            record = jax.tree.map(lambda new, old: jnp.where(now, new, old),
                                  _episode_figures(ts.info), record)
            return (state, ts, memory, done_before | ts.info["episode_done"], record), None

        init = (state, ts, policy.initial_carry(None), jnp.zeros((), bool), empty)
        (_, _, _, completed, record), _ = jax.lax.scan(body, init,
                                                       jax.random.split(k_run, max_steps))
        return dict(record, completed=completed)

    return jax.vmap(one_episode)(jax.random.split(key, num_episodes))


def _episode_figures(info: dict[str, jax.Array]) -> dict[str, jax.Array]:
    out = {"return": jnp.sum(info["episode_return"]), "agent_returns": info["episode_return"],
           "length": info["episode_length"]}
    out.update({k[len("episode_"):]: v for k, v in info.items()
                if k.startswith("episode_") and k not in ("episode_return", "episode_length",
                                                          "episode_done")})
    return out
