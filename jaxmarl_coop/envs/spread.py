"""``spread-v3``: cooperative navigation, the reference MPE ``simple_spread_v3``.

N agents (discs of size 0.15) and L landmarks (L = N by default) in the plane. Agents move
with the MPE physics (``physics.py``); landmarks are fixed points that do not collide.

Reward of agent ``i`` (the reference's, with ``local_ratio`` ρ)::

    G   = - sum_l min_a ||p_a - l||                              (shared)
    L_i = - collision_penalty * #{j != i : ||p_i - p_j|| < 2 * agent_size}
    r_i = (1 - ρ) G + ρ L_i

Observation of agent ``i`` (width ``4 + 2L + 4(N-1)``, 18 for N = 3)::

    [v_i, p_i, (l_k - p_i)_k, (p_j - p_i)_{j != i}, zeros(2(N-1))]

(the zeros are the reference's always-silent communication channel). The global state is
every agent's observation concatenated. Episodes are truncated after ``max_steps`` (25)
steps; they never terminate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxmarl_coop.envs import physics
from jaxmarl_coop.envs.core import (
    Env,
    TimeStep,
    check_count,
    check_flag,
    check_param,
    check_param_types,
)


@struct.dataclass
class SpreadState:
    agent_pos: jax.Array  # (N, 2)
    agent_vel: jax.Array  # (N, 2)
    landmark_pos: jax.Array  # (L, 2)
    step: jax.Array  # () int32, steps taken this episode


@struct.dataclass
class SpreadParams:
    max_steps: int = 25
    local_ratio: float = 0.5
    agent_size: float = 0.15
    agent_accel: float = 5.0
    agent_mass: float = 1.0
    agent_max_speed: float = float("inf")
    collision_penalty: float = 1.0
    #: distance under which a landmark counts as occupied (for ``info`` only)
    occupied_radius: float = 0.1
    world: physics.WorldParams = physics.WorldParams()

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("max_steps", self.max_steps, low=1)
        check_param("local_ratio", self.local_ratio, low=0.0, high=1.0)
        check_param("agent_size", self.agent_size, low=0.0, low_inclusive=False)
        check_param("agent_accel", self.agent_accel, low=0.0)
        check_param("agent_mass", self.agent_mass, low=0.0, low_inclusive=False)
        check_param("agent_max_speed", self.agent_max_speed, low=0.0, low_inclusive=False,
                    allow_inf=True)
        check_param("collision_penalty", self.collision_penalty)
        check_param("occupied_radius", self.occupied_radius, low=0.0)


class Spread(Env[SpreadState, SpreadParams]):
    """Cooperative navigation: cover every landmark without bumping into each other."""

    def __init__(self, num_agents: int = 3, num_landmarks: int | None = None,
                 continuous_actions: bool = False, debug: bool = False) -> None:
        self.num_agents = check_count("num_agents", num_agents, 1)
        physics.check_num_discs("spread", num_agents=self.num_agents)
        self.num_landmarks = check_count(
            "num_landmarks", self.num_agents if num_landmarks is None else num_landmarks, 1)
        self.continuous_actions = check_flag("continuous_actions", continuous_actions)
        self.debug = check_flag("debug", debug)
        self.num_actions = physics.NUM_MOVE_ACTIONS
        self.obs_dim = 4 + 2 * self.num_landmarks + 4 * (self.num_agents - 1)
        self.state_dim = self.num_agents * self.obs_dim
        self.agent_names = tuple(f"agent_{i}" for i in range(self.num_agents))
        self.teams = {"agents": tuple(range(self.num_agents))}

    def default_params(self) -> SpreadParams:
        return SpreadParams()

    def reset_env(self, key: jax.Array, params: SpreadParams) -> tuple[SpreadState, TimeStep]:
        n, m = self.num_agents, self.num_landmarks
        xy = jax.random.uniform(key, (n + m, 2), jnp.float32, -1.0, 1.0)
        state = SpreadState(agent_pos=xy[:n], agent_vel=jnp.zeros((n, 2), jnp.float32),
                            landmark_pos=xy[n:], step=jnp.zeros((), jnp.int32))
        reward, info = self._reward(state, params)
        return state, self._timestep(state, jnp.zeros_like(reward), info, params)

    def step_env(self, key: jax.Array, state: SpreadState, actions: jax.Array,
                 params: SpreadParams) -> tuple[SpreadState, TimeStep]:
        del key  # the dynamics are deterministic
        pos, vel = physics.identical_agents_step(state.agent_pos, state.agent_vel, actions,
                                                 self.continuous_actions, params)
        state = state.replace(agent_pos=pos, agent_vel=vel, step=state.step + 1)
        reward, info = self._reward(state, params)
        return state, self._timestep(state, reward, info, params)

    def render(self, state: SpreadState, params: SpreadParams | None = None, *,
               size: int | None = None) -> np.ndarray:
        """Agents (blue discs of ``agent_size``) and landmarks (grey dots); see ``Env``."""
        from jaxmarl_coop.envs import render

        state, params, title = render.frame_setup(self, state, params)
        return render.draw_particles(state.agent_pos, float(params.agent_size),
                                     landmark_pos=state.landmark_pos, title=title, size=size)

    # ----- pieces -----------------------------------------------------------------------
    def _reward(self, state: SpreadState, params: SpreadParams
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
        _, to_landmark = physics.pair_distances(state.agent_pos, state.landmark_pos)  # (N, L)
        nearest = jnp.min(to_landmark, axis=0)  # (L,)
        shared = -jnp.sum(nearest)
        _, between = physics.pair_distances(state.agent_pos, state.agent_pos)
        colliding = (between < 2.0 * params.agent_size) & ~jnp.eye(self.num_agents, dtype=bool)
        hits = jnp.sum(colliding, axis=1).astype(jnp.float32)  # (N,)
        local = -params.collision_penalty * hits
        reward = shared * (1.0 - params.local_ratio) + local * params.local_ratio
        info = {
            "landmark_distance": -shared,
            "collisions": jnp.sum(hits) / 2.0,
            "occupied_landmarks": jnp.sum(nearest < params.occupied_radius).astype(jnp.float32),
        }
        return reward.astype(jnp.float32), info

    def observations(self, state: SpreadState) -> jax.Array:
        """``(N, obs_dim)``, laid out as in the module docstring."""
        n = self.num_agents
        pos = state.agent_pos
        landmarks = (state.landmark_pos[None, :, :] - pos[:, None, :]).reshape(n, -1)
        others = physics.off_diagonal(pos[None, :, :] - pos[:, None, :]).reshape(n, -1)
        comm = jnp.zeros((n, 2 * (n - 1)), jnp.float32)
        return jnp.concatenate([state.agent_vel, pos, landmarks, others, comm], axis=-1)

    def _timestep(self, state: SpreadState, reward: jax.Array, info: dict[str, jax.Array],
                  params: SpreadParams) -> TimeStep:
        obs = self.observations(state)
        return TimeStep(obs=obs, action_mask=self.all_legal_mask(), global_state=obs.reshape(-1),
                        reward=reward, terminated=jnp.zeros((), bool),
                        truncated=state.step >= params.max_steps, info=info)
