"""Any ``jaxmarl_coop`` env as a PettingZoo ``ParallelEnv``, for tools that speak PettingZoo.

``PettingZoo`` is an optional dependency, so this module is not imported by
``jaxmarl_coop.envs``; import it yourself::

    from jaxmarl_coop.envs.pettingzoo import parallel_env

    env = parallel_env("spread-v3", max_steps=50)
    obs, infos = env.reset(seed=0)
    while env.agents:
        actions = {a: env.action_space(a).sample(infos[a]["action_mask"]) for a in env.agents}
        obs, rewards, terminations, truncations, infos = env.step(actions)

The wrapper runs one un-batched env on the host: ``reset`` and ``step`` are jitted once per
wrapper and their outputs copied to numpy. Conventions:

- Observations are numpy ``float32`` arrays of each agent's own (unpadded) width,
  ``env.agent_obs_dim(agent)``; the padding zeros of our stacked layout are dropped.
- Discrete actions are ints in ``[0, num_actions)`` (an out-of-range value acts as in the JAX
  env: the no-op, or the env's documented worst outcome where it has none, and is counted in
  ``info["invalid_actions"]``); continuous ones are ``float32`` vectors in ``[0, 1]``.
- ``infos[agent]`` holds ``"action_mask"`` (``int8``, discrete envs only) and the env's
  ``info`` metrics as Python scalars (the same values for every agent).
- Every agent ends together: after a terminal or truncated step ``agents`` is ``[]``.
- Randomness: a ``jax.random`` key, ``PRNGKey(seed)`` at construction and at
  ``reset(seed=...)``; each ``reset`` and ``step`` first does ``key, sub = split(key)`` and
  passes ``sub`` to the env. ``reset()`` without a seed continues the key stream.
"""

from __future__ import annotations

import secrets
from typing import Any

import jax
import numpy as np

try:
    import gymnasium
    from pettingzoo import ParallelEnv
except ImportError as err:  # pragma: no cover - exercised with pettingzoo hidden
    raise ImportError(
        "jaxmarl_coop.envs.pettingzoo needs PettingZoo (and gymnasium): "
        "pip install pettingzoo  (or pip install 'jaxmarl_coop[pettingzoo]')"
    ) from err

from jaxmarl_coop.envs import spaces
from jaxmarl_coop.envs.core import Env, TimeStep
from jaxmarl_coop.envs.registry import make

__all__ = ["PettingZooEnv", "PolicyAgents", "parallel_env", "play_episode",
           "to_gymnasium_space"]


def to_gymnasium_space(space: spaces.Space) -> gymnasium.spaces.Space:
    """The gymnasium equivalent of one of our spaces (same shape, bounds and dtype).

    A ``Discrete`` of shape ``()`` becomes ``gymnasium.spaces.Discrete``; one with a shape
    becomes ``MultiDiscrete``. A ``Box`` keeps its (broadcast) bounds and dtype.
    """
    if isinstance(space, spaces.Discrete):
        if space.shape == ():
            return gymnasium.spaces.Discrete(space.n)
        return gymnasium.spaces.MultiDiscrete(np.full(space.shape, space.n), dtype=space.dtype)
    if isinstance(space, spaces.Box):
        low = np.broadcast_to(np.asarray(space.low, space.dtype), space.shape)
        high = np.broadcast_to(np.asarray(space.high, space.dtype), space.shape)
        return gymnasium.spaces.Box(low, high, space.shape, space.dtype)
    raise TypeError(f"cannot convert {type(space).__name__} to a gymnasium space")


