"""Networks shared by the learners, and the agent -> parameter-group plumbing.

Parameter sharing is expressed with *groups*: every agent uses the parameters of its group,
stacked on a leading group axis. ``share_params=True`` gives one group per team (agents of
one team share, teams never do) and appends a one-hot agent id to each input;
``share_params=False`` gives every agent its own group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmarl_coop.envs.core import Env


def orthogonal(scale: float = 1.0, column_axis: int = -1) -> Callable[..., jax.Array]:
    """``nn.initializers.orthogonal`` without LAPACK: the same matrix, from the same normal
    draw, by Gram-Schmidt (run twice for accuracy) instead of a QR factorisation.

    Why: under ``vmap`` (seeds) the QR becomes a batched LAPACK call, and jaxlib 0.10's CPU
    kernel splits a batch over XLA's intra-op thread pool and blocks until it is done. Two
    such calls running at once (actor and critic init) fill a 2-thread pool with waiters and
    the program deadlocks forever. Gram-Schmidt is plain XLA ops. In exact arithmetic it gives
    the QR's ``Q`` with a positive ``R`` diagonal, which is what flax's sign fix produces.
    """

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        if len(shape) < 2:
            raise ValueError(f"orthogonal init needs at least 2 dimensions, got shape {shape}")
        n_cols = shape[column_axis]
        n_rows = int(np.prod(shape)) // n_cols
        tall = (n_rows, n_cols) if n_rows >= n_cols else (n_cols, n_rows)
        a = jax.random.normal(key, tall, jnp.float32)
        q = _gram_schmidt(a)
        if n_rows < n_cols:
            q = q.T
        q = jnp.reshape(q, (n_rows, n_cols))
        q = jnp.reshape(q, (*np.delete(shape, column_axis), n_cols))
        q = jnp.moveaxis(q, -1, column_axis)
        return (scale * q).astype(dtype)

    return init


def _gram_schmidt(a: jax.Array) -> jax.Array:
    """Orthonormal columns spanning ``a``'s (m >= k) leading columns, in order."""
    k = a.shape[1]
    cols = jnp.arange(k)

    def body(j: jax.Array, q: jax.Array) -> jax.Array:
        done = (cols < j).astype(a.dtype)  # columns already orthonormalised
        v = a[:, j]
        for _ in range(2):  # classical Gram-Schmidt, twice ("CGS2")
            v = v - q @ ((q.T @ v) * done)
        return q.at[:, j].set(v / jnp.linalg.norm(v))

    return jax.lax.fori_loop(0, k, body, jnp.zeros_like(a))


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
            x = act(nn.Dense(width, kernel_init=orthogonal(np.sqrt(2.0)))(x))
        return nn.Dense(self.out_dim, kernel_init=orthogonal(self.out_scale))(x)


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


