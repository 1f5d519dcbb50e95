"""``jaxmarl:NAME``: a JaxMARL environment under our env contract (the optional extra
``[jaxmarl]``: ``pip install -e ".[jaxmarl]"``).

``make("jaxmarl:MPE_simple_spread_v3")`` or ``make("jaxmarl:HeuristicEnemySMAX",
scenario="3m")`` builds JaxMARL's env with ``jaxmarl.make(NAME, **kwargs)`` and wraps it in
:class:`JaxMARLEnv`, so that our learners, sweeps, evaluation, checkpoints and the PettingZoo
adapter run on it. Every keyword argument goes to JaxMARL's constructor (one it would
silently drop is refused). JaxMARL's environments keep their settings on the env object, so
an adapted env has **no traced params** (``JaxMARLParams`` is empty): a sweep over a task
setting builds one env per value.

What the adapter does (the contract in ``envs/core.py``):

- observations: each agent's observation flattened, stacked in JaxMARL's agent order
  (``env.agents``) and padded with zeros to the widest (``agent_obs_dim`` gives an agent's
  own width);
- actions: discrete only (a JaxMARL env with another action space is refused); ``(N,)``
  ints, ``num_actions`` the largest agent's count, the actions past an agent's own count
  masked illegal; an invalid action (one of those too) acts as the family's no-op (below)
  and is counted in ``info["invalid_actions"]``;
- global state: the env's world state where it has one (SMAX's ``world_state``), else the
  padded observations concatenated;
- ``reset``/``step``: JaxMARL's ``reset`` and ``step_env``, never its auto-resetting
  ``step`` (our ``AutoReset`` wraps any env); rewards stacked per agent;
- **terminated apart from truncated.** JaxMARL merges them into ``dones["__all__"]``; the
  adapter splits them per family, from the env's own rules and limits
  (``max_episode_steps`` is the most steps an episode lasts):

  ==========  ==========================================  ==================================
  family      terminated                                  truncated (``max_episode_steps``)
  ==========  ==========================================  ==================================
  MPE         never                                       every done: the step that starts
                                                          at ``step >= max_steps`` (so
                                                          ``max_steps + 1``: 26 for spread)
  SMAX        one side has no unit alive (win or loss)    any other done, at the same limit
                                                          as MPE (101 steps by default)
  Overcooked  never                                       every done: ``max_steps`` (400)
  coin game   never (its inner games restart inside the   every done: the outer episode's
              env)                                        end, ``num_inner_steps x
                                                          num_outer_steps`` (100)
  Hanabi      every done: the game's own end (lives       never; ``max_episode_steps`` is an
              lost, fireworks complete, last round)       upper bound on a game's turns (115)
  ==========  ==========================================  ==================================

  Other JaxMARL families (STORM, whose observations are not per agent, JaxNav, MABrax, ...)
  are refused with the list of adapted ones until their split is written and tested.
- no-ops (what an invalid action acts as): MPE 0 (no force), SMAX 4 (stop), Overcooked and
  coin game 4 (stay), Hanabi its last move (the pass of every player whose turn it is not).
  Masks: SMAX ``get_avail_actions``, Hanabi ``get_legal_moves``, else all legal.
- ``info``: SMAX: ``won`` (every enemy dead while an ally lives), ``allies_alive`` and
  ``enemies_alive`` (counts), its ``end_metrics``: ``EpisodeStats`` and ``evaluate`` report
  their values on the episode's last step, so the mean of ``won`` over episodes is the win
  rate; coin game: ``own_coins`` and
  ``other_coins``, the coins picked up this step by an agent of their colour or of the
  other's (their episode means from ``evaluate`` give the own-coin rate,
  ``own / (own + other)``); the others: none. ``teams`` groups agents
  by the name before their index (``adversary_0`` -> ``adversary``).
- names given as strings are looked up: SMAX ``scenario="3m"`` (``map_name_to_scenario``),
  Overcooked ``layout="cramped_room"`` (``overcooked_layouts``).

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
    """How one JaxMARL family ends its episodes (``terminated``: the rest of a ``done`` is
    truncation), its no-op, its longest episode, its masks and its info."""

    name: ClassVar[str]
    end_metrics: ClassVar[tuple[str, ...]] = ()

    def noop(self, env: Any) -> int:
        return 0

    def limit(self, env: Any) -> int:
        """The most steps an episode lasts (``max_episode_steps``)."""
        raise NotImplementedError

    def terminated(self, env: Any, state: Any) -> jax.Array:
        return jnp.zeros((), bool)  # time-limited families: a done is a truncation

    def avail(self, env: Any, state: Any) -> dict[str, jax.Array] | None:
        """Each agent's legal actions, or None: all legal."""
        return None

    def info(self, env: Any, state: Any, previous: Any) -> dict[str, jax.Array]:
        """Scalar metrics of the step into ``state`` from ``previous`` (None at reset: the
        same keys, zero where a metric counts events)."""
        return {}


