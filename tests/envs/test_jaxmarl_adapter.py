"""``jaxmarl:NAME``: JaxMARL's environments under our contract (``envs/jaxmarl.py``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("jaxmarl")

from test_conformance import _check_timestep, _episode

from jaxmarl_coop.envs import AutoReset, make, random_policy
from jaxmarl_coop.envs.registry import known

SPREAD = "jaxmarl:MPE_simple_spread_v3"
SMAX = "jaxmarl:HeuristicEnemySMAX"


@pytest.mark.parametrize(("env_id", "kwargs", "steps"), [
    (SPREAD, {}, 26), ("jaxmarl:MPE_simple_tag_v3", {}, 26),
    ("jaxmarl:MPE_simple_speaker_listener_v4", {}, 26), (SMAX, {"scenario": "3m"}, 40),
    (SMAX, {"scenario": "2s3z"}, 40), ("jaxmarl:overcooked", {"layout": "cramped_room"}, 30),
    ("jaxmarl:hanabi", {}, 4), ("jaxmarl:coin_game", {}, 30)],
    ids=["spread", "tag", "speaker_listener", "smax_3m", "smax_2s3z", "overcooked", "hanabi",
         "coin_game"])
def test_the_contract_under_jit_and_vmap(env_id, kwargs, steps):
    env, params = make(env_id, **kwargs)
    assert env.name == env_id and known(env_id)
    assert sorted(i for team in env.teams.values() for i in team) == list(range(env.num_agents))
    run = jax.jit(lambda key: _episode(env, params, key, steps))
    ts0, traj, actions = run(jax.random.PRNGKey(0))
    _check_timestep(env, ts0)
    _check_timestep(env, traj, batch=(steps,))
    assert set(ts0.info) == set(traj.info)
    np.testing.assert_array_equal(np.asarray(traj.info["invalid_actions"]), 0.0)
    # random legal actions: every action taken was allowed by the mask it was drawn from
    masks = np.concatenate([np.asarray(ts0.action_mask)[None],
                            np.asarray(traj.action_mask)[:-1]])
    assert np.take_along_axis(masks, np.asarray(actions)[..., None], -1).all()
    # an episode ends once: terminated and truncated never both, nothing at reset
    ends = np.asarray(traj.terminated) | np.asarray(traj.truncated)
    assert not np.any(np.asarray(traj.terminated) & np.asarray(traj.truncated))
    assert not ts0.terminated and not ts0.truncated
    # the same key the same bits; a vmapped lane equals that key alone
    again = run(jax.random.PRNGKey(0))
    for x, y in zip(jax.tree.leaves((ts0, traj)), jax.tree.leaves(again[:2]), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    batched = jax.jit(jax.vmap(lambda key: _episode(env, params, key, steps)))(keys)
    for x, y in zip(jax.tree.leaves(run(keys[1])), jax.tree.leaves(batched), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y)[1], rtol=1e-6, atol=1e-6)
    if env_id.startswith("jaxmarl:MPE"):  # only a time limit: the 26th step truncates
        np.testing.assert_array_equal(ends, np.arange(1, steps + 1) == 26)
        assert not np.any(np.asarray(traj.terminated))


def test_padding_and_masks_follow_each_agent_s_own_spaces():
    env, params = make("jaxmarl:MPE_simple_speaker_listener_v4")
    inner = env.jaxmarl_env
    widths = [int(np.prod(inner.observation_space(a).shape)) for a in inner.agents]
    counts = [int(inner.action_space(a).n) for a in inner.agents]
    assert [env.agent_obs_dim(a) for a in inner.agents] == widths == [3, 11]
    assert env.obs_dim == 11 and env.num_actions == max(counts) == 5 and counts == [3, 5]
    assert env.agent_action_space("speaker_0").n == 3
    obs, _ = inner.reset(jax.random.PRNGKey(0))
    _, ts = env.reset(jax.random.PRNGKey(0), params)
    np.testing.assert_array_equal(np.asarray(ts.obs[0, :3]), np.asarray(obs["speaker_0"]))
    np.testing.assert_array_equal(np.asarray(ts.obs[0, 3:]), 0.0)  # padding
    np.testing.assert_array_equal(np.asarray(ts.action_mask),
                                  [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    # the global state of an env without a world state: the padded observations
    np.testing.assert_array_equal(np.asarray(ts.global_state), np.asarray(ts.obs).reshape(-1))
    # an action past the speaker's own 3 is invalid: it acts as the no-op, and is counted
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    key = jax.random.PRNGKey(1)
    _, ts_past = env.step(key, state, jnp.array([4, 2]), params)
    _, ts_noop = env.step(key, state, jnp.array([0, 2]), params)
    assert float(ts_past.info["invalid_actions"]) == 1.0
    assert float(ts_noop.info["invalid_actions"]) == 0.0
    np.testing.assert_array_equal(np.asarray(ts_past.obs), np.asarray(ts_noop.obs))


@pytest.mark.parametrize(("env_id", "kwargs", "steps"), [
    (SPREAD, {}, 60), (SMAX, {"scenario": "3m"}, 110), ("jaxmarl:coin_game", {}, 110)],
    ids=["spread", "smax_3m", "coin_game"])
def test_adapted_envs_step_exactly_like_jaxmarl_s_own(env_id, kwargs, steps):
    """Under our AutoReset (which splits its key as JaxMARL's auto-resetting ``step`` does),
    past an episode's end: the same observations, rewards and ends, step for step."""
    env, params = make(env_id, **kwargs)
    inner, names = env.jaxmarl_env, env.agent_names
    wrapped = AutoReset(env)
    policy = random_policy(env)

    def stack(per_agent):
        return jnp.stack([jnp.asarray(per_agent[a], jnp.float32).reshape(-1) for a in names])

    def body(carry, key):
        (ours, ts), theirs = carry
        k_act, k_step = jax.random.split(key)
        actions, _ = policy(k_act, ts, ())
        ours, ts = wrapped.step(k_step, ours, actions, params)
        obs, theirs, rewards, dones, _ = inner.step(
            k_step, theirs, {a: actions[i] for i, a in enumerate(names)})
        return ((ours, ts), theirs), ((ts.obs, ts.reward, ts.done),
                                      (stack(obs), stack(rewards)[:, 0], dones["__all__"]))

    def run(key):
        k0, k1 = jax.random.split(key)
        start = wrapped.reset(k0, params)
        first, theirs = inner.reset(k0)
        return start[1].obs, stack(first), jax.lax.scan(
            body, (start, theirs), jax.random.split(k1, steps))[1]

    first_ours, first_theirs, (mine, other) = jax.jit(run)(jax.random.PRNGKey(3))
    np.testing.assert_array_equal(np.asarray(first_ours), np.asarray(first_theirs))
    # the same computation compiled in two places of one program: equal to float rounding
    for x, y in zip(mine[:2], other[:2], strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mine[2]), np.asarray(other[2]))
    assert np.asarray(mine[2]).sum() >= (2 if env_id == SPREAD else 1)  # past an end


