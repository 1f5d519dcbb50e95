"""intersection-v1: kinematics, collisions and crossings, observations, the reference policies."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmarl_coop.envs import random_policy
from jaxmarl_coop.envs.intersection import (
    ACCELERATE,
    BRAKE,
    KEEP,
    Intersection,
    IntersectionParams,
    IntersectionState,
    always_go_policy,
    fixed_time_light_policy,
    light_clearance,
)

# dyadic numbers, so every step below is exact in float32: a speed step accel * dt = 0.25,
# the zone is [3.5, 4.5] on a lane of length 8, respawns land in [0, 1)
EXACT = IntersectionParams(dt=0.5, accel=0.5, max_speed=1.0, lane_length=8.0, zone_width=1.0,
                           spawn_length=1.0, throughput_reward=2.5, collision_penalty=3.0)


def _state(position, speed, step=0):
    n = len(position)
    return IntersectionState(position=jnp.asarray(position, jnp.float32),
                             speed=jnp.asarray(speed, jnp.float32),
                             moved=jnp.zeros((n,), jnp.float32), crossed=jnp.zeros((n,), bool),
                             collided=jnp.zeros((n,), bool),
                             collisions=jnp.zeros((), jnp.int32),
                             step=jnp.asarray(step, jnp.int32))


@functools.cache
def _jitted_step(num_agents):
    return jax.jit(Intersection(num_agents).step)  # one compile per team size, not per call


def _step(env, state, actions, params=EXACT, key=0):
    return _jitted_step(env.num_agents)(jax.random.PRNGKey(key), state,
                                        jnp.asarray(actions, jnp.int32), params)


def test_kinematics_on_a_hand_made_state():
    env = Intersection(num_agents=4)  # lanes 0, 1, 0, 1; every vehicle stays out of the zone
    state = _state([0.0, 1.0, 5.0, 6.0], [0.0, 1.0, 0.75, 0.25], step=7)
    new, ts = _step(env, state, [BRAKE, ACCELERATE, KEEP, ACCELERATE])
    # v' = clip(v ± 0.25, 0, 1), then s' = s + v' * 0.5
    np.testing.assert_array_equal(np.asarray(new.speed), [0.0, 1.0, 0.75, 0.5])
    np.testing.assert_array_equal(np.asarray(new.position), [0.0, 1.5, 5.375, 6.25])
    np.testing.assert_array_equal(np.asarray(new.moved), [0.0, 0.5, 0.375, 0.25])
    assert int(new.step) == 8 and not np.any(np.asarray(new.crossed | new.collided))
    np.testing.assert_array_equal(np.asarray(ts.reward), np.zeros(4))
    assert float(ts.info["crossings"]) == 0 and float(ts.info["collisions"]) == 0
    assert float(ts.info["mean_speed"]) == 2.25 / 4 and float(ts.info["stopped"]) == 0.25

    # the other way round: from a stop accelerate, from full speed brake; out-of-range = keep
    new, _ = _step(env, state, [ACCELERATE, BRAKE, 7, -1])
    np.testing.assert_array_equal(np.asarray(new.speed), [0.25, 0.75, 0.75, 0.25])
    np.testing.assert_array_equal(np.asarray(new.position), [0.125, 1.375, 5.375, 6.125])

    # the optional progress term: progress_weight * Σ moved / lane_length
    _, ts = _step(env, state, [BRAKE, ACCELERATE, KEEP, ACCELERATE],
                  EXACT.replace(progress_weight=4.0))
    np.testing.assert_array_equal(np.asarray(ts.reward), [4.0 * 1.125 / 8.0] * 4)


def test_a_collision_is_exactly_two_crossing_vehicles_in_the_zone_together():
    env = Intersection(num_agents=4)
    # vehicle 0 (lane 0) reaches the zone's first point 3.5, vehicle 1 (lane 1) waits at 4.0
    state = _state([3.25, 4.0, 0.5, 0.0], [0.5, 0.0, 0.0, 0.0])
    new, ts = _step(env, state, [KEEP] * 4)
    np.testing.assert_array_equal(np.asarray(new.collided), [True, True, False, False])
    assert int(new.collisions) == 1 and float(ts.info["collisions"]) == 1
    np.testing.assert_array_equal(np.asarray(ts.reward), [-3.0] * 4)
    # both respawn at the start of their lanes; the others just moved (here: stood still)
    assert np.all((np.asarray(new.position[:2]) >= 0.0) & (np.asarray(new.position[:2]) < 1.0))
    assert np.all((np.asarray(new.speed[:2]) >= 0.0) & (np.asarray(new.speed[:2]) < 1.0))
    np.testing.assert_array_equal(np.asarray(new.position[2:]), [0.5, 0.0])

    # stopping one step short (3.375 < 3.5) or having left (4.625 -> 4.875): no collision
    for position in (3.125, 4.625):
        new, ts = _step(env, _state([position, 4.0, 0.5, 0.0], [0.5, 0.0, 0.0, 0.0]), [KEEP] * 4)
        assert int(new.collisions) == 0 and not np.any(np.asarray(new.collided))
        np.testing.assert_array_equal(np.asarray(ts.reward), np.zeros(4))
        np.testing.assert_array_equal(np.asarray(new.position), [position + 0.25, 4.0, 0.5, 0.0])

    # two vehicles of one lane in the zone never collide with each other ...
    new, ts = _step(env, _state([4.0, 0.0, 4.5, 0.0], [0.0, 0.0, 0.0, 0.0]), [KEEP] * 4)
    assert int(new.collisions) == 0
    # ... but each collides with a crossing vehicle there: pairs (0, 1) and (1, 2)
    new, ts = _step(env, _state([4.0, 3.5, 4.5, 0.0], [0.0, 0.0, 0.0, 0.0]), [KEEP] * 4)
    assert int(new.collisions) == 2 and float(ts.info["collisions"]) == 2
    np.testing.assert_array_equal(np.asarray(new.collided), [True, True, True, False])
    np.testing.assert_array_equal(np.asarray(ts.reward), [-6.0] * 4)


def test_collisions_are_swept_over_the_step():
    env = Intersection(num_agents=2)
    # vehicle 0 (lane 0) leaves the zone [3.5, 4.5] during the step (4.375 -> 4.625, out at
    # a quarter of it, t = 0.125); vehicle 1 (lane 1) enters it (3.25 -> 3.5, at its end):
    # never inside together, no collision
    new, _ = _step(env, _state([4.375, 3.25], [0.5, 0.5]), [KEEP, KEEP])
    assert int(new.collisions) == 0
    # vehicle 1 enters at a quarter of the step (3.4375 -> 3.6875) while vehicle 0 is still
    # inside until half of it (4.4375 -> 4.5625): inside together in between, though at
    # neither end of the step
    new, ts = _step(env, _state([4.4375, 3.4375], [0.25, 0.5]), [KEEP, KEEP])
    assert int(new.collisions) == 1 and float(ts.info["collisions"]) == 1
    np.testing.assert_array_equal(np.asarray(new.collided), [True, True])
    # touching: vehicle 0 leaves exactly when vehicle 1 enters (at half the step)
    new, _ = _step(env, _state([4.375, 3.25], [0.25, 0.5]), [KEEP, KEEP])
    assert int(new.collisions) == 1


def test_a_crossing_is_counted_and_rewarded_when_a_vehicle_exits():
    env = Intersection(num_agents=2)
    # vehicle 0 ends exactly at the lane's end 8.0, vehicle 1 one step short of it
    new, ts = _step(env, _state([7.5, 7.25], [0.75, 0.5]), [ACCELERATE, ACCELERATE])
    np.testing.assert_array_equal(np.asarray(new.crossed), [True, False])
    assert float(ts.info["crossings"]) == 1 and float(ts.info["collisions"]) == 0
    np.testing.assert_array_equal(np.asarray(ts.reward), [2.5, 2.5])
    assert 0.0 <= float(new.position[0]) < 1.0 and 0.0 <= float(new.speed[0]) < 1.0
    assert float(new.position[1]) == 7.625 and float(new.speed[1]) == 0.75
    new, ts = _step(env, new, [ACCELERATE, ACCELERATE], key=1)
    np.testing.assert_array_equal(np.asarray(new.crossed), [False, True])
    np.testing.assert_array_equal(np.asarray(ts.reward), [2.5, 2.5])


def test_observation_and_global_state_layout():
    env = Intersection(num_agents=3)  # lanes 0, 1, 0
    state = _state([1.0, 4.0, 6.0], [0.5, 0.0, 1.0], step=25)
    _, ts = _step(env, state, [KEEP, KEEP, KEEP], EXACT.replace(max_steps=50))
    # after the step: s = [1.25, 4.0, 6.5], t = 26; z0, z1 = 3.5, 4.5; L = 8
    to_zone = [2.25 / 8, -0.5 / 8, -3.0 / 8]
    expected = [
        [1.25 / 8, 0.5, 2.25 / 8, 3.25 / 8, 0, 0.52, to_zone[1], 0.0, 1, to_zone[2], 1.0, 0],
        [4.0 / 8, 0.0, -0.5 / 8, 0.5 / 8, 1, 0.52, to_zone[0], 0.5, 1, to_zone[2], 1.0, 1],
        [6.5 / 8, 1.0, -3.0 / 8, -2.0 / 8, 0, 0.52, to_zone[0], 0.5, 0, to_zone[1], 0.0, 1]]
    np.testing.assert_allclose(np.asarray(ts.obs), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ts.global_state),
                               [1.25 / 8, 0.5, 6.5 / 8, 0.5, 0.0, 1.0, 0, 1, 0, 0.52], rtol=1e-6)


def _figures(env, params, policies, episodes=128):
    """Per policy, the means over the same ``episodes`` episodes of the team return (summed
    over agents), crossings and collisions, and the most collisions in one episode. Every
    policy runs in one jitted program (one compile)."""
    steps = int(params.max_steps)
    names = list(policies)

    def episode(index, key):
        def body(carry, key):
            k_act, k_step = jax.random.split(key)
            actions = jnp.stack([policies[n](k_act, carry[1], ())[0] for n in names])[index]
            state, ts = env.step(k_step, carry[0], actions, params)
            return (state, ts), (jnp.sum(ts.reward), ts.info["crossings"],
                                 ts.info["collisions"])

        k_reset, k_run = jax.random.split(key)
        carry = env.reset(k_reset, params)
        _, per_step = jax.lax.scan(body, carry, jax.random.split(k_run, steps))
        return [jnp.sum(x) for x in per_step]

    keys = jax.random.split(jax.random.PRNGKey(0), episodes)
    run = jax.jit(jax.vmap(jax.vmap(episode, (None, 0)), (0, None)))
    team_return, crossings, collisions = (np.asarray(x) for x in
                                          run(jnp.arange(len(names)), keys))
    return {name: {"return": float(np.mean(team_return[i])),
                   "crossings": float(np.mean(crossings[i])),
                   "collisions": float(np.mean(collisions[i])),
                   "max_collisions": float(np.max(collisions[i]))}
            for i, name in enumerate(names)}


def test_reference_policies_rank_as_documented():
    env = Intersection()
    figures = _figures(env, env.default_params(), {
        "light": fixed_time_light_policy(env), "go": always_go_policy(env),
        "random": random_policy(env)})
    light, go, rand = figures["light"], figures["go"], figures["random"]
    # these 128 episodes (team return, crossings, collisions per episode, swept collisions):
    # light 40.7, 10.2, 0 (never one); always-go -104.8, 13.1, 9.8; random -27.5, 6.4, 3.3
    # (collisions checked only at step instants: always-go -45.5, 15.3, 6.7; random -17.2,
    # 6.8, 2.8)
    assert light["max_collisions"] == 0.0
    assert go["collisions"] > 5.0 and go["collisions"] > 2 * rand["collisions"]
    assert go["crossings"] > 1.2 * light["crossings"] > 1.3 * rand["crossings"]
    assert light["return"] > rand["return"] + 40.0 and rand["return"] > go["return"] + 40.0


@pytest.mark.parametrize("num_agents", [2, 6])
def test_fixed_time_light_never_collides_with_other_team_sizes(num_agents):
    env = Intersection(num_agents=num_agents)
    light = _figures(env, env.default_params(), {"light": fixed_time_light_policy(env)},
                     episodes=32)["light"]
    assert light["max_collisions"] == 0.0 and light["crossings"] > 2 * num_agents


def test_fixed_time_light_cycle():
    env = Intersection(num_agents=2)  # vehicle 0 on lane 0, vehicle 1 on lane 1
    policy = fixed_time_light_policy(env, EXACT, light_period=8, clearance=4)

    @jax.jit
    def decide(position, speed, step):
        state = _state(position, speed, step)
        reward, info = env._reward(state, EXACT)
        return policy(jax.random.PRNGKey(0), env._timestep(state, reward, info, EXACT), ())[0]

    def actions(position, speed, step):
        return np.asarray(decide(jnp.asarray(position, jnp.float32),
                                 jnp.asarray(speed, jnp.float32), step))

    # steps 0-3 all red: the fastest action after which braking still stops short of the
    # zone (3.5 - 0.008); from 3.0 braking at speed v stops at 3 + (v - 0.25) / 2 + ...
    far, near = [1.0, 1.0], [3.0, 3.0]
    np.testing.assert_array_equal(actions(far, [0.25, 0.25], 1), [ACCELERATE, ACCELERATE])
    np.testing.assert_array_equal(actions(near, [0.25, 0.25], 0), [ACCELERATE] * 2)  # 3.375
    np.testing.assert_array_equal(actions(near, [0.5, 0.5], 0), [KEEP, KEEP])  # 3.375
    np.testing.assert_array_equal(actions(near, [0.75, 0.75], 0), [BRAKE, BRAKE])  # 3.375
    # steps 4-7 lane 0 green, steps 12-15 lane 1 green (8-11 all red), then again
    for step, expected in ((4, [ACCELERATE, BRAKE]), (7, [ACCELERATE, BRAKE]),
                           (8, [BRAKE, BRAKE]), (11, [BRAKE, BRAKE]),
                           (12, [BRAKE, ACCELERATE]), (15, [BRAKE, ACCELERATE]),
                           (19, [BRAKE, BRAKE]), (20, [ACCELERATE, BRAKE])):
        np.testing.assert_array_equal(actions(near, [0.75, 0.75], step), expected, str(step))
    # too close to stop (braking now ends at 3.625): go through; inside the zone: go on
    np.testing.assert_array_equal(actions([3.25, 4.0], [0.75, 0.0], 0), [ACCELERATE] * 2)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"max_steps": 0}, "max_steps"),
    ({"dt": 0.0}, "dt"),
    ({"accel": -1.0}, "accel"),
    ({"max_speed": float("nan")}, "max_speed"),
    ({"collision_penalty": -1.0}, "collision_penalty"),
    ({"throughput_reward": float("inf")}, "throughput_reward"),
    ({"zone_width": 1.0}, "zone_width"),
    ({"spawn_length": 0.45}, r"spawn_length .*got 0\.45"),
    ({"max_speed": 2.0}, r"max_speed \* dt .*got 0\.2"),
])
def test_bad_params_raise_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IntersectionParams(**kwargs)
    with pytest.raises(ValueError, match=match):
        IntersectionParams().replace(**kwargs)


def test_bad_counts_raise_naming_the_value():
    for bad in (1, 2.5, True):
        with pytest.raises(ValueError, match=rf"num_agents .*got {bad!r}"):
            Intersection(num_agents=bad)
    env = Intersection()
    with pytest.raises(ValueError, match=r"light_period .*got 0"):
        fixed_time_light_policy(env, light_period=0)
    with pytest.raises(ValueError, match=r"clearance .*got 4"):
        fixed_time_light_policy(env, light_period=4, clearance=4)
    # the default params need 5 all-red steps: fewer cannot keep the light's guarantee
    with pytest.raises(ValueError, match=r"clearance must be at least 5 .*got 4"):
        fixed_time_light_policy(env, clearance=4)


def test_params_where_a_spawned_vehicle_cannot_stop_before_the_zone_are_refused():
    # at speed 1 a vehicle spawned at 0.3 still moves 0.45 braking: past z0 = 0.4
    with pytest.raises(ValueError, match=r"spawn_length \+ braking_distance.*max_speed=1\.0"):
        IntersectionParams(zone_width=0.2, max_speed=1.0)
    IntersectionParams(zone_width=0.2, max_speed=1.0, lane_length=2.0)  # z0 = 0.9: fine


def test_fixed_time_light_never_collides_with_other_valid_params():
    # a long, wide zone with fast vehicles: the light takes the 7 all-red steps it needs
    env = Intersection(num_agents=4)
    params = IntersectionParams(lane_length=2.0, zone_width=0.2, max_speed=1.0)
    assert light_clearance(params) == 7 and light_clearance(env.default_params()) == 5
    light = _figures(env, params, {"light": fixed_time_light_policy(env, params)},
                     episodes=32)["light"]
    assert light["max_collisions"] == 0.0 and light["crossings"] > 4


def _check_timestep(env, ts, batch=()):
    n = env.num_agents
    assert ts.obs.shape == (*batch, n, env.obs_dim) and ts.obs.dtype == jnp.float32
    assert ts.action_mask.shape == (*batch, n, 3) and ts.action_mask.dtype == jnp.bool_
    assert bool(np.all(np.asarray(ts.action_mask)))
    assert ts.global_state.shape == (*batch, env.state_dim)
    assert ts.global_state.dtype == jnp.float32
    assert ts.reward.shape == (*batch, n) and ts.reward.dtype == jnp.float32
    assert ts.terminated.shape == batch and ts.terminated.dtype == jnp.bool_
    assert ts.truncated.shape == batch and ts.truncated.dtype == jnp.bool_
    assert set(ts.info) == {"crossings", "collisions", "mean_speed", "stopped", "invalid_actions"}
    for value in (*ts.info.values(), ts.obs, ts.global_state, ts.reward):
        assert np.all(np.isfinite(np.asarray(value)))
    for value in ts.info.values():
        assert jnp.shape(value) == batch


def test_contract_under_jit_and_vmap_and_render():
    env = Intersection(num_agents=3)
    params = env.default_params().replace(max_steps=20)
    policy = random_policy(env)
    assert (env.obs_dim, env.state_dim, env.num_actions) == (12, 10, 3)

    def episode(key):
        def body(carry, key):
            k_act, k_step = jax.random.split(key)
            state, ts = env.step(k_step, carry[0], policy(k_act, carry[1], ())[0], params)
            return (state, ts), (state, ts)

        k_reset, k_run = jax.random.split(key)
        state, ts = env.reset(k_reset, params)
        _, traj = jax.lax.scan(body, (state, ts), jax.random.split(k_run, 20))
        return state, ts, traj

    run = jax.jit(episode)
    first, ts0, (states, traj) = run(jax.random.PRNGKey(0))
    _check_timestep(env, ts0)
    _check_timestep(env, traj, batch=(20,))
    np.testing.assert_array_equal(np.asarray(traj.truncated), np.arange(1, 21) >= 20)
    assert not np.any(np.asarray(traj.terminated)) and not bool(ts0.truncated)
    positions = np.asarray(states.position)
    assert np.all((positions >= 0) & (positions < params.lane_length))
    speeds = np.asarray(states.speed)
    assert np.all((speeds >= 0) & (speeds <= params.max_speed))

    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    _, ts0_b, (_, traj_b) = jax.jit(jax.vmap(episode))(keys)
    _check_timestep(env, ts0_b, batch=(2,))
    _check_timestep(env, traj_b, batch=(2, 20))
    _, _, (_, alone) = run(keys[1])
    np.testing.assert_allclose(np.asarray(traj_b.obs[1]), np.asarray(alone.obs), atol=1e-6)

    frames = [env.render(s, params, size=96) for s in
              (first, jax.tree.map(lambda x: x[-1], states))]
    for frame in frames:
        assert isinstance(frame, np.ndarray)
        assert frame.dtype == np.uint8 and frame.shape == (96, 96, 3)
    assert not np.array_equal(frames[0], frames[1])
    assert env.render(first).shape == (400, 400, 3)
