"""The environment contract: ``TimeStep``, the ``Env`` base class and parameter checks.

Every array carries a leading agent axis. ``reset`` and ``step`` are pure functions of
their arguments; task parameters (``Params``) are a pytree passed at call time, so a sweep
over them is a ``vmap``, not a recompile. ``step`` never resets: see ``wrappers.AutoReset``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxmarl_coop.envs.spaces import Box, Discrete, Space


class TimeStep(NamedTuple):
    """What the agents see after ``reset`` or ``step``.

    obs:          (N, obs_dim) float32, each agent's own view, zero-padded to one width.
    action_mask:  (N, A) bool, legal actions (all True where every action is legal).
    global_state: (state_dim,) float32, what a centralised critic sees.
    reward:       (N,) float32.
    terminated:   () bool, a terminal state: do not bootstrap.
    truncated:    () bool, the time limit: bootstrap from ``obs``.
    info:         dict of metrics (scalars), plus arrays added by wrappers.
    """

    obs: jax.Array
    action_mask: jax.Array
    global_state: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    info: dict[str, Any]

    @property
    def done(self) -> jax.Array:
        """True where the episode ended, either way."""
        return jnp.logical_or(self.terminated, self.truncated)


def concrete_values(value: Any) -> np.ndarray | None:
    """The value as a numpy array if it is a concrete number, else None (tracers etc.)."""
    if isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, (bool, int, float, np.ndarray, np.number, np.bool_, jax.Array)):
        try:
            return np.asarray(value)
        except Exception:
            return None
    return None


def check_param(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_inclusive: bool = True, high_inclusive: bool = True,
                allow_inf: bool = False) -> None:
    """Raise a ``ValueError`` naming ``name`` if a concrete ``value`` is out of range.

    Traced values (inside ``jit``/``vmap``) are not checked here: their ranges were
    checked when the concrete params were built. NaN is never accepted; +/-inf only
    with ``allow_inf`` (e.g. ``max_speed=inf`` for "no limit").
    """
    arr = concrete_values(value)
    if arr is None:
        return
    bounds = []
    if low is not None:
        bounds.append(("≥" if low_inclusive else ">") + f" {low}")
    if high is not None:
        bounds.append(("≤" if high_inclusive else "<") + f" {high}")
    expected = " and ".join(bounds) or "a number"
    if np.any(np.isnan(arr)) or (not allow_inf and not np.all(np.isfinite(arr))):
        raise ValueError(f"{name} must be a finite number {expected}, got {value!r}")
    bad = np.zeros(arr.shape, bool)
    if low is not None:
        bad |= (arr < low) if low_inclusive else (arr <= low)
    if high is not None:
        bad |= (arr > high) if high_inclusive else (arr >= high)
    if np.any(bad):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_count(name: str, value: Any, minimum: int) -> int:
    """A static count (number of agents, landmarks ...): a Python int ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


State = TypeVar("State")
Params = TypeVar("Params")


