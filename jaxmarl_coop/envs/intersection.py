"""``intersection-v1``: vehicles cross one intersection without colliding (autonomous driving).

N vehicles (``num_agents``, default 4, at least 2) drive on two single lanes that cross at
right angles: vehicle ``i`` is on lane ``ℓ_i = i mod 2`` (0: west → east, 1: south → north),
so the default team has two vehicles per lane. A vehicle is a point at position ``s`` in
``[0, L)`` along its lane (``lane_length`` L, default 1) with a speed ``v`` in
``[0, max_speed]``. The conflict zone is the square where the lanes cross: the positions
``z0 <= s <= z1`` with ``z0, z1 = (L ∓ zone_width) / 2`` on either lane.

Actions ``Discrete(3)``: ``[keep, accelerate, brake]`` (0 is the no-op). Every step::

    v' = clip(v + accel * dt * (+1 accelerate | 0 keep | -1 brake), 0, max_speed)
    s' = s + v' * dt                                        (semi-implicit Euler)

Then, on the new positions, in this order:

- collision: a pair of vehicles on *different* lanes both inside the conflict zone at some
  instant of the step (swept, not only at its end: each vehicle moves at ``v'`` from ``s``
  to ``s'``, and the pair collides when its two time intervals inside ``[z0, z1]``
  overlap, touching included); every such pair counts once (``collisions``). Vehicles on
  the same lane never collide (think of an overtaking lane): only the crossing conflict
  matters.
- crossing: a vehicle with ``s' >= L`` has exited the far end (``crossings``).
- every vehicle that collided or exited respawns at the start of its lane as a new vehicle
  (the same agent): ``s ~ U[0, spawn_length)``, ``v ~ U[0, max_speed)``. ``reset`` places
  every vehicle the same way. The agent count never changes and every action is always
  legal (the action mask is all True).

``max_speed * dt <= zone_width`` is required (no vehicle skips over the zone between two
steps, so it is seen inside it at a step too), ``spawn_length < z0``, so no vehicle spawns
inside it, and ``spawn_length + braking_distance(max_speed) <= z0 - 1e-3 L``: every vehicle,
wherever and however fast it spawns, can stop before the zone by braking from its first
step (so a collision is always the policy's doing, and the fixed-time light can keep its
guarantee). ``zone_width=0.2, max_speed=1`` fails it: a vehicle spawned at 0.3 at speed 1
still moves 0.45 braking, past ``z0 = 0.4``. Defaults: ``dt = 0.1``,
``accel = 1``, ``max_speed = 0.5`` (a trip takes at least 20 steps, 5 steps from standstill
to full speed and back), ``zone_width = 0.1``, ``spawn_length = 0.3``.

Team reward, the same for every agent (``moved_i = v'_i * dt``, before any respawn)::

    r = throughput_reward * crossings + progress_weight * Σ_i moved_i / L
        - collision_penalty * collisions

Defaults ``throughput_reward = 1``, ``progress_weight = 0`` (an optional dense shaping
term: a whole trip earns about ``progress_weight``) and ``collision_penalty = 4``.

Observation of vehicle ``i``, width ``6 + 3(N - 1)``, with ``v_max = max_speed``::

    [s_i / L, v_i / v_max, (z0 - s_i) / L, (z1 - s_i) / L, ℓ_i, t / max_steps,
     ((z0 - s_j) / L, v_j / v_max, 1[ℓ_j != ℓ_i])_{j != i, ascending}]

Global state ``[s / L (N), v / v_max (N), ℓ (N), t / max_steps]`` (width ``3N + 1``).
Episodes are truncated after ``max_steps`` (100); they never terminate. ``info``:
``crossings`` and ``collisions`` (the last step's counts in the reward), ``mean_speed``
(mean_i v_i) and ``stopped`` (the fraction of vehicles with speed 0), both taken after the
respawns.

Reference policies: ``random_policy`` (``envs.core``), ``always_go_policy`` (every vehicle
accelerates, ignoring the others) and ``fixed_time_light_policy`` (a traffic light with a
fixed cycle and an all-red clearance interval); see their docstrings.
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

KEEP, ACCELERATE, BRAKE = 0, 1, 2
#: the action's sign of the speed change, in the order [keep, accelerate, brake]
SPEED_CHANGE = np.array([0.0, 1.0, -1.0], np.float32)
LANE_COLORS = ((0.35, 0.35, 0.85), (0.9, 0.55, 0.15))  # west → east, south → north



@struct.dataclass
class IntersectionState:
    position: jax.Array  # (N,) float32, along each vehicle's own lane
    speed: jax.Array  # (N,) float32
    moved: jax.Array  # (N,) float32, distance moved on the last step (before respawning)
    crossed: jax.Array  # (N,) bool, exited on the last step (and respawned)
    collided: jax.Array  # (N,) bool, collided on the last step (and respawned)
    collisions: jax.Array  # () int32, colliding pairs on the last step
    step: jax.Array  # () int32


@struct.dataclass
class IntersectionParams:
    max_steps: int = 100
    dt: float = 0.1
    accel: float = 1.0
    max_speed: float = 0.5
    lane_length: float = 1.0
    zone_width: float = 0.1
    spawn_length: float = 0.3
    throughput_reward: float = 1.0
    progress_weight: float = 0.0
    collision_penalty: float = 4.0

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("max_steps", self.max_steps, low=1)
        for name in ("dt", "accel", "max_speed", "lane_length", "zone_width"):
            check_param(name, getattr(self, name), low=0.0, low_inclusive=False)
        for name in ("spawn_length", "throughput_reward", "progress_weight",
                     "collision_penalty"):
            check_param(name, getattr(self, name), low=0.0)
        length = concrete_values(self.lane_length)
        width = concrete_values(self.zone_width)
        if length is not None and width is not None:
            check_param("zone_width (must be shorter than lane_length)", self.zone_width,
                        high=length, high_inclusive=False)
            check_param("spawn_length (must end before the conflict zone, "
                        "(lane_length - zone_width) / 2)", self.spawn_length,
                        high=(length - width) / 2, high_inclusive=False)
        speed, dt = concrete_values(self.max_speed), concrete_values(self.dt)
        if speed is not None and dt is not None and width is not None:
            check_param("max_speed * dt (the longest step, must not skip over the zone: "
                        "at most zone_width)", np.asarray(speed * dt).tolist(), high=width)
        accel, spawn = concrete_values(self.accel), concrete_values(self.spawn_length)
        if all(v is not None for v in (speed, dt, width, length, accel, spawn)):
            stop = spawn + np.asarray(braking_distance(np.asarray(speed, np.float64),
                                                       self, xp=np))
            stop_line = (length - width) / 2 - 1e-3 * length
            if np.any(stop > stop_line):
                raise ValueError(
                    f"spawn_length + braking_distance(max_speed) must be at most "
                    f"(lane_length - zone_width) / 2 - 1e-3 lane_length = "
                    f"{np.asarray(stop_line).tolist()} (a vehicle spawned anywhere at any "
                    f"speed must be able to stop before the conflict zone), got "
                    f"{np.asarray(stop).tolist()} from spawn_length={self.spawn_length!r}, "
                    f"max_speed={self.max_speed!r}, accel={self.accel!r}, dt={self.dt!r}, "
                    f"zone_width={self.zone_width!r}, lane_length={self.lane_length!r}")


def zone_bounds(params: IntersectionParams) -> tuple[jax.Array, jax.Array]:
    """``(z0, z1)``: the conflict zone's first and last position on either lane."""
    return ((params.lane_length - params.zone_width) / 2,
            (params.lane_length + params.zone_width) / 2)


