"""``tag-v3``: predator–prey, the reference MPE ``simple_tag_v3``.

``num_adversaries`` predators (size 0.075, accel 3, max speed 1.0) chase ``num_good``
prey (size 0.05, accel 4, max speed 1.3) among ``num_obstacles`` static obstacles (size
0.2) that everyone bumps into. Agent order: predators first, then prey.

Rewards (the reference's; ``catch_reward`` = 10)::

    predator (each, identical): + catch_reward * #{(prey g, predator a) touching}
    prey g:  - catch_reward * #{predators touching g} - sum_{d in x,y} bound(|p_g[d]|)
    bound(x) = 0 if x < 0.9;  10 (x - 0.9) if x < 1;  min(exp(2x - 2), 10) otherwise

"Touching" means ``dist < size_g + size_a``. Observation of agent ``i``::

    [v_i, p_i, (o_k - p_i)_k, (p_j - p_i)_{j != i}, (v_g)_{prey g != i}]

Predators' observations are the widest; prey observations are zero-padded to that width.
The global state is every agent's unpadded observation concatenated.

``prey_policy="learn"`` (default) makes the prey agents of the env, as in the reference.
``prey_policy="scripted"`` drives the prey with a built-in evader and leaves only the
predators as agents, so they can be trained as one cooperative team: each prey
accelerates (at full ``good_accel``) along
``unit(sum_a (p_g - p_a) / |p_g - p_a|^2 - evader_center_pull * p_g)``,
fleeing nearby predators and staying away from the walls. Episodes are truncated after
``max_steps`` (25) steps; they never terminate.
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

PREY_POLICIES = ("learn", "scripted")


@struct.dataclass
class TagState:
    agent_pos: jax.Array  # (A + G, 2): predators, then prey
    agent_vel: jax.Array  # (A + G, 2)
    obstacle_pos: jax.Array  # (K, 2)
    step: jax.Array  # () int32


@struct.dataclass
class TagParams:
    max_steps: int = 25
    adversary_size: float = 0.075
    adversary_accel: float = 3.0
    adversary_max_speed: float = 1.0
    good_size: float = 0.05
    good_accel: float = 4.0
    good_max_speed: float = 1.3
    obstacle_size: float = 0.2
    mass: float = 1.0
    catch_reward: float = 10.0
    #: scripted prey only: weight of the pull back towards the centre
    evader_center_pull: float = 1.0
    world: physics.WorldParams = physics.WorldParams()

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("max_steps", self.max_steps, low=1)
        for name in ("adversary_size", "good_size", "mass"):
            check_param(name, getattr(self, name), low=0.0, low_inclusive=False)
        check_param("obstacle_size", self.obstacle_size, low=0.0)
        for name in ("adversary_accel", "good_accel", "catch_reward", "evader_center_pull"):
            check_param(name, getattr(self, name), low=0.0)
        for name in ("adversary_max_speed", "good_max_speed"):
            check_param(name, getattr(self, name), low=0.0, low_inclusive=False, allow_inf=True)


def boundary_penalty(x: jax.Array) -> jax.Array:
    """The reference prey's penalty for straying out of the unit square, per coordinate."""
    return jnp.where(x < 0.9, 0.0, jnp.where(x < 1.0, (x - 0.9) * 10.0,
                                             jnp.minimum(jnp.exp(2.0 * x - 2.0), 10.0)))


