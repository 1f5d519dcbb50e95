"""grid-tracking-v1: the reward, moves at the walls, the target's steps and the tabular index."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmarl_coop.envs import AgentID, GridTracking, make, wrap
from jaxmarl_coop.envs.grid_tracking import GridTrackingState


def _state(agents, target, step=0):
    target = jnp.asarray(target, jnp.int32)
    return GridTrackingState(agent_pos=jnp.asarray(agents, jnp.int32), target_pos=target,
                             step=jnp.full(target.shape[:-1], step, jnp.int32))


def test_reward_and_collisions_on_hand_made_states():
    env, params = make("grid-tracking-v1", num_agents=3)  # G = 5, defaults 1, 0.1, 0.5
    # agents 0 and 1 share the target cell (one pair), agent 2 is 2 + 2 cells away
    reward, info = env._reward(_state([[2, 2], [2, 2], [0, 4]], [2, 2]), params)
    expected = 1.0 - 0.1 * (4 / 3) / 8 - 0.5 * 1
    np.testing.assert_allclose(np.asarray(reward), [expected] * 3, rtol=1e-6)
    assert float(info["collisions"]) == 1 and float(info["captured"]) == 1
    np.testing.assert_allclose(float(info["mean_distance"]), 4 / 3, rtol=1e-6)
    # three agents in one cell: three pairs; the target elsewhere: no capture
    reward, info = env._reward(_state([[1, 3], [1, 3], [1, 3]], [4, 0]), params)
    assert float(info["collisions"]) == 3 and float(info["captured"]) == 0
    np.testing.assert_allclose(float(info["mean_distance"]), 6.0)
    np.testing.assert_allclose(np.asarray(reward), [-0.1 * 6 / 8 - 0.5 * 3] * 3, rtol=1e-6)
    # two separate pairs; a capture by a lone agent
    env4, params4 = make("grid-tracking-v1", num_agents=4, collision_penalty=2.0,
                         capture_reward=3.0, distance_weight=0.0)
    reward, info = env4._reward(_state([[0, 0], [0, 0], [4, 4], [4, 4]], [0, 0]), params4)
    assert float(info["collisions"]) == 2 and float(info["captured"]) == 1
    np.testing.assert_allclose(np.asarray(reward), [3.0 - 2.0 * 2] * 4)


def test_collisions_are_counted_after_moving_and_both_agents_move_in():
    env, params = make("grid-tracking-v1", target_move_prob=0.0)
    state = _state([[1, 2], [3, 2]], [0, 0])
    state, ts = env.step(jax.random.PRNGKey(0), state, jnp.array([2, 1]), params)  # right, left
    np.testing.assert_array_equal(np.asarray(state.agent_pos), [[2, 2], [2, 2]])
    assert float(ts.info["collisions"]) == 1 and float(ts.info["captured"]) == 0
    # swapping cells is not a collision (they never share a cell after moving)
    state = _state([[1, 2], [2, 2]], [0, 0])
    state, ts = env.step(jax.random.PRNGKey(0), state, jnp.array([2, 1]), params)
    np.testing.assert_array_equal(np.asarray(state.agent_pos), [[2, 2], [1, 2]])
    assert float(ts.info["collisions"]) == 0


def test_moves_follow_the_mpe_order_and_are_clipped_at_the_walls():
    env, params = make("grid-tracking-v1", num_agents=1, grid_size=4, target_move_prob=0.0)

    def move(cell, action):
        state, _ = env.step(jax.random.PRNGKey(0), _state([cell], [1, 1]),
                            jnp.array([action]), params)
        return state.agent_pos[0]

    cells = [(0, 0), (3, 3), (0, 3), (3, 0), (1, 2)]
    got = jax.jit(jax.vmap(jax.vmap(move, (None, 0)), (0, None)))(
        jnp.asarray(cells), jnp.arange(5))
    deltas = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]  # stay, left, right, down, up
    expected = [[np.clip(np.add(c, d), 0, 3) for d in deltas] for c in cells]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def _target_steps(env, params, target, draws):
    def step(key):
        state = _state([[0, 0]] * env.num_agents, target)
        state, _ = env.step(key, state, jnp.zeros(env.num_agents, jnp.int32), params)
        return state.target_pos - jnp.asarray(target)

    keys = jax.random.split(jax.random.PRNGKey(42), draws)
    return np.asarray(jax.jit(jax.vmap(step))(keys))


@pytest.mark.parametrize("prob", [0.0, 0.3, 1.0])
def test_target_moves_with_target_move_prob_to_a_uniform_neighbour(prob):
    env, params = make("grid-tracking-v1", target_move_prob=prob)
    n = 20000
    delta = _target_steps(env, params, [2, 2], n)  # the centre of the 5 x 5 grid
    moved = np.any(delta != 0, axis=-1)
    assert np.all(np.abs(delta).sum(-1) <= 1)  # one cell at most, never diagonal
    se = np.sqrt(max(prob * (1 - prob), 1e-12) / n)
    assert abs(moved.mean() - prob) <= 4 * se + 1e-12
    if prob > 0:
        for d in [(-1, 0), (1, 0), (0, -1), (0, 1)]:
            frac = np.all(delta == d, axis=-1).mean()
            q = prob / 4
            assert abs(frac - q) <= 4 * np.sqrt(q * (1 - q) / n), (d, frac)
    # in a corner two of the four moves are clipped away: it moves with probability p / 2
    corner = _target_steps(env, params, [0, 0], n)
    assert np.all(corner >= 0)
    q = prob / 2
    assert abs(np.any(corner != 0, -1).mean() - q) <= 4 * np.sqrt(max(q * (1 - q), 1e-12) / n)


def test_reset_is_uniform_over_cells():
    env, params = make("grid-tracking-v1", grid_size=3, num_agents=2)
    states, ts = jax.jit(jax.vmap(lambda k: env.reset(k, params)))(
        jax.random.split(jax.random.PRNGKey(0), 9000))
    cells = np.concatenate([np.asarray(states.agent_pos).reshape(-1, 2),
                            np.asarray(states.target_pos)])
    counts = np.bincount(cells[:, 0] * 3 + cells[:, 1], minlength=9)
    np.testing.assert_allclose(counts / counts.sum(), 1 / 9, atol=0.01)
    assert np.all(np.asarray(ts.reward) == 0) and not np.any(np.asarray(ts.truncated))
    # the agents sometimes start on the target (1/9 each)
    on_target = np.all(np.asarray(states.agent_pos) == np.asarray(states.target_pos)[:, None],
                       axis=-1)
    assert 0.08 < on_target.mean() < 0.14


def test_observation_and_global_state_layout():
    env, params = make("grid-tracking-v1", num_agents=3)  # G = 5: divide by 4
    state = _state([[0, 4], [3, 1], [2, 2]], [1, 1])
    ts = env._timestep(state, jnp.zeros(3), {}, params)
    expected = np.array([
        [0, 4, 1, -3, 3, -3, 2, -2],
        [3, 1, -2, 0, -3, 3, -1, 1],
        [2, 2, -1, -1, -2, 2, 1, -1]], np.float32) / 4
    np.testing.assert_array_equal(np.asarray(ts.obs), expected)
    np.testing.assert_array_equal(np.asarray(ts.global_state),
                                  np.array([0, 4, 3, 1, 2, 2, 1, 1], np.float32) / 4)
    assert env.obs_dim == 8 and env.state_dim == 8


def _expected_index(agent_pos, target_pos, g):
    """Hand-written (own cell, target cell) index, per agent."""
    own = agent_pos[..., 0] * g + agent_pos[..., 1]
    target = target_pos[..., None, 0] * g + target_pos[..., None, 1]
    return own * g * g + target


def test_obs_index_round_trip_on_every_configuration():
    g = 3
    env = GridTracking(grid_size=g, num_agents=2)
    assert env.num_obs_indices == g**4
    cells = np.array(list(itertools.product(range(g), range(g))), np.int32)
    configs = np.array(list(itertools.product(range(g * g), repeat=3)))  # agent 0, 1, target
    agents, target = cells[configs[:, :2]], cells[configs[:, 2]]
    obs = jax.vmap(env.observations)(_state(agents, target))  # (729, 2, 6)
    index = np.asarray(env.obs_index(obs))
    np.testing.assert_array_equal(index, _expected_index(agents, target, g))
    assert index.dtype == np.int32 and set(index.ravel()) == set(range(g**4))
    # decodes back to the cells
    own, tgt = np.divmod(index, g * g)
    np.testing.assert_array_equal(np.stack(np.divmod(own, g), -1), agents)
    np.testing.assert_array_equal(np.stack(np.divmod(tgt, g), -1),
                                  np.broadcast_to(target[:, None], agents.shape))
    # under AgentID the appended columns are ignored
    ided = AgentID(env)
    ts = jax.vmap(lambda s: ided._add_id(env._timestep(s, jnp.zeros(2), {},
                                                        env.default_params())))(
        _state(agents, target))
    assert ts.obs.shape == (len(configs), 2, 8)
    np.testing.assert_array_equal(np.asarray(ided.obs_index(ts.obs)), index)
    assert ided.num_obs_indices == g**4


@pytest.mark.parametrize(("grid_size", "num_agents"), [(5, 3), (9, 2), (2, 1)])
def test_obs_index_matches_the_state_on_random_episodes(grid_size, num_agents):
    env, params = make("grid-tracking-v1", grid_size=grid_size, num_agents=num_agents)
    states, ts = jax.jit(jax.vmap(lambda k: env.reset(k, params)))(
        jax.random.split(jax.random.PRNGKey(1), 4096))
    np.testing.assert_array_equal(
        np.asarray(env.obs_index(ts.obs)),
        _expected_index(np.asarray(states.agent_pos), np.asarray(states.target_pos),
                        grid_size))


def test_obs_index_of_final_obs_under_auto_reset_and_agent_id():
    """The index of ``info["final_obs"]`` is the cell pair the last step led to."""
    g = 4
    base, params = make("grid-tracking-v1", grid_size=g, max_steps=3, target_move_prob=0.0)
    env = wrap(base, agent_id=True)
    assert env.num_obs_indices == g**4 and env.obs_dim == base.obs_dim + 2
    steps = 12
    actions = jax.random.randint(jax.random.PRNGKey(5), (steps, 2), 0, 5, dtype=jnp.int32)

    def body(carry, xs):
        state, ts = carry
        key, act = xs
        state, ts_next = env.step(key, state, act, params)
        return (state, ts_next), (ts, ts_next)

    carry = env.reset(jax.random.PRNGKey(0), params)
    keys = jax.random.split(jax.random.PRNGKey(1), steps)
    _, (before, after) = jax.jit(lambda c: jax.lax.scan(body, c, (keys, actions)))(carry)
    # expected cells of the step's outcome, from the observation before it
    obs = np.asarray(before.obs)
    own = np.rint(obs[..., :2] * (g - 1)).astype(np.int32)
    target = own + np.rint(obs[..., 2:4] * (g - 1)).astype(np.int32)  # does not move (p = 0)
    deltas = np.array([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)])
    moved = np.clip(own + deltas[np.asarray(actions)], 0, g - 1)
    expected = (moved[..., 0] * g + moved[..., 1]) * g * g + target[..., 0] * g + target[..., 1]
    done = np.asarray(after.truncated)
    assert done.sum() == 4
    np.testing.assert_array_equal(np.asarray(env.obs_index(after.info["final_obs"])), expected)
    # on the last step the obs is the next episode's first: another index in general
    assert np.any(np.asarray(env.obs_index(after.obs))[done] != expected[done])
    # the agent-id columns sit at the end
    np.testing.assert_array_equal(np.asarray(after.obs)[..., -2:], np.tile(np.eye(2), (12, 1, 1)))


def test_envs_without_a_tabular_index():
    env, _ = make("spread-v3")
    assert env.num_obs_indices is None and wrap(env).num_obs_indices is None
    with pytest.raises(NotImplementedError, match="spread-v3"):
        wrap(env, agent_id=True).obs_index(jnp.zeros((3, 21)))


def test_obs_index_rejects_a_wrong_shape():
    env, _ = make("grid-tracking-v1")
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, >= 6\)"):
        env.obs_index(jnp.zeros((2, 4)))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"grid_size": 1}, r"grid_size must be an int >= 2, got 1"),
    ({"grid_size": 4.0}, r"grid_size .*got 4\.0"),
    ({"num_agents": 0}, r"num_agents .*got 0"),
    ({"max_steps": 0}, r"max_steps must be ≥ 1, got 0"),
    ({"target_move_prob": 1.5}, r"target_move_prob must be ≥ 0\.0 and ≤ 1\.0, got 1\.5"),
    ({"collision_penalty": -1.0}, r"collision_penalty .*got -1\.0"),
    ({"capture_reward": float("nan")}, r"capture_reward must be a finite number"),
    ({"continuous_actions": True}, r"no option 'continuous_actions'"),
])
def test_bad_params_raise_value_error_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make("grid-tracking-v1", **kwargs)