def zone_occupancy(position: jax.Array, speed: jax.Array, params: IntersectionParams
                   ) -> tuple[jax.Array, jax.Array]:
    """``(enter, leave)``: the times within a step (``[0, dt]``) during which a vehicle
    moving from ``position`` at the constant ``speed`` (its new speed) is in the conflict
    zone ``[z0, z1]``; ``enter > leave`` when it is never there during the step."""
    z0, z1 = zone_bounds(params)
    moving = speed > 0
    safe = jnp.where(moving, speed, 1.0)
    inside = (position >= z0) & (position <= z1)
    enter = jnp.where(moving, jnp.maximum((z0 - position) / safe, 0.0),
                      jnp.where(inside, 0.0, jnp.inf))
    leave = jnp.where(moving, jnp.minimum((z1 - position) / safe, params.dt),
                      jnp.where(inside, params.dt, -jnp.inf))
    return enter, leave


class Intersection(Env[IntersectionState, IntersectionParams]):
    """Vehicles on two crossing lanes pass one intersection, avoiding crossing collisions."""

    def __init__(self, num_agents: int = 4, debug: bool = False) -> None:
        self.num_agents = check_count("num_agents", num_agents, 2)
        self.continuous_actions = False
        self.debug = check_flag("debug", debug)
        n = self.num_agents
        self.num_actions = 3
        self.obs_dim = 6 + 3 * (n - 1)
        self.state_dim = 3 * n + 1
        #: each vehicle's lane: 0 west → east, 1 south → north
        self.lanes = np.arange(n, dtype=np.int32) % 2
        self.agent_names = tuple(f"vehicle_{i}" for i in range(n))
        self.teams = {"vehicles": tuple(range(n))}

    def default_params(self) -> IntersectionParams:
        return IntersectionParams()

    def reset_env(self, key: jax.Array, params: IntersectionParams
                  ) -> tuple[IntersectionState, TimeStep]:
        n = self.num_agents
        position, speed = self._spawn(key, params)
        state = IntersectionState(position=position, speed=speed,
                                  moved=jnp.zeros((n,), jnp.float32),
                                  crossed=jnp.zeros((n,), bool), collided=jnp.zeros((n,), bool),
                                  collisions=jnp.zeros((), jnp.int32),
                                  step=jnp.zeros((), jnp.int32))
        reward, info = self._reward(state, params)
        return state, self._timestep(state, jnp.zeros_like(reward), info, params)

    def step_env(self, key: jax.Array, state: IntersectionState, actions: jax.Array,
                 params: IntersectionParams) -> tuple[IntersectionState, TimeStep]:
        change = jnp.asarray(SPEED_CHANGE)[actions] * (params.accel * params.dt)
        speed = jnp.clip(state.speed + change, 0.0, params.max_speed).astype(jnp.float32)
        moved = (speed * params.dt).astype(jnp.float32)
        position = state.position + moved
        enter, leave = zone_occupancy(state.position, speed, params)
        lanes = jnp.asarray(self.lanes)
        pairs = ((jnp.maximum(enter[:, None], enter[None, :])
                  <= jnp.minimum(leave[:, None], leave[None, :]))
                 & (lanes[:, None] != lanes[None, :]))
        collided = jnp.any(pairs, axis=1)
        crossed = position >= params.lane_length
        respawn = collided | crossed
        new_position, new_speed = self._spawn(key, params)
        state = IntersectionState(
            position=jnp.where(respawn, new_position, position).astype(jnp.float32),
            speed=jnp.where(respawn, new_speed, speed).astype(jnp.float32),
            moved=moved, crossed=crossed, collided=collided,
            collisions=jnp.sum(jnp.triu(pairs, k=1)).astype(jnp.int32), step=state.step + 1)
        reward, info = self._reward(state, params)
        return state, self._timestep(state, reward, info, params)

    def render(self, state: IntersectionState, params: IntersectionParams | None = None, *,
               size: int | None = None) -> np.ndarray:
        """The two roads, the conflict zone (red after a collision) and the vehicles; vehicles
        that just respawned are outlined red (collided) or green (crossed). See ``Env``."""
        from jaxmarl_coop.envs import render

        state, params, title = render.frame_setup(self, state, params)
        return _draw(state, params, self.lanes, title=title, size=size)

    # ----- pieces -----------------------------------------------------------------------
    def _spawn(self, key: jax.Array, params: IntersectionParams
               ) -> tuple[jax.Array, jax.Array]:
        u = jax.random.uniform(key, (2, self.num_agents), jnp.float32)
        return ((u[0] * params.spawn_length).astype(jnp.float32),
                (u[1] * params.max_speed).astype(jnp.float32))

    def _reward(self, state: IntersectionState, params: IntersectionParams
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
        crossings = jnp.sum(state.crossed).astype(jnp.float32)
        collisions = jnp.asarray(state.collisions).astype(jnp.float32)
        progress = jnp.sum(state.moved) / params.lane_length
        team = (params.throughput_reward * crossings + params.progress_weight * progress
                - params.collision_penalty * collisions)
        speed = jnp.asarray(state.speed, jnp.float32)
        info = {"crossings": crossings, "collisions": collisions,
                "mean_speed": jnp.mean(speed),
                "stopped": jnp.mean((speed <= 0.0).astype(jnp.float32))}
        return jnp.full((self.num_agents,), team, jnp.float32), info

    def observations(self, state: IntersectionState, params: IntersectionParams) -> jax.Array:
        """``(N, obs_dim)``, laid out as in the module docstring."""
        n = self.num_agents
        length = params.lane_length
        z0, z1 = zone_bounds(params)
        lanes = jnp.asarray(self.lanes)
        speed = state.speed / params.max_speed
        to_zone = (z0 - state.position) / length
        time = jnp.broadcast_to(state.step / params.max_steps, (n,))
        own = jnp.stack([state.position / length, speed, to_zone,
                         (z1 - state.position) / length, lanes, time], axis=-1)
        pairwise = jnp.stack([jnp.broadcast_to(to_zone[None, :], (n, n)),
                              jnp.broadcast_to(speed[None, :], (n, n)),
                              lanes[:, None] != lanes[None, :]], axis=-1)
        others = physics.off_diagonal(pairwise.astype(jnp.float32)).reshape(n, -1)
        return jnp.concatenate([own.astype(jnp.float32), others], axis=-1)

    def _timestep(self, state: IntersectionState, reward: jax.Array,
                  info: dict[str, jax.Array], params: IntersectionParams) -> TimeStep:
        global_state = jnp.concatenate([
            state.position / params.lane_length, state.speed / params.max_speed,
            jnp.asarray(self.lanes, jnp.float32),
            jnp.reshape(state.step / params.max_steps, (1,))]).astype(jnp.float32)
        return TimeStep(obs=self.observations(state, params),
                        action_mask=self.all_legal_mask(), global_state=global_state,
                        reward=reward, terminated=jnp.zeros((), bool),
                        truncated=state.step >= params.max_steps, info=info)


# ----- reference policies ---------------------------------------------------------------
def always_go_policy(env: Intersection) -> Policy:
    """Every vehicle accelerates at every step, ignoring the others (action 1)."""

    def policy(key: jax.Array, timestep: TimeStep) -> jax.Array:
        del key, timestep
        return jnp.full((env.num_agents,), ACCELERATE, jnp.int32)

    return feed_forward(policy)


def braking_distance(speed: jax.Array, params: IntersectionParams, xp=jnp) -> jax.Array:
    """How far a vehicle at ``speed`` still moves when it brakes at every step from now on.

    With ``b = accel * dt`` and ``k = floor(speed / b)`` braking steps before it stands:
    ``dt * Σ_{m=1..k} (speed - m b) = dt * (k speed - b k (k + 1) / 2)``. ``xp``: the array
    module (``numpy`` for checks on concrete params).
    """
    b = params.accel * params.dt
    k = xp.floor(speed / b)
    return params.dt * (k * speed - b * k * (k + 1) / 2)


def light_clearance(params: IntersectionParams) -> int:
    """The fewest all-red steps after which every vehicle that could not stop when its red
    began has left the zone (``fixed_time_light_policy``'s guarantee), from concrete params.

    Such a vehicle, at speed ``v`` when red begins, is at least at
    ``stop_line - braking_distance(v)`` (else it could stop) and accelerates from there;
    the count is the most steps it takes over ``v`` in ``[0, max_speed]`` (a fine grid plus
    every multiple of ``accel * dt``) until it is past ``z1``. Default params: 5.
    """
    names = ("dt", "accel", "max_speed", "lane_length", "zone_width")
    values = [concrete_values(getattr(params, name)) for name in names]
    if any(v is None for v in values):
        raise ValueError("light_clearance needs concrete params (not traced): pass "
                         "clearance= explicitly")
    if any(np.ndim(v) for v in values):  # a batch of params: the most any of them needs
        batch = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in values))
        return max(light_clearance(params.replace(**{n: float(b[i]) for n, b in
                                                     zip(names, batch, strict=True)}))
                   for i in np.ndindex(batch[0].shape))
    dt, accel, max_speed, length, width = (float(v) for v in values)
    b = accel * dt
    z1 = (length + width) / 2
    stop_line = (length - width) / 2 - 1e-3 * length
    speed = np.unique(np.concatenate([np.linspace(0.0, max_speed, 2001),
                                      np.arange(0.0, max_speed, b), [max_speed]]))
    position = stop_line - np.asarray(braking_distance(speed, params, xp=np))
    steps = np.zeros(speed.shape, np.int64)
    while np.any(position <= z1):
        going = position <= z1
        speed = np.minimum(speed + b, max_speed)
        position = np.where(going, position + speed * dt, position)
        steps += going
    return int(steps.max())