class Env(Generic[State, Params]):
    """Base class of every environment.

    Subclasses set the static attributes in ``__init__`` and implement ``default_params``,
    ``reset_env`` and ``step_env``. The public ``reset``/``step`` validate what they are
    given (at trace time) and delegate.
    """

    #: Registered id such as ``"spread-v3"``; set by the registry.
    name: ClassVar[str] = ""
    num_agents: int
    num_actions: int  # discrete: number of actions; continuous: action dimension
    obs_dim: int
    state_dim: int
    agent_names: tuple[str, ...]
    teams: dict[str, tuple[int, ...]]
    continuous_actions: bool = False
    #: Raise (through ``checkify``) on out-of-range actions instead of the documented fallback.
    debug: bool = False
    #: Optional tabular protocol: how many distinct indices ``obs_index`` returns (None: no
    #: tabular index; the env's observations are not a small discrete set).
    num_obs_indices: int | None = None

    # ----- to implement -------------------------------------------------------------------
    def default_params(self) -> Params:
        raise NotImplementedError

    def reset_env(self, key: jax.Array, params: Params) -> tuple[State, TimeStep]:
        raise NotImplementedError

    def step_env(self, key: jax.Array, state: State, actions: jax.Array, params: Params
                 ) -> tuple[State, TimeStep]:
        raise NotImplementedError

    def obs_index(self, obs: jax.Array) -> jax.Array:
        """Tabular index of each agent's observation, for envs with ``num_obs_indices``.

        ``obs`` has shape ``(..., N, width)`` with ``width >= obs_dim``: only the leading
        ``obs_dim`` columns are read, so observations with columns appended at the end
        (``AgentID``) decode the same. Returns int32 of shape ``(..., N)`` in
        ``[0, num_obs_indices)``. Decoding from observations rather than from the state lets
        a tabular learner index ``info["final_obs"]`` (kept by ``AutoReset``) too.
        """
        raise NotImplementedError(f"{self.name or type(self).__name__} has no tabular "
                                  "observation index (num_obs_indices is None)")

    # ----- public contract ----------------------------------------------------------------
    def reset(self, key: jax.Array, params: Params | None = None) -> tuple[State, TimeStep]:
        """Start an episode. ``params`` defaults to ``default_params()``."""
        if params is None:
            params = self.default_params()
        self._check_params_type(params)
        return self.reset_env(key, params)

    def step(self, key: jax.Array, state: State, actions: jax.Array, params: Params | None = None
             ) -> tuple[State, TimeStep]:
        """Advance one step for all agents at once. Never resets."""
        if params is None:
            params = self.default_params()
        self._check_params_type(params)
        actions = self.prepare_actions(actions)
        return self.step_env(key, state, actions, params)

    def render(self, state: State, params: Params | None = None, *, size: int | None = None
               ) -> np.ndarray:
        """One RGB frame of ``state``, ``uint8 (size, size, 3)`` (``envs.render``; outside jit).

        ``state`` is one env's state: a batch (leading env axis) is a ``ValueError``.
        ``size`` is the frame's width and height in pixels (default 400).
        """
        raise NotImplementedError(f"{type(self).__name__} ({self.name or 'unregistered'}) "
                                  "does not implement render")

    # ----- spaces ---------------------------------------------------------------------------
    @property
    def action_space(self) -> Space:
        """The joint action: ``(N,)`` ints, or ``(N, num_actions)`` floats in [0, 1]."""
        if self.continuous_actions:
            return Box(0.0, 1.0, (self.num_agents, self.num_actions), np.float32)
        return Discrete(self.num_actions, (self.num_agents,), np.int32)

    @property
    def observation_space(self) -> Box:
        return Box(-np.inf, np.inf, (self.num_agents, self.obs_dim), np.float32)

    @property
    def global_state_space(self) -> Box:
        return Box(-np.inf, np.inf, (self.state_dim,), np.float32)

    def agent_action_space(self, agent: int | str) -> Space:
        """One agent's own action space (identical for every agent unless overridden)."""
        self._agent_index(agent)
        if self.continuous_actions:
            return Box(0.0, 1.0, (self.num_actions,), np.float32)
        return Discrete(self.num_actions, (), np.int32)

    def agent_obs_dim(self, agent: int | str) -> int:
        """Width of one agent's unpadded observation (padding zeros follow it)."""
        self._agent_index(agent)
        return self.obs_dim

    def _agent_index(self, agent: int | str) -> int:
        if isinstance(agent, str):
            if agent not in self.agent_names:
                raise ValueError(f"unknown agent {agent!r}; agents are {list(self.agent_names)}")
            return self.agent_names.index(agent)
        if not 0 <= int(agent) < self.num_agents:
            raise ValueError(f"agent index {agent!r} out of range [0, {self.num_agents})")
        return int(agent)

    def all_legal_mask(self) -> jax.Array:
        return jnp.ones((self.num_agents, self.num_actions), dtype=bool)

    # ----- validation -----------------------------------------------------------------------
    def _check_params_type(self, params: Any) -> None:
        expected = type(self.default_params())
        if type(params) is not expected:
            raise TypeError(f"{self.name or type(self).__name__} expects params of type "
                            f"{expected.__name__}, got {type(params).__name__}")

    def prepare_actions(self, actions: Any) -> jax.Array:
        """Check shape and dtype (at trace time) and apply the documented fallback.

        Discrete: an ``(N,)`` integer array; a value outside ``[0, num_actions)`` acts as
        action 0 (no-op). Continuous: an ``(N, num_actions)`` float array; values are clipped
        to [0, 1] and NaN acts as 0. With ``debug=True`` an out-of-range value is a
        ``checkify`` error instead (wrap the function with ``checkify.checkify``).
        """
        actions = jnp.asarray(actions)
        env = self.name or type(self).__name__
        if self.continuous_actions:
            expected = (self.num_agents, self.num_actions)
            if actions.shape != expected:
                raise ValueError(f"{env}: actions must have shape {expected} (agents, action "
                                 f"dims) of floats, got shape {actions.shape}")
            if not jnp.issubdtype(actions.dtype, jnp.floating):
                raise TypeError(f"{env}: continuous actions must be floats of shape {expected}, "
                                f"got dtype {actions.dtype}")
            actions = actions.astype(jnp.float32)
            if self.debug:
                checkify.check(jnp.all((actions >= 0) & (actions <= 1)),
                               f"{env}: continuous actions must lie in [0, 1]")
            return jnp.clip(jnp.nan_to_num(actions, nan=0.0), 0.0, 1.0)
        expected = (self.num_agents,)
        if actions.shape != expected:
            raise ValueError(f"{env}: actions must have shape {expected} (one int per agent), "
                             f"got shape {actions.shape}")
        if not jnp.issubdtype(actions.dtype, jnp.integer):
            raise TypeError(f"{env}: discrete actions must be integers of shape {expected}, "
                            f"got dtype {actions.dtype}")
        actions = actions.astype(jnp.int32)
        valid = (actions >= 0) & (actions < self.num_actions)
        if self.debug:
            checkify.check(jnp.all(valid), f"{env}: discrete actions must lie in "
                           f"[0, {self.num_actions})")
        return jnp.where(valid, actions, 0)

    # ----- helpers --------------------------------------------------------------------------
    def __repr__(self) -> str:
        mode = "continuous" if self.continuous_actions else "discrete"
        return (f"{type(self).__name__}(name={self.name!r}, num_agents={self.num_agents}, "
                f"{mode} actions={self.num_actions}, obs_dim={self.obs_dim}, "
                f"state_dim={self.state_dim})")


