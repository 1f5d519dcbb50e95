"""tracking-v1: the reward formula, the target's path and the reference policies."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


# ----- sensing radius ----------------------------------------------------------------------
def _rollout(env, params, steps=20, key=0):
    """Reset, then ``steps`` random-policy steps: (first timestep, states, timesteps)."""
    policy = random_policy(env)

    def run(key):
        def body(carry, key):
            state, ts = carry
            k_act, k_step = jax.random.split(key)
            state, ts = env.step(k_step, state, policy(k_act, ts, ())[0], params)
            return (state, ts), (state, ts)

        k0, k1 = jax.random.split(key)
        state, ts0 = env.reset(k0, params)
        _, (states, traj) = jax.lax.scan(body, (state, ts0), jax.random.split(k1, steps))
        return ts0, states, traj

    return jax.jit(run)(jax.random.PRNGKey(key))


def _full_view(states, global_state):
    """The observation of the full view, rebuilt from states (v_T from the global state) by
    the documented layout
    ``[v_i, p_i, p_T - p_i, v_T, (p_j - p_i)_{j != i}, (v_j)_{j != i}, (o_k - p_i)_k]``."""
    pos, vel = np.asarray(states.agent_pos), np.asarray(states.agent_vel)
    t, n = pos.shape[:2]
    target_vel = np.asarray(global_state)[:, 4 * n + 2:4 * n + 4]
    rows = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        rows.append(np.concatenate([
            vel[:, i], pos[:, i], np.asarray(states.target_pos) - pos[:, i], target_vel,
            *(pos[:, j] - pos[:, i] for j in others), *(vel[:, j] for j in others),
            (np.asarray(states.obstacle_pos) - pos[:, i, None]).reshape(t, -1)], axis=-1))
    return np.stack(rows, axis=1)


def test_default_view_is_the_full_view_bit_for_bit():
    """The defaults (sensing_radius = inf, no flags) keep the width and every value of the
    full observation; an explicit inf and a radius beyond the arena's diagonal change
    nothing anywhere (obs, global state, rewards, info, states)."""
    env, params = make("tracking-v1", num_agents=3, num_obstacles=1)
    assert env.obs_dim == 8 + 4 * 2 + 2 and params.sensing_radius == float("inf")
    default = _rollout(env, params)
    _, states, traj = default
    np.testing.assert_array_equal(np.asarray(traj.obs), _full_view(states, traj.global_state))
    for radius in (float("inf"), 3.0):  # the diagonal of the default arena is 2.83
        other = _rollout(env, params.replace(sensing_radius=radius))
        for x, y in zip(jax.tree.leaves(default), jax.tree.leaves(other), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _hand_placed(flags=False, radius=0.25):
    """Agent 0 at the origin; agent 1 exactly at distance 0.25 from it, agent 2 one float32
    step beyond 0.25; the target exactly 0.25 from agent 0 (and beyond it from the others)."""
    beyond = float(np.nextafter(np.float32(0.25), np.float32(1.0)))
    env, params = make("tracking-v1", num_agents=3, num_obstacles=1, visibility_flags=flags,
                       sensing_radius=radius)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(
        agent_pos=jnp.array([[0.0, 0.0], [0.25, 0.0], [0.0, -beyond]], jnp.float32),
        agent_vel=jnp.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], jnp.float32),
        target_pos=jnp.array([-0.25, 0.0], jnp.float32),
        target_heading=jnp.array(0.0, jnp.float32),
        obstacle_pos=jnp.array([[0.9, 0.9]], jnp.float32))
    return env, params, state


def test_sensing_radius_masks_exactly_beyond_the_radius():
    env, params, state = _hand_placed()
    obs = np.asarray(env.observations(state, params))
    full = np.asarray(env.observations(state, params.replace(sensing_radius=float("inf"))))
    # columns: v 0:2, p 2:4, p_T - p_i 4:6, v_T 6:8, others' p 8:12, others' v 12:16, obstacle
    np.testing.assert_array_equal(obs[:, :4], full[:, :4])  # own v and p: always
    np.testing.assert_array_equal(obs[:, 16:], full[:, 16:])  # the obstacle: always
    # the target (0.25 from agent 0, farther from the others)
    np.testing.assert_array_equal(obs[0, 4:8], full[0, 4:8])
    assert np.any(full[0, 4:8] != 0.0) and np.any(full[0, 6:8] != 0.0)
    np.testing.assert_array_equal(obs[1:, 4:8], 0.0)
    # teammates: 0 and 1 see each other (exactly at R), 2 is one step beyond both
    sees = {0: [True, False], 1: [True, False], 2: [False, False]}  # in j != i order
    for i, row in sees.items():
        for slot, seen in enumerate(row):
            p, v = obs[i, 8 + 2 * slot:10 + 2 * slot], obs[i, 12 + 2 * slot:14 + 2 * slot]
            if seen:
                np.testing.assert_array_equal(p, full[i, 8 + 2 * slot:10 + 2 * slot])
                np.testing.assert_array_equal(v, full[i, 12 + 2 * slot:14 + 2 * slot])
            else:
                np.testing.assert_array_equal(np.concatenate([p, v]), 0.0)
    # the global state keeps everything
    _, ts = env.step(jax.random.PRNGKey(0), state, jnp.zeros(3, jnp.int32), params)
    _, full_ts = env.step(jax.random.PRNGKey(0), state, jnp.zeros(3, jnp.int32),
                          params.replace(sensing_radius=float("inf")))
    np.testing.assert_array_equal(np.asarray(ts.global_state), np.asarray(full_ts.global_state))
    np.testing.assert_array_equal(np.asarray(ts.reward), np.asarray(full_ts.reward))


def test_visibility_flags_end_the_observation():
    env, params, state = _hand_placed(flags=True)
    assert env.obs_dim == 8 + 4 * 2 + 2 + 3
    obs = np.asarray(env.observations(state, params))
    assert obs.shape == (3, env.obs_dim)
    # [target, teammates j != i]
    np.testing.assert_array_equal(obs[:, -3:], [[1, 1, 0], [0, 1, 0], [0, 0, 0]])
    plain, _, _ = _hand_placed(flags=False)
    np.testing.assert_array_equal(obs[:, :-3], np.asarray(plain.observations(state, params)))
    # everything visible: all ones
    everything = np.asarray(env.observations(state, params.replace(sensing_radius=10.0)))
    np.testing.assert_array_equal(everything[:, -3:], 1.0)
    env1, params1 = make("tracking-v1", num_agents=1, visibility_flags=True)
    assert env1.obs_dim == 8 + 1
    assert make("tracking-v1", visibility_flags=True)[0].reset(
        jax.random.PRNGKey(0), params1.replace(sensing_radius=0.1))[1].obs.shape == (2, 14)


def test_sensing_radius_is_traced_under_jit_and_vmap():
    env, params, state = _hand_placed(flags=True)
    radii = jnp.array([0.1, 0.25, 0.3, jnp.inf], jnp.float32)
    batched = jax.jit(jax.vmap(
        lambda r: env.observations(state, params.replace(sensing_radius=r))))(radii)
    one = jax.jit(env.observations)
    visible_target = []
    for i, r in enumerate(np.asarray(radii)):
        alone = one(state, params.replace(sensing_radius=float(r)))
        np.testing.assert_array_equal(np.asarray(batched[i]), np.asarray(alone))
        visible_target.append(np.asarray(alone[:, -3]).tolist())
    # agent 0 sees the target from 0.25 on; agents 1 (0.5 away) and 2 (0.354) from 0.5, 0.36
    assert visible_target == [[0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 1]]
    # and a whole jitted step with a traced radius
    step = jax.jit(env.step)
    _, ts = step(jax.random.PRNGKey(0), state, jnp.zeros(3, jnp.int32),
                 params.replace(sensing_radius=jnp.float32(0.01)))
    np.testing.assert_array_equal(np.asarray(ts.obs[:, 4:16]), 0.0)


@pytest.mark.parametrize("radius", [0.0, -1.0, float("nan"), -float("inf")])
def test_bad_sensing_radius_is_refused(radius):
    with pytest.raises(ValueError, match=r"sensing_radius must be .*> 0"):
        make("tracking-v1", sensing_radius=radius)
    _, params = make("tracking-v1")
    with pytest.raises(ValueError, match="sensing_radius"):
        params.replace(sensing_radius=radius)


def test_visibility_flags_must_be_a_bool():
    with pytest.raises(ValueError, match="visibility_flags must be True or False"):
        make("tracking-v1", visibility_flags=1)
