"""The env contract, checked on every registered env (and its variants)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmarl_coop.envs import make, random_policy, registered

EPISODE_STEPS = {"spread-v3": 25, "tag-v3": 25, "tracking-v1": 50, "climbing-v1": 25,
                 "penalty-v1": 25, "prisoners-dilemma-v1": 25, "grid-tracking-v1": 25,
                 "load-balancing-v1": 100, "intersection-v1": 100, "cue-v1": 25}

# every registered id must appear here (checked below), with extra constructor variants
VARIANTS = {
    "spread-v3": [{}, {"continuous_actions": True}, {"num_agents": 5}],
    "tag-v3": [{}, {"continuous_actions": True}, {"prey_policy": "scripted"},
               {"num_adversaries": 2, "num_good": 2, "num_obstacles": 0}],
    "tracking-v1": [{}, {"continuous_actions": True}, {"num_agents": 4, "num_obstacles": 2},
                    {"num_agents": 3, "sensing_radius": 0.5, "visibility_flags": True}],
    "climbing-v1": [{}, {"history": True}],
    "penalty-v1": [{}, {"history": True}],
    "prisoners-dilemma-v1": [{}, {"history": True}],
    "grid-tracking-v1": [{}, {"grid_size": 7, "num_agents": 4}, {"grid_size": 2, "num_agents": 1}],
    "load-balancing-v1": [{}, {"num_dispatchers": 5, "num_servers": 2, "max_delay": 0},
                          {"num_dispatchers": 1, "num_servers": 1}],
    "intersection-v1": [{}, {"num_agents": 2}, {"num_agents": 6}],
    "cue-v1": [{}, {"continuous_actions": True},
               {"num_agents": 4, "num_landmarks": 5, "cue_steps": 0, "landmarks": "random"}],
}
CASES = [(env_id, kw) for env_id in sorted(VARIANTS) for kw in VARIANTS[env_id]]
IDS = [f"{e}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for e, kw in CASES]


def test_every_registered_env_is_covered():
    assert set(registered()) <= set(VARIANTS), set(registered()) - set(VARIANTS)


def _episode(env, params, key, steps, with_states=False):
    """``(ts0, timesteps, actions)`` of a random-policy episode (and the states after each
    step, with ``with_states``)."""
    policy = random_policy(env)

    def body(carry, key):
        state, ts = carry
        k_act, k_step = jax.random.split(key)
        actions, _ = policy(k_act, ts, ())
        state, ts = env.step(k_step, state, actions, params)
        return (state, ts), (ts, actions, state)

    k_reset, k_run = jax.random.split(key)
    state, ts0 = env.reset(k_reset, params)
    _, (traj, actions, states) = jax.lax.scan(body, (state, ts0),
                                              jax.random.split(k_run, steps))
    return (ts0, traj, actions, states) if with_states else (ts0, traj, actions)


def _check_timestep(env, ts, batch=()):
    n, a = env.num_agents, env.num_actions
    assert ts.obs.shape == (*batch, n, env.obs_dim) and ts.obs.dtype == jnp.float32
    assert ts.action_mask.shape == (*batch, n, a) and ts.action_mask.dtype == jnp.bool_
    assert ts.global_state.shape == (*batch, env.state_dim)
    assert ts.global_state.dtype == jnp.float32
    assert ts.reward.shape == (*batch, n) and ts.reward.dtype == jnp.float32
    assert ts.terminated.shape == batch and ts.terminated.dtype == jnp.bool_
    assert ts.truncated.shape == batch and ts.truncated.dtype == jnp.bool_
    for name, value in ts.info.items():
        assert jnp.shape(value) == batch, (name, jnp.shape(value))
        assert np.all(np.isfinite(np.asarray(value))), name
    for leaf in (ts.obs, ts.global_state, ts.reward):
        assert np.all(np.isfinite(np.asarray(leaf)))


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=IDS)
def test_contract_under_jit_and_vmap(env_id, kwargs):
    env, params = make(env_id, **kwargs)
    steps = EPISODE_STEPS[env_id]
    assert len(env.agent_names) == env.num_agents
    assert sorted(i for team in env.teams.values() for i in team) == list(range(env.num_agents))

    run = jax.jit(lambda key: _episode(env, params, key, steps))
    ts0, traj, actions = run(jax.random.PRNGKey(0))
    _check_timestep(env, ts0)
    _check_timestep(env, traj, batch=(steps,))
    # reset and step have the same info keys (AutoReset selects between them); legal random
    # actions are never counted as invalid
    assert set(ts0.info) == set(traj.info) and "invalid_actions" in ts0.info
    assert float(ts0.info["invalid_actions"]) == 0.0
    np.testing.assert_array_equal(np.asarray(traj.info["invalid_actions"]), 0.0)

    # values lie in their spaces at every step
    for t in range(steps):
        assert env.action_space.contains(actions[t])
        assert env.observation_space.contains(traj.obs[t])
        assert env.global_state_space.contains(traj.global_state[t])
    assert env.observation_space.contains(ts0.obs)

    # time limit: truncated exactly at the last step, never terminated
    np.testing.assert_array_equal(np.asarray(traj.truncated), np.arange(1, steps + 1) >= steps)
    assert not np.any(np.asarray(traj.terminated))
    assert not ts0.truncated and not ts0.terminated

    # identical keys, identical results; another key, another episode
    ts0_b, traj_b, _ = run(jax.random.PRNGKey(0))
    for x, y in zip(jax.tree.leaves((ts0, traj)), jax.tree.leaves((ts0_b, traj_b)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    _, traj_c, _ = run(jax.random.PRNGKey(1))
    if np.ptp(np.asarray(traj.obs)) > 0:
        assert not np.allclose(np.asarray(traj.obs), np.asarray(traj_c.obs))
    else:  # a stateless game (constant obs, e.g. a matrix game without history)
        assert not np.allclose(np.asarray(traj.reward), np.asarray(traj_c.reward))

    # vmapped over keys: each lane equals the single run with that key
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    batched = jax.jit(jax.vmap(lambda key: _episode(env, params, key, steps)))(keys)
    _check_timestep(env, batched[1], batch=(3, steps))
    single = run(keys[2])
    for x, y in zip(jax.tree.leaves(single), jax.tree.leaves(batched), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y)[2], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("env_id", sorted(VARIANTS))
def test_params_vmap_without_recompiling(env_id):
    """A sweep over a task parameter is a vmap over params."""
    env, params = make(env_id)
    field = {"spread-v3": "local_ratio", "tag-v3": "catch_reward",
             "tracking-v1": "collision_penalty", "climbing-v1": "reward_noise_std",
             "penalty-v1": "reward_noise_std", "prisoners-dilemma-v1": "reward_noise_std",
             "grid-tracking-v1": "collision_penalty", "load-balancing-v1": "drop_penalty",
             "intersection-v1": "collision_penalty", "cue-v1": "agent_accel"}[env_id]
    values = jnp.array([0.0, 0.5, 1.0])
    swept = params.replace(**{field: values})
    in_axes = jax.tree.map(lambda _: None, params).replace(**{field: 0})
    key = jax.random.PRNGKey(3)

    def episode(p):
        return _episode(env, p, key, EPISODE_STEPS[env_id])[1]

    out = jax.jit(jax.vmap(episode, in_axes=(in_axes,)))(swept)
    for i, value in enumerate(values):
        alone = jax.jit(episode)(params.replace(**{field: float(value)}))
        np.testing.assert_allclose(np.asarray(out.reward[i]), np.asarray(alone.reward),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("env_id", sorted(VARIANTS))
def test_space_sample_and_contains(env_id):
    env, _ = make(env_id)
    key = jax.random.PRNGKey(0)
    for space in (env.action_space, env.observation_space, env.global_state_space):
        sample = space.sample(key)
        assert space.contains(sample)
    assert not env.action_space.contains(jnp.full((env.num_agents,), 99, jnp.int32))
    assert not env.action_space.contains(jnp.zeros((env.num_agents + 1,), jnp.int32))
    assert not env.observation_space.contains(jnp.full((env.num_agents, env.obs_dim), jnp.nan,
                                                        jnp.float32))


INT32 = np.iinfo(np.int32)


@pytest.mark.parametrize("env_id", sorted(VARIANTS))
def test_invalid_actions_never_earn_more_than_valid_ones_and_are_counted(env_id):
    """From states along random episodes, with the other agents' actions fixed, replacing one
    agent's action by an invalid one (num_actions, -1, the int32 extremes) earns that agent,
    and its team, no more than its best valid action would; info counts the invalid agent.
    Where the env has a no-op, the invalid action is exactly the no-op."""
    env, params = make(env_id)
    n, a = env.num_agents, env.num_actions
    invalid = np.array([a, -1, INT32.max, INT32.min], np.int32)
    candidates = jnp.asarray(np.concatenate([np.arange(a, dtype=np.int32), invalid]))
    team = np.zeros((n, n), np.float32)  # team[i, j]: agent j is in agent i's team
    for members in env.teams.values():
        team[np.ix_(members, members)] = 1.0
    policy = random_policy(env)
    steps = 24

    def states_along_an_episode(key):
        _, timesteps, _, states = _episode(env, params, key, steps, with_states=True)
        return states, timesteps

    def outcomes(state, ts, key):
        k_act, k_step = jax.random.split(key)
        joint, _ = policy(k_act, ts, ())

        def one(agent, action):
            _, out = env.step(k_step, state, joint.at[agent].set(action), params)
            return out.reward, out.info["invalid_actions"]

        per_action = jax.vmap(one, in_axes=(None, 0))
        return jax.vmap(per_action, in_axes=(0, None))(jnp.arange(n), candidates)

    @jax.jit
    def probe(key):
        k_states, k_probe = jax.random.split(key)
        states, timesteps = jax.vmap(states_along_an_episode)(jax.random.split(k_states, 2))
        flat = jax.tree.map(lambda x: x.reshape((x.shape[0] * x.shape[1], *x.shape[2:])),
                            (states, timesteps))
        keys = jax.random.split(k_probe, 2 * steps)
        return jax.vmap(outcomes)(*flat, keys)  # (S, N, C, N) rewards, (S, N, C) counts

    rewards, counts = (np.asarray(x) for x in probe(jax.random.PRNGKey(0)))
    own = rewards[:, np.arange(n), :, np.arange(n)].transpose(1, 0, 2)  # (S, N, C)
    team_reward = np.einsum("ij,sicj->sic", team, rewards)
    for got in (own, team_reward):
        best_valid = got[..., :a].max(axis=-1, keepdims=True)
        assert np.all(got[..., a:] <= best_valid + 1e-5), env_id
    np.testing.assert_array_equal(counts[..., :a], 0.0)
    np.testing.assert_array_equal(counts[..., a:], 1.0)
    if env.noop_action is not None:
        noop = rewards[:, :, env.noop_action:env.noop_action + 1]
        np.testing.assert_array_equal(rewards[:, :, a:], np.broadcast_to(noop,
                                                                          rewards[:, :, a:].shape))