def _idle(env, params, key, steps):
    """``steps`` steps of an SMAX episode in which our allies stand still (action 4)."""
    stop = jnp.full((env.num_agents,), 4, jnp.int32)

    def body(state, key):
        state, ts = env.step(key, state, stop, params)
        return state, ts

    state, _ = env.reset(jax.random.PRNGKey(0), params)
    return jax.jit(lambda k: jax.lax.scan(body, state, jax.random.split(k, steps))[1])(key)


def test_smax_wins_and_losses_terminate_and_the_time_limit_truncates():
    env, params = make(SMAX, scenario="3m")
    traj = _idle(env, params, jax.random.PRNGKey(1), 100)
    end = int(np.argmax(np.asarray(traj.terminated)))
    assert traj.terminated[end] and not traj.truncated[end]  # lost: every ally dead
    assert float(traj.info["allies_alive"][end]) == 0.0 and float(traj.info["won"][end]) == 0
    assert not np.any(np.asarray(traj.truncated[:end]) | np.asarray(traj.terminated[:end]))
    assert np.all(np.asarray(traj.info["allies_alive"][:end]) > 0)

    # the outcome is read on an episode's last step (end_metrics), not averaged over it
    from jaxmarl_coop.envs import feed_forward
    from jaxmarl_coop.learners.evaluation import evaluate

    idle = feed_forward(lambda key, ts: jnp.full((env.num_agents,), 4, jnp.int32))
    figures = jax.jit(lambda k: evaluate(env, params, idle, k, 2))(jax.random.PRNGKey(2))
    np.testing.assert_array_equal(np.asarray(figures["won"]), 0.0)
    np.testing.assert_array_equal(np.asarray(figures["allies_alive"]), 0.0)
    assert np.all(np.asarray(figures["enemies_alive"]) > 0)
    assert np.all(np.asarray(figures["completed"]))

    env, params = make(SMAX, scenario="3m", max_steps=5)  # max_steps + 1 steps, as MPE's
    traj = _idle(env, params, jax.random.PRNGKey(1), 6)
    np.testing.assert_array_equal(np.asarray(traj.truncated), [0, 0, 0, 0, 0, 1])
    assert not np.any(np.asarray(traj.terminated))
    assert float(traj.info["allies_alive"][-1]) == 3.0


