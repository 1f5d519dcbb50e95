"""Networks shared by the learners, and the agent -> parameter-group plumbing.

Parameter sharing is expressed with *groups*: every agent uses the parameters of its group,
stacked on a leading group axis. ``share_params=True`` gives one group per team (agents of
one team share, teams never do) and appends a one-hot agent id to each input;
``share_params=False`` gives every agent its own group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmarl_coop.envs.core import Env


class MLP(nn.Module):
    """A multilayer perceptron with orthogonal init; ``out_dim`` linear outputs."""

    hidden: Sequence[int]
    out_dim: int
    activation: str = "relu"
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = {"relu": nn.relu, "tanh": nn.tanh}[self.activation]
        for width in self.hidden:
            x = act(nn.Dense(width, kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)))(x))
        return nn.Dense(self.out_dim, kernel_init=nn.initializers.orthogonal(self.out_scale))(x)


def agent_groups(env: Env, share_params: bool) -> np.ndarray:
    """``(N,)`` group index of every agent (see the module docstring)."""
    if not share_params:
        return np.arange(env.num_agents, dtype=np.int32)
    groups = np.full(env.num_agents, -1, dtype=np.int32)
    for g, members in enumerate(env.teams.values()):
        groups[list(members)] = g
    if np.any(groups < 0):
        raise ValueError(f"{env.name}: teams {env.teams} do not cover all {env.num_agents} "
                         "agents")
    return groups


def add_agent_ids(obs: jax.Array) -> jax.Array:
    """Append a one-hot agent id to ``(..., N, D)`` observations."""
    n = obs.shape[-2]
    ids = jnp.broadcast_to(jnp.eye(n, dtype=obs.dtype), (*obs.shape[:-2], n, n))
    return jnp.concatenate([obs, ids], axis=-1)


class GroupedApply:
    """Applies one module with per-group parameters to every agent's input.

    ``init(key, sample_obs)`` returns params stacked ``(G, ...)``;
    ``apply(params, obs)`` maps ``(..., N, D)`` observations to ``(..., N, out)``.
    """

    def __init__(self, module: nn.Module, groups: np.ndarray, with_agent_ids: bool) -> None:
        self.module = module
        self.groups = np.asarray(groups, np.int32)
        self.num_groups = int(self.groups.max()) + 1
        self.with_agent_ids = with_agent_ids

    def _inputs(self, obs: jax.Array) -> jax.Array:
        return add_agent_ids(obs) if self.with_agent_ids else obs

    def init(self, key: jax.Array, obs: jax.Array) -> Any:
        x = self._inputs(obs)[..., 0, :]
        keys = jax.random.split(key, self.num_groups)
        return jax.vmap(lambda k: self.module.init(k, x))(keys)

    def apply(self, params: Any, obs: jax.Array) -> jax.Array:
        x = self._inputs(obs)
        if self.num_groups == 1:  # one set of weights for everyone: a plain batched apply
            return self.module.apply(jax.tree.map(lambda p: p[0], params), x)
        per_agent = jax.tree.map(lambda p: p[self.groups], params)  # (N, ...)
        agent_axis = x.ndim - 2
        x = jnp.moveaxis(x, agent_axis, 0)  # (N, ..., D)
        out = jax.vmap(self.module.apply)(per_agent, x)
        return jnp.moveaxis(out, 0, agent_axis)