class Tag(Env[TagState, TagParams]):
    """Predator–prey with obstacles; predators are rewarded as one team."""

    def __init__(self, num_adversaries: int = 3, num_good: int = 1, num_obstacles: int = 2,
                 continuous_actions: bool = False, prey_policy: str = "learn",
                 debug: bool = False) -> None:
        self.num_adversaries = check_count("num_adversaries", num_adversaries, 1)
        self.num_good = check_count("num_good", num_good, 1)
        self.num_obstacles = check_count("num_obstacles", num_obstacles, 0)
        physics.check_num_discs("tag", num_adversaries=self.num_adversaries,
                                num_good=self.num_good)
        if prey_policy not in PREY_POLICIES:
            raise ValueError(f"prey_policy must be one of {PREY_POLICIES}, got {prey_policy!r}")
        self.prey_policy = prey_policy
        self.continuous_actions = check_flag("continuous_actions", continuous_actions)
        self.debug = check_flag("debug", debug)
        a, g, k = self.num_adversaries, self.num_good, self.num_obstacles
        self.num_entities = a + g  # every moving disc, learning or not
        self.num_agents = a if prey_policy == "scripted" else a + g
        self.num_actions = physics.NUM_MOVE_ACTIONS
        base = 4 + 2 * k + 2 * (self.num_entities - 1)
        self.adversary_obs_dim = base + 2 * g
        self.good_obs_dim = base + 2 * (g - 1)
        self.obs_dim = self.adversary_obs_dim
        self.state_dim = a * self.adversary_obs_dim + g * self.good_obs_dim
        adversaries = tuple(f"adversary_{i}" for i in range(a))
        good = tuple(f"agent_{i}" for i in range(g))
        self.agent_names = adversaries if prey_policy == "scripted" else adversaries + good
        self.teams = {"adversaries": tuple(range(a))}
        if prey_policy == "learn":
            self.teams["good"] = tuple(range(a, a + g))
        self._is_good = np.arange(self.num_entities) >= a
        # prey i sees the velocities of every other prey (predators see all of them)
        self._prey_others = np.array([[j for j in range(a, a + g) if j != i]
                                      for i in range(a, a + g)], dtype=np.int32).reshape(g, g - 1)

    def agent_obs_dim(self, agent: int | str) -> int:
        return self.adversary_obs_dim if self._agent_index(agent) < self.num_adversaries \
            else self.good_obs_dim

    def default_params(self) -> TagParams:
        return TagParams()

    # ----- dynamics ---------------------------------------------------------------------
    def reset_env(self, key: jax.Array, params: TagParams) -> tuple[TagState, TimeStep]:
        n, k = self.num_entities, self.num_obstacles
        u = jax.random.uniform(key, (n + k, 2), jnp.float32, -1.0, 1.0)
        state = TagState(agent_pos=u[:n], agent_vel=jnp.zeros((n, 2), jnp.float32),
                         obstacle_pos=u[n:] * 0.9, step=jnp.zeros((), jnp.int32))
        reward, info = self._reward(state, params)
        return state, self._timestep(state, jnp.zeros_like(reward), info, params)

    def step_env(self, key: jax.Array, state: TagState, actions: jax.Array, params: TagParams
                 ) -> tuple[TagState, TimeStep]:
        del key  # deterministic dynamics (the scripted evader is deterministic too)
        direction = physics.action_direction(actions, self.continuous_actions)
        if self.prey_policy == "scripted":
            direction = jnp.concatenate([direction, self.evader_direction(state, params)])
        good = jnp.asarray(self._is_good)
        pos, vel = physics.world_step(
            state.agent_pos, state.agent_vel, direction,
            size=jnp.where(good, params.good_size, params.adversary_size),
            mass=jnp.full((self.num_entities,), params.mass, jnp.float32),
            accel=jnp.where(good, params.good_accel, params.adversary_accel),
            max_speed=jnp.where(good, params.good_max_speed, params.adversary_max_speed),
            collide=jnp.ones((self.num_entities,), bool), obstacle_pos=state.obstacle_pos,
            obstacle_size=jnp.full((self.num_obstacles,), params.obstacle_size, jnp.float32),
            params=params.world)
        state = state.replace(agent_pos=pos, agent_vel=vel, step=state.step + 1)
        reward, info = self._reward(state, params)
        return state, self._timestep(state, reward, info, params)

    def render(self, state: TagState, params: TagParams | None = None, *,
               size: int | None = None) -> np.ndarray:
        """Predators (red) and prey (green, paler when scripted) as discs of their sizes,
        obstacles as grey discs; see ``Env``."""
        from jaxmarl_coop.envs import render

        state, params, title = render.frame_setup(self, state, params, metrics=("catches",))
        a, g = self.num_adversaries, self.num_good
        prey_color = render.PREY_COLOR if self.prey_policy == "learn" else (0.6, 0.9, 0.6)
        radius = np.where(self._is_good, float(params.good_size), float(params.adversary_size))
        return render.draw_particles(
            state.agent_pos, radius, agent_color=[render.PREDATOR_COLOR] * a + [prey_color] * g,
            agent_labels=[f"A{i}" for i in range(a)] + [f"G{i}" for i in range(g)],
            obstacle_pos=state.obstacle_pos, obstacle_radius=float(params.obstacle_size),
            title=title, size=size)

    def evader_direction(self, state: TagState, params: TagParams) -> jax.Array:
        """The scripted prey's unit direction ``(G, 2)`` (see the module docstring)."""
        a = self.num_adversaries
        prey, predators = state.agent_pos[a:], state.agent_pos[:a]
        delta, dist = physics.pair_distances(prey, predators)  # (G, A, 2), (G, A)
        flee = jnp.sum(delta / jnp.maximum(dist * dist, 1e-6)[..., None], axis=1)
        want = flee - params.evader_center_pull * prey
        norm = jnp.sqrt(jnp.sum(want * want, axis=-1, keepdims=True))
        return jnp.where(norm > 1e-6, want / jnp.maximum(norm, 1e-6), 0.0)

    # ----- pieces -----------------------------------------------------------------------
    def _reward(self, state: TagState, params: TagParams
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
        a = self.num_adversaries
        prey, predators = state.agent_pos[a:], state.agent_pos[:a]
        _, dist = physics.pair_distances(prey, predators)  # (G, A)
        caught = dist < params.good_size + params.adversary_size
        per_prey = jnp.sum(caught, axis=1).astype(jnp.float32)  # (G,)
        catches = jnp.sum(per_prey)
        adversary = jnp.full((a,), params.catch_reward * catches, jnp.float32)
        good = (-params.catch_reward * per_prey
                - jnp.sum(boundary_penalty(jnp.abs(prey)), axis=-1))
        reward = adversary if self.prey_policy == "scripted" else jnp.concatenate([adversary,
                                                                                   good])
        info = {"catches": catches,
                "prey_boundary_penalty": -jnp.sum(good + params.catch_reward * per_prey)}
        return reward.astype(jnp.float32), info

    def entity_observations(self, state: TagState) -> tuple[jax.Array, jax.Array]:
        """Unpadded observations of every disc: predators ``(A, wa)`` and prey ``(G, wg)``."""
        n, a = self.num_entities, self.num_adversaries
        pos, vel = state.agent_pos, state.agent_vel
        obstacles = (state.obstacle_pos[None, :, :] - pos[:, None, :]).reshape(n, -1)
        others = physics.off_diagonal(pos[None, :, :] - pos[:, None, :]).reshape(n, -1)
        base = jnp.concatenate([vel, pos, obstacles, others], axis=-1)
        prey_vel = vel[a:].reshape(-1)
        adversary_obs = jnp.concatenate(
            [base[:a], jnp.broadcast_to(prey_vel, (a, prey_vel.shape[0]))], axis=-1)
        if self.num_good > 1:
            seen = vel[self._prey_others].reshape(self.num_good, -1)
            good_obs = jnp.concatenate([base[a:], seen], axis=-1)
        else:
            good_obs = base[a:]
        return adversary_obs, good_obs

    def _timestep(self, state: TagState, reward: jax.Array, info: dict[str, jax.Array],
                  params: TagParams) -> TimeStep:
        adversary_obs, good_obs = self.entity_observations(state)
        global_state = jnp.concatenate([adversary_obs.reshape(-1), good_obs.reshape(-1)])
        if self.prey_policy == "scripted":
            obs = adversary_obs
        else:
            pad = self.obs_dim - self.good_obs_dim
            obs = jnp.concatenate([adversary_obs, jnp.pad(good_obs, ((0, 0), (0, pad)))])
        return TimeStep(obs=obs, action_mask=self.all_legal_mask(), global_state=global_state,
                        reward=reward, terminated=jnp.zeros((), bool),
                        truncated=state.step >= params.max_steps, info=info)
