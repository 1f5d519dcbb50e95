"""Wrappers: auto-reset, episode statistics, agent-id one-hot, and a batch of envs.

The usual stack for learning, innermost first::

    env = EpisodeStats(AutoReset(AgentID(base)))        # or wrappers.wrap(base, agent_id=True)
    env = VecEnv(env, num_envs=1024)                     # reset/step a batch in one call

``AgentID`` goes inside ``AutoReset`` so that the final observations it keeps carry ids too;
``EpisodeStats`` goes outside so that the last finished episode's figures survive resets.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxmarl_coop.envs.core import Env, TimeStep, check_count

_DELEGATED = ("name", "num_agents", "num_actions", "obs_dim", "state_dim", "agent_names",
              "teams", "continuous_actions", "debug", "num_obs_indices", "noop_action",
              "max_episode_steps", "end_metrics")


class Wrapper(Env):
    """Delegates everything to the wrapped env; subclasses override what they change."""

    def __init__(self, env: Env) -> None:
        self._env = env

    def __getattr__(self, attr: str) -> Any:
        # only called for attributes not found on the wrapper itself
        if attr == "_env":
            raise AttributeError(attr)
        return getattr(self._env, attr)

    @property
    def unwrapped(self) -> Env:
        env = self._env
        while isinstance(env, Wrapper):
            env = env._env
        return env

    def default_params(self) -> Any:
        return self._env.default_params()

    def reset(self, key: jax.Array, params: Any = None) -> tuple[Any, TimeStep]:
        return self._env.reset(key, params)

    def step(self, key: jax.Array, state: Any, actions: jax.Array, params: Any = None
             ) -> tuple[Any, TimeStep]:
        return self._env.step(key, state, actions, params)

    def agent_obs_dim(self, agent: int | str) -> int:
        return self._env.agent_obs_dim(agent)

    def render(self, state: Any, params: Any = None, *, size: int | None = None) -> np.ndarray:
        """The wrapped env's frame of ``state`` (wrappers with their own state unwrap it)."""
        return self._env.render(state, params, size=size)

    def prepare_actions(self, actions: Any) -> jax.Array:
        return self._env.prepare_actions(actions)

    def obs_index(self, obs: jax.Array) -> jax.Array:
        # wrappers only append columns (AgentID), so the wrapped env decodes the leading ones
        return self._env.obs_index(obs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._env!r})"


def _delegate(attr: str) -> property:
    return property(lambda self: getattr(self._env, attr))


for _attr in _DELEGATED:
    setattr(Wrapper, _attr, _delegate(_attr))


def _select(done: jax.Array, if_done: Any, otherwise: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(done, a, b), if_done, otherwise)


class AutoReset(Wrapper):
    """Start a new episode as soon as one ends, keeping the true final observation.

    On the step that ends an episode the returned ``TimeStep`` has the final step's
    ``reward``, ``terminated``, ``truncated`` and ``info``, but ``obs``, ``action_mask`` and
    ``global_state`` of the new episode's first step; the last observation of the old
    episode is in ``info["final_obs"]``, ``info["final_global_state"]`` and
    ``info["final_action_mask"]`` (equal to ``obs``, ``global_state`` and ``action_mask`` on
    every other step), so a truncated episode can bootstrap from it.
    """

    def reset(self, key: jax.Array, params: Any = None) -> tuple[Any, TimeStep]:
        state, ts = self._env.reset(key, params)
        return state, self._with_final(ts, ts)

    def step(self, key: jax.Array, state: Any, actions: jax.Array, params: Any = None
             ) -> tuple[Any, TimeStep]:
        key_step, key_reset = jax.random.split(key)
        next_state, ts = self._env.step(key_step, state, actions, params)
        reset_state, reset_ts = self._env.reset(key_reset, params)
        done = ts.done
        state = _select(done, reset_state, next_state)
        new = ts._replace(obs=jnp.where(done, reset_ts.obs, ts.obs),
                          action_mask=jnp.where(done, reset_ts.action_mask, ts.action_mask),
                          global_state=jnp.where(done, reset_ts.global_state, ts.global_state))
        return state, self._with_final(new, ts)

    @staticmethod
    def _with_final(ts: TimeStep, final: TimeStep) -> TimeStep:
        return ts._replace(info=dict(ts.info, final_obs=final.obs,
                                     final_global_state=final.global_state,
                                     final_action_mask=final.action_mask))


@struct.dataclass
class EpisodeStatsState:
    env_state: Any
    episode_return: jax.Array  # (N,) running return of the current episode
    episode_length: jax.Array  # ()
    info_sum: dict[str, jax.Array]  # running sums of the env's scalar metrics
    last_return: jax.Array  # (N,) of the last finished episode
    last_length: jax.Array
    last_info_mean: dict[str, jax.Array]