@pytest.mark.parametrize(("env_id", "kwargs", "match"), [
    ("jaxmarl:", {}, "a JaxMARL env id looks like 'jaxmarl:NAME'"),
    ("jaxmarl:NoSuchEnv", {}, "unknown JaxMARL env 'NoSuchEnv'"),
    (SPREAD, {"bogus_option": 1}, "jaxmarl:MPE_simple_spread_v3 has no option 'bogus_option'; "
     "its options: action_spaces, action_type, .*local_ratio"),
    (SMAX, {"scenario": "3m", "enemy_shots": True}, r"jaxmarl:HeuristicEnemySMAX refused its "
     r"options \['enemy_shots', 'scenario'\]: .*unexpected keyword argument 'enemy_shots'"),
    ("jaxmarl:storm", {}, "InTheGrid is not adapted yet; adapted families: MPE"),
    ("jaxmarl:overcooked", {"layout": "kitchen"}, "unknown Overcooked layout 'kitchen'; "
     "layouts: cramped_room"),
    (SPREAD, {"action_type": "Continuous"}, "only discrete action spaces are adapted"),
])
def test_bad_jaxmarl_ids_and_options_are_refused(env_id, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(env_id, **kwargs)


@pytest.mark.parametrize(("env_id", "kwargs"), [
    ("jaxmarl:MPE_simple_speaker_listener_v4", {}), (SMAX, {"scenario": "3m"})],
    ids=["speaker_listener", "smax_3m"])
def test_pettingzoo_plays_an_adapted_env(env_id, kwargs):
    from pettingzoo.test import parallel_api_test

    from jaxmarl_coop.envs.pettingzoo import parallel_env

    env = parallel_env(env_id, seed=0, **kwargs)
    parallel_api_test(env, num_cycles=30)
    # each agent's own spaces, unpadded
    assert env.action_space(env.possible_agents[0]).n == (3 if "speaker" in env_id else 8)


def test_a_run_trains_evaluates_and_reloads_on_an_adapted_env(tmp_path):
    from jaxmarl_coop import RunConfig, load_policy, run
    from jaxmarl_coop.learners.evaluation import evaluate

    config = RunConfig(learner="ippo", env=SPREAD, seeds=2, env_steps=200, chunks=1,
                       eval_every=0, eval_episodes=3, gif=False,
                       config=("num_envs=2", "rollout_length=26", "num_minibatches=2",
                               "hidden=16"))
    result = run(config, tmp_path / "run", progress=False)
    assert result.evaluation["final"]["return"]["mean"] < 0  # spread pays minus distances
    policy, env, params = load_policy(result.path)
    assert env.name == SPREAD
    figures = jax.jit(lambda k: evaluate(env, params, policy, k, 2))(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(figures["length"]), 26)  # its episode limit


def _random_run(env, params, key, steps):
    """Terminated, truncated and the masks of ``steps`` random legal steps from a reset."""
    return jax.jit(lambda k: _episode(env, params, k, steps))(key)[1]


@pytest.mark.parametrize(("env_id", "kwargs", "limit"), [
    ("jaxmarl:overcooked", {"layout": "cramped_room", "max_steps": 6}, 6),
    ("jaxmarl:coin_game", {"num_inner_steps": 3, "num_outer_steps": 2}, 6)],
    ids=["overcooked", "coin_game"])
def test_time_limited_families_truncate_at_their_limit(env_id, kwargs, limit):
    env, params = make(env_id, **kwargs)
    assert env.max_episode_steps == limit
    traj = _random_run(env, params, jax.random.PRNGKey(0), limit)
    np.testing.assert_array_equal(np.asarray(traj.truncated), np.arange(1, limit + 1) == limit)
    assert not np.any(np.asarray(traj.terminated))


def test_a_hanabi_game_terminates_and_only_the_player_to_move_has_choices():
    env, params = make("jaxmarl:hanabi")
    assert env.noop_action == env.num_actions - 1 == 20
    traj = _random_run(env, params, jax.random.PRNGKey(0), env.max_episode_steps)
    end = int(np.argmax(np.asarray(traj.terminated)))
    assert traj.terminated[end] and not np.any(np.asarray(traj.truncated))  # lives ran out
    assert end + 1 <= env.max_episode_steps
    masks = np.asarray(traj.action_mask[:end]).sum(-1)  # (steps, players)
    # one player moves at a time; the others may only pass (the no-op)
    assert np.all(np.sort(masks, axis=-1)[:, 0] == 1) and np.all(masks.max(-1) > 1)
    assert np.all(np.asarray(traj.action_mask[:end])[masks == 1][:, 20])


def test_the_coin_game_counts_each_step_s_own_and_other_coins():
    """``info`` holds the coins picked up per step, a coin of the picker's own colour or the
    other's; over an episode they add up to JaxMARL's own counters (the own-coin rate of a
    team is then ``own / (own + other)`` of ``evaluate``'s episode means)."""
    env, params = make("jaxmarl:coin_game")
    _, traj, _, states = jax.jit(lambda k: _episode(env, params, k, 100, with_states=True))(
        jax.random.PRNGKey(0))
    last = jax.tree.map(lambda x: x[-1], states.inner)
    own = float(np.sum(last.red_coop) + np.sum(last.blue_coop))
    other = float(np.sum(last.red_defect) + np.sum(last.blue_defect))
    assert float(np.sum(traj.info["own_coins"])) == own > 0
    assert float(np.sum(traj.info["other_coins"])) == other > 0
    assert set(np.unique(np.asarray(traj.info["own_coins"]))) <= {0.0, 1.0, 2.0}
