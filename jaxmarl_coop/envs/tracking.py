"""``tracking-v1``: a team tracks a moving target without colliding (the seed task).

N agents (default 2, discs of ``agent_size``) move with the MPE physics inside the square
arena ``[-arena_half_width, arena_half_width]^2`` (inelastic walls: a disc against a wall
loses the velocity into it), among ``num_obstacles`` static discs (default none, radius
``obstacle_size``, centres uniform in ``[-0.7, 0.7]^2 * arena_half_width``).

Obstacles are solid (constructor option ``solid_obstacles=True``, the default): besides the
soft MPE contact force, an agent whose move would enter an obstacle stops where it first
touches it (a swept test, so no speed tunnels through), an agent left inside one is put back
onto its surface, and the velocity into the obstacle is removed, so agents slide along
obstacles and rest against them (``physics.block_obstacles``). The walls are applied after
the obstacles and win where an obstacle lies closer than an agent's diameter to a wall
(impossible with the default sizes: obstacles end 0.2 short of the walls). With
``solid_obstacles=False`` obstacles act only through the soft contact force and the
penalty: a thrusting agent passes through one within a few steps.

Resets start no agent touching an obstacle or another agent: the agents are placed one by
one, each at its first of ``1 + RESET_TRIES`` (5) uniform draws that is clear of the
obstacles and the agents before it (the last draw if none is). Starts still touching,
measured over 100,000 resets: 0 with 3 agents and 2 obstacles (13 % with one draw), 0 with
2 agents, 1.8e-4 with 8 agents and 4 obstacles, 1.3e-3 with 16 and 4; a crowded arena (64
agents, 8 obstacles) still starts touching 63 % of the time.

A target point moves at constant
``target_speed`` along a smooth random path: its heading takes a Gaussian turn of standard
deviation ``target_turn_std * sqrt(dt)`` each step, and, with ``flee_weight`` w > 0, is
blended towards the direction ``f = unit(p_T - p_nearest)`` away from the nearest agent::

    heading <- angle((1 - w) * (c - min(c . f, 0) f) + w * f),    c = (cos h, sin h)

The target moves after the agents, so it flees from where they are after their move. The
wander direction loses its component towards the nearest agent before the blend, so with
any w > 0 the target never heads towards that agent (a plain blend kept heading at it for
w <= 0.5). A wandering target (w = 0) bounces off the walls (mirror reflection of position
and heading); a fleeing one (w > 0) slides along them: it stops at the wall on that axis and
its heading keeps only the component along the wall (pressed into a corner it stays there
instead of jiggling in and out of it).

Team reward, the same for every agent, with ``d_i = ||p_i - p_T||``::

    r = - distance_weight * mean_i d_i
        + capture_bonus * 1[min_i d_i < capture_radius]
        - collision_penalty * (#touching agent pairs + #touching agent-obstacle pairs)

(agents touch when their centres are closer than ``2 agent_size``; an agent touches an
obstacle when closer than ``agent_size + obstacle_size + 1e-5``, so an agent resting
against a solid obstacle counts at every step).

``info``: ``mean_distance`` (mean_i d_i), ``captured`` (1 if some agent is inside the
capture radius; its episode mean is the fraction of steps with a capture) and
``collisions`` (the count in the reward). Observation of agent ``i`` (width
``8 + 4(N-1) + 2K``, plus ``N`` with ``visibility_flags=True``)::

    [v_i, p_i, p_T - p_i, v_T, (p_j - p_i)_{j != i}, (v_j)_{j != i}, (o_k - p_i)_k
     (, 1[T visible to i], (1[j visible to i])_{j != i})]

Sensing radius (param ``sensing_radius`` R, default ``inf``: everything visible). Agent
``i`` sees the target when ``||p_T - p_i||^2 <= R^2`` and teammate ``j`` when
``||p_j - p_i||^2 <= R^2`` (squared distances in float32, so a point exactly at distance R
is seen); what it does not see reads as zeros: ``p_T - p_i`` and ``v_T`` for the target,
``p_j - p_i`` and ``v_j`` for teammate ``j``. Its own ``v_i, p_i`` and the obstacles (the
map) are always observed. With the static option ``visibility_flags=True`` the observation
ends with ``1 + (N-1)`` floats, 1.0 where the target, then each teammate ``j != i`` (in the
order of the blocks above), is visible and 0.0 where not, so a zero entry that is unseen
can be told from one that is really zero. With the defaults (R = inf, no flags) the
observation is the full one above, bit for bit. The global state ignores R.

Global state: ``[all p (2N), all v (2N), p_T, v_T, all o (2K)]``. Episodes are
truncated after ``max_steps`` (50); they never terminate.

Reference policies: ``random_policy`` (uniform legal actions, ``envs.core``) and
``greedy_chase_policy`` below (every agent heads straight for the target it sees; an
agent that sees no target stays put).
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
    concrete_values,
)
from jaxmarl_coop.envs.policy import Policy, feed_forward

#: Extra start draws per agent at ``reset`` for an agent whose first start touches an
#: obstacle or an agent placed before it (the rates still touching are in the module
#: docstring). A redrawn start takes one 32-bit random word (16 bits per coordinate, a grid
#: of about 3e-5 of the arena), since ``AutoReset`` resets at every step: measured on a
#: loaded 2-core CPU (default task, batch 1024, auto-reset step), 1.46-1.54 M steps/s
#: against 1.84 M with one float draw and no redraws (0.86 M with 4 float redraws).
RESET_TRIES = 4


@struct.dataclass
class TrackingState:
    agent_pos: jax.Array  # (N, 2)
    agent_vel: jax.Array  # (N, 2)
    target_pos: jax.Array  # (2,)
    target_heading: jax.Array  # () radians
    obstacle_pos: jax.Array  # (K, 2)
    step: jax.Array  # () int32


@struct.dataclass
class TrackingParams:
    max_steps: int = 50
    arena_half_width: float = 1.0
    agent_size: float = 0.05
    agent_accel: float = 5.0
    agent_mass: float = 1.0
    agent_max_speed: float = 1.0
    obstacle_size: float = 0.1
    target_speed: float = 0.5
    target_turn_std: float = 2.0
    flee_weight: float = 0.0
    capture_radius: float = 0.2
    distance_weight: float = 1.0
    capture_bonus: float = 1.0
    collision_penalty: float = 1.0
    #: an agent sees the target / a teammate within this distance (inclusive); inf: always
    sensing_radius: float = float("inf")
    world: physics.WorldParams = physics.WorldParams()

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("max_steps", self.max_steps, low=1)
        for name in ("arena_half_width", "agent_size", "agent_mass"):
            check_param(name, getattr(self, name), low=0.0, low_inclusive=False)
        check_param("sensing_radius", self.sensing_radius, low=0.0, low_inclusive=False,
                    allow_inf=True)
        check_param("agent_max_speed", self.agent_max_speed, low=0.0, low_inclusive=False,
                    allow_inf=True)
        for name in ("agent_accel", "obstacle_size", "target_speed", "target_turn_std",
                     "capture_radius", "distance_weight", "capture_bonus",
                     "collision_penalty"):
            check_param(name, getattr(self, name), low=0.0)
        check_param("flee_weight", self.flee_weight, low=0.0, high=1.0)
        half = concrete_values(self.arena_half_width)
        if half is not None:
            check_param("agent_size (must fit in the arena)", self.agent_size, high=half,
                        high_inclusive=False)


def _unit(v: jax.Array) -> jax.Array:
    norm = jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True))
    return jnp.where(norm > 1e-8, v / jnp.maximum(norm, 1e-8), 0.0)


class Tracking(Env[TrackingState, TrackingParams]):
    """N agents in a walled arena track a randomly moving (optionally fleeing) target."""

    def __init__(self, num_agents: int = 2, num_obstacles: int = 0,
                 continuous_actions: bool = False, solid_obstacles: bool = True,
                 debug: bool = False, visibility_flags: bool = False) -> None:
        self.num_agents = check_count("num_agents", num_agents, 1)
        physics.check_num_discs("tracking", num_agents=self.num_agents)
        self.num_obstacles = check_count("num_obstacles", num_obstacles, 0)
        self.solid_obstacles = check_flag("solid_obstacles", solid_obstacles)
        self.continuous_actions = check_flag("continuous_actions", continuous_actions)
        self.visibility_flags = check_flag("visibility_flags", visibility_flags)
        self.debug = check_flag("debug", debug)
        n, k = self.num_agents, self.num_obstacles
        self.num_actions = physics.NUM_MOVE_ACTIONS
        # the flags: 1 for the target, 1 per teammate
        self.obs_dim = 8 + 4 * (n - 1) + 2 * k + (n if self.visibility_flags else 0)
        self.state_dim = 4 * n + 4 + 2 * k
        self.agent_names = tuple(f"agent_{i}" for i in range(n))
        self.teams = {"agents": tuple(range(n))}

    def default_params(self) -> TrackingParams:
        return TrackingParams()

    def reset_env(self, key: jax.Array, params: TrackingParams
                  ) -> tuple[TrackingState, TimeStep]:
        n, k = self.num_agents, self.num_obstacles
        redraw = RESET_TRIES * n if n + k > 1 else 0
        bits = jax.random.bits(key, (2 * (n + k + 2) + redraw,), jnp.uint32)
        # 23 random mantissa bits per coordinate, as jax.random.uniform makes them
        u = jax.lax.bitcast_convert_type((bits[:2 * (n + k + 2)] >> 9) | 0x3F800000,
                                         jnp.float32).reshape(n + k + 2, 2) * 2.0 - 3.0
        half = params.arena_half_width
        agent_pos = u[:n] * (half - params.agent_size)
        obstacle_pos = u[n + 2:n + k + 2] * 0.7 * half
        if redraw:
            # a redrawn start costs one 32-bit word: 16 bits per coordinate
            word = bits[2 * (n + k + 2):]
            halves = jnp.stack([word >> 16, word & 0xFFFF], axis=-1).astype(jnp.float32)
            redraws = (halves + 0.5) * (2.0 / 65536.0) - 1.0
            agent_pos = self._separate(redraws.reshape(RESET_TRIES, n, 2), agent_pos,
                                       obstacle_pos, params)
        state = TrackingState(
            agent_pos=agent_pos,
            agent_vel=jnp.zeros((n, 2), jnp.float32),
            target_pos=u[n] * 0.8 * half,
            target_heading=u[n + 1, 0] * jnp.pi,
            obstacle_pos=obstacle_pos,
            step=jnp.zeros((), jnp.int32))
        reward, info = self._reward(state, params)
        return state, self._timestep(state, jnp.zeros_like(reward), info, params)

    def step_env(self, key: jax.Array, state: TrackingState, actions: jax.Array,
                 params: TrackingParams) -> tuple[TrackingState, TimeStep]:
        n = self.num_agents
        ones = jnp.ones((n,), jnp.float32)
        size = ones * params.agent_size
        obstacle_size = jnp.full((self.num_obstacles,), params.obstacle_size, jnp.float32)
        pos, vel = physics.world_step(
            state.agent_pos, state.agent_vel,
            physics.action_direction(actions, self.continuous_actions),
            size=size, mass=ones * params.agent_mass, accel=ones * params.agent_accel,
            max_speed=ones * params.agent_max_speed, collide=jnp.ones((n,), bool),
            obstacle_pos=state.obstacle_pos, obstacle_size=obstacle_size, params=params.world)
        if self.solid_obstacles:
            pos, vel, _ = physics.block_obstacles(state.agent_pos, pos, vel, size,
                                                  state.obstacle_pos, obstacle_size)
        pos, vel = physics.confine(pos, vel, size, params.arena_half_width)
        target_pos, heading = self._move_target(key, state.target_pos, state.target_heading,
                                                pos, params)
        state = state.replace(agent_pos=pos, agent_vel=vel, target_pos=target_pos,
                              target_heading=heading, step=state.step + 1)
        reward, info = self._reward(state, params)
        return state, self._timestep(state, reward, info, params)

    def _move_target(self, key: jax.Array, target_pos: jax.Array, heading: jax.Array,
                     agent_pos: jax.Array, params: TrackingParams
                     ) -> tuple[jax.Array, jax.Array]:
        """The target's step, after the agents' (``agent_pos``: where they are now)."""
        dt, w = params.world.dt, params.flee_weight
        turn = jax.random.normal(key, (), jnp.float32) * params.target_turn_std * jnp.sqrt(dt)
        heading = heading + turn
        wander = jnp.stack([jnp.cos(heading), jnp.sin(heading)])
        away = target_pos[None, :] - agent_pos  # (N, 2)
        nearest = jnp.argmin(jnp.sum(away * away, axis=-1))
        flee = _unit(away[nearest])
        # fleeing never heads towards the nearest agent: the wander loses that component
        towards = jnp.minimum(jnp.sum(wander * flee), 0.0)
        wander = jnp.where(w > 0, wander - towards * flee, wander)
        want = (1.0 - w) * wander + w * flee
        heading = jnp.where(jnp.sum(want * want) > 1e-12, jnp.arctan2(want[1], want[0]), heading)
        direction = jnp.stack([jnp.cos(heading), jnp.sin(heading)])
        pos = target_pos + params.target_speed * dt * direction
        half = params.arena_half_width
        over_hi, over_lo = pos > half, pos < -half
        out = over_hi | over_lo
        # a wandering target (w = 0) mirrors off the walls: position folded back inside,
        # heading reflected per axis; a fleeing one slides: it stops at the wall on that axis
        # and its heading keeps only the component along the wall
        mirrored = jnp.where(over_hi, 2 * half - pos, jnp.where(over_lo, -2 * half - pos, pos))
        mirrored_dir = jnp.where(out, -direction, direction)
        slid_dir = jnp.where(out, 0.0, direction)
        slides = w > 0
        pos = jnp.where(slides, pos, mirrored)
        new_dir = jnp.where(slides, slid_dir, mirrored_dir)
        heading = jnp.where(jnp.sum(new_dir * new_dir) > 1e-12,
                            jnp.arctan2(new_dir[1], new_dir[0]), heading)
        return jnp.clip(pos, -half, half), heading

    def render(self, state: TrackingState, params: TrackingParams | None = None, *,
               size: int | None = None) -> np.ndarray:
        """The arena, agents (discs of ``agent_size``), obstacles, and the target with its
        heading and its dashed capture circle; see ``Env``."""
        from jaxmarl_coop.envs import render

        state, params, title = render.frame_setup(self, state, params)
        return render.draw_particles(
            state.agent_pos, float(params.agent_size), obstacle_pos=state.obstacle_pos,
            obstacle_radius=float(params.obstacle_size), target_pos=state.target_pos,
            target_heading=float(state.target_heading),
            capture_radius=float(params.capture_radius),
            arena_half_width=float(params.arena_half_width), title=title, size=size)

    # ----- pieces -----------------------------------------------------------------------
    def _reward(self, state: TrackingState, params: TrackingParams
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
        n = self.num_agents
        to_target = jnp.sqrt(jnp.sum((state.agent_pos - state.target_pos) ** 2, axis=-1))
        mean_distance = jnp.mean(to_target)
        captured = (jnp.min(to_target) < params.capture_radius).astype(jnp.float32)
        collisions = self._touching(state.agent_pos, state.obstacle_pos, params)
        team = (-params.distance_weight * mean_distance + params.capture_bonus * captured
                - params.collision_penalty * collisions)
        info = {"mean_distance": mean_distance, "captured": captured, "collisions": collisions}
        return jnp.full((n,), team, jnp.float32), info

    def _separate(self, redraws: jax.Array, agent_pos: jax.Array, obstacle_pos: jax.Array,
                  params: TrackingParams) -> jax.Array:
        """Agent by agent, keep its start or else the first of its ``RESET_TRIES`` redraws
        (``redraws``: ``(RESET_TRIES, N, 2)`` uniform on ``[-1, 1]``, drawn with the rest of
        the reset) that touches neither an obstacle nor an agent placed before it; the last
        redraw if none is clear. Obstacles stay where they are and may overlap each other."""
        n, k = self.num_agents, self.num_obstacles
        redraws = redraws * (params.arena_half_width - params.agent_size)
        agent_gap = (2.0 * params.agent_size) ** 2
        obstacle_gap = (params.agent_size + params.obstacle_size + physics.CONTACT_SLACK) ** 2
        placed = []
        for i in range(n):
            if i == 0 and k == 0:
                placed.append(agent_pos[0])
                continue
            candidates = jnp.concatenate([agent_pos[i][None], redraws[:, i]])  # (T + 1, 2)
            bad = jnp.zeros((RESET_TRIES + 1,), bool)
            if i > 0:
                delta = candidates[:, None, :] - jnp.stack(placed)[None, :, :]
                bad |= jnp.any(jnp.sum(delta * delta, axis=-1) < agent_gap, axis=1)
            if k > 0:
                delta = candidates[:, None, :] - obstacle_pos[None, :, :]
                bad |= jnp.any(jnp.sum(delta * delta, axis=-1) < obstacle_gap, axis=1)
            first = jnp.argmax((~bad).at[-1].set(True))
            pick = (jnp.arange(RESET_TRIES + 1) == first).astype(candidates.dtype)
            placed.append(pick @ candidates)
        return jnp.stack(placed)

    def _touching(self, agent_pos: jax.Array, obstacle_pos: jax.Array,
                  params: TrackingParams) -> jax.Array:
        """#touching agent pairs + #agent-obstacle contacts (float32 scalar).

        Agents touch when their centres are closer than ``2 agent_size``; an agent touches
        an obstacle when its centre is closer than ``agent_size + obstacle_size +
        physics.CONTACT_SLACK`` to the obstacle's, so an agent resting against a solid
        obstacle (put back exactly onto the contact circle, up to round-off) counts.
        """
        _, between = physics.pair_distances(agent_pos, agent_pos)
        collisions = jnp.sum(jnp.triu(between < 2.0 * params.agent_size, k=1)
                             ).astype(jnp.float32)
        if self.num_obstacles > 0:
            _, to_obstacle = physics.pair_distances(agent_pos, obstacle_pos)
            collisions += jnp.sum(to_obstacle < params.agent_size + params.obstacle_size
                                  + physics.CONTACT_SLACK)
        return collisions

    def target_velocity(self, state: TrackingState, params: TrackingParams) -> jax.Array:
        return params.target_speed * jnp.stack([jnp.cos(state.target_heading),
                                                jnp.sin(state.target_heading)])

    def observations(self, state: TrackingState, params: TrackingParams) -> jax.Array:
        """``(N, obs_dim)`` float32, laid out as in the module docstring.

        Agent ``i`` sees the target iff ``||p_T - p_i||^2 <= sensing_radius^2`` and teammate
        ``j`` iff ``||p_j - p_i||^2 <= sensing_radius^2`` (float32); unseen entries are
        zeros, and with ``visibility_flags`` the last ``N`` columns are the target's flag
        then the teammates' (1.0 seen, 0.0 not).
        """
        n = self.num_agents
        pos, vel = state.agent_pos, state.agent_vel
        target_vel = jnp.broadcast_to(self.target_velocity(state, params), (n, 2))
        to_target = state.target_pos[None, :] - pos  # (N, 2)
        to_others = physics.off_diagonal(pos[None, :, :] - pos[:, None, :])  # (N, N-1, 2)
        others_vel = physics.off_diagonal(jnp.broadcast_to(vel[None, :, :], (n, n, 2)))
        radius = concrete_values(params.sensing_radius)
        if radius is not None and np.all(np.isinf(radius)) and not self.visibility_flags:
            # a known infinite radius sees everything: the program of the full view, op for
            # op (learners compiled with default params stay bit-identical to before R)
            return jnp.concatenate(
                [vel, pos, to_target, target_vel, to_others.reshape(n, -1),
                 others_vel.reshape(n, -1),
                 (state.obstacle_pos[None, :, :] - pos[:, None, :]).reshape(n, -1)], axis=-1)
        # squared distances against R^2: no sqrt, and exact for points placed at R
        reach = jnp.square(jnp.asarray(params.sensing_radius, jnp.float32))
        sees_target = jnp.sum(to_target * to_target, axis=-1) <= reach  # (N,)
        sees_other = jnp.sum(to_others * to_others, axis=-1) <= reach  # (N, N-1)
        # where() keeps a visible entry's bits, so R = inf reproduces the full view exactly
        to_target = jnp.where(sees_target[:, None], to_target, 0.0)
        target_vel = jnp.where(sees_target[:, None], target_vel, 0.0)
        to_others = jnp.where(sees_other[..., None], to_others, 0.0)
        others_vel = jnp.where(sees_other[..., None], others_vel, 0.0)
        parts = [vel, pos, to_target, target_vel, to_others.reshape(n, -1),
                 others_vel.reshape(n, -1),
                 (state.obstacle_pos[None, :, :] - pos[:, None, :]).reshape(n, -1)]
        if self.visibility_flags:
            parts += [sees_target[:, None].astype(jnp.float32),
                      sees_other.astype(jnp.float32)]
        return jnp.concatenate(parts, axis=-1)

    def _timestep(self, state: TrackingState, reward: jax.Array, info: dict[str, jax.Array],
                  params: TrackingParams) -> TimeStep:
        pos, vel = state.agent_pos, state.agent_vel
        target_vel = self.target_velocity(state, params)
        obs = self.observations(state, params)
        global_state = jnp.concatenate([pos.reshape(-1), vel.reshape(-1), state.target_pos,
                                        target_vel, state.obstacle_pos.reshape(-1)])
        return TimeStep(obs=obs, action_mask=self.all_legal_mask(), global_state=global_state,
                        reward=reward, terminated=jnp.zeros((), bool),
                        truncated=state.step >= params.max_steps, info=info)


def greedy_chase_policy(env: Tracking) -> Policy:
    """Every agent heads straight for the target, ignoring its teammates.

    Discrete: the move whose direction best matches ``p_T - p_i``; continuous: full thrust
    along ``p_T - p_i``. An agent that does not see the target (beyond ``sensing_radius``:
    ``p_T - p_i`` reads as zeros) does nothing. Returns ``policy(key, timestep) -> actions``.
    """

    def policy(key: jax.Array, timestep: TimeStep) -> jax.Array:
        del key
        to_target = timestep.obs[:, 4:6]
        if env.continuous_actions:
            u = to_target / jnp.maximum(jnp.max(jnp.abs(to_target), axis=-1, keepdims=True),
                                        1e-8)
            return jnp.concatenate([jnp.zeros((u.shape[0], 1)), jnp.maximum(-u[:, :1], 0),
                                    jnp.maximum(u[:, :1], 0), jnp.maximum(-u[:, 1:], 0),
                                    jnp.maximum(u[:, 1:], 0)], axis=-1).astype(jnp.float32)
        score = to_target @ jnp.asarray(physics.DISCRETE_DIRECTIONS).T  # (N, 5)
        return jnp.argmax(score.at[:, 0].set(1e-6), axis=-1).astype(jnp.int32)

    return feed_forward(policy)
