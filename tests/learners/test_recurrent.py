"""Recurrent (GRU) agents: the recurrent core (``networks.GroupedRecurrent``), carries reset at
episode starts, sequence minibatches, and recurrent MAPPO trained, replayed, vmapped, resumed
and played (``recurrent=True``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxmarl_coop import checkpoints
from jaxmarl_coop.envs import Policy, make
from jaxmarl_coop.envs.core import Env, TimeStep
from jaxmarl_coop.learners import actor_critic as ac
from jaxmarl_coop.learners.base import stack_hyperparams
from jaxmarl_coop.learners.evaluation import evaluate
from jaxmarl_coop.learners.networks import GroupedRecurrent, RecurrentMLP


def _net(groups=(0, 0, 0), with_ids=True) -> GroupedRecurrent:
    return GroupedRecurrent(RecurrentMLP((16,), 8, 5), np.asarray(groups), with_ids)


@pytest.mark.parametrize("groups", [(0, 0, 0), (0, 1, 2)])
def test_stepping_equals_the_sequence_replay_and_a_start_zeroes_exactly_its_env(groups):
    net = _net(groups)
    obs = jax.random.normal(jax.random.PRNGKey(0), (6, 4, 3, 7))
    start = jnp.zeros((6, 4), bool).at[3, 1].set(True).at[0].set(True)
    params = net.init(jax.random.PRNGKey(1), obs[0])
    h_end, outs = jax.jit(net.sequence)(params, net.carry((4,)) + 1.0, obs, start)
    h, stepped, step = net.carry((4,)) + 1.0, [], jax.jit(net.step)
    for t in range(6):
        h, out = step(params, h, obs[t], start[t])
        stepped.append(out)
    np.testing.assert_allclose(np.stack(stepped), outs, atol=1e-5)
    np.testing.assert_allclose(h, h_end, atol=1e-5)
    # at t = 3 only env 1 restarts: its output is a fresh carry's, env 0's is not
    h2, _ = jax.jit(net.sequence)(params, net.carry((4,)), obs[:3], start[:3])
    _, fresh = step(params, net.carry((4,)), obs[3], jnp.zeros(4, bool))
    _, kept = step(params, h2, obs[3], jnp.zeros(4, bool))
    np.testing.assert_allclose(outs[3, 1], fresh[1], atol=1e-5)
    np.testing.assert_allclose(outs[3, 0], kept[0], atol=1e-5)
    assert np.abs(np.asarray(outs[3, 0] - fresh[0])).max() > 1e-4


def test_with_the_carry_zeroed_at_every_step_the_policy_is_feed_forward():
    """Restarting the memory at every step leaves a function of the current observation:
    the whole sequence's outputs equal one batched application with a zero carry."""
    net = _net()
    obs = jax.random.normal(jax.random.PRNGKey(2), (5, 2, 3, 7))
    params = net.init(jax.random.PRNGKey(3), obs[0])
    _, outs = net.sequence(params, jax.random.normal(jax.random.PRNGKey(4), (2, 3, 8)), obs,
                           jnp.ones((5, 2), bool))
    _, batched = net.step(params, net.carry((5, 2)), obs, jnp.zeros((5, 2), bool))
    np.testing.assert_allclose(outs, batched, atol=1e-5)