class PettingZooEnv(ParallelEnv):
    """A ``jaxmarl_coop`` ``Env`` (and its params) as a PettingZoo ``ParallelEnv``.

    ``params`` defaults to ``env.default_params()``; ``seed`` (default: random) seeds the
    key stream used until a ``reset(seed=...)``; ``render_mode`` is ``None`` or
    ``"rgb_array"``.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 - PettingZoo reads it from the class
        "name": "jaxmarl_coop",
        "render_modes": ["rgb_array"],
        "is_parallelizable": True,
    }

    def __init__(self, env: Env, params: Any = None, seed: int | None = None,
                 render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of "
                             f"{self.metadata['render_modes']}, got {render_mode!r}")
        self._env = env
        self._params = env.default_params() if params is None else params
        env._check_params_type(self._params)
        self.render_mode = render_mode
        self.metadata = {**type(self).metadata, "name": env.name or type(env).__name__}

        self.possible_agents: list[str] = list(env.agent_names)
        self.agents: list[str] = []
        self._index = {agent: i for i, agent in enumerate(self.possible_agents)}
        self._obs_widths = [env.agent_obs_dim(i) for i in range(env.num_agents)]
        self.observation_spaces = {agent: self._agent_observation_space(i)
                                   for i, agent in enumerate(self.possible_agents)}
        self.action_spaces = {agent: to_gymnasium_space(env.agent_action_space(i))
                              for i, agent in enumerate(self.possible_agents)}
        self.state_space = to_gymnasium_space(env.global_state_space)

        self._reset_fn = jax.jit(env.reset)
        self._step_fn = jax.jit(env.step)
        self._key = self._new_key(seed)
        self._state: Any = None
        self._timestep: TimeStep | None = None  # host (numpy) copy of the last timestep

    # ----- spaces ---------------------------------------------------------------------------
    def _agent_observation_space(self, i: int) -> gymnasium.spaces.Box:
        joint = self._env.observation_space
        width = self._obs_widths[i]
        low = np.broadcast_to(np.asarray(joint.low, joint.dtype), joint.shape)[i, :width]
        high = np.broadcast_to(np.asarray(joint.high, joint.dtype), joint.shape)[i, :width]
        return gymnasium.spaces.Box(low, high, (width,), joint.dtype)

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        """One agent's observation: a ``float32`` ``Box`` of its own width."""
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        """One agent's action: ``Discrete(num_actions)`` or a ``float32`` ``Box`` in [0, 1]."""
        return self.action_spaces[agent]

    # ----- properties -----------------------------------------------------------------------
    @property
    def jax_env(self) -> Env:
        """The wrapped JAX env."""
        return self._env

    @property
    def params(self) -> Any:
        """The env params every ``reset`` and ``step`` uses."""
        return self._params

    @property
    def timestep(self) -> TimeStep | None:
        """The last ``TimeStep`` (a host copy, agent-stacked; ``None`` before ``reset``)."""
        return self._timestep

    @property
    def env_state(self) -> Any:
        """The current JAX env state (``None`` before the first ``reset``)."""
        return self._state

    # ----- the API --------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """Start an episode; ``seed`` restarts the key stream from ``PRNGKey(seed)``.

        ``options={"key": k}`` resets with exactly the JAX key ``k`` (the key stream is left
        as it is), e.g. to replay an episode of ``learners.evaluation.evaluate``; other
        options are ignored.
        """
        if seed is not None:
            self._key = self._new_key(seed)
        if options and options.get("key") is not None:
            key = jax.numpy.asarray(options["key"])
        else:
            self._key, key = jax.random.split(self._key)
        self._state, timestep = self._reset_fn(key, self._params)
        self._timestep = jax.device_get(timestep)
        self.agents = list(self.possible_agents)
        return self._observations(self._timestep), self._infos(self._timestep)

    def step(self, actions: dict[str, Any]) -> tuple[
            dict[str, np.ndarray], dict[str, float], dict[str, bool], dict[str, bool],
            dict[str, dict[str, Any]]]:
        """Advance every agent at once; ``actions`` must hold one action per live agent.

        Returns ``(observations, rewards, terminations, truncations, infos)`` keyed by agent.
        """
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if not self.agents:
            raise RuntimeError("the episode has ended (agents is []); call reset()")
        missing = [a for a in self.agents if a not in actions]
        unknown = [a for a in actions if a not in self._index]
        if missing or unknown:
            raise ValueError(f"actions must have one entry per live agent {self.agents}; "
                             f"missing {missing}, unknown {unknown}")
        joint = self._joint_actions(actions)
        self._key, key = jax.random.split(self._key)
        self._state, timestep = self._step_fn(key, self._state, joint, self._params)
        ts = self._timestep = jax.device_get(timestep)

        agents = self.possible_agents
        rewards = {a: float(ts.reward[i]) for i, a in enumerate(agents)}
        terminations = dict.fromkeys(agents, bool(ts.terminated))
        truncations = dict.fromkeys(agents, bool(ts.truncated))
        out = (self._observations(ts), rewards, terminations, truncations, self._infos(ts))
        if bool(ts.terminated) or bool(ts.truncated):
            self.agents = []
        return out

    def render(self) -> np.ndarray | None:
        """An RGB frame of the current state (``render_mode="rgb_array"``), else ``None``."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; pass "
                                  "render_mode='rgb_array' to the constructor")
            return None
        if self._state is None:
            raise RuntimeError("call reset() before render()")
        return self._env.render(self._state, self._params)

    def state(self) -> np.ndarray:
        """The global state a centralised critic sees, ``(state_dim,)`` float32."""
        if self._timestep is None:
            raise RuntimeError("call reset() before state()")
        return np.array(self._timestep.global_state, dtype=self.state_space.dtype)

    def close(self) -> None:
        """Drop the episode (there is nothing else to release)."""
        self._state = None
        self._timestep = None
        self.agents = []

    # ----- helpers --------------------------------------------------------------------------
    @staticmethod
    def _new_key(seed: int | None) -> jax.Array:
        if seed is None:
            seed = secrets.randbits(32)
        return jax.random.PRNGKey(int(seed))

    def _joint_actions(self, actions: dict[str, Any]) -> np.ndarray:
        """Stack per-agent actions into the env's ``(N,)`` ints or ``(N, A)`` floats."""
        env = self._env
        per_agent = []
        for agent in self.possible_agents:
            action = np.asarray(actions[agent])
            if env.continuous_actions:
                if action.shape != (env.num_actions,) or not np.issubdtype(action.dtype,
                                                                           np.floating):
                    raise ValueError(f"action of {agent!r} must be {env.num_actions} floats, "
                                     f"got {action.dtype} of shape {action.shape}")
            elif action.shape != () or not np.issubdtype(action.dtype, np.integer):
                raise ValueError(f"action of {agent!r} must be one int, got {action!r}")
            per_agent.append(action)
        if env.continuous_actions:
            return np.stack(per_agent).astype(np.float32)
        # beyond int32 stays out of range (invalid) instead of wrapping around into it
        int32 = np.iinfo(np.int32)
        return np.stack([np.clip(a, int32.min, int32.max) for a in per_agent]).astype(np.int32)

    def _observations(self, ts: TimeStep) -> dict[str, np.ndarray]:
        dtype = self._env.observation_space.dtype
        return {a: np.array(ts.obs[i, : self._obs_widths[i]], dtype=dtype)
                for i, a in enumerate(self.possible_agents)}

    def _infos(self, ts: TimeStep) -> dict[str, dict[str, Any]]:
        n = self._env.num_agents
        infos: dict[str, dict[str, Any]] = {a: {} for a in self.possible_agents}
        for name, value in ts.info.items():
            value = np.asarray(value)
            for i, agent in enumerate(self.possible_agents):
                if value.shape == ():
                    infos[agent][name] = value.item()
                elif value.shape[0] == n:  # a per-agent array (wrappers may add these)
                    infos[agent][name] = value[i].item() if value.ndim == 1 else value[i].copy()
                else:
                    infos[agent][name] = value.copy()
        if not self._env.continuous_actions:
            mask = np.asarray(ts.action_mask, dtype=np.int8)
            for i, agent in enumerate(self.possible_agents):
                infos[agent]["action_mask"] = mask[i].copy()
        return infos


