"""The particle world: integration order, damping, contact force, speed clamp, walls."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxmarl_coop.envs import physics

P = physics.WorldParams()
_world_step = jax.jit(physics.world_step)  # one program per shape, not op by op


def _step(pos, vel, direction, size=0.1, accel=5.0, max_speed=np.inf, obstacles=()):
    n = len(pos)
    obstacle_pos = jnp.asarray(np.array(obstacles, np.float32).reshape(-1, 2))
    return _world_step(
        jnp.asarray(pos, jnp.float32), jnp.asarray(vel, jnp.float32),
        jnp.asarray(direction, jnp.float32), size=jnp.full((n,), size, jnp.float32),
        mass=jnp.ones((n,), jnp.float32), accel=jnp.full((n,), accel, jnp.float32),
        max_speed=jnp.full((n,), max_speed, jnp.float32), collide=jnp.ones((n,), bool),
        obstacle_pos=obstacle_pos,
        obstacle_size=jnp.full((obstacle_pos.shape[0],), 0.2, jnp.float32), params=P)


def test_position_uses_old_velocity_then_damping_and_force():
    pos, vel = _step([[0.0, 0.0]], [[1.0, -2.0]], [[1.0, 0.0]])
    np.testing.assert_allclose(pos, [[0.1, -0.2]], rtol=1e-6)
    np.testing.assert_allclose(vel, [[0.75 + 0.5, -1.5]], rtol=1e-6)


def test_steady_speed_and_clamp():
    pos, vel = jnp.zeros((1, 2)), jnp.zeros((1, 2))
    for _ in range(200):
        pos, vel = _step(pos, vel, [[0.0, 1.0]])
    np.testing.assert_allclose(vel, [[0.0, 2.0]], rtol=1e-4)  # 0.5 / 0.25
    # accel 3 alone would settle at 1.2: clamped to 1.0 (the first step after turning too)
    pos, vel = _step(pos, vel, [[1.0, 0.0]], accel=3.0, max_speed=1.0)
    np.testing.assert_allclose(np.linalg.norm(vel), 1.0, rtol=1e-6)
    for _ in range(100):
        pos, vel = _step(pos, vel, [[1.0, 0.0]], accel=3.0, max_speed=1.0)
    np.testing.assert_allclose(vel, [[1.0, 0.0]], atol=1e-5)


def test_contact_force_magnitude_matches_reference():
    # touching discs: |f| = 100 * 1e-3 * ln 2 on each, pushing apart
    pos = [[0.0, 0.0], [0.2, 0.0]]
    _, vel = _step(pos, [[0, 0], [0, 0]], [[0, 0], [0, 0]], size=0.1)
    f = 100 * 1e-3 * np.log(2.0)
    np.testing.assert_allclose(vel, [[-0.1 * f, 0.0], [0.1 * f, 0.0]], rtol=1e-5)


def test_obstacles_push_but_do_not_move():
    pos = [[0.0, 0.29]]
    _, vel = _step(pos, [[0, 0]], [[0, 0]], obstacles=[[0.0, 0.0]])
    assert vel[0, 1] > 0.05 and abs(float(vel[0, 0])) < 1e-7


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 1, width=32), st.floats(-1, 1, width=32)), min_size=2,
                max_size=5))
def test_no_nan_even_for_coincident_discs(points):
    pos = np.array([*points, points[0]], np.float32)  # the last one sits on the first
    new_pos, new_vel = _step(pos, np.zeros_like(pos), np.zeros_like(pos))
    assert np.all(np.isfinite(new_pos)) and np.all(np.isfinite(new_vel))


def test_confine_keeps_discs_inside_and_stops_outward_motion():
    pos = jnp.array([[1.2, 0.0], [-0.5, -1.5]])
    vel = jnp.array([[1.0, 0.3], [0.2, -1.0]])
    new_pos, new_vel = physics.confine(pos, vel, jnp.array([0.1, 0.1]), 1.0)
    np.testing.assert_allclose(new_pos, [[0.9, 0.0], [-0.5, -0.9]], rtol=1e-6)
    np.testing.assert_allclose(new_vel, [[0.0, 0.3], [0.2, 0.0]], rtol=1e-6)


def test_a_disc_pushing_into_a_wall_rests_against_it_and_leaves_at_once():
    # the disc starts against the right wall (limit 0.9) and thrusts right for 6 steps:
    # it must stay at rest there, not alternate speeds 0 and 0.5
    pos, vel = jnp.array([[0.9, 0.0]]), jnp.zeros((1, 2))
    size = jnp.array([0.1])
    for _ in range(6):
        pos, vel = _step(pos, vel, [[1.0, 0.0]])
        pos, vel = physics.confine(pos, vel, size, 1.0)
        np.testing.assert_allclose(pos, [[0.9, 0.0]], rtol=1e-6)
        np.testing.assert_allclose(vel, [[0.0, 0.0]], atol=1e-7)
    # it thrusts left once: the velocity points away at once and it moves off the next step
    pos, vel = physics.confine(*_step(pos, vel, [[-1.0, 0.0]]), size, 1.0)
    np.testing.assert_allclose(vel, [[-0.5, 0.0]], rtol=1e-6)
    pos, vel = physics.confine(*_step(pos, vel, [[0.0, 0.0]]), size, 1.0)
    np.testing.assert_allclose(pos, [[0.85, 0.0]], rtol=1e-6)
    # sliding along the wall while pushing into it keeps the tangential velocity
    pos, vel = physics.confine(*_step(pos.at[0, 0].set(0.9), jnp.array([[0.0, 0.4]]),
                                      [[1.0, 0.0]]), size, 1.0)
    np.testing.assert_allclose(vel, [[0.0, 0.3]], rtol=1e-6)