class RecurrentMLP(nn.Module):
    """A recurrent network in three parts: ``embed`` (``Dense(rnn_hidden)`` and the
    activation), ``recur`` (a GRU cell) and ``head`` (an :class:`MLP` with ``out_dim``
    outputs; with ``gaussian``, followed by a learned log-std per output, as ``Actor``).

    ``__call__(h, x, start) -> (h', out)`` is one step: ``h`` ``(..., rnn_hidden)`` is the
    hidden state before the step, ``x`` ``(..., D)`` the input and ``start`` ``(...)`` bool
    marks an episode start, where the hidden state is zeroed (the initial carry) before the
    step. Only ``recur`` depends on the past, so a sequence runs ``embed`` and ``head`` on all
    its steps at once and scans ``recur`` alone (:meth:`GroupedRecurrent.sequence`). Every
    kernel, the GRU's recurrent ones included, is initialised with the LAPACK-free
    :func:`orthogonal` (flax's GRU default is a QR-based orthogonal init).
    """

    hidden: Sequence[int]
    rnn_hidden: int
    out_dim: int
    activation: str = "relu"
    out_scale: float = 1.0
    gaussian: bool = False

    def setup(self) -> None:
        self.embedding = nn.Dense(self.rnn_hidden, kernel_init=orthogonal(np.sqrt(2.0)))
        self.cell = nn.GRUCell(self.rnn_hidden, kernel_init=orthogonal(1.0),
                               recurrent_kernel_init=orthogonal(1.0))
        self.mlp = MLP(self.hidden, self.out_dim, self.activation, self.out_scale)
        if self.gaussian:
            self.log_std = self.param("log_std", nn.initializers.constant(-0.5),
                                      (self.out_dim,))

    def embed(self, x: jax.Array) -> jax.Array:
        return {"relu": nn.relu, "tanh": nn.tanh}[self.activation](self.embedding(x))

    def recur(self, h: jax.Array, e: jax.Array, start: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
        return self.cell(jnp.where(start[..., None], 0.0, h), e)

    def head(self, y: jax.Array) -> jax.Array:
        out = self.mlp(y)
        if not self.gaussian:
            return out
        return jnp.concatenate([out, jnp.broadcast_to(self.log_std, out.shape)], axis=-1)

    def __call__(self, h: jax.Array, x: jax.Array, start: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
        h, y = self.recur(h, self.embed(x), start)
        return h, self.head(y)


class GroupedRecurrent:
    """:class:`GroupedApply` for a :class:`RecurrentMLP`: per-group parameters, every agent
    carrying its own hidden state.

    ``carry(batch_shape)`` is the zero hidden state ``(*batch_shape, N, H)``;
    ``step(params, h, obs, start)`` maps ``h`` ``(..., N, H)``, ``obs`` ``(..., N, D)`` and
    ``start`` ``(...)`` (one flag per env, shared by its agents) to ``(h', out (..., N, out))``;
    ``sequence(params, h0, obs, start)`` runs ``step`` along a leading time axis of ``obs``
    ``(T, ..., N, D)`` and ``start`` ``(T, ...)`` from ``h0``, returning the hidden state after
    the last step and the outputs ``(T, ..., N, out)``: the embedding and the head on all ``T``
    steps at once, only the GRU cell scanned. Acting step by step and ``sequence`` compute the
    same numbers (up to float rounding).
    """

    def __init__(self, module: RecurrentMLP, groups: np.ndarray, with_agent_ids: bool) -> None:
        self.module = module
        self.groups = np.asarray(groups, np.int32)
        self.num_groups = int(self.groups.max()) + 1
        self.num_agents = len(self.groups)
        self.with_agent_ids = with_agent_ids

    def carry(self, batch_shape: tuple[int, ...] = ()) -> jax.Array:
        return jnp.zeros((*batch_shape, self.num_agents, self.module.rnn_hidden), jnp.float32)

    def init(self, key: jax.Array, obs: jax.Array) -> Any:
        x = (add_agent_ids(obs) if self.with_agent_ids else obs)[..., 0, :]
        h = jnp.zeros((*x.shape[:-1], self.module.rnn_hidden), jnp.float32)
        start = jnp.zeros(x.shape[:-1], bool)
        keys = jax.random.split(key, self.num_groups)
        return jax.vmap(lambda k: self.module.init(k, h, x, start))(keys)

    def _apply(self, params: Any, method: Callable[..., Any], *args: jax.Array) -> Any:
        """``method`` of the module on ``args`` whose second-to-last axis (or, for ``start``
        flags of ``ndim`` one less, last) is the agent axis: with one group a plain batched
        call, else one call per agent with its group's parameters."""
        if self.num_groups == 1:
            return self.module.apply(jax.tree.map(lambda p: p[0], params), *args,
                                     method=method)
        per_agent = jax.tree.map(lambda p: p[self.groups], params)  # (N, ...)
        axis = args[0].ndim - 2
        moved = [jnp.moveaxis(a, axis, 0) for a in args]
        out = jax.vmap(lambda p, *a: self.module.apply(p, *a, method=method))(per_agent,
                                                                              *moved)
        return jax.tree.map(lambda o: jnp.moveaxis(o, 0, axis), out)

    def _inputs(self, obs: jax.Array) -> jax.Array:
        return add_agent_ids(obs) if self.with_agent_ids else obs

    def step(self, params: Any, h: jax.Array, obs: jax.Array, start: jax.Array
             ) -> tuple[jax.Array, jax.Array]:
        x = self._inputs(obs)
        start = jnp.broadcast_to(jnp.asarray(start, bool)[..., None], x.shape[:-1])
        return self._apply(params, RecurrentMLP.__call__, h, x, start)

    def sequence(self, params: Any, h0: jax.Array, obs: jax.Array, start: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
        x = self._inputs(obs)
        start = jnp.broadcast_to(jnp.asarray(start, bool)[..., None], x.shape[:-1])
        e = self._apply(params, RecurrentMLP.embed, x)  # (T, ..., N, E): all steps at once

        def body(h: jax.Array, inputs: tuple[jax.Array, jax.Array]):
            return self._apply(params, RecurrentMLP.recur, h, *inputs)

        h, y = jax.lax.scan(body, h0, (e, start))
        return h, self._apply(params, RecurrentMLP.head, y)

