"""tracking-v1: the reward formula, the target's path and the reference policies."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmarl_coop.envs import greedy_chase_policy, make, random_policy, wrap


def test_reward_formula_on_a_hand_made_state():
    env, params = make("tracking-v1", num_agents=3, num_obstacles=1)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(
        agent_pos=jnp.array([[0.0, 0.0], [0.05, 0.0], [0.5, 0.5]]),  # agents 0 and 1 touch
        target_pos=jnp.array([0.1, 0.0]),
        obstacle_pos=jnp.array([[0.5, 0.62]]))  # agent 2 touches the obstacle (0.12 < 0.15)
    reward, info = env._reward(state, params)
    d = np.array([0.1, 0.05, np.hypot(0.4, 0.5)])
    expected = -d.mean() + 1.0 * 1.0 - 1.0 * 2.0
    np.testing.assert_allclose(np.asarray(reward), [expected] * 3, rtol=1e-5)
    assert float(info["collisions"]) == 2.0 and float(info["captured"]) == 1.0
    np.testing.assert_allclose(float(info["mean_distance"]), d.mean(), rtol=1e-5)


def _evaluate(env, params, policy, episodes=64, key=0):
    env = wrap(env)
    steps = params.max_steps

    def episode(key):
        def body(carry, key):
            state, ts = carry
            k_act, k_step = jax.random.split(key)
            state, ts = env.step(k_step, state, policy(k_act, ts, ())[0], params)
            return (state, ts), ts

        k0, k1 = jax.random.split(key)
        carry = env.reset(k0, params)
        (_, ts), traj = jax.lax.scan(body, carry, jax.random.split(k1, steps))
        return ts.info, traj.info["final_obs"]

    info, _ = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(key), episodes))
    return {k: float(np.mean(v, axis=0).mean()) for k, v in info.items()
            if k.startswith("episode_")}


def test_greedy_chase_tracks_far_better_than_random_but_collides():
    env, params = make("tracking-v1")
    greedy = _evaluate(env, params, greedy_chase_policy(env))
    rand = _evaluate(env, params, random_policy(env))
    assert greedy["episode_return"] > rand["episode_return"] + 10.0
    assert greedy["episode_mean_distance"] < 0.5 * rand["episode_mean_distance"]
    assert greedy["episode_captured"] > 0.4 > rand["episode_captured"]
    # heading for the same point makes the greedy team bump into itself
    assert greedy["episode_collisions"] > rand["episode_collisions"]


def test_greedy_chase_continuous_also_tracks():
    env, params = make("tracking-v1", continuous_actions=True)
    greedy = _evaluate(env, params, greedy_chase_policy(env), episodes=16)
    rand = _evaluate(env, params, random_policy(env), episodes=16)
    assert greedy["episode_mean_distance"] < 0.5 * rand["episode_mean_distance"]


def test_target_stays_in_arena_moves_at_its_speed_and_can_flee():
    env, params = make("tracking-v1", target_speed=0.8, arena_half_width=0.5)
    state, _ = env.reset(jax.random.PRNGKey(1), params)
    step = jax.jit(env.step)
    previous = np.asarray(state.target_pos)
    for i in range(200):
        state, _ts = step(jax.random.PRNGKey(i), state, jnp.zeros(2, jnp.int32), params)
        pos = np.asarray(state.target_pos)
        assert np.all(np.abs(pos) <= 0.5 + 1e-6)
        assert np.linalg.norm(pos - previous) <= 0.08 + 1e-5  # speed * dt, less at walls
        previous = pos
        assert np.all(np.abs(np.asarray(state.agent_pos)) <= 0.5 - 0.05 + 1e-6)

    flee, fparams = make("tracking-v1", flee_weight=1.0, target_turn_std=0.0)
    state, _ = flee.reset(jax.random.PRNGKey(0), fparams)
    state = state.replace(agent_pos=jnp.array([[0.0, 0.0], [0.9, 0.9]]),
                          target_pos=jnp.array([0.2, 0.0]), target_heading=jnp.array(np.pi))
    state, _ = flee.step(jax.random.PRNGKey(0), state, jnp.zeros(2, jnp.int32), fparams)
    np.testing.assert_allclose(np.asarray(state.target_pos), [0.25, 0.0], atol=1e-6)


def test_random_policy_respects_the_mask():
    env, _ = make("tracking-v1")
    policy = random_policy(env)
    mask = jnp.array([[False, True, False, False, False], [False, False, False, True, True]])
    ts = env.reset(jax.random.PRNGKey(0))[1]._replace(action_mask=mask)
    draws = jax.vmap(lambda k: policy(k, ts, ())[0])(jax.random.split(jax.random.PRNGKey(0), 200))
    assert set(np.asarray(draws[:, 0]).tolist()) == {1}
    assert set(np.asarray(draws[:, 1]).tolist()) == {3, 4}


def _thrust_right(solid, **kw):
    """One agent 0.5 left of an obstacle's centre thrusts right for 15 steps: x positions
    and collision counts."""
    env, params = make("tracking-v1", num_agents=1, num_obstacles=1, solid_obstacles=solid,
                       **kw)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(agent_pos=jnp.array([[-0.5, 0.0]]), obstacle_pos=jnp.zeros((1, 2)))
    step = jax.jit(env.step)
    xs, collisions = [], []
    for i in range(15):
        state, ts = step(jax.random.PRNGKey(i), state, jnp.array([2]), params)
        xs.append(float(state.agent_pos[0, 0]))
        collisions.append(float(ts.info["collisions"]))
    return np.array(xs), np.array(collisions)


def test_solid_obstacles_stop_an_agent_at_any_speed():
    xs, collisions = _thrust_right(False)
    assert xs[-1] > 0.15  # pass-through obstacles (the old default): it crosses
    xs, collisions = _thrust_right(True)
    contact = -0.15  # agent_size + obstacle_size
    assert np.all(xs <= contact + 1e-5) and abs(xs[-1] - contact) < 1e-5
    assert collisions[-1] == 1.0  # resting against it while pushing counts as touching
    # a step much longer than the obstacle (speed 20, 2 per step) cannot tunnel through
    xs, _ = _thrust_right(True, agent_max_speed=20.0, agent_accel=400.0)
    assert np.all(xs <= contact + 1e-5)


def test_block_obstacles_slides_and_handles_coincident_centres():
    from jaxmarl_coop.envs import physics

    size, obstacle = jnp.array([0.05]), (jnp.zeros((1, 2)), jnp.array([0.1]))
    # on the contact circle at its left, moving right and up: the inward part is removed
    pos, vel, touched = physics.block_obstacles(
        jnp.array([[-0.15, 0.0]]), jnp.array([[-0.05, 0.05]]), jnp.array([[1.0, 0.5]]),
        size, *obstacle)
    np.testing.assert_allclose(np.linalg.norm(pos), 0.15, rtol=1e-5)
    np.testing.assert_allclose(vel, [[0.0, 0.5]], atol=1e-6)
    assert bool(touched[0, 0])
    # a disc sitting on the obstacle's centre (no direction to push it along) goes to +x
    pos, vel, _ = physics.block_obstacles(jnp.zeros((1, 2)), jnp.zeros((1, 2)),
                                          jnp.array([[-1.0, 0.0]]), size, *obstacle)
    np.testing.assert_allclose(pos, [[0.15, 0.0]], atol=1e-6)
    np.testing.assert_allclose(vel, [[0.0, 0.0]], atol=1e-6)


def test_resets_start_without_contact():
    env, params = make("tracking-v1", num_agents=3, num_obstacles=2)

    def touching(key):
        _, ts = env.reset(key, params)
        return ts.info["collisions"]

    counts = jax.jit(jax.vmap(touching))(jax.random.split(jax.random.PRNGKey(0), 4000))
    assert float(jnp.max(counts)) == 0.0  # one draw alone touches 13 % of the time


def _flee_step(state, params, env, steps=1):
    for i in range(steps):
        state, _ = env.step(jax.random.PRNGKey(i), state, jnp.zeros(env.num_agents, jnp.int32),
                            params)
    return state


def test_the_target_flees_from_where_the_agents_are_after_their_move():
    env, params = make("tracking-v1", num_agents=1, flee_weight=1.0, target_turn_std=0.0)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    # the agent moves from (0, 0) to (0.1, 0) this step: fleeing from its new position
    # takes the target (at x = 0.05) left, from its old position right
    state = state.replace(agent_pos=jnp.array([[0.0, 0.0]]), agent_vel=jnp.array([[1.0, 0.0]]),
                          target_pos=jnp.array([0.05, 0.3]), target_heading=jnp.array(0.0))
    new = _flee_step(state, params, env)
    assert float(new.target_pos[0]) < 0.05


def test_a_weak_flee_still_turns_a_target_heading_at_the_nearest_agent():
    for w in (0.1, 0.5):
        env, params = make("tracking-v1", num_agents=1, flee_weight=w, target_turn_std=0.0)
        state, _ = env.reset(jax.random.PRNGKey(0), params)
        state = state.replace(agent_pos=jnp.array([[0.0, 0.0]]),
                              target_pos=jnp.array([0.5, 0.0]), target_heading=jnp.array(np.pi))
        new = _flee_step(state, params, env)
        np.testing.assert_allclose(np.asarray(new.target_pos), [0.55, 0.0], atol=1e-6)


def test_a_fleeing_target_slides_along_the_wall_and_rests_in_a_corner():
    env, params = make("tracking-v1", num_agents=1, flee_weight=1.0, target_turn_std=0.0)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    # the agent (held still) is left of and a little below the target at the right wall
    state = state.replace(agent_pos=jnp.array([[0.5, 0.45]]), agent_vel=jnp.zeros((1, 2)),
                          target_pos=jnp.array([0.98, 0.5]), target_heading=jnp.array(0.0))
    ys = []
    for i in range(60):
        state = _flee_step(state, params, env)
        if i > 0:
            assert abs(float(state.target_pos[0]) - 1.0) < 1e-6  # on the wall, no jiggle
        ys.append(float(state.target_pos[1]))
    assert np.all(np.diff(ys) >= -1e-7) and ys[-1] == 1.0  # up along the wall, into the corner
    np.testing.assert_allclose(np.asarray(_flee_step(state, params, env, 3).target_pos),
                               [1.0, 1.0], atol=1e-6)