def check_obs_width(env: Env, obs: jax.Array) -> None:
    """For ``obs_index``: ``obs`` must be ``(..., N, width)`` with ``width >= obs_dim``."""
    if obs.ndim < 2 or obs.shape[-2] != env.num_agents or obs.shape[-1] < env.obs_dim:
        raise ValueError(f"{env.name or type(env).__name__}.obs_index expects observations "
                         f"of shape (..., {env.num_agents}, >= {env.obs_dim}), got {obs.shape}")


def random_policy(env: Env) -> Any:
    """Uniformly random legal actions, as a feed-forward ``Policy``
    (``policy(key, timestep, carry) -> (actions, carry)``).

    Discrete: uniform over the actions the mask allows; continuous: uniform in [0, 1].
    """
    from jaxmarl_coop.envs.policy import feed_forward  # policy.py imports this module

    def random(key: jax.Array, timestep: TimeStep) -> jax.Array:
        if env.continuous_actions:
            return env.action_space.sample(key)
        return env.action_space.sample(key, timestep.action_mask)

    return feed_forward(random)


def checked(fn: Any) -> Any:
    """``checkify`` a function of an env built with ``debug=True``; returns ``(err, out)``.

    ``err, out = jax.jit(checked(env.step))(key, state, actions, params); err.throw()``
    """
    return checkify.checkify(fn, errors=checkify.user_checks)


def params_replace(params: Any, **updates: Any) -> Any:
    """``params.replace(**updates)`` with a clear error for a field the params don't have."""
    names = [f.name for f in dataclasses.fields(params)]
    unknown = sorted(set(updates) - set(names))
    if unknown:
        bad = ", ".join(map(repr, unknown))
        raise ValueError(f"{type(params).__name__} has no parameter {bad}; "
                         f"valid parameters: {', '.join(names)}")
    return params.replace(**updates)
