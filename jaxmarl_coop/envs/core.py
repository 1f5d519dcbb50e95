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


#: what a user may type for a param but JAX never puts in a params pytree
_NOT_A_NUMBER = (str, bytes, list, tuple, dict, set, frozenset, complex)
_KIND_WORDS = {int: "an integer (an int, or a float with an integral value such as 20.0)",
               float: "a number (int or float)", bool: "a bool (True or False)",
               "array": "a number or an array (list) of numbers"}


def _type_kinds(cls: type) -> dict[str, Any]:
    """Field name -> ``int``, ``float``, ``bool``, ``"array"``, a dataclass type, or None
    (unchecked), from the class's annotations (cached on the class)."""
    kinds = cls.__dict__.get("_field_kinds")
    if kinds is None:
        import typing

        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # an annotation that does not resolve: read the simple names only
            names = {"int": int, "float": float, "bool": bool}
            hints = {k: names.get(v, v) if isinstance(v, str) else v
                     for k, v in getattr(cls, "__annotations__", {}).items()}
        kinds = {}
        for field in dataclasses.fields(cls):
            hint = hints.get(field.name)
            if hint in (int, float, bool):
                kinds[field.name] = hint
            elif hint is jax.Array or hint is np.ndarray:
                kinds[field.name] = "array"
            elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
                kinds[field.name] = hint
            else:
                kinds[field.name] = None
        type.__setattr__(cls, "_field_kinds", kinds)
    return kinds


def _is_placeholder(value: Any) -> bool:
    """A value JAX puts in a pytree's place while transforming it (a tracer, an abstract
    value, ``None`` in an ``in_axes`` tree, any other object that is not a number)."""
    if value is None or isinstance(value, (jax.core.Tracer, jax.ShapeDtypeStruct)):
        return True
    if isinstance(value, jax.Array):  # concrete arrays are checked; abstract ones are not
        return False
    return not isinstance(value, (_NOT_A_NUMBER, bool, int, float, np.ndarray, np.generic))


def _has_kind(value: Any, kind: Any) -> bool:
    """Whether a concrete ``value`` can be a ``kind`` (see ``check_type``)."""
    if isinstance(value, (str, bytes, dict, set, frozenset, complex)):
        return False
    if isinstance(value, (list, tuple)):
        if kind != "array":
            return False
        try:
            return np.asarray(value).dtype.kind in "iuf"
        except (ValueError, TypeError):  # ragged
            return False
    # the dtype without copying a device array to the host; the values only where needed
    dtype = np.dtype(value.dtype) if hasattr(value, "dtype") else np.asarray(value).dtype
    if kind is bool:
        return dtype.kind == "b"
    if dtype.kind not in "iuf":  # bools, complex, strings, objects
        return False
    if kind is int and dtype.kind == "f":
        arr = np.asarray(value)
        with np.errstate(invalid="ignore"):
            return bool(np.all(np.isfinite(arr) & (np.mod(arr, 1) == 0)))
    return True


def check_type(name: str, value: Any, kind: Any) -> None:
    """``ValueError`` naming ``name``, ``value`` and the expected type if ``value`` cannot be
    a ``kind`` (``int``, ``float``, ``bool`` or ``"array"``; see ``check_param_types``)."""
    if kind is None or _is_placeholder(value):
        return
    if isinstance(value, (list, tuple)) and any(map(_is_placeholder, jax.tree.leaves(value))):
        return  # e.g. a tuple of rates traced under jit (a tuple is a pytree node)
    if not _has_kind(value, kind):
        big = isinstance(value, (np.ndarray, jax.Array)) and np.size(value) >= 8
        shown = f"an array of shape {np.shape(value)}" if big else repr(value)
        raise ValueError(f"{name} must be {_KIND_WORDS[kind]}, got {shown} "
                         f"({type(value).__name__})")


def check_param_types(obj: Any) -> None:
    """``ValueError`` for any field of a params/hyperparams dataclass that is not of its
    annotated type (call it first thing in ``__post_init__``).

    ``int`` fields take integers (a float with an integral value, e.g. 20.0, is accepted);
    ``float`` fields take ints and floats; ``bool`` fields real bools; ``jax.Array`` fields a
    number, an array or a list of numbers; a nested params dataclass its own class. Numpy and
    JAX arrays of any shape pass the same checks element by element (a stacked sweep), and
    what JAX puts in the fields while transforming them (tracers, abstract values, ``None``
    in ``in_axes`` trees, placeholder objects) is not checked.
    """
    cls = type(obj)
    for name, kind in _type_kinds(cls).items():
        value = getattr(obj, name)
        label = f"{cls.__name__}.{name}"
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            if isinstance(value, (*_NOT_A_NUMBER, bool, float, np.ndarray)):
                raise ValueError(f"{label} must be a {kind.__name__}, got {value!r} "
                                 f"({type(value).__name__})")
            continue
        check_type(label, value, kind)


