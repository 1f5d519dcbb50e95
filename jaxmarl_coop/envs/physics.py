"""A vectorised 2-D particle world with the reference MPE's semantics.

Agents are movable discs (position, velocity, size, mass, acceleration, max speed, a
collision flag); obstacles are static discs that always collide. One world step, exactly
as in the reference (see ``shared/reference/mpe.md`` section 3):

1. action force ``F_i = accel_i * u_i``;
2. soft contact force between every colliding pair, from pre-step positions::

       pen = margin * softplus((size_i + size_j - dist) / margin)
       F_i += contact_force * (p_i - p_j) / dist * pen

3. ``p <- p + dt * v`` (the old velocity), ``v <- (1 - damping) v + dt F / m``, then the
   speed is clamped to ``max_speed`` when strictly above it (``inf`` = no clamp).

Everything is whole-array arithmetic over the agent axis. Two coincident discs
(``dist == 0``) exert no force on each other instead of the reference's NaN.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxmarl_coop.envs.core import check_param, check_param_types

#: Discrete MPE actions ``[no_op, left, right, down, up]`` as unit directions.
DISCRETE_DIRECTIONS = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.float32)
NUM_MOVE_ACTIONS = 5


#: The most moving discs (agents, prey included) a particle task takes, for now: the contact
#: forces unroll the ``N(N-1)/2`` disc pairs into ``N - 1`` slices when the step is
#: compiled, so compile time grows linearly with ``N``. Measured on a 2-core CPU (one jitted
#: step, full optimisation): spread 6 s with 64 agents, 13 s with 128, 18 s with 200;
#: tracking 7, 15 and 26 s; tag 11, 20 and 34 s; 1000 agents had not compiled after 50 s.
#: A run compiles the step into several programs (training, evaluation, the animation): a
#: MAPPO training program on spread takes about 27-30 s to compile with 16 to 64 agents,
#: 33 s with 128 and 52 s with 200, so up to 64 the env is a small part of the wait.
MAX_DISCS = 64


def check_num_discs(env: str, **counts: int) -> int:
    """The total of ``counts`` (moving discs of each kind); a ``ValueError`` naming them if
    it is above :data:`MAX_DISCS`."""
    total = sum(counts.values())
    if total > MAX_DISCS:
        given = ", ".join(f"{k}={v}" for k, v in counts.items())
        if len(counts) > 1:
            given += f" ({total} in all)"
        raise ValueError(
            f"{env} supports at most {MAX_DISCS} moving agents for now, got {given}: "
            f"the particle world unrolls its agent pairs when the step is "
            f"compiled, so compile time grows with the team (one step: 6-11 s for 64 "
            f"agents on a 2-core CPU, 18-34 s for 200, minutes for 1000)")
    return total


@struct.dataclass
class WorldParams:
    """Physical constants of the world (defaults: the reference MPE's)."""

    dt: float = 0.1
    damping: float = 0.25
    contact_force: float = 100.0
    contact_margin: float = 1e-3

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("dt", self.dt, low=0.0, low_inclusive=False)
        check_param("damping", self.damping, low=0.0, high=1.0)
        check_param("contact_force", self.contact_force, low=0.0)
        check_param("contact_margin", self.contact_margin, low=0.0, low_inclusive=False)


def action_direction(actions: jax.Array, continuous: bool) -> jax.Array:
    """Map MPE actions to unit-scale directions ``u`` of shape ``(N, 2)``.

    Discrete ``a`` in ``[0, 5)`` picks a row of ``DISCRETE_DIRECTIONS``; continuous
    ``a`` in ``[0, 1]^5`` gives ``u = (a[2] - a[1], a[4] - a[3])`` (``a[0]`` is unused).
    """
    if continuous:
        return jnp.stack([actions[..., 2] - actions[..., 1], actions[..., 4] - actions[..., 3]],
                         axis=-1)
    # arithmetic rather than a table lookup: gathers vectorise poorly on CPU
    dx = (actions == 2).astype(jnp.float32) - (actions == 1).astype(jnp.float32)
    dy = (actions == 4).astype(jnp.float32) - (actions == 3).astype(jnp.float32)
    return jnp.stack([dx, dy], axis=-1)


def off_diagonal(pairwise: jax.Array) -> jax.Array:
    """``(N, N, ...)`` -> ``(N, N-1, ...)``: row ``i`` without its ``i``-th entry, in order.

    Slices and reshapes only (no gather): the flattened matrix without its first element,
    cut into rows of ``N + 1``, has the diagonal entries in its last column.
    """
    n = pairwise.shape[0]
    rest = pairwise.shape[2:]
    flat = pairwise.reshape((n * n, *rest))[1:]
    return flat.reshape((n - 1, n + 1, *rest))[:, :n].reshape((n, n - 1, *rest))


def pair_distances(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``delta[i, j] = a[i] - b[j]`` of shape ``(I, J, 2)`` and its norm ``(I, J)``."""
    delta = a[:, None, :] - b[None, :, :]
    return delta, jnp.sqrt(jnp.sum(delta * delta, axis=-1))


def _soft_contact(delta: jax.Array, dist: jax.Array, min_dist: jax.Array, active: jax.Array,
                  params: WorldParams) -> jax.Array:
    """Contact force on the first of each pair, summed over the second: ``(I, 2)``."""
    margin = params.contact_margin
    penetration = margin * jnp.logaddexp(0.0, (min_dist - dist) / margin)
    scale = jnp.where(active & (dist > 0), params.contact_force * penetration
                      / jnp.where(dist > 0, dist, 1.0), 0.0)
    return jnp.sum(delta * scale[..., None], axis=1)


def unique_pairs(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Both members of every unordered pair ``i < j``, grouped by offset ``k = j - i``.

    Returns ``(x[i], x[j])`` for the ``N(N-1)/2`` pairs, built from static slices (no
    gather): offset 1 first (``(0,1), (1,2), ...``), then offset 2, and so on.
    """
    n = x.shape[0]
    first = jnp.concatenate([x[: n - k] for k in range(1, n)], axis=0)
    second = jnp.concatenate([x[k:] for k in range(1, n)], axis=0)
    return first, second


def scatter_pairs(values: jax.Array, n: int) -> jax.Array:
    """Sum per-pair values onto both members: ``+v`` on ``i``, ``-v`` on ``j`` (``(n, ...)``).

    ``values`` are ordered as in ``unique_pairs``; the sum is built from static pads.
    """
    out = jnp.zeros((n, *values.shape[1:]), values.dtype)
    start = 0
    for k in range(1, n):
        chunk = values[start:start + n - k]
        widths = [(0, 0)] * (values.ndim - 1)
        out = out + jnp.pad(chunk, [(0, k), *widths]) - jnp.pad(chunk, [(k, 0), *widths])
        start += n - k
    return out


def contact_forces(pos: jax.Array, size: jax.Array, collide: jax.Array,
                   obstacle_pos: jax.Array, obstacle_size: jax.Array,
                   params: WorldParams) -> jax.Array:
    """Sum of soft contact forces on each agent from other agents and obstacles, ``(N, 2)``.

    Each unordered agent pair is computed once and applied with opposite signs (the
    reference computes it once per pair too).
    """
    n = pos.shape[0]
    force = jnp.zeros_like(pos)
    if n > 1:
        p_i, p_j = unique_pairs(pos)
        s_i, s_j = unique_pairs(size)
        c_i, c_j = unique_pairs(collide)
        delta = p_i - p_j
        dist = jnp.sqrt(jnp.sum(delta * delta, axis=-1))
        pair_force = _soft_contact(delta[:, None, :], dist[:, None], (s_i + s_j)[:, None],
                                   (c_i & c_j)[:, None], params)
        force = scatter_pairs(pair_force, n)
    if obstacle_pos.shape[0] > 0:
        delta_o, dist_o = pair_distances(pos, obstacle_pos)
        active_o = jnp.broadcast_to(collide[:, None], dist_o.shape)
        force = force + _soft_contact(delta_o, dist_o, size[:, None] + obstacle_size[None, :],
                                      active_o, params)
    return force


def integrate(pos: jax.Array, vel: jax.Array, force: jax.Array, mass: jax.Array,
              max_speed: jax.Array, params: WorldParams) -> tuple[jax.Array, jax.Array]:
    """Semi-implicit step in the reference's order: position from the old velocity first."""
    new_pos = pos + vel * params.dt
    new_vel = vel * (1.0 - params.damping) + force / mass[:, None] * params.dt
    speed = jnp.sqrt(jnp.sum(new_vel * new_vel, axis=-1, keepdims=True))
    limit = max_speed[:, None]
    over = speed > limit
    new_vel = jnp.where(over, new_vel / jnp.where(over, speed, 1.0) * limit, new_vel)
    return new_pos, new_vel


def world_step(pos: jax.Array, vel: jax.Array, direction: jax.Array, *, size: jax.Array,
               mass: jax.Array, accel: jax.Array, max_speed: jax.Array, collide: jax.Array,
               obstacle_pos: jax.Array, obstacle_size: jax.Array, params: WorldParams
               ) -> tuple[jax.Array, jax.Array]:
    """One full world step for ``N`` agents given their action directions ``(N, 2)``."""
    force = direction * accel[:, None] + contact_forces(pos, size, collide, obstacle_pos,
                                                        obstacle_size, params)
    return integrate(pos, vel, force, mass, max_speed, params)



def identical_agents_step(pos: jax.Array, vel: jax.Array, actions: jax.Array,
                          continuous: bool, params: Any) -> tuple[jax.Array, jax.Array]:
    """:func:`world_step` for ``N`` alike, colliding agents and no obstacles (spread, cue):
    each agent's size, mass, acceleration and top speed are ``params.agent_size``,
    ``agent_mass``, ``agent_accel`` and ``agent_max_speed``, the world ``params.world``."""
    n = pos.shape[0]
    ones = jnp.ones((n,), jnp.float32)
    return world_step(
        pos, vel, action_direction(actions, continuous),
        size=ones * params.agent_size, mass=ones * params.agent_mass,
        accel=ones * params.agent_accel, max_speed=ones * params.agent_max_speed,
        collide=jnp.ones((n,), bool), obstacle_pos=jnp.zeros((0, 2), jnp.float32),
        obstacle_size=jnp.zeros((0,), jnp.float32), params=params.world)

def confine(pos: jax.Array, vel: jax.Array, size: jax.Array, half_width: jax.Array
            ) -> tuple[jax.Array, jax.Array]:
    """Keep discs inside the square ``[-half_width, half_width]^2``.

    A disc that crosses a wall is put back against it, and a disc against a wall (after
    that) loses the velocity component that points into the wall (an inelastic wall): the
    component along the wall and any component pointing back into the arena are kept, so a
    disc resting against a wall while it pushes into it stays at rest there (speed 0 at
    every step, not 0 and then the push's speed on alternate steps), and leaves at the
    first step it thrusts away.
    """
    limit = (half_width - size)[:, None]
    clipped = jnp.clip(pos, -limit, limit)
    into_wall = ((clipped >= limit) & (vel > 0)) | ((clipped <= -limit) & (vel < 0))
    return clipped, jnp.where(into_wall, 0.0, vel)



#: How far inside a contact circle (absolute distance) still counts as on it, for
#: :func:`block_obstacles`: float32 round-off of a disc put back on the circle.
CONTACT_SLACK = 1e-5


def block_obstacles(old_pos: jax.Array, pos: jax.Array, vel: jax.Array, size: jax.Array,
                    obstacle_pos: jax.Array, obstacle_size: jax.Array
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Make static obstacles solid: no disc ends a step inside one or passes through one.

    ``old_pos -> pos`` is each disc's straight move over the step (``(N, 2)``) and ``vel``
    its new velocity. With ``R = size_i + obstacle_size_k`` (the distance of the centres
    when they touch):

    1. swept test: a disc that starts outside (or on) an obstacle's contact circle and whose
       path goes inside it is stopped where the path first reaches the circle (the earliest
       over all obstacles), so no speed lets it tunnel through;
    2. a disc still inside a contact circle (it started inside, or was pushed in by another
       disc, or its stop point lies inside another obstacle) is put back radially onto the
       circle, obstacle by obstacle in index order; where its centre coincides with the
       obstacle's, it goes back towards where it came from, and along +x if that coincides
       too (deterministic, never NaN);
    3. a disc stopped or put back by obstacle ``k`` loses the component of ``vel`` that
       points into ``k`` (inelastic, like the walls); the tangential component is kept, so
       it slides around the obstacle, and a disc that keeps pushing into an obstacle rests
       against it.

    Returns ``(pos, vel, touched)``, ``touched`` ``(N, K)`` bool: stopped or put back by
    obstacle ``k`` this step.
    """
    n, k = pos.shape[0], obstacle_pos.shape[0]
    if k == 0:
        return pos, vel, jnp.zeros((n, 0), bool)
    radius = size[:, None] + obstacle_size[None, :]  # (N, K)
    inner = jnp.maximum(radius - CONTACT_SLACK, 0.0)
    move = pos - old_pos  # (N, 2)
    rel = old_pos[:, None, :] - obstacle_pos[None, :, :]  # (N, K, 2)
    a = jnp.sum(move * move, axis=-1)[:, None]  # (N, 1)
    safe_a = jnp.where(a > 0, a, 1.0)
    b = jnp.sum(rel * move[:, None, :], axis=-1)  # (N, K), < 0: heading inwards
    start_sq = jnp.sum(rel * rel, axis=-1)
    closest = jnp.clip(-b / safe_a, 0.0, 1.0)  # where the path comes nearest the centre
    nearest = rel + closest[..., None] * move[:, None, :]
    goes_inside = jnp.sum(nearest * nearest, axis=-1) < inner * inner
    disc = jnp.maximum(b * b - a * (start_sq - radius * radius), 0.0)
    entry = jnp.clip((-b - jnp.sqrt(disc)) / safe_a, 0.0, 1.0)
    enters = (start_sq >= inner * inner) & (b < 0) & goes_inside
    first = jnp.min(jnp.where(enters, entry, 1.0), axis=1)  # (N,)
    stopped_by = enters & (entry <= first[:, None])
    pos = old_pos + first[:, None] * move
    hits = []
    for j in range(k):
        centre, r = obstacle_pos[j], radius[:, j:j + 1]
        offset = pos - centre
        dist = jnp.sqrt(jnp.sum(offset * offset, axis=-1, keepdims=True))
        back = old_pos - centre
        back_dist = jnp.sqrt(jnp.sum(back * back, axis=-1, keepdims=True))
        normal = jnp.where(dist > 1e-12, offset / jnp.where(dist > 1e-12, dist, 1.0),
                           jnp.where(back_dist > 1e-12,
                                     back / jnp.where(back_dist > 1e-12, back_dist, 1.0),
                                     jnp.array([1.0, 0.0], pos.dtype)))
        inside = dist < r
        pos = jnp.where(inside, centre + normal * r, pos)
        hit = inside[:, 0] | stopped_by[:, j]
        hits.append(hit)
        contact = pos - centre  # the outward normal where the disc now touches
        contact = contact / jnp.maximum(
            jnp.sqrt(jnp.sum(contact * contact, axis=-1, keepdims=True)), 1e-12)
        into = jnp.minimum(jnp.sum(vel * contact, axis=-1, keepdims=True), 0.0)
        vel = jnp.where(hit[:, None], vel - into * contact, vel)
    return pos, vel, jnp.stack(hits, axis=1)
