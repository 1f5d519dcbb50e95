"""``jaxmarl:NAME``: a JaxMARL environment under our env contract (the optional extra
``[jaxmarl]``: ``pip install -e ".[jaxmarl]"``).

``make("jaxmarl:MPE_simple_spread_v3")`` or ``make("jaxmarl:HeuristicEnemySMAX",
scenario="3m")`` builds JaxMARL's env with ``jaxmarl.make(NAME, **kwargs)`` and wraps it in
:class:`JaxMARLEnv`, so that our learners, sweeps, evaluation, checkpoints and the PettingZoo
adapter run on it. Every keyword argument goes to JaxMARL's constructor; for SMAX a map name
given as ``scenario="3m"`` is turned into JaxMARL's scenario object
(``map_name_to_scenario``). JaxMARL's environments keep their settings on the env object, so
an adapted env has **no traced params** (``JaxMARLParams`` is empty): a sweep over a task
setting builds one env per value.

What the adapter does (the contract in ``envs/core.py``):

- observations: each agent's observation flattened, stacked in JaxMARL's agent order
  (``env.agents``) and padded with zeros to the widest (``agent_obs_dim`` gives an agent's
  own width);
- actions: discrete only (a JaxMARL env with another action space is refused); ``(N,)``
  ints, ``num_actions`` the largest agent's count, the actions past an agent's own count
  masked illegal; an invalid action acts as the family's no-op (below). Action masks are the
  env's ``get_avail_actions`` where it has one, else every action is legal;
- global state: the env's world state where it has one (SMAX's ``world_state``), else the
  padded observations concatenated;
- ``reset``/``step``: JaxMARL's ``reset`` and ``step_env``, never its auto-resetting
  ``step`` (our ``AutoReset`` wraps any env); rewards stacked per agent;
- **terminated apart from truncated.** JaxMARL merges them into ``dones["__all__"]``; the
  adapter splits them per family, reading the env's own step counter and limit:

  =========  =====================================================  ==========================
  family     terminated                                             truncated
  =========  =====================================================  ==========================
  MPE        never (its episodes only run out of time)              ``dones["__all__"]``: the
                                                                    step that starts with
                                                                    ``step >= max_steps``
                                                                    (``max_steps + 1`` steps:
                                                                    26 for spread)
  SMAX       one side has no unit alive (a win, a loss or both)     ``dones["__all__"]``
                                                                    otherwise: as MPE, the
                                                                    step that starts with
                                                                    ``step >= max_steps``
                                                                    (101 steps by default)
  =========  =====================================================  ==========================

  Other JaxMARL families (Overcooked, Hanabi, coin game, STORM, ...) are refused with the
  list of adapted ones until their split is written and tested.
- ``info``: SMAX: ``won`` (every enemy dead while an ally lives, at the episode's end),
  ``allies_alive`` and ``enemies_alive`` (counts); MPE: none. ``teams`` groups agents by
  the name before their index (``adversary_0`` -> ``adversary``).

Rendering is not adapted (JaxMARL's own visualisers take its states:
``state.inner``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import os
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxmarl_coop.envs.core import Env, TimeStep
from jaxmarl_coop.envs.spaces import Discrete

PREFIX = "jaxmarl:"


@struct.dataclass
class JaxMARLParams:
    """Empty: a JaxMARL env keeps its settings on the env object (constructor keywords)."""


@struct.dataclass
class JaxMARLState:
    inner: Any  # the JaxMARL env's own state


class _Family:
    """How one JaxMARL family ends its episodes, its no-op and its info."""

    name: ClassVar[str]
    noop: ClassVar[int]

    def terminated(self, env: Any, state: Any, done: jax.Array) -> jax.Array:
        raise NotImplementedError

    def info(self, env: Any, state: Any) -> dict[str, jax.Array]:
        return {}


class _MPE(_Family):
    name, noop = "MPE", 0  # action 0: no force

    def terminated(self, env: Any, state: Any, done: jax.Array) -> jax.Array:
        return jnp.zeros((), bool)


class _SMAX(_Family):
    name, noop = "SMAX", 4  # action 4: stop (0-3 move, 5+ attack)

    @staticmethod
    def _alive(env: Any, state: Any) -> tuple[jax.Array, jax.Array]:
        alive = state.state.unit_alive if hasattr(state, "enemy_policy_state") \
            else state.unit_alive
        allies = int(env.num_allies)
        return (jnp.sum(alive[:allies]).astype(jnp.float32),
                jnp.sum(alive[allies:]).astype(jnp.float32))

    def terminated(self, env: Any, state: Any, done: jax.Array) -> jax.Array:
        allies, enemies = self._alive(env, state)
        return (allies == 0) | (enemies == 0)

    def info(self, env: Any, state: Any) -> dict[str, jax.Array]:
        allies, enemies = self._alive(env, state)
        won = ((enemies == 0) & (allies > 0)).astype(jnp.float32)
        return {"won": won, "allies_alive": allies, "enemies_alive": enemies}


def _family(jaxmarl_env: Any) -> _Family:
    from jaxmarl.environments.mpe.simple import SimpleMPE
    from jaxmarl.environments.smax.heuristic_enemy_smax_env import EnemySMAX
    from jaxmarl.environments.smax.smax_env import SMAX

    if isinstance(jaxmarl_env, SimpleMPE):
        return _MPE()
    if isinstance(jaxmarl_env, (SMAX, EnemySMAX)):
        return _SMAX()
    raise ValueError(f"jaxmarl: {type(jaxmarl_env).__name__} is not adapted yet; adapted "
                     "families: MPE (MPE_simple_*), SMAX (SMAX, HeuristicEnemySMAX)")


def require_jaxmarl() -> None:
    """A one-line ``ModuleNotFoundError`` where the optional ``jaxmarl`` package is missing."""
    if importlib.util.find_spec("jaxmarl") is None:
        raise ModuleNotFoundError(
            "jaxmarl: environments need the jaxmarl package: pip install -e \".[jaxmarl]\"")


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Nothing printed to stdout gets out (at the file-descriptor level too: a module in
    JaxMARL's import chain sets ``sys.stdout`` itself, past ``redirect_stdout``)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(null.fileno(), 1)
            yield
            sys.stdout.flush()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def make_jaxmarl(env_id: str, **kwargs: Any) -> tuple[JaxMARLEnv, JaxMARLParams]:
    """``make("jaxmarl:NAME", **kwargs)``: JaxMARL's env ``NAME`` built with ``kwargs``,
    adapted (the module docstring)."""
    if not env_id.startswith(PREFIX) or len(env_id) == len(PREFIX):
        raise ValueError(f"a JaxMARL env id looks like 'jaxmarl:NAME', got {env_id!r}")
    require_jaxmarl()
    with _quiet_stdout():  # it prints two lines at import
        import jaxmarl

    name = env_id[len(PREFIX):]
    if name not in jaxmarl.registered_envs:
        raise ValueError(f"unknown JaxMARL env {name!r}; JaxMARL's ids: "
                         f"{', '.join(jaxmarl.registered_envs)}")
    if "SMAX" in name and isinstance(kwargs.get("scenario"), str):
        from jaxmarl.environments.smax import map_name_to_scenario

        kwargs = {**kwargs, "scenario": map_name_to_scenario(kwargs["scenario"])}
    try:
        inner = jaxmarl.make(name, **kwargs)
    except TypeError as err:  # an unknown keyword: say which env refused it
        raise ValueError(f"jaxmarl:{name} refused its options {sorted(kwargs)}: {err}") from err
    options = _named_options(type(inner))
    unknown = sorted(set(kwargs) - options)
    if unknown:  # many of JaxMARL's constructors take **kwargs and drop what they do not use
        raise ValueError(f"jaxmarl:{name} has no option {', '.join(map(repr, unknown))}; its "
                         f"options: {', '.join(sorted(options))}")
    env = JaxMARLEnv(inner)
    env.name = env_id
    return env, env.default_params()


def _named_options(cls: type) -> set[str]:
    """The keyword arguments a JaxMARL env class names in its constructors (its own and its
    bases'; an ``EnemySMAX`` passes the rest to ``SMAX``)."""
    from jaxmarl.environments.smax.heuristic_enemy_smax_env import EnemySMAX
    from jaxmarl.environments.smax.smax_env import SMAX

    classes = list(cls.__mro__) + ([SMAX] if issubclass(cls, EnemySMAX) else [])
    names: set[str] = set()
    for klass in classes:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        names |= {p.name for p in inspect.signature(init).parameters.values()
                  if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names


class JaxMARLEnv(Env[JaxMARLState, JaxMARLParams]):
    """A JaxMARL ``MultiAgentEnv`` under our contract (the module docstring)."""

    def __init__(self, jaxmarl_env: Any) -> None:
        from jaxmarl.environments.spaces import Discrete as JaxMARLDiscrete

        self.jaxmarl_env = jaxmarl_env
        self.family = _family(jaxmarl_env)
        self.agent_names = tuple(jaxmarl_env.agents)
        self.num_agents = len(self.agent_names)
        spaces = [jaxmarl_env.action_space(a) for a in self.agent_names]
        for agent, space in zip(self.agent_names, spaces, strict=True):
            if not isinstance(space, JaxMARLDiscrete):
                raise ValueError(f"jaxmarl: only discrete action spaces are adapted; agent "
                                 f"{agent!r} has {type(space).__name__}")
        self._agent_actions = tuple(int(s.n) for s in spaces)
        self.num_actions = max(self._agent_actions)
        self.noop_action = self.family.noop
        # the step that starts at step >= max_steps ends the episode (both families)
        self.max_episode_steps = int(jaxmarl_env.max_steps) + 1
        self._obs_widths = tuple(
            int(np.prod(jaxmarl_env.observation_space(a).shape)) for a in self.agent_names)
        self.obs_dim = max(self._obs_widths)
        _, state = jax.eval_shape(jaxmarl_env.reset, jax.random.PRNGKey(0))
        self.state_dim = int(np.prod(jax.eval_shape(self._global_state_of, state).shape))
        groups: dict[str, list[int]] = {}
        for i, agent in enumerate(self.agent_names):
            groups.setdefault(agent.rsplit("_", 1)[0], []).append(i)
        self.teams = {team: tuple(ids) for team, ids in groups.items()}
        self._action_range = (np.arange(self.num_actions)[None, :]
                              < np.asarray(self._agent_actions)[:, None])

    def default_params(self) -> JaxMARLParams:
        return JaxMARLParams()

    def agent_obs_dim(self, agent: int | str) -> int:
        return self._obs_widths[self._agent_index(agent)]

    def agent_action_space(self, agent: int | str) -> Any:
        return Discrete(self._agent_actions[self._agent_index(agent)], (), np.int32)

    # ----- the contract ----------------------------------------------------------------------
    def reset_env(self, key: jax.Array, params: JaxMARLParams
                  ) -> tuple[JaxMARLState, TimeStep]:
        obs, inner = self.jaxmarl_env.reset(key)
        zeros = jnp.zeros((self.num_agents,), jnp.float32)
        return JaxMARLState(inner), self._timestep(obs, inner, zeros, jnp.zeros((), bool))

    def step_env(self, key: jax.Array, state: JaxMARLState, actions: jax.Array,
                 params: JaxMARLParams) -> tuple[JaxMARLState, TimeStep]:
        joint = {a: actions[i] for i, a in enumerate(self.agent_names)}
        obs, inner, rewards, dones, _ = self.jaxmarl_env.step_env(key, state.inner, joint)
        reward = jnp.stack([jnp.asarray(rewards[a], jnp.float32) for a in self.agent_names])
        return JaxMARLState(inner), self._timestep(obs, inner, reward,
                                                   jnp.asarray(dones["__all__"], bool))

    # ----- pieces ----------------------------------------------------------------------------
    def _stack_obs(self, obs: dict[str, jax.Array]) -> jax.Array:
        rows = []
        for agent, width in zip(self.agent_names, self._obs_widths, strict=True):
            row = jnp.asarray(obs[agent], jnp.float32).reshape(-1)
            rows.append(jnp.pad(row, (0, self.obs_dim - width)))
        return jnp.stack(rows)

    def _global_state_of(self, inner: Any) -> jax.Array:
        env = self.jaxmarl_env
        if hasattr(env, "get_world_state"):
            return jnp.asarray(env.get_world_state(inner), jnp.float32).reshape(-1)
        return self._stack_obs(env.get_obs(inner)).reshape(-1)

    def _mask(self, inner: Any) -> jax.Array:
        try:
            avail = self.jaxmarl_env.get_avail_actions(inner)
        except NotImplementedError:
            return jnp.asarray(self._action_range)
        rows = [jnp.pad(jnp.asarray(avail[a]).astype(bool).reshape(-1),
                        (0, self.num_actions - n))
                for a, n in zip(self.agent_names, self._agent_actions, strict=True)]
        return jnp.stack(rows) & jnp.asarray(self._action_range)

    def _timestep(self, obs: dict[str, jax.Array], inner: Any, reward: jax.Array,
                  done: jax.Array) -> TimeStep:
        terminated = done & self.family.terminated(self.jaxmarl_env, inner, done)
        return TimeStep(obs=self._stack_obs(obs), action_mask=self._mask(inner),
                        global_state=self._global_state_of(inner), reward=reward,
                        terminated=terminated, truncated=done & ~terminated,
                        info=self.family.info(self.jaxmarl_env, inner))