class PolicyAgents:
    """A ``jaxmarl_coop`` ``Policy`` (e.g. a trained team from ``load_policy``) acting in a
    :class:`PettingZooEnv`: ``actions = agents(env)`` after every ``reset`` and ``step``.

    The policy acts on the adapter's own last ``TimeStep`` (the agent-stacked, padded
    observations it just returned as a dict), so a team trained here plays exactly as under
    ``evaluate``. Its carry starts from ``policy.initial_carry()``: call :meth:`reset` after
    every ``env.reset`` (``play_episode`` does). Keys: ``PRNGKey(seed)``, split once per
    action.
    """

    def __init__(self, policy: Any, env: PettingZooEnv, seed: int = 0) -> None:
        from jaxmarl_coop.envs.policy import check_policy

        self.policy = check_policy(policy, "PolicyAgents")
        self.env = env
        self._act = jax.jit(lambda k, ts, c: self.policy(k, ts, c))
        self._key = jax.random.PRNGKey(seed)
        self._carry = self.policy.initial_carry(None)
        self._episode: int | None = None

    def reset(self) -> None:
        """Forget the episode: the carry back to the policy's initial carry."""
        self._carry = self.policy.initial_carry(None)

    def __call__(self, env: PettingZooEnv | None = None) -> dict[str, Any]:
        """The live agents' actions for the env's current timestep."""
        env = env or self.env
        ts = env.timestep
        if ts is None or not env.agents:
            raise RuntimeError("the env has no live episode: call env.reset() first")
        self._key, key = jax.random.split(self._key)
        actions, self._carry = self._act(key, ts, self._carry)
        actions = np.asarray(actions)
        return {agent: actions[env._index[agent]] for agent in env.agents}


def play_episode(policy: Any, env: PettingZooEnv, seed: int | None = None,
                 options: dict[str, Any] | None = None, policy_seed: int = 0
                 ) -> dict[str, float]:
    """One episode of ``policy`` through the PettingZoo API; returns each agent's return
    and the team's (``"team"``: the sum over agents, as ``evaluate``'s ``return``)."""
    agents = PolicyAgents(policy, env, seed=policy_seed)
    env.reset(seed=seed, options=options)
    returns = dict.fromkeys(env.possible_agents, 0.0)
    while env.agents:
        _, rewards, _, _, _ = env.step(agents())
        for agent, reward in rewards.items():
            returns[agent] += reward
    return {**returns, "team": float(sum(returns.values()))}


def parallel_env(env_id: str, render_mode: str | None = None, seed: int | None = None,
                 **kwargs: Any) -> PettingZooEnv:
    """``make(env_id, **kwargs)`` wrapped as a PettingZoo ``ParallelEnv``."""
    env, params = make(env_id, **kwargs)
    return PettingZooEnv(env, params, seed=seed, render_mode=render_mode)