class _MPE(_Family):
    name = "MPE"  # action 0: no force

    def limit(self, env: Any) -> int:
        return int(env.max_steps) + 1  # done on the step that starts at step >= max_steps


class _SMAX(_Family):
    name = "SMAX"

    def noop(self, env: Any) -> int:
        return 4  # stop (0-3 move, 5+ attack)

    def limit(self, env: Any) -> int:
        return int(env.max_steps) + 1  # as MPE

    @staticmethod
    def _alive(env: Any, state: Any) -> tuple[jax.Array, jax.Array]:
        alive = state.state.unit_alive if hasattr(state, "enemy_policy_state") \
            else state.unit_alive
        allies = int(env.num_allies)
        return (jnp.sum(alive[:allies]).astype(jnp.float32),
                jnp.sum(alive[allies:]).astype(jnp.float32))

    def terminated(self, env: Any, state: Any) -> jax.Array:
        allies, enemies = self._alive(env, state)
        return (allies == 0) | (enemies == 0)

    def avail(self, env: Any, state: Any) -> dict[str, jax.Array]:
        return env.get_avail_actions(state)

    #: an episode's outcome: the values on its last step (``Env.end_metrics``)
    end_metrics = ("won", "allies_alive", "enemies_alive")

    def info(self, env: Any, state: Any, previous: Any) -> dict[str, jax.Array]:
        allies, enemies = self._alive(env, state)
        won = ((enemies == 0) & (allies > 0)).astype(jnp.float32)
        return {"won": won, "allies_alive": allies, "enemies_alive": enemies}


class _Overcooked(_Family):
    name = "Overcooked"

    def noop(self, env: Any) -> int:
        return 4  # stay

    def limit(self, env: Any) -> int:
        return int(env.max_steps)  # done once step (after the step) reaches max_steps


class _CoinGame(_Family):
    name = "coin game"

    def noop(self, env: Any) -> int:
        return 4  # stay

    def limit(self, env: Any) -> int:
        # its inner games restart inside the env; dones only at the outer episode's end
        return int(env.num_inner_steps) * int(env.num_outer_steps)

    @staticmethod
    def _coins(state: Any) -> tuple[jax.Array, jax.Array]:
        own = jnp.sum(state.red_coop) + jnp.sum(state.blue_coop)
        other = jnp.sum(state.red_defect) + jnp.sum(state.blue_defect)
        return own.astype(jnp.float32), other.astype(jnp.float32)

    def info(self, env: Any, state: Any, previous: Any) -> dict[str, jax.Array]:
        if previous is None:
            return {"own_coins": jnp.zeros((), jnp.float32),
                    "other_coins": jnp.zeros((), jnp.float32)}
        (own, other), (own_0, other_0) = self._coins(state), self._coins(previous)
        return {"own_coins": own - own_0, "other_coins": other - other_0}


class _Hanabi(_Family):
    name = "Hanabi"

    def noop(self, env: Any) -> int:
        return int(env.num_moves) - 1  # the move of every player whose turn it is not

    def limit(self, env: Any) -> int:
        # an upper bound on a game's turns: each play or discard takes a card of the deck or
        # a hand; each hint takes an information token, of which there are at most the
        # starting ones, one per discard and one per completed colour; then a last round
        cards = int(env.deck_size)
        return 2 * cards + int(env.max_info_tokens) + int(env.num_colors) + len(env.agents)

    def terminated(self, env: Any, state: Any) -> jax.Array:
        return jnp.ones((), bool)  # a game only ends by its rules: a done is a termination

    def avail(self, env: Any, state: Any) -> dict[str, jax.Array]:
        return env.get_legal_moves(state)


def _family(jaxmarl_env: Any) -> _Family:
    from jaxmarl.environments.coin_game.coin_game import CoinGame
    from jaxmarl.environments.hanabi.hanabi_game import HanabiGame
    from jaxmarl.environments.mpe.simple import SimpleMPE
    from jaxmarl.environments.overcooked.overcooked import Overcooked
    from jaxmarl.environments.smax.heuristic_enemy_smax_env import EnemySMAX
    from jaxmarl.environments.smax.smax_env import SMAX

    for classes, family in ((SimpleMPE, _MPE), ((SMAX, EnemySMAX), _SMAX),
                            (Overcooked, _Overcooked), (CoinGame, _CoinGame),
                            (HanabiGame, _Hanabi)):
        if isinstance(jaxmarl_env, classes):
            return family()
    raise ValueError(f"jaxmarl: {type(jaxmarl_env).__name__} is not adapted yet; adapted "
                     f"families: {ADAPTED}")