def fixed_time_light_policy(env: Intersection, params: IntersectionParams | None = None, *,
                            light_period: int | None = None,
                            clearance: int | None = None) -> Policy:
    """A traffic light with a fixed cycle that every vehicle obeys, from its own observation.

    Step ``t`` (read from the observation's ``t / max_steps``, hence ``params``: default
    ``env.default_params()``) lies in phase ``p = t mod (2 light_period)``. Lane
    ``p // light_period`` has green, except in the first ``clearance`` steps of each phase,
    when both lanes have red (the all-red interval lets vehicles that could not stop clear
    the zone). On green, and once inside or past the zone, a vehicle accelerates. On red,
    a vehicle before the zone takes the fastest action (accelerate, keep, brake) after
    which braking still stops it at least ``1e-3 L`` short of the zone, and accelerates
    through if even braking now cannot stop it there (it was too close when red began).

    Guarantee: no two vehicles ever meet in the zone (swept over each step), for any valid
    params (the env requires that every spawned vehicle can stop before the zone), as long
    as ``clearance`` is at least ``light_clearance(params)``, the all-red steps that the
    slowest vehicle which could not stop needs to leave the zone. ``clearance=None`` (the
    default) takes exactly that (5 with the default params) and a smaller one is a
    ``ValueError``; ``light_period=None`` takes ``max(20, clearance + 15)`` (20 by
    default). Each lane is green for only ``light_period - clearance`` of every
    ``2 light_period`` steps.
    """
    params = env.default_params() if params is None else params
    if clearance is None or light_period is None or clearance > 0:
        try:
            needed = light_clearance(params)
        except ValueError:
            if clearance is None or light_period is None:
                raise
            needed = None  # traced params and explicit timing: the caller's word
    if clearance is None:
        clearance = needed
    clearance = check_count("clearance", clearance, 0)
    if needed is not None and clearance < needed:
        raise ValueError(
            f"clearance must be at least {needed} all-red steps for these params "
            f"(max_speed={params.max_speed!r}, accel={params.accel!r}, dt={params.dt!r}, "
            f"zone_width={params.zone_width!r}, lane_length={params.lane_length!r}): a "
            f"vehicle that cannot stop when red begins needs that long to leave the zone; "
            f"got {clearance!r}")
    if light_period is None:
        light_period = max(20, clearance + 15)
    light_period = check_count("light_period", light_period, 1)
    if clearance >= light_period:
        raise ValueError(f"clearance must be < light_period ({light_period}), "
                         f"got {clearance!r}")

    def policy(key: jax.Array, timestep: TimeStep) -> jax.Array:
        del key
        obs = timestep.obs
        position = obs[:, 0] * params.lane_length
        speed = obs[:, 1] * params.max_speed
        lane = jnp.round(obs[:, 4]).astype(jnp.int32)
        step = jnp.round(obs[:, 5] * params.max_steps).astype(jnp.int32)
        phase = step % (2 * light_period)
        green = ((phase % light_period) >= clearance) & (lane == phase // light_period)
        z0, _ = zone_bounds(params)
        stop_line = z0 - 1e-3 * params.lane_length

        def stops_in_time(new_speed: jax.Array) -> jax.Array:
            new_speed = jnp.clip(new_speed, 0.0, params.max_speed)
            stop = position + new_speed * params.dt + braking_distance(new_speed, params)
            return stop < stop_line

        step_dv = params.accel * params.dt
        red_action = jnp.where(stops_in_time(speed + step_dv), ACCELERATE,
                               jnp.where(stops_in_time(speed), KEEP, BRAKE))
        committed = ~stops_in_time(speed - step_dv)  # cannot stop short of the zone any more
        go = green | (position >= z0) | committed
        return jnp.where(go, ACCELERATE, red_action).astype(jnp.int32)

    return feed_forward(policy)


# ----- drawing --------------------------------------------------------------------------
def _draw(state: IntersectionState, params: IntersectionParams, lanes: np.ndarray, *,
          title: str, size: int | None) -> np.ndarray:
    from matplotlib.patches import Rectangle

    from jaxmarl_coop.envs import render

    length, width = float(params.lane_length), float(params.zone_width)
    half = length / 2
    fig = render._figure(size)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.86))
    ax.set_xlim(-half * 1.05, half * 1.05)
    ax.set_ylim(-half * 1.05, half * 1.05)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor((0.85, 0.93, 0.82))
    road = (0.55, 0.55, 0.55)
    ax.add_patch(Rectangle((-half, -width / 2), length, width, color=road, zorder=1))
    ax.add_patch(Rectangle((-width / 2, -half), width, length, color=road, zorder=1))
    hit = int(state.collisions) > 0
    ax.add_patch(Rectangle((-width / 2, -width / 2), width, width, zorder=2,
                           facecolor=(0.9, 0.2, 0.2) if hit else (0.95, 0.85, 0.3), alpha=0.8))
    # vehicles of one lane alternate between its two halves (they never collide: an overtaking
    # lane), so two of them at one position stay apart in the picture
    long_side, short_side = 0.6 * width, 0.35 * width
    for i, (s, lane) in enumerate(zip(np.asarray(state.position), lanes, strict=True)):
        along, side = float(s) - half, (1.0 if (i // 2) % 2 == 0 else -1.0)
        across = side * 0.22 * width
        x, y = (along, across) if lane == 0 else (-across, along)
        w, h = (long_side, short_side) if lane == 0 else (short_side, long_side)
        edge = ("red" if state.collided[i] else "green" if state.crossed[i] else "black")
        ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor=LANE_COLORS[lane],
                               edgecolor=edge, linewidth=1.5, zorder=3))
        ax.text(x, y, str(i), ha="center", va="center", fontsize=6, color="white", zorder=4)
    render._title(fig, title)
    return render.figure_to_array(fig)