def test_sequence_minibatches_hold_every_env_once_with_its_own_starting_state():
    t, b, m = 5, 8, 4
    env_id = jnp.broadcast_to(jnp.arange(b, dtype=jnp.float32), (t, b))
    seqs = {"obs": env_id[..., None, None] + jnp.zeros((t, b, 3, 2)),
            "time": jnp.broadcast_to(jnp.arange(t, dtype=jnp.float32)[:, None], (t, b))}
    starts = {"h0_actor": jnp.arange(b, dtype=jnp.float32)[:, None, None] + jnp.zeros((b, 3, 4))}
    mb = ac.sequence_minibatches(jax.random.PRNGKey(0), seqs, starts, m)
    assert mb["obs"].shape == (m, t, b // m, 3, 2) and mb["h0_actor"].shape == (m, b // m, 3, 4)
    seen = np.asarray(mb["obs"][:, 0, :, 0, 0]).ravel()
    assert sorted(seen) == list(range(b)) and list(seen) != list(range(b))  # shuffled, once
    for i in range(m):
        ids = np.asarray(mb["obs"][i, :, :, 0, 0])
        assert (ids == ids[0]).all()  # a whole sequence per env, in time order
        np.testing.assert_array_equal(np.asarray(mb["time"][i]),
                                      np.broadcast_to(np.arange(t)[:, None], (t, b // m)))
        np.testing.assert_array_equal(np.asarray(mb["h0_actor"][i, :, 0, 0]), ids[0])


@struct.dataclass
class EndsParams:
    max_steps: int = 4


@struct.dataclass
class EndsState:
    t: jax.Array


class Ends(Env[EndsState, EndsParams]):
    """A toy with both kinds of episode end and nothing to see: every observation is the same,
    so whatever differs between steps comes from the agents' memory. An episode terminates when
    agent 0 plays action 0 and is truncated after ``max_steps`` steps."""

    def __init__(self) -> None:
        self.num_agents, self.num_actions, self.obs_dim, self.state_dim = 2, 3, 2, 2
        self.agent_names = ("agent_0", "agent_1")
        self.teams = {"agents": (0, 1)}

    def default_params(self) -> EndsParams:
        return EndsParams()

    def _timestep(self, t: jax.Array, terminated: jax.Array, params: EndsParams) -> TimeStep:
        return TimeStep(jnp.ones((2, 2)), self.all_legal_mask(), jnp.ones(2),
                        jnp.ones(2) * terminated, terminated,
                        jnp.logical_and(t >= params.max_steps, ~terminated), {})

    def reset_env(self, key: jax.Array, params: EndsParams) -> tuple[EndsState, TimeStep]:
        t = jnp.zeros((), jnp.int32)
        return EndsState(t), self._timestep(t, jnp.zeros((), bool), params)

    def step_env(self, key: jax.Array, state: EndsState, actions: jax.Array,
                 params: EndsParams) -> tuple[EndsState, TimeStep]:
        t = state.t + 1
        return EndsState(t), self._timestep(t, actions[0] == 0, params)


RECURRENT = {"recurrent": True, "rnn_hidden": 8, "hidden": (8,), "num_envs": 4,
             "rollout_length": 8, "num_epochs": 1, "num_minibatches": 1}


def test_the_rollout_restarts_memory_exactly_at_both_kinds_of_episode_start(monkeypatch):
    env = Ends()
    config = ac.ActorCriticConfig(num_updates=2, **RECURRENT)
    learner = ac.make_learner(config, env, env.default_params())
    captured = []

    def recording(*args, **kwargs):
        out = ac.collect.__wrapped__(*args, **kwargs)
        captured.append(out[1])
        return out

    recording.__wrapped__ = ac.collect
    monkeypatch.setattr(ac, "collect", recording)

    def two_updates(state):  # collect runs at the top of update: its outputs can leave jit
        for _ in range(2):
            state, _ = learner.update(state)
        return captured[-2:]

    state = learner.init(jax.random.PRNGKey(0), config.hyperparams())
    first_ts = state.rollout.timestep
    rollouts = jax.tree.map(np.asarray, jax.jit(two_updates)(state))
    done = np.concatenate([tr.terminated | tr.truncated for tr in rollouts])
    start = np.concatenate([tr.extras["start"] for tr in rollouts])
    assert done.any() and all(tr.terminated.any() and tr.truncated.any() for tr in rollouts)
    np.testing.assert_array_equal(start[0], np.asarray(first_ts.done))
    np.testing.assert_array_equal(start[1:], done[:-1])
    # the same observation everywhere: the critic's value at an episode start is the value of
    # a fresh memory, whatever came before; one step later the memory has moved on
    for i, tr in enumerate(rollouts):  # (each rollout has its own parameters)
        value, starts = tr.extras["value"], tr.extras["start"].copy()  # (T, B, N), (T, B)
        if i == 0:
            starts[0] = True  # the run begins with a zero carry
        fresh = value[starts][0]
        np.testing.assert_allclose(value[starts], np.broadcast_to(fresh, value[starts].shape),
                                   atol=1e-6)
        later = np.zeros_like(starts)
        later[1:] = ~starts[1:] & starts[:-1]
        assert later.any() and np.abs(value[later] - fresh).min() > 1e-7


@pytest.fixture(scope="module")
def tag_recurrent():
    """Recurrent MAPPO on tag (two teams: per-team parameters and carries), 2 seeds vmapped."""
    env, params = make("tag-v3", max_steps=5)
    config = ac.ActorCriticConfig(num_updates=3, **{**RECURRENT, "num_minibatches": 2})
    learner = ac.make_learner(config, env, params)
    hp = config.hyperparams()
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    states, metrics = jax.jit(jax.vmap(learner.train))(keys, stack_hyperparams(hp, 2))
    return env, params, config, learner, keys, states, metrics


@pytest.mark.slow  # a second recurrent learner compile: in the full suite only
def test_replayed_sequences_reproduce_what_the_agents_did():
    """With one minibatch and one epoch, each update's gradient step runs at the rollout's
    parameters: the replayed sequences (stored starting states, resets at episode starts
    of both kinds) must give back the rollout's log-probabilities and values."""
    env = Ends()
    config = ac.ActorCriticConfig(num_updates=3, **RECURRENT)
    _, metrics = jax.jit(ac.make_learner(config, env, env.default_params()).train)(
        jax.random.PRNGKey(1), config.hyperparams())
    assert float(jnp.max(metrics["value_change"])) < 1e-5
    assert float(jnp.max(jnp.abs(metrics["approx_kl"]))) < 1e-6
    assert float(jnp.max(metrics["clip_fraction"])) == 0.0


@pytest.mark.slow  # a second recurrent learner compile: the full suite only
def test_a_vmapped_seed_equals_that_seed_alone_and_resumes_exactly(tag_recurrent, tmp_path):
    env, _, config, learner, keys, states, metrics = tag_recurrent
    assert states.rollout.carry["actor"].shape == (2, config.num_envs, env.num_agents, 8)
    hp = config.hyperparams()
    alone, alone_metrics = jax.jit(learner.train)(keys[1], hp)
    for got, want in zip(jax.tree.leaves(jax.tree.map(lambda x: x[1], (states, metrics))),
                         jax.tree.leaves((alone, alone_metrics)), strict=True):
        np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                                   rtol=1e-5, atol=1e-6)
    # stop after one update, checkpoint (carries included), restore, finish: the same bits
    init, update = jax.jit(learner.init), jax.jit(learner.update)
    state, _ = update(init(keys[1], hp))
    checkpoints.save(tmp_path / "ckpt", 1, state, {})
    state, _ = checkpoints.restore(tmp_path / "ckpt", jax.eval_shape(lambda: state))
    for _ in range(2):
        state, _ = update(state)
    straight = init(keys[1], hp)
    for _ in range(3):
        straight, _ = update(straight)
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(straight), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.slow  # a second recurrent learner compile: the full suite only
def test_a_trained_recurrent_team_plays_with_its_memory(tag_recurrent):
    env, params, config, *_, states, _ = tag_recurrent
    trained = jax.tree.map(lambda x: x[0], ac.policy_params(states))
    policy = ac.make_policy(config, env, trained)
    assert isinstance(policy, Policy) and policy.recurrent
    assert policy.initial_carry().shape == (env.num_agents, 8)
    assert policy.initial_carry(3).shape == (3, env.num_agents, 8)
    _, ts = env.reset(jax.random.PRNGKey(0), params)
    actions, carry = jax.jit(policy)(jax.random.PRNGKey(1), ts, policy.initial_carry())
    assert actions.shape == (env.num_agents,) and carry.shape == (env.num_agents, 8)
    assert float(jnp.abs(carry).max()) > 0.0
    figures = jax.jit(lambda k: evaluate(env, params, policy, k, 4))(jax.random.PRNGKey(2))
    assert np.all(np.isfinite(np.asarray(figures["return"])))


@pytest.mark.parametrize(("overrides", "match"), [
    ({"num_envs": 6, "num_minibatches": 4}, r"num_minibatches \(4\) must divide num_envs \(6\)"),
    ({"rnn_hidden": 0}, "rnn_hidden"),
])
def test_bad_recurrent_configs_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        ac.ActorCriticConfig(**{**RECURRENT, **overrides})


@struct.dataclass
class RecallState:
    t: jax.Array
    cue: jax.Array


class Recall(Env[RecallState, EndsParams]):
    """One agent sees a cue (one of two) at the first step only and earns 1 at every later
    step for playing it: remembering scores 3 per episode of 4 steps, guessing 1.5."""

    def __init__(self) -> None:
        self.num_agents, self.num_actions, self.obs_dim, self.state_dim = 1, 2, 3, 3
        self.agent_names = ("agent_0",)
        self.teams = {"agents": (0,)}

    def default_params(self) -> EndsParams:
        return EndsParams()

    def _timestep(self, s: RecallState, reward: jax.Array, params: EndsParams) -> TimeStep:
        time = (s.t / params.max_steps)[None]
        shown = jnp.where(s.t == 0, jax.nn.one_hot(s.cue, 2), 0.0)
        return TimeStep(jnp.concatenate([shown, time])[None], self.all_legal_mask(),
                        jnp.concatenate([jax.nn.one_hot(s.cue, 2), time]), reward,
                        jnp.zeros((), bool), s.t >= params.max_steps, {})

    def reset_env(self, key: jax.Array, params: EndsParams) -> tuple[RecallState, TimeStep]:
        s = RecallState(jnp.zeros((), jnp.int32), jax.random.randint(key, (), 0, 2))
        return s, self._timestep(s, jnp.zeros(1), params)

    def step_env(self, key: jax.Array, s: RecallState, actions: jax.Array,
                 params: EndsParams) -> tuple[RecallState, TimeStep]:
        reward = jnp.where(s.t >= 1, (actions[0] == s.cue).astype(jnp.float32), 0.0)[None]
        s = s.replace(t=s.t + 1)
        return s, self._timestep(s, reward, params)


@pytest.mark.slow  # a learning check: in the full suite only
def test_recurrent_mappo_learns_to_recall_a_cue_a_feed_forward_one_cannot():
    env = Recall()
    final = {}
    for recurrent in (True, False):
        config = ac.ActorCriticConfig(num_envs=8, rollout_length=16, num_updates=150,
                                      hidden=(16,), rnn_hidden=16, recurrent=recurrent,
                                      num_minibatches=2)
        learner = ac.make_learner(config, env, env.default_params())
        _, metrics = jax.jit(jax.vmap(learner.train, in_axes=(0, None)))(
            jax.random.split(jax.random.PRNGKey(0), 2), config.hyperparams(lr=3e-3))
        final[recurrent] = np.asarray(metrics["episode_return"])[:, -10:].mean(axis=1)
    assert (final[True] > 2.8).all(), final  # both seeds remember (3 is perfect)
    assert (final[False] < 2.0).all(), final  # without memory: guessing, 1.5 expected
