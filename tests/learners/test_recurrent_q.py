"""Recurrent (GRU) Q-learners: IQL (``dqn``), VDN and QMIX with ``recurrent=True``.

Sequence replay (the buffer's rows, stored hidden states and start flags, sampled runs), the
targets along a sequence against a numpy computation, burn-in steps without loss, and the
learners vmapped, resumed and played."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxmarl_coop import checkpoints
from jaxmarl_coop.envs import Policy
from jaxmarl_coop.envs.core import Env, TimeStep
from jaxmarl_coop.learners import dqn
from jaxmarl_coop.learners import value_decomposition as vd
from jaxmarl_coop.learners.base import stack_hyperparams
from jaxmarl_coop.learners.evaluation import evaluate
from jaxmarl_coop.learners.networks import RecurrentMLP


@struct.dataclass
class StepsParams:
    max_steps: int = 4


@struct.dataclass
class StepsState:
    t: jax.Array
    tag: jax.Array


class Steps(Env[StepsState, StepsParams]):
    """A toy whose observations say where they come from: agent ``i`` sees ``(steps since the
    episode began, the episode's random tag, i)``. Both agents earn 1 when their actions agree;
    an episode terminates when agent 0 plays action 0 and is truncated after ``max_steps``."""

    def __init__(self) -> None:
        self.num_agents, self.num_actions, self.obs_dim, self.state_dim = 2, 3, 3, 2
        self.agent_names = ("agent_0", "agent_1")
        self.teams = {"agents": (0, 1)}

    def default_params(self) -> StepsParams:
        return StepsParams()

    def _timestep(self, state: StepsState, reward: jax.Array, terminated: jax.Array,
                  params: StepsParams) -> TimeStep:
        t = state.t.astype(jnp.float32)
        obs = jnp.stack([jnp.stack([t, state.tag, jnp.float32(i)]) for i in range(2)])
        return TimeStep(obs, self.all_legal_mask(), jnp.stack([t, state.tag]), reward,
                        terminated, jnp.logical_and(state.t >= params.max_steps, ~terminated),
                        {})

    def reset_env(self, key: jax.Array, params: StepsParams) -> tuple[StepsState, TimeStep]:
        state = StepsState(jnp.zeros((), jnp.int32), jax.random.uniform(key))
        return state, self._timestep(state, jnp.zeros(2), jnp.zeros((), bool), params)

    def step_env(self, key: jax.Array, state: StepsState, actions: jax.Array,
                 params: StepsParams) -> tuple[StepsState, TimeStep]:
        state = StepsState(state.t + 1, state.tag)
        reward = jnp.full(2, (actions[0] == actions[1]).astype(jnp.float32))
        return state, self._timestep(state, reward, actions[0] == 0, params)


RECURRENT = {"num_envs": 2, "rollout_length": 4, "num_updates": 3, "buffer_size": 32,
             "batch_size": 4, "learning_starts": 0, "target_update_interval": 2, "n_step": 2,
             "hidden": (8,), "recurrent": True, "rnn_hidden": 8, "sequence_length": 4,
             "burn_in": 1}
_BUILT: dict[str, tuple] = {}


def _build(name: str):
    """``(env, config, learner, jitted init, jitted update)`` of recurrent dqn or qmix on
    ``Steps``, built once per test run (the jitted functions keep their compiled programs)."""
    if name not in _BUILT:
        env = Steps()
        if name == "dqn":
            module, config = dqn, dqn.DQNConfig(**RECURRENT)
        else:
            module, config = vd, vd.VDConfig(**RECURRENT, mixer="qmix", mixer_embed=4,
                                             hypernet_hidden=8)
        learner = module.make_learner(config, env, env.default_params())
        _BUILT[name] = (env, config, learner, jax.jit(learner.init), jax.jit(learner.update))
    return _BUILT[name]


@pytest.fixture(scope="module")
def three_updates():
    """Recurrent dqn: the parameters each of 3 updates acted with, and the state after them."""
    env, config, _, init, update = _build("dqn")
    state = init(jax.random.PRNGKey(5), config.hyperparams())
    acted_with = []
    for _ in range(3):
        acted_with.append(state.params)
        state, metrics = update(state)
    assert bool(metrics["learning"])
    return env, config, acted_with, state


# ---- the replay ---------------------------------------------------------------------------

def test_the_buffer_holds_each_env_s_steps_in_order_with_the_hidden_states_acted_from(
        three_updates):
    env, config, acted_with, state = three_updates
    exp = jax.tree.map(np.asarray, state.buffer.experience)  # (envs, 16, ...), 12 steps in
    steps = 3 * config.rollout_length
    assert exp["h"].shape == (2, 16, 2, 8) and int(state.buffer.current_index) == steps
    assert isinstance(NET.module, RecurrentMLP) and NET.module == dqn.make_network(
        config, env).module  # the learner's network
    done = exp["terminated"] | exp["truncated"]
    assert exp["terminated"][:, :steps].any() and exp["truncated"][:, :steps].any()
    for e in range(2):
        start = exp["start"][e]
        assert not start[0] and np.all(exp["h"][e, 0] == 0.0)  # the run's first step
        np.testing.assert_array_equal(start[1:steps], done[e, :steps - 1])
        counter, tag = exp["obs"][e, :steps, 0, 0], exp["obs"][e, :steps, 0, 1]
        np.testing.assert_array_equal(counter[start[:steps]], 0.0)  # an episode's first obs
        later = ~start[1:steps]
        np.testing.assert_array_equal(counter[1:][later], counter[:-1][later] + 1.0)
        np.testing.assert_array_equal(tag[1:][later], tag[:-1][later])
        np.testing.assert_array_equal(exp["next_obs"][e, :steps - 1][~done[e, :steps - 1]],
                                      exp["obs"][e, 1:steps][~done[e, :steps - 1]])
        for j in range(steps - 1):  # h of step j + 1 = the acting network's state after step j
            h_next, _ = STEP(acted_with[j // config.rollout_length], exp["h"][e, j],
                             exp["obs"][e, j], exp["start"][e, j])
            np.testing.assert_allclose(exp["h"][e, j + 1], h_next, atol=1e-6)
    # a sampled sequence is a run of sequence_length consecutive steps of one env, every field
    # (the stored hidden state it starts from, the start flags) as stored
    buffer, length = dqn.make_buffer(config), config.sequence_length
    start_inside = 0
    for seed in range(3):
        sample = jax.tree.map(np.asarray, buffer.sample(state.buffer,
                                                        jax.random.PRNGKey(seed)).experience)
        assert sample["obs"].shape == (config.batch_size, length, 2, 3)
        for b in range(config.batch_size):
            runs = [(e, s) for e in range(2) for s in range(steps - length + 1)
                    if all(np.array_equal(sample[k][b], exp[k][e, s:s + length]) for k in exp)]
            assert runs, f"sample {b} is no run of one env's steps"
            start_inside += bool(sample["start"][b, 1:].any())
    assert start_inside > 0


# ---- targets along a sequence -------------------------------------------------------------

GAMMA, N_STEP, BURN_IN = 0.9, 3, 2


#: the learners' network on ``Steps`` (shared parameters with agent ids), and its step
#: compiled once for the Python loops below
NET = dqn.make_network(dqn.DQNConfig(**RECURRENT), Steps())
STEP = jax.jit(NET.step)


@functools.cache
def _net_and_params():
    """``NET`` with online and target parameters (initialised by one compiled program: the
    eager orthogonal init takes seconds)."""
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    params = jax.jit(jax.vmap(NET.init, in_axes=(0, None)))(keys, jnp.zeros((2, 3)))
    return NET, jax.tree.map(lambda x: x[0], params), jax.tree.map(lambda x: x[1], params)


def _sequences() -> dict[str, jax.Array]:
    """Two hand-made sequences of 7 steps (2 agents, 3 actions). Sequence 0: an episode ends
    in the burn-in (step 0, truncated) and one terminates at step 3; sequence 1 starts an
    episode at step 0, is truncated at step 4 and terminates at its last step."""
    rng = np.random.default_rng(0)
    b, length, n = 2, 7, 2
    terminated = np.zeros((b, length), bool)
    truncated = np.zeros((b, length), bool)
    truncated[0, 0], terminated[0, 3] = True, True
    truncated[1, 4], terminated[1, 6] = True, True
    start = np.zeros((b, length), bool)
    start[:, 1:] = (terminated | truncated)[:, :-1]
    start[1, 0] = True
    obs = rng.normal(size=(b, length, n, 3)).astype(np.float32)
    next_obs = np.concatenate([obs[:, 1:], rng.normal(size=(b, 1, n, 3))], 1).astype(np.float32)
    ends = terminated | truncated
    next_obs[ends] = rng.normal(size=(int(ends.sum()), n, 3))  # a final obs, not the next one
    mask = rng.random((b, length, n, 3)) < 0.7
    mask[..., 2] = True
    h = np.zeros((b, length, n, 8), np.float32)
    h[:, 0] = rng.normal(size=(b, n, 8))  # the stored state (ignored where start[:, 0])
    return {"obs": jnp.asarray(obs), "action": jnp.asarray(rng.integers(0, 3, (b, length, n)),
                                                           jnp.int32),
            "reward": jnp.asarray(rng.normal(size=(b, length, n)), jnp.float32),
            "terminated": jnp.asarray(terminated), "truncated": jnp.asarray(truncated),
            "next_obs": jnp.asarray(next_obs), "next_action_mask": jnp.asarray(mask),
            "global_state": jnp.asarray(rng.normal(size=(b, length, 4)), jnp.float32),
            "next_global_state": jnp.asarray(rng.normal(size=(b, length, 4)), jnp.float32),
            "start": jnp.asarray(start), "h": jnp.asarray(h)}


def _stepped(net, params, target_params, batch, double):
    """Step by step in Python: the online ``Q`` of every step and the bootstrap value of its
    true next observation (one more step of each network from its state after the step)."""
    seq = jax.tree.map(np.asarray, batch)
    b, length, n = seq["reward"].shape
    step = STEP if net is NET else net.step
    q_all, boot = np.zeros((b, length, n, 3)), np.zeros((b, length, n))
    for i in range(b):
        h = h_target = seq["h"][i, 0]
        for t in range(length):
            h, q_all[i, t] = step(params, h, seq["obs"][i, t], seq["start"][i, t])
            h_target, _ = step(target_params, h_target, seq["obs"][i, t], seq["start"][i, t])
            _, q_target = step(target_params, h_target, seq["next_obs"][i, t], False)
            _, q_online = step(params, h, seq["next_obs"][i, t], False)
            chooser = np.where(seq["next_action_mask"][i, t], q_online if double else q_target,
                               -np.inf)
            boot[i, t] = np.asarray(q_target)[np.arange(n), chooser.argmax(-1)]
    return q_all, boot


def _nstep(reward, terminated, truncated, boot):
    """Numpy: each step's target, its window cut at an episode end and at the sequence end
    (bootstrapping from the last step taken unless it terminated)."""
    b, length = terminated.shape  # (B, L); reward and boot (B, L) or (B, L, N)
    out = np.zeros(reward.shape)
    for i in range(b):
        for t in range(length):
            total = 0.0
            for k in range(N_STEP):
                j = t + k
                total = total + GAMMA**k * reward[i, j]
                if terminated[i, j]:
                    break
                if truncated[i, j] or k == N_STEP - 1 or j == length - 1:
                    total = total + GAMMA**(k + 1) * boot[i, j]
                    break
            out[i, t] = total
    return out


@pytest.mark.parametrize("double", [True, False])
def test_n_step_double_targets_along_a_sequence_match_numpy(double):
    net, params, target_params = _net_and_params()
    batch = _sequences()
    seq = jax.tree.map(np.asarray, batch)
    q, targets = jax.jit(dqn.sequence_td_terms, static_argnums=(0, 5, 6, 7))(
        net.step, params, target_params, batch, GAMMA, N_STEP, BURN_IN, double)
    q_all, boot = _stepped(net, params, target_params, batch, double)
    taken = np.take_along_axis(q_all, seq["action"][..., None], -1)[..., 0]
    np.testing.assert_allclose(q, taken[:, BURN_IN:], atol=1e-5)
    expected = _nstep(seq["reward"], seq["terminated"], seq["truncated"], boot)
    np.testing.assert_allclose(targets, expected[:, BURN_IN:], rtol=1e-5, atol=1e-5)
    # the rule by hand at one step of sequence 1: t = 2 runs to 4 (the truncation): 3 steps
    r, bt = seq["reward"][1], boot[1]
    np.testing.assert_allclose(targets[1, 0], r[2] + GAMMA * r[3] + GAMMA**2 * r[4]
                               + GAMMA**3 * bt[4], rtol=1e-5, atol=1e-6)
    # t = 6 ends the sequence and terminates: its reward alone
    np.testing.assert_allclose(targets[1, 4], r[6], rtol=1e-5, atol=1e-6)


def test_burn_in_steps_carry_no_loss():
    net, params, target_params = _net_and_params()
    batch = _sequences()

    def td_loss(obs, batch):
        q, targets = dqn.sequence_td_terms(net.step, params, target_params,
                                           {**batch, "obs": obs}, GAMMA, N_STEP, BURN_IN, True)
        return dqn.td_loss(q, targets, 1.0)

    loss_and_grad = jax.jit(jax.value_and_grad(td_loss))  # one program for all below

    def loss(batch):
        return loss_and_grad(batch["obs"], batch)[0]

    base = float(loss(batch))
    # what happened in the burn-in only warms the hidden state: its rewards, actions, episode
    # ends and next observations are never learned from, and no gradient flows back into it
    for field in ("reward", "action", "terminated", "truncated", "next_obs"):
        x = batch[field]
        changed = (x.at[:, :BURN_IN].set(~x[:, :BURN_IN]) if x.dtype == bool
                   else x.at[:, :BURN_IN].add(1))
        assert float(loss({**batch, field: changed})) == base, field
    assert float(loss({**batch, "reward": batch["reward"].at[:, BURN_IN].add(1.0)})) != base
    grad = np.asarray(loss_and_grad(batch["obs"], batch)[1])
    np.testing.assert_array_equal(grad[:, :BURN_IN], 0.0)
    assert np.abs(grad[:, BURN_IN:]).max() > 0.0
    assert np.all(np.abs(grad[:, BURN_IN:]).max(axis=(2, 3)) > 0.0)  # every trained step


@pytest.mark.parametrize("mixer", ["qmix", "vdn"])
def test_joint_targets_mix_every_step_with_that_step_s_state(mixer):
    net, agents, target_agents = _net_and_params()
    batch = _sequences()
    seq = jax.tree.map(np.asarray, batch)
    mix = vd.QMixer(2, 4, 8) if mixer == "qmix" else vd.VDNMixer()
    mixers = jax.jit(jax.vmap(mix.init, in_axes=(0, None, None)))(
        jax.random.split(jax.random.PRNGKey(2), 2), jnp.zeros(2), jnp.zeros(4))
    params = {"agents": agents, "mixer": jax.tree.map(lambda x: x[0], mixers)}
    target = {"agents": target_agents, "mixer": jax.tree.map(lambda x: x[1], mixers)}
    if mixer == "vdn":
        batch = {k: v for k, v in batch.items() if "global_state" not in k}
    q_tot, targets = jax.jit(vd.joint_sequence_q_and_targets, static_argnums=(0, 1, 6, 7, 8))(
        net.step, mix, params, target, batch, GAMMA, N_STEP, BURN_IN, True)
    q_all, boot = _stepped(net, agents, target_agents, batch, True)
    taken = np.take_along_axis(q_all, seq["action"][..., None], -1)[..., 0]
    # the mixer at every (sequence, step) with that step's values and state
    want_q = np.asarray(mix.apply(params["mixer"], taken, seq["global_state"]))
    next_tot = np.asarray(mix.apply(target["mixer"], boot, seq["next_global_state"]))
    np.testing.assert_allclose(q_tot, want_q[:, BURN_IN:], rtol=1e-5, atol=1e-5)
    want = _nstep(seq["reward"].sum(-1), seq["terminated"], seq["truncated"], next_tot)
    np.testing.assert_allclose(targets, want[:, BURN_IN:], rtol=1e-5, atol=1e-5)


# ---- the learners -------------------------------------------------------------------------

@pytest.mark.slow  # a second learner compile each: the full suite only
@pytest.mark.parametrize("name", ["dqn", "qmix"])
def test_a_vmapped_seed_equals_that_seed_alone_and_the_same_key_the_same_bits(name):
    env, config, learner, init, update = _build(name)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    hps = stack_hyperparams(config.hyperparams(), 2)
    train = jax.jit(jax.vmap(learner.train))
    states, metrics = train(keys, hps)
    again = train(keys, hps)
    for got, want in zip(jax.tree.leaves(again), jax.tree.leaves((states, metrics)),
                         strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert states.rollout.carry.shape == (2, config.num_envs, env.num_agents, 8)
    assert bool(metrics["learning"][1].all())
    alone, alone_metrics = init(keys[1], config.hyperparams()), []
    for _ in range(config.num_updates):  # the seed alone: update by update
        alone, m = update(alone)
        alone_metrics.append(m)
    alone_metrics = jax.tree.map(lambda *xs: np.stack(xs), *alone_metrics)
    for got, want in zip(jax.tree.leaves(jax.tree.map(lambda x: x[1], (states, metrics))),
                         jax.tree.leaves((alone, alone_metrics)), strict=True):
        np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # a second learner compile: in the full suite only
def test_a_recurrent_learner_resumes_exactly(tmp_path):
    _, config, _, init, update = _build("dqn")
    hp = config.hyperparams()
    state, _ = update(init(jax.random.PRNGKey(4), hp))
    checkpoints.save(tmp_path / "ckpt", 1, state, {})  # hidden states and buffer included
    state, _ = checkpoints.restore(tmp_path / "ckpt", jax.eval_shape(lambda: state))
    for _ in range(2):
        state, _ = update(state)
    straight = init(jax.random.PRNGKey(4), hp)
    for _ in range(3):
        straight, _ = update(straight)
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(straight), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_trained_recurrent_q_team_plays_with_its_memory(three_updates):
    env, config, _, state = three_updates
    policy = dqn.make_policy(config, env, dqn.policy_params(state))
    assert isinstance(policy, Policy) and policy.recurrent
    assert policy.initial_carry().shape == (env.num_agents, 8)
    assert policy.initial_carry(3).shape == (3, env.num_agents, 8)
    params = env.default_params()
    _, ts = env.reset(jax.random.PRNGKey(0), params)
    actions, carry = policy(jax.random.PRNGKey(1), ts, policy.initial_carry())
    assert actions.shape == (env.num_agents,) and carry.shape == (env.num_agents, 8)
    assert float(jnp.abs(carry).max()) > 0.0
    figures = jax.jit(lambda k: evaluate(env, params, policy, k, 4))(jax.random.PRNGKey(2))
    assert np.all(np.isfinite(np.asarray(figures["return"])))
    assert bool(np.asarray(figures["completed"]).all())
    # value decomposition's policy is its agents' (the same networks)
    team = vd.make_policy(vd.VDConfig(**RECURRENT), env, {"agents": state.params})
    assert team.recurrent and team.initial_carry(2).shape == (2, env.num_agents, 8)


@pytest.mark.parametrize(("overrides", "match"), [
    ({"burn_in": 4}, r"DQNConfig\.burn_in \(4\) must be less than sequence_length \(4\)"),
    ({"burn_in": -1}, r"DQNConfig\.burn_in must be an int >= 0, got -1"),
    ({"sequence_length": 0, "burn_in": 0}, r"DQNConfig\.sequence_length must be an int >= 1"),
    ({"rnn_hidden": 0}, r"DQNConfig\.rnn_hidden must be an int >= 1, got 0"),
    ({"n_step": 4}, r"DQNConfig\.n_step \(4\) must be at most sequence_length - burn_in = 3"),
    ({"buffer_size": 14}, r"DQNConfig\.buffer_size \(14\) must hold at least sequence_length "
                          r"\+ rollout_length = 8 steps of each of the 2 envs"),
    ({"recurrent": "yes"}, r"DQNConfig\.recurrent must be True or False, got 'yes'"),
])
def test_bad_recurrent_configs_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        dqn.DQNConfig(**{**RECURRENT, **overrides})
    with pytest.raises(ValueError, match=match.replace("DQNConfig", "VDConfig")):
        vd.VDConfig(**{**RECURRENT, **overrides})


def test_feed_forward_configs_ignore_the_sequence_settings():
    """A feed-forward config is not held to the sequence settings' buffer needs."""
    config = dqn.DQNConfig(**{**RECURRENT, "recurrent": False, "buffer_size": 14,
                              "n_step": 3})
    assert not config.recurrent and config.sequence_length == 4
