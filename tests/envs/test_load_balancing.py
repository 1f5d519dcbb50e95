"""load-balancing-v1: queue dynamics, stale observations, reference policies, contract."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmarl_coop.envs import make, random_policy, wrap
from jaxmarl_coop.envs.load_balancing import (
    LoadBalancing,
    LoadBalancingParams,
    coordinated_dispatch_policy,
    join_shortest_observed_queue_policy,
    join_shortest_queue_policy,
    round_robin_policy,
)


def _small():
    """3 dispatchers, 2 servers of speeds 1 and 3, capacity 10, no new jobs."""
    env = LoadBalancing(num_dispatchers=3, num_servers=2)
    params = LoadBalancingParams(service_rate=(1.0, 3.0), queue_capacity=10.0,
                                 arrival_prob=0.0)
    return env, params


def _hand_made(env, params, queue, job_size):
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    return state.replace(queue=jnp.asarray(queue, jnp.float32),
                         job_size=jnp.asarray(job_size, jnp.float32))


def test_admission_in_dispatcher_order_service_and_reward():
    env, params = _small()
    step = jax.jit(env.step)
    actions = jnp.array([0, 0, 1], jnp.int32)  # dispatcher 2 has no job: its action is ignored

    # job 3 does not fit on server 0 (8 + 3 > 10) and is dropped; job 2 then fits exactly
    state = _hand_made(env, params, [8.0, 2.0], [3.0, 2.0, 0.0])
    assert state.last_server.tolist() == [1, 0, 1]  # (i - 1) mod M before any job
    new, ts = step(jax.random.PRNGKey(1), state, actions, params)
    np.testing.assert_array_equal(np.asarray(new.queue), [9.0, 0.0])  # 10 - 1, 2 - min(2, 3)
    np.testing.assert_array_equal(np.asarray(new.served), [1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(new.dropped), [True, False, False])
    np.testing.assert_array_equal(np.asarray(new.last_server), [0, 0, 1])
    np.testing.assert_array_equal(np.asarray(new.queue_history[0]), [8.0, 2.0])
    np.testing.assert_array_equal(np.asarray(new.job_size), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(np.asarray(ts.reward), [-9.0 / 4.0 - 1.0] * 3, rtol=1e-6)
    info = {k: float(v) for k, v in ts.info.items()}
    assert info == {"mean_queue": 4.5, "max_queue": 9.0, "dropped": 1.0, "accepted": 1.0,
                    "throughput": 3.0, "invalid_actions": 0.0}
    assert int(new.step) == 1 and not ts.truncated and not ts.terminated

    # the same jobs in the other order: the first one fits and the second is dropped
    new, ts = step(jax.random.PRNGKey(1), _hand_made(env, params, [8.0, 2.0], [2.0, 3.0, 0.0]),
                   actions, params)
    np.testing.assert_array_equal(np.asarray(new.queue), [9.0, 0.0])
    np.testing.assert_array_equal(np.asarray(new.dropped), [False, True, False])

    # drop_penalty scales the drop term only; without drops the reward is the backlog term
    state = _hand_made(env, params, [0.0, 4.0], [1.0, 2.0, 5.0])
    new, ts = step(jax.random.PRNGKey(1), state, jnp.array([1, 1, 0], jnp.int32),
                   params.replace(drop_penalty=7.0))
    np.testing.assert_array_equal(np.asarray(new.queue), [4.0, 4.0])  # 5 - 1; 4 + 3 - 3
    np.testing.assert_allclose(np.asarray(ts.reward), [-8.0 / 4.0] * 3, rtol=1e-6)
    assert float(ts.info["accepted"]) == 3.0 and float(ts.info["throughput"]) == 4.0


def test_new_jobs_follow_arrival_prob_and_size_range():
    env = LoadBalancing(num_dispatchers=4, num_servers=2)
    params = env.default_params().replace(arrival_prob=0.3, max_job_size=4)
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    sizes = np.asarray(jax.jit(jax.vmap(lambda k: env.reset(k, params)[0].job_size))(keys))
    arrived = sizes[sizes > 0]
    assert abs(arrived.size / sizes.size - 0.3) < 0.02
    assert set(np.unique(arrived).tolist()) == {1.0, 2.0, 3.0, 4.0}
    assert abs(arrived.mean() - 2.5) < 0.05
    none = env.reset(keys[0], params.replace(arrival_prob=0.0))[0].job_size
    assert not np.any(np.asarray(none))


def _trajectory(env, params, key, steps, policy=None):
    policy = random_policy(env) if policy is None else policy

    def body(carry, key):
        state, ts = carry
        k_act, k_step = jax.random.split(key)
        actions, _ = policy(k_act, ts, ())
        state, ts = env.step(k_step, state, actions, params)
        return (state, ts), (ts, actions)

    k0, k1 = jax.random.split(key)
    carry = env.reset(k0, params)
    _, (traj, actions) = jax.lax.scan(body, carry, jax.random.split(k1, steps))
    return carry[1], traj, actions


def test_observed_queues_are_info_delay_steps_old():
    env = LoadBalancing()
    params = env.default_params()
    m, steps = env.num_servers, 30
    delays = jnp.array([0, 1, 3, 8, 20])  # 20 > max_delay = 8 acts as 8
    in_axes = jax.tree.map(lambda _: None, params).replace(info_delay=0)
    run = jax.jit(jax.vmap(lambda p: _trajectory(env, p, jax.random.PRNGKey(4), steps)[1],
                           in_axes=(in_axes,)))
    traj = run(params.replace(info_delay=delays))
    true = np.asarray(traj.global_state[0, :, :m])  # the delay does not change the dynamics
    assert np.ptp(true) > 0
    for lane, delay in enumerate([0, 1, 3, 8, 8]):
        np.testing.assert_array_equal(np.asarray(traj.global_state[lane, :, :m]), true)
        seen = np.asarray(traj.obs[lane, :, :, :m])  # (steps, K, M)
        # every dispatcher sees the same view; the queues were empty before the first step
        past = np.concatenate([np.zeros((delay + 1, m)), true])[1:steps + 1]
        for i in range(env.num_agents):
            np.testing.assert_array_equal(seen[:, i], past, err_msg=f"delay {delay}")


def test_round_robin_cycles_each_dispatchers_jobs_through_the_servers():
    env = LoadBalancing(num_dispatchers=3, num_servers=4)
    params = env.default_params().replace(arrival_prob=1.0)
    _, _, actions = jax.jit(lambda k: _trajectory(env, params, k, 9, round_robin_policy(env))
                            )(jax.random.PRNGKey(0))
    expected = (np.arange(3)[None, :] + np.arange(9)[:, None]) % 4
    np.testing.assert_array_equal(np.asarray(actions), expected)
    # a step without a job does not advance the dispatcher's turn
    state, ts = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(job_size=jnp.array([0.0, 2.0, 2.0]))
    state, ts = env.step(jax.random.PRNGKey(1), state, jnp.array([3, 1, 2], jnp.int32), params)
    np.testing.assert_array_equal(np.asarray(round_robin_policy(env)(None, ts, ())[0]), [0, 2, 3])


def test_jsq_herds_where_coordinated_dispatch_spreads():
    env = LoadBalancing(num_dispatchers=3, num_servers=4)  # speeds 1, 5/3, 7/3, 3
    params = env.default_params()
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(job_size=jnp.array([3.0, 3.0, 3.0]))
    ts = env._timestep(state, jnp.zeros(3), env._reward(state, params)[1], params)
    # all three pick the fastest empty server; in turn: 3/3 < 3/(7/3) < 6/3 -> 3, 2, then 1
    np.testing.assert_array_equal(np.asarray(join_shortest_queue_policy(env)(None, ts, ())[0]),
                                  [3, 3, 3])
    np.testing.assert_array_equal(np.asarray(coordinated_dispatch_policy(env)(None, ts, ())[0]),
                                  [3, 2, 1])
    # a job skips servers it does not fit in (q + s > C = 20) even where it would finish
    # first: size 3 -> server 1 (18 / (5/3)), not 3 (21 / 3); size 2 still fits on 3 (20 / 3)
    full = state.replace(queue=jnp.array([15.0, 15.0, 18.0, 18.0]),
                         job_size=jnp.array([3.0, 2.0, 0.0]))
    ts = env._timestep(full, jnp.zeros(3), env._reward(full, params)[1], params)
    np.testing.assert_array_equal(np.asarray(join_shortest_queue_policy(env)(None, ts, ())[0])[:2],
                                  [1, 3])
    # the observed-queue variant uses the stale view: 2 steps ago the queues were empty
    np.testing.assert_array_equal(
        np.asarray(join_shortest_observed_queue_policy(env)(None, ts, ())[0])[:2], [3, 3])


def _evaluate(env, params, policies, episodes=64, key=0):
    """Per policy: the episode means of ``info`` (``episode_*``) over two batches of
    ``episodes``, as ``(first, second)`` dicts; every policy in one jitted program."""
    env = wrap(env)

    def episode(policy, key):
        def body(carry, key):
            state, ts = carry
            k_act, k_step = jax.random.split(key)
            return env.step(k_step, state, policy(k_act, ts, ())[0], params), None

        k0, k1 = jax.random.split(key)
        (_, ts), _ = jax.lax.scan(body, env.reset(k0, params),
                                  jax.random.split(k1, params.max_steps))
        return ts.info

    @jax.jit
    def run(keys):
        return {name: jax.vmap(lambda k, p=policy: episode(p, k))(keys)
                for name, policy in policies.items()}

    infos = run(jax.random.split(jax.random.PRNGKey(key), 2 * episodes))
    out = {}
    for name, info in infos.items():
        assert np.all(np.asarray(info["episode_done"])), name
        out[name] = tuple({k: float(np.mean(np.asarray(v)[half])) for k, v in info.items()
                           if k.startswith("episode_")}
                          for half in (slice(None, episodes), slice(episodes, None)))
    return out


def test_reference_policies_rank_as_documented():
    env = LoadBalancing()
    factories = {"random": random_policy, "round_robin": round_robin_policy,
                 "jsq": join_shortest_queue_policy,
                 "jsoq": join_shortest_observed_queue_policy,
                 "coordinated": coordinated_dispatch_policy}
    halves = _evaluate(env, env.default_params(), {k: f(env) for k, f in factories.items()})
    for first, second in halves.values():  # stable: two batches of 64 episodes agree
        assert abs(first["episode_return"] - second["episode_return"]) < 15.0
    stats = {k: v[0] for k, v in halves.items()}
    ret = {k: v["episode_return"] for k, v in stats.items()}
    # speed-blind routing overloads the slow servers; full information halves the cost;
    # stale information is worse; herding costs JSQ much of what coordination gains
    assert ret["jsq"] > max(ret["random"], ret["round_robin"]) + 120.0
    assert ret["jsq"] > ret["jsoq"] + 50.0 > max(ret["random"], ret["round_robin"]) + 50.0
    assert ret["coordinated"] > ret["jsq"] + 40.0
    assert stats["coordinated"]["episode_dropped"] < 0.01 < stats["random"]["episode_dropped"]
    assert stats["jsq"]["episode_mean_queue"] < 0.6 * stats["random"]["episode_mean_queue"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_dispatchers": 0}, "num_dispatchers"),
    ({"num_servers": 2.5}, "num_servers"),
    ({"max_delay": -1}, "max_delay"),
])
def test_bad_counts_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoadBalancing(**kwargs)


@pytest.mark.parametrize(("field", "value"), [
    ("max_steps", 0), ("arrival_prob", 1.5), ("arrival_prob", float("nan")),
    ("max_job_size", 0), ("queue_capacity", 0.0), ("info_delay", -1), ("drop_penalty", -1.0),
    ("service_rate", (1.0, 0.0, 2.0, 3.0)), ("service_rate", jnp.array([1.0, -2.0, 1.0, 1.0])),
])
def test_bad_params_name_the_value(field, value):
    params = LoadBalancing().default_params()
    with pytest.raises(ValueError, match=field):
        params.replace(**{field: value})


def test_params_that_do_not_fit_the_env_are_clear_errors():
    env = LoadBalancing(num_servers=4, max_delay=3)
    params = env.default_params()
    assert int(params.info_delay) == 2
    with pytest.raises(ValueError, match=r"service_rate must have shape \(4,\)"):
        jax.jit(env.reset)(jax.random.PRNGKey(0), params.replace(service_rate=jnp.ones(3)))
    with pytest.raises(ValueError, match="info_delay"):
        env.reset(jax.random.PRNGKey(0), params.replace(info_delay=4))
    assert LoadBalancing(max_delay=0).default_params().info_delay == 0
    # make refuses them at once rather than at the first reset
    with pytest.raises(ValueError, match=r"info_delay must be .*≤ 8, got 9"):
        make("load-balancing-v1", info_delay=9)
    with pytest.raises(ValueError, match=r"info_delay .*got 4"):
        make("load-balancing-v1", max_delay=3, info_delay=4)
    with pytest.raises(ValueError, match=r"service_rate must have shape \(4,\)"):
        make("load-balancing-v1", service_rate=(1.0, 2.0))
    assert make("load-balancing-v1", max_delay=3, info_delay=3)[1].info_delay == 3


def _check_timestep(env, ts, batch=()):
    n, a = env.num_agents, env.num_actions
    assert ts.obs.shape == (*batch, n, env.obs_dim) and ts.obs.dtype == jnp.float32
    assert ts.action_mask.shape == (*batch, n, a) and ts.action_mask.dtype == jnp.bool_
    assert bool(jnp.all(ts.action_mask))
    assert ts.global_state.shape == (*batch, env.state_dim)
    assert ts.global_state.dtype == jnp.float32
    assert ts.reward.shape == (*batch, n) and ts.reward.dtype == jnp.float32
    assert ts.terminated.shape == batch and ts.terminated.dtype == jnp.bool_
    assert ts.truncated.shape == batch and ts.truncated.dtype == jnp.bool_
    assert set(ts.info) == {"mean_queue", "max_queue", "dropped", "accepted", "throughput",
                            "invalid_actions"}
    for name, value in ts.info.items():
        assert jnp.shape(value) == batch and np.all(np.isfinite(np.asarray(value))), name
    for leaf in (ts.obs, ts.global_state, ts.reward):
        assert np.all(np.isfinite(np.asarray(leaf)))
    # queues and job sizes are in units of the capacity, speeds relative: all in [0, 1]
    assert np.all((np.asarray(ts.obs) >= 0) & (np.asarray(ts.obs) <= 1))
    assert np.all((np.asarray(ts.global_state) >= 0) & (np.asarray(ts.global_state) <= 1))


@pytest.mark.parametrize("kwargs", [{}, {"num_dispatchers": 1, "num_servers": 1, "max_delay": 0}])
def test_contract_under_jit_and_vmap(kwargs):
    env = LoadBalancing(**kwargs)
    params = env.default_params().replace(max_steps=20)
    assert env.agent_names[0] == "dispatcher_0" and len(env.agent_names) == env.num_agents
    assert env.teams == {"dispatchers": tuple(range(env.num_agents))}
    run = jax.jit(lambda key: _trajectory(env, params, key, 20))
    ts0, traj, _ = run(jax.random.PRNGKey(0))
    _check_timestep(env, ts0)
    _check_timestep(env, traj, batch=(20,))
    np.testing.assert_array_equal(np.asarray(traj.truncated), np.arange(1, 21) >= 20)
    assert not np.any(np.asarray(traj.terminated)) and not ts0.truncated
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    batched = jax.jit(jax.vmap(lambda key: _trajectory(env, params, key, 20)))(keys)
    _check_timestep(env, batched[1], batch=(3, 20))
    for x, y in zip(jax.tree.leaves(run(keys[2])), jax.tree.leaves(batched), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y)[2], rtol=1e-6, atol=1e-6)


def test_render_draws_a_frame_that_changes():
    env = LoadBalancing()
    params = env.default_params()
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    first = env.render(state, params, size=96)
    state = state.replace(queue=jnp.array([20.0, 5.0, 0.0, 3.0]),
                          routed_size=jnp.array([2.0, 0.0, 4.0]),
                          dropped=jnp.array([True, False, False]), step=jnp.array(3))
    frame = env.render(state, size=96)
    for f in (first, frame):
        assert isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.shape == (96, 96, 3)
    assert not np.array_equal(first, frame)
    assert env.render(state).shape == (400, 400, 3)