#: what the adapter covers (the module docstring)
ADAPTED = ("MPE (MPE_simple_*), SMAX (SMAX, HeuristicEnemySMAX), Overcooked (overcooked), "
           "coin game (coin_game), Hanabi (hanabi)")


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
    if name.startswith("overcooked") and isinstance(kwargs.get("layout"), str):
        from jaxmarl.environments.overcooked import overcooked_layouts

        if kwargs["layout"] not in overcooked_layouts:
            raise ValueError(f"unknown Overcooked layout {kwargs['layout']!r}; layouts: "
                             f"{', '.join(overcooked_layouts)}")
        kwargs = {**kwargs, "layout": overcooked_layouts[kwargs["layout"]]}
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
        self.noop_action = self.family.noop(jaxmarl_env)
        self.max_episode_steps = self.family.limit(jaxmarl_env)
        self.end_metrics = self.family.end_metrics
        obs, state = jax.eval_shape(jaxmarl_env.reset, jax.random.PRNGKey(0))
        self._obs_widths = tuple(sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(obs[a]))
                                 for a in self.agent_names)
        self.obs_dim = max(self._obs_widths)
        self.state_dim = int(np.prod(jax.eval_shape(self._global_state, obs, state).shape))
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

    def prepare_actions(self, actions: Any) -> tuple[jax.Array, jax.Array]:
        """As ``Env.prepare_actions``, and an action past the agent's own count (an agent
        with fewer actions than ``num_actions``) is invalid too: it acts as the no-op."""
        actions, invalid = super().prepare_actions(actions)
        beyond = actions >= jnp.asarray(self._agent_actions, jnp.int32)
        return jnp.where(beyond, self.noop_action, actions), invalid | beyond

    # ----- the contract ----------------------------------------------------------------------
    def reset_env(self, key: jax.Array, params: JaxMARLParams
                  ) -> tuple[JaxMARLState, TimeStep]:
        obs, inner = self.jaxmarl_env.reset(key)
        zeros = jnp.zeros((self.num_agents,), jnp.float32)
        return JaxMARLState(inner), self._timestep(obs, inner, zeros, jnp.zeros((), bool), None)

    def step_env(self, key: jax.Array, state: JaxMARLState, actions: jax.Array,
                 params: JaxMARLParams) -> tuple[JaxMARLState, TimeStep]:
        joint = {a: actions[i] for i, a in enumerate(self.agent_names)}
        obs, inner, rewards, dones, _ = self.jaxmarl_env.step_env(key, state.inner, joint)
        reward = jnp.stack([jnp.asarray(rewards[a], jnp.float32) for a in self.agent_names])
        done = jnp.asarray(dones["__all__"], bool)
        return JaxMARLState(inner), self._timestep(obs, inner, reward, done, state.inner)

    # ----- pieces ----------------------------------------------------------------------------
    def _stack_obs(self, obs: dict[str, jax.Array]) -> jax.Array:
        rows = []
        for agent, width in zip(self.agent_names, self._obs_widths, strict=True):
            row = jnp.concatenate([jnp.asarray(leaf, jnp.float32).reshape(-1)
                                   for leaf in jax.tree.leaves(obs[agent])])
            rows.append(jnp.pad(row, (0, self.obs_dim - width)))
        return jnp.stack(rows)

    def _global_state(self, obs: dict[str, Any], inner: Any) -> jax.Array:
        env = self.jaxmarl_env
        if hasattr(env, "get_world_state"):
            return jnp.asarray(env.get_world_state(inner), jnp.float32).reshape(-1)
        return self._stack_obs(obs).reshape(-1)

    def _mask(self, inner: Any) -> jax.Array:
        avail = self.family.avail(self.jaxmarl_env, inner)
        if avail is None:
            return jnp.asarray(self._action_range)
        rows = [jnp.pad(jnp.asarray(avail[a]).astype(bool).reshape(-1),
                        (0, self.num_actions - n))
                for a, n in zip(self.agent_names, self._agent_actions, strict=True)]
        return jnp.stack(rows) & jnp.asarray(self._action_range)

    def _timestep(self, obs: dict[str, jax.Array], inner: Any, reward: jax.Array,
                  done: jax.Array, previous: Any) -> TimeStep:
        terminated = done & self.family.terminated(self.jaxmarl_env, inner)
        return TimeStep(obs=self._stack_obs(obs), action_mask=self._mask(inner),
                        global_state=self._global_state(obs, inner), reward=reward,
                        terminated=terminated, truncated=done & ~terminated,
                        info=self.family.info(self.jaxmarl_env, inner, previous))
