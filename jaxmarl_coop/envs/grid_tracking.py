"""``grid-tracking-v1``: ``tracking-v1`` on a small grid, for tabular learners.

N agents (default 2) and a target live on the cells ``(x, y)``, ``0 <= x, y < G`` of a
``G × G`` grid (``grid_size``, default 5). Actions: ``Discrete(5)`` in the MPE order
``[stay, left (-x), right (+x), down (-y), up (+y)]``; a move into a wall leaves that
coordinate unchanged (clipped). Every step, after the agents move, the target moves with
probability ``target_move_prob`` p (default 0.5) one cell in one of the four directions
chosen uniformly, also clipped: at a wall or a corner some of the four moves leave it in
place, so there it moves with probability 3p/4 or p/2. Agents may share a cell (with each
other or the target); two agents in one cell after moving collide, and both stay there.

Team reward, the same for every agent, with ``d_i = |x_i - x_T| + |y_i - y_T|``::

    r = capture_reward * 1[some agent on the target cell]
        - distance_weight * mean_i d_i / (2 (G - 1))
        - collision_penalty * #{agent pairs i < j sharing a cell}

Defaults ``capture_reward = 1``, ``distance_weight = 0.1``, ``collision_penalty = 0.5``:
the normalised distance term (at most ``distance_weight``) only shapes the search; a
capture is worth more than a collision costs, so two agents piling onto the target still
beat missing it, but one agent on the target with its teammate next to it scores best.

Observation of agent ``i``, width ``4 + 2(N - 1)``, every entry divided by ``G - 1``::

    [x_i, y_i, x_T - x_i, y_T - y_i, (x_j - x_i, y_j - y_i)_{j != i, ascending}]

Global state ``[x_0, y_0, …, x_{N-1}, y_{N-1}, x_T, y_T] / (G - 1)`` (width ``2N + 2``).
``reset`` places the agents and the target uniformly and independently (agents may start
on the target or on each other). Episodes are truncated after ``max_steps`` (25); they
never terminate. ``info``: ``mean_distance`` (mean_i d_i, in cells), ``captured`` (1 if some
agent is on the target) and ``collisions`` (the pair count in the reward).

Tabular index (``obs_index``): own cell and target cell, decoded from the first four
columns by rounding ``obs * (G - 1)``; teammates are not in the index (a tabular learner
treats them as part of the environment)::

    index = (x_i * G + y_i) * G² + x_T * G + y_T,    num_obs_indices = G⁴

(625 for G = 5; every index is reachable).
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
    check_obs_width,
    check_param,
    check_param_types,
)
from jaxmarl_coop.envs.physics import DISCRETE_DIRECTIONS, NUM_MOVE_ACTIONS

#: the action's (dx, dy) cell move, in the MPE order [stay, left, right, down, up]
MOVES = DISCRETE_DIRECTIONS.astype(np.int32)


@struct.dataclass
class GridTrackingState:
    agent_pos: jax.Array  # (N, 2) int32 cells
    target_pos: jax.Array  # (2,) int32 cell
    step: jax.Array  # () int32


@struct.dataclass
class GridTrackingParams:
    max_steps: int = 25
    target_move_prob: float = 0.5
    capture_reward: float = 1.0
    distance_weight: float = 0.1
    collision_penalty: float = 0.5

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("max_steps", self.max_steps, low=1)
        check_param("target_move_prob", self.target_move_prob, low=0.0, high=1.0)
        for name in ("capture_reward", "distance_weight", "collision_penalty"):
            check_param(name, getattr(self, name), low=0.0)


class GridTracking(Env[GridTrackingState, GridTrackingParams]):
    """N agents on a G × G grid chase a randomly wandering target without piling up."""

    def __init__(self, grid_size: int = 5, num_agents: int = 2, debug: bool = False) -> None:
        self.grid_size = check_count("grid_size", grid_size, 2)
        self.num_agents = check_count("num_agents", num_agents, 1)
        self.continuous_actions = False
        self.debug = check_flag("debug", debug)
        n, g = self.num_agents, self.grid_size
        self.num_actions = NUM_MOVE_ACTIONS
        self.obs_dim = 4 + 2 * (n - 1)
        self.state_dim = 2 * n + 2
        self.num_obs_indices = g**4
        self.agent_names = tuple(f"agent_{i}" for i in range(n))
        self.teams = {"agents": tuple(range(n))}

    def default_params(self) -> GridTrackingParams:
        return GridTrackingParams()

    def reset_env(self, key: jax.Array, params: GridTrackingParams
                  ) -> tuple[GridTrackingState, TimeStep]:
        n = self.num_agents
        cells = jax.random.randint(key, (n + 1, 2), 0, self.grid_size, dtype=jnp.int32)
        state = GridTrackingState(agent_pos=cells[:n], target_pos=cells[n],
                                  step=jnp.zeros((), jnp.int32))
        reward, info = self._reward(state, params)
        return state, self._timestep(state, jnp.zeros_like(reward), info, params)

    def step_env(self, key: jax.Array, state: GridTrackingState, actions: jax.Array,
                 params: GridTrackingParams) -> tuple[GridTrackingState, TimeStep]:
        top = self.grid_size - 1
        agent_pos = jnp.clip(state.agent_pos + jnp.asarray(MOVES)[actions], 0, top)
        k_move, k_dir = jax.random.split(key)
        moves = jax.random.uniform(k_move, (), jnp.float32) < params.target_move_prob
        direction = jax.random.randint(k_dir, (), 1, NUM_MOVE_ACTIONS, dtype=jnp.int32)
        target_pos = jnp.clip(state.target_pos + jnp.asarray(MOVES)[direction] * moves, 0, top)
        state = GridTrackingState(agent_pos=agent_pos, target_pos=target_pos,
                                  step=state.step + 1)
        reward, info = self._reward(state, params)
        return state, self._timestep(state, reward, info, params)

    def render(self, state: GridTrackingState, params: GridTrackingParams | None = None, *,
               size: int | None = None) -> np.ndarray:
        """The grid, agents (numbered discs) and the target cell; see ``Env``."""
        from jaxmarl_coop.envs import render

        state, params, title = render.frame_setup(self, state, params)
        return render.draw_grid(self.grid_size, state.agent_pos, state.target_pos,
                                title=title, size=size)

    # ----- pieces -----------------------------------------------------------------------
    def _reward(self, state: GridTrackingState, params: GridTrackingParams
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
        n = self.num_agents
        distance = jnp.sum(jnp.abs(state.agent_pos - state.target_pos), axis=-1)  # (N,)
        mean_distance = jnp.mean(distance.astype(jnp.float32))
        captured = jnp.any(distance == 0).astype(jnp.float32)
        same = jnp.all(state.agent_pos[:, None, :] == state.agent_pos[None, :, :], axis=-1)
        collisions = jnp.sum(jnp.triu(same, k=1)).astype(jnp.float32)
        team = (params.capture_reward * captured
                - params.distance_weight * mean_distance / (2.0 * (self.grid_size - 1))
                - params.collision_penalty * collisions)
        info = {"mean_distance": mean_distance, "captured": captured, "collisions": collisions}
        return jnp.full((n,), team, jnp.float32), info

    def observations(self, state: GridTrackingState) -> jax.Array:
        """``(N, obs_dim)``, laid out as in the module docstring."""
        n = self.num_agents
        pos = state.agent_pos
        cells = jnp.concatenate([
            pos, state.target_pos[None, :] - pos,
            physics.off_diagonal(pos[None, :, :] - pos[:, None, :]).reshape(n, -1)], axis=-1)
        return cells.astype(jnp.float32) / (self.grid_size - 1)

    def obs_index(self, obs: jax.Array) -> jax.Array:
        """``(..., N)`` int32 in ``[0, G⁴)``: own cell and target cell (module docstring).

        Cells decoded outside the grid (observations that no state produces) are clipped
        into it, so the index is always in range.
        """
        obs = jnp.asarray(obs)
        check_obs_width(self, obs)
        g = self.grid_size
        cells = jnp.round(obs[..., :4] * (g - 1)).astype(jnp.int32)
        own = jnp.clip(cells[..., :2], 0, g - 1)
        target = jnp.clip(own + cells[..., 2:4], 0, g - 1)
        return ((own[..., 0] * g + own[..., 1]) * g * g
                + target[..., 0] * g + target[..., 1]).astype(jnp.int32)

    def _timestep(self, state: GridTrackingState, reward: jax.Array,
                  info: dict[str, jax.Array], params: GridTrackingParams) -> TimeStep:
        global_state = jnp.concatenate([state.agent_pos.reshape(-1), state.target_pos]
                                       ).astype(jnp.float32) / (self.grid_size - 1)
        return TimeStep(obs=self.observations(state), action_mask=self.all_legal_mask(),
                        global_state=global_state, reward=reward,
                        terminated=jnp.zeros((), bool),
                        truncated=state.step >= params.max_steps, info=info)