class EpisodeStats(Wrapper):
    """Adds the last finished episode's figures to ``info``.

    ``episode_return`` (N,) per-agent return, ``episode_length``, ``episode_<metric>`` the
    episode mean of each scalar metric in the env's ``info`` (e.g. ``episode_captured`` is
    the fraction of steps with a capture) or, for the env's ``end_metrics``, its value on
    the episode's last step (e.g. SMAX's ``episode_won``), and ``episode_done`` (this step
    ended one).
    Values stay until the next episode ends, so mask with ``episode_done`` when averaging.
    Wrap it outside ``AutoReset``.
    """

    def reset(self, key: jax.Array, params: Any = None) -> tuple[EpisodeStatsState, TimeStep]:
        env_state, ts = self._env.reset(key, params)
        metrics = self._metrics(ts.info)
        zero_info = {k: jnp.zeros_like(v, jnp.float32) for k, v in metrics.items()}
        n = ts.reward.shape[0]
        state = EpisodeStatsState(env_state, jnp.zeros((n,), jnp.float32),
                                  jnp.zeros((), jnp.int32), zero_info,
                                  jnp.zeros((n,), jnp.float32), jnp.zeros((), jnp.int32),
                                  zero_info)
        return state, self._annotate(ts, state, jnp.zeros((), bool))

    def step(self, key: jax.Array, state: EpisodeStatsState, actions: jax.Array,
             params: Any = None) -> tuple[EpisodeStatsState, TimeStep]:
        env_state, ts = self._env.step(key, state.env_state, actions, params)
        done = ts.done
        ret = state.episode_return + ts.reward
        length = state.episode_length + 1
        metrics = self._metrics(ts.info)
        sums = {k: state.info_sum[k] + v.astype(jnp.float32) for k, v in metrics.items()}
        end = set(getattr(self._env, "end_metrics", ()))
        means = {k: metrics[k].astype(jnp.float32) if k in end
                 else v / length.astype(jnp.float32) for k, v in sums.items()}
        state = EpisodeStatsState(
            env_state=env_state,
            episode_return=jnp.where(done, 0.0, ret),
            episode_length=jnp.where(done, 0, length),
            info_sum={k: jnp.where(done, 0.0, v) for k, v in sums.items()},
            last_return=jnp.where(done, ret, state.last_return),
            last_length=jnp.where(done, length, state.last_length),
            last_info_mean=_select(done, means, state.last_info_mean))
        return state, self._annotate(ts, state, done)

    def render(self, state: EpisodeStatsState, params: Any = None, *, size: int | None = None
               ) -> np.ndarray:
        return self._env.render(state.env_state, params, size=size)

    @staticmethod
    def _metrics(info: dict[str, Any]) -> dict[str, jax.Array]:
        return {k: v for k, v in info.items()
                if not k.startswith(("final_", "episode_")) and jnp.ndim(v) == 0}

    @staticmethod
    def _annotate(ts: TimeStep, state: EpisodeStatsState, done: jax.Array) -> TimeStep:
        info = dict(ts.info, episode_return=state.last_return,
                    episode_length=state.last_length, episode_done=done)
        info.update({f"episode_{k}": v for k, v in state.last_info_mean.items()})
        return ts._replace(info=info)


class AgentID(Wrapper):
    """Appends a one-hot agent id to every observation (``obs_dim`` grows by N)."""

    @property
    def obs_dim(self) -> int:
        return self._env.obs_dim + self._env.num_agents

    def agent_obs_dim(self, agent: int | str) -> int:
        return self._env.agent_obs_dim(agent)  # the id sits after the padding, at the end

    def reset(self, key: jax.Array, params: Any = None) -> tuple[Any, TimeStep]:
        state, ts = self._env.reset(key, params)
        return state, self._add_id(ts)

    def step(self, key: jax.Array, state: Any, actions: jax.Array, params: Any = None
             ) -> tuple[Any, TimeStep]:
        state, ts = self._env.step(key, state, actions, params)
        return state, self._add_id(ts)

    def _add_id(self, ts: TimeStep) -> TimeStep:
        ids = jnp.eye(self.num_agents, dtype=ts.obs.dtype)
        return ts._replace(obs=jnp.concatenate([ts.obs, ids], axis=-1))


class VecEnv(Wrapper):
    """``num_envs`` copies of an env stepped together: every array gains a leading batch axis.

    Keys are split once per call into one per env; ``params`` are shared (``None`` axis).
    """

    def __init__(self, env: Env, num_envs: int) -> None:
        super().__init__(env)
        self.num_envs = check_count("num_envs", num_envs, 1)

    def reset(self, key: jax.Array, params: Any = None) -> tuple[Any, TimeStep]:
        params = self._env.default_params() if params is None else params
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self._env.reset, in_axes=(0, None))(keys, params)

    def step(self, key: jax.Array, state: Any, actions: jax.Array, params: Any = None
             ) -> tuple[Any, TimeStep]:
        params = self._env.default_params() if params is None else params
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self._env.step, in_axes=(0, 0, 0, None))(keys, state, actions, params)


def wrap(env: Env, *, agent_id: bool = False, auto_reset: bool = True,
         episode_stats: bool = True) -> Env:
    """The standard stack: ``EpisodeStats(AutoReset(AgentID(env)))``, each part optional."""
    if agent_id:
        env = AgentID(env)
    if auto_reset:
        env = AutoReset(env)
    if episode_stats:
        env = EpisodeStats(env)
    return env