def check_flag(name: str, value: Any) -> bool:
    """A static switch (``continuous_actions``, ``debug`` ...): a real bool, not ``"yes"`` or 0."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


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
    #: Raise (through ``checkify``) on invalid actions instead of the documented fallback.
    debug: bool = False
    #: The discrete action an invalid one (outside ``[0, num_actions)``) acts as: the env's
    #: no-op. ``None`` where the env has no no-op: ``step_env`` then receives
    #: ``INVALID_ACTION`` (-1) for that agent and applies the env's documented worst outcome.
    noop_action: ClassVar[int | None] = 0
    #: Optional tabular protocol: how many distinct indices ``obs_index`` returns (None: no
    #: tabular index; the env's observations are not a small discrete set).
    num_obs_indices: int | None = None
    #: The most steps an episode lasts, for envs whose params have no ``max_steps`` (the
    #: adapted JaxMARL envs); ``episode_limit`` reads either.
    max_episode_steps: int | None = None
    #: ``info`` metrics whose value on an episode's last step is the episode's figure (SMAX's
    #: ``won``): ``EpisodeStats`` reports that value as ``episode_<name>``, not the mean
    #: over the episode's steps as for every other metric.
    end_metrics: tuple[str, ...] = ()

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
        """Start an episode. ``params`` defaults to ``default_params()``.

        ``info["invalid_actions"]`` is 0 (``step``'s info has the same keys).
        """
        if params is None:
            params = self.default_params()
        self._check_params_type(params)
        state, ts = self.reset_env(key, params)
        return state, _with_invalid_count(ts, jnp.zeros((), jnp.float32))

    def step(self, key: jax.Array, state: State, actions: jax.Array, params: Params | None = None
             ) -> tuple[State, TimeStep]:
        """Advance one step for all agents at once. Never resets.

        Invalid actions act as ``prepare_actions`` says; ``info["invalid_actions"]`` (float32)
        is the number of agents whose action was invalid this step.
        """
        if params is None:
            params = self.default_params()
        self._check_params_type(params)
        actions, invalid = self.prepare_actions(actions)
        state, ts = self.step_env(key, state, actions, params)
        return state, _with_invalid_count(ts, jnp.sum(invalid).astype(jnp.float32))

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

    def prepare_actions(self, actions: Any) -> tuple[jax.Array, jax.Array]:
        """Check shape and dtype (at trace time) and apply the documented fallback.

        Returns ``(actions, invalid)``, ``invalid`` an ``(N,)`` bool: the agents whose action
        was invalid. Discrete: an ``(N,)`` integer array; a value outside
        ``[0, num_actions)`` acts as ``noop_action`` (action 0 in the particle tasks, the grid
        and the intersection), or, where the env has no no-op (``noop_action`` None: the
        matrix games, load balancing), is passed to ``step_env`` as ``INVALID_ACTION`` (-1),
        which gives the env's documented worst outcome. Continuous: an
        ``(N, num_actions)`` float array; values are clipped to [0, 1] and NaN acts as 0; an
        agent with any value outside [0, 1] or NaN counts as invalid. With ``debug=True``
        an invalid value is a ``checkify`` error instead (wrap the function with
        ``envs.checked``). Strings, ``None`` and other non-numbers are a ``TypeError``.
        """
        env = self.name or type(self).__name__
        if self.continuous_actions:
            expected = (self.num_agents, self.num_actions)
            what = f"an array of floats in [0, 1] of shape {expected} (agents, action dims)"
        else:
            expected = (self.num_agents,)
            what = (f"an array of integers in [0, {self.num_actions}) of shape {expected} "
                    "(one per agent)")
        actions = _action_array(actions, f"{env}: actions must be {what}")
        if actions.shape != expected:
            axes = "agents, action dims" if self.continuous_actions else "one per agent"
            raise ValueError(f"{env}: actions must have shape {expected} ({axes}), got shape "
                             f"{actions.shape}")
        if self.continuous_actions:
            if not jnp.issubdtype(actions.dtype, jnp.floating):
                raise TypeError(f"{env}: continuous actions must be floats of shape {expected}, "
                                f"got dtype {actions.dtype}")
            actions = actions.astype(jnp.float32)
            invalid = ~jnp.all((actions >= 0) & (actions <= 1), axis=-1)  # NaN too
            self._debug_check(invalid, f"{env}: continuous actions must lie in [0, 1]")
            return jnp.clip(jnp.nan_to_num(actions, nan=0.0), 0.0, 1.0), invalid
        if not jnp.issubdtype(actions.dtype, jnp.integer):
            raise TypeError(f"{env}: discrete actions must be integers of shape {expected}, "
                            f"got dtype {actions.dtype}")
        actions = actions.astype(jnp.int32)
        invalid = (actions < 0) | (actions >= self.num_actions)
        self._debug_check(invalid, f"{env}: discrete actions must lie in [0, {self.num_actions})")
        fallback = INVALID_ACTION if self.noop_action is None else self.noop_action
        return jnp.where(invalid, fallback, actions), invalid

    def _debug_check(self, invalid: jax.Array, message: str) -> None:
        if not self.debug:
            return
        if _staged_without_checkify():  # else XLA's lowering fails with "not functionalized"
            env = self.name or type(self).__name__
            raise ValueError(
                f"{env} was built with debug=True, and its action checks need checkify: "
                "jit envs.checked(fn) instead of fn (fn: whatever steps the env, e.g. "
                "err, out = jax.jit(envs.checked(env.step))(...); err.throw()), or build the "
                "env without debug=True")
        checkify.check(~jnp.any(invalid), message)

    # ----- helpers --------------------------------------------------------------------------
    def __repr__(self) -> str:
        mode = "continuous" if self.continuous_actions else "discrete"
        return (f"{type(self).__name__}(name={self.name!r}, num_agents={self.num_agents}, "
                f"{mode} actions={self.num_actions}, obs_dim={self.obs_dim}, "
                f"state_dim={self.state_dim})")


def episode_limit(env: Env, params: Any) -> int:
    """The most steps an episode of ``env`` under ``params`` lasts: ``params.max_steps``
    (concrete), else the env's ``max_episode_steps``; a ``ValueError`` where neither says."""
    if hasattr(params, "max_steps"):
        return int(params.max_steps)
    if env.max_episode_steps is not None:
        return int(env.max_episode_steps)
    raise ValueError(f"{env.name or type(env).__name__}: neither its params nor the env say how "
                     "long an episode lasts (params.max_steps, env.max_episode_steps)")


#: What ``step_env`` receives for an invalid discrete action where ``noop_action`` is None.
INVALID_ACTION = -1
_INT32 = np.iinfo(np.int32)


def _staged_without_checkify() -> bool:
    """Whether we are tracing a program to compile (``jit``, ``scan`` ...) that no
    ``checkify`` encloses: a ``checkify.check`` there cannot be lowered (eager code and
    ``vmap`` need no checkify; ``jax.eval_shape`` traces as ``jit`` does, so it needs one
    too). Reads JAX's trace stack (internal); if that ever changes shape, the answer is
    False and JAX's own "not functionalized" error stands."""
    try:
        from jax._src import core as jax_core

        trace = jax_core.trace_ctx.trace
        staged = False
        while trace is not None:
            frame = getattr(trace, "frame", None)
            if frame is not None:
                traced_for = getattr(getattr(frame, "debug_info", None), "traced_for", None)
                if traced_for in ("checkify", "make_jaxpr"):
                    return False
                staged = True
            trace = getattr(trace, "parent_trace", None)
        return staged
    except Exception:  # an introspection aid only: never fail because of it
        return False


def _with_invalid_count(ts: TimeStep, count: jax.Array) -> TimeStep:
    return ts._replace(info={**ts.info, "invalid_actions": count})


def _action_array(actions: Any, expected: str) -> jax.Array:
    """``actions`` as a JAX array; a ``TypeError`` saying ``expected`` for a value that is no
    array of numbers (None, strings ...). Host integers beyond int32 are clipped to its range
    first, so that they stay out of range instead of wrapping around into it."""
    if isinstance(actions, jax.Array):  # tracers included
        return actions
    if actions is None or isinstance(actions, (str, bytes, dict, set)):
        raise TypeError(f"{expected}, got {actions!r} ({type(actions).__name__})")
    try:
        host = np.asarray(actions)
        if host.dtype == object and all(isinstance(x, (int, np.integer))
                                        and not isinstance(x, bool) for x in host.flat):
            host = np.array([min(max(int(x), _INT32.min), _INT32.max) for x in host.flat],
                            np.int64).reshape(host.shape)
        if host.dtype.kind not in "biuf":
            raise TypeError(host.dtype)
    except (TypeError, ValueError, OverflowError):
        shown = repr(actions) if len(repr(actions)) < 80 else repr(actions)[:77] + "..."
        raise TypeError(f"{expected}, got {shown} ({type(actions).__name__})") from None
    if host.dtype.kind == "u":
        host = np.minimum(host, _INT32.max).astype(np.int32)
    elif host.dtype.kind == "i":
        host = np.clip(host, _INT32.min, _INT32.max).astype(np.int32)
    return jnp.asarray(host)


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
