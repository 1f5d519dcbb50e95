"""Value decomposition (VDN, QMIX): joint targets, monotone mixing, vmapping, learning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxmarl_coop.envs import make
from jaxmarl_coop.learners import dqn
from jaxmarl_coop.learners import value_decomposition as vd
from jaxmarl_coop.learners.base import stack_hyperparams

TINY = vd.VDConfig(num_envs=4, rollout_length=2, num_updates=30, buffer_size=200, batch_size=16,
                   learning_starts=32, target_update_interval=5, n_step=2, hidden=(16,),
                   mixer_embed=8, hypernet_hidden=16)

# ---- a hand-made batch: 2 agents, 2 one-hot observations, 2 actions, n_step = 2 ----------
# Agent values are table look-ups: Q_i(o, a) = table[i, o, a] for a one-hot o.
ONLINE = np.array([[[1.0, 3.0], [0.0, -1.0]], [[2.0, 0.0], [5.0, 4.0]]], np.float32)
TARGET = np.array([[[10.0, 20.0], [30.0, 40.0]], [[50.0, 60.0], [70.0, 80.0]]], np.float32)


def _table_q(table, obs):
    return jnp.einsum("...nd,nda->...na", obs, table)


def _obs(*states):
    return np.eye(2, dtype=np.float32)[list(states)]  # (N, 2) one-hot per agent


def _batch():
    """Three sequences: no end; truncated at step 0; terminated at step 1."""
    obs = np.stack([np.stack([_obs(0, 1), _obs(1, 1)]), np.stack([_obs(1, 0), _obs(0, 0)]),
                    np.stack([_obs(0, 0), _obs(1, 1)])])  # (B, n, N, D)
    next_obs = np.stack([np.stack([_obs(1, 1), _obs(1, 0)]),
                         np.stack([_obs(0, 1), _obs(1, 1)]),
                         np.stack([_obs(1, 1), _obs(0, 0)])])
    mask = np.ones((3, 2, 2, 2), bool)
    mask[0, 1, 1, 0] = False  # sequence 0, step 1: agent 1 may not take action 0
    state = np.arange(3 * 2 * 3, dtype=np.float32).reshape(3, 2, 3) / 10.0 - 0.8
    return {
        "obs": jnp.asarray(obs),
        "action": jnp.asarray(np.array([[[1, 0], [0, 0]], [[1, 1], [0, 0]],
                                        [[0, 0], [1, 1]]], np.int32)),
        "reward": jnp.asarray(np.array([[[1.0, 2.0], [0.5, 0.5]], [[-1.0, -2.0], [9.0, 9.0]],
                                        [[1.0, 1.0], [2.0, 2.0]]], np.float32)),
        "terminated": jnp.asarray(np.array([[False, False], [False, False], [False, True]])),
        "truncated": jnp.asarray(np.array([[False, False], [True, False], [False, False]])),
        "next_obs": jnp.asarray(next_obs), "next_action_mask": jnp.asarray(mask),
        "global_state": jnp.asarray(state), "next_global_state": jnp.asarray(state[:, ::-1]),
    }


# Taken values Q_i(o_i, a_i) at step 0, from ONLINE:
#   seq 0: agent 0 o=0 a=1 -> 3, agent 1 o=1 a=0 -> 5;  seq 1: -1, 0;  seq 2: 1, 2
TAKEN = np.array([[3.0, 5.0], [-1.0, 0.0], [1.0, 2.0]], np.float32)
# The next values every target needs (the transition where the sequence stops):
#   seq 0, step 1 (next obs o0=1, o1=0, agent 1 may not take 0):
#     double: online argmax 0 (of [0, -1]) and 1 (the only legal) -> TARGET 30, 60
#     plain:  target argmax 1 (of [30, 40]) and 1 (only legal)     -> TARGET 40, 60
#   seq 1, step 0 (truncated; next obs o0=0, o1=1):
#     double: online argmax 1 (of [1, 3]) and 0 (of [5, 4])        -> TARGET 20, 70
#     plain:  target argmax 1 (of [10, 20]) and 1 (of [70, 80])    -> TARGET 20, 80
#   seq 2, step 1: terminated, nothing bootstrapped
NEXT = {True: np.array([[30.0, 60.0], [20.0, 70.0]], np.float32),
        False: np.array([[40.0, 60.0], [20.0, 80.0]], np.float32)}
GAMMA = 0.9


def _expected_targets(next_tot):
    """Team rewards (sums over agents): seq 0: 3 then 1; seq 1: -3; seq 2: 2 then 4."""
    return np.array([3.0 + GAMMA * 1.0 + GAMMA**2 * next_tot[0], -3.0 + GAMMA * next_tot[1],
                     2.0 + GAMMA * 4.0])


@pytest.mark.parametrize("double", [True, False])
def test_vdn_q_tot_and_targets_by_hand(double):
    mixer = vd.VDNMixer()
    params = {"agents": jnp.asarray(ONLINE), "mixer": {}}
    target = {"agents": jnp.asarray(TARGET), "mixer": {}}
    batch = {k: v for k, v in _batch().items() if "global_state" not in k}  # VDN: no state
    q_tot, y = vd.joint_q_and_targets(_table_q, mixer, params, target, batch, GAMMA, double)
    np.testing.assert_allclose(np.asarray(q_tot), [8.0, -1.0, 3.0])
    # double: 3.9 + 0.81 * 90 = 76.8, -3 + 0.9 * 90 = 78, 5.6
    # plain:  3.9 + 0.81 * 100 = 84.9, -3 + 0.9 * 100 = 87, 5.6
    expected = [76.8, 78.0, 5.6] if double else [84.9, 87.0, 5.6]
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(y), _expected_targets(NEXT[double].sum(-1)),
                               rtol=1e-6)


def _random_params(tree, key, scale=1.0):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [scale * jax.random.normal(k, x.shape)
                                        for k, x in zip(keys, leaves, strict=True)])


def _numpy_qmix(params, qs, state):
    """QMIX from the raw parameter arrays, in float64 numpy."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params["params"])

    def dense(layer, x):
        return x @ layer["kernel"] + layer["bias"]

    def mlp(net, x):
        return dense(net["Dense_1"], np.maximum(dense(net["Dense_0"], x), 0.0))

    n = qs.shape[-1]
    w1 = np.abs(mlp(p["hyper_w1"], state)).reshape(*state.shape[:-1], n, -1)
    b1 = dense(p["hyper_b1"], state)
    pre = np.einsum("...n,...ne->...e", qs, w1) + b1
    hidden = np.where(pre > 0, pre, np.expm1(np.minimum(pre, 0.0)))
    w2 = np.abs(mlp(p["hyper_w2"], state))
    return np.sum(hidden * w2, axis=-1) + mlp(p["value"], state)[..., 0]


@pytest.mark.parametrize("double", [True, False])
def test_qmix_q_tot_and_targets_against_numpy(double):
    mixer = vd.QMixer(num_agents=2, embed=4, hypernet_hidden=5)
    shapes = mixer.init(jax.random.PRNGKey(0), jnp.zeros(2), jnp.zeros(3))
    online_mixer = _random_params(shapes, jax.random.PRNGKey(1), 0.5)  # biases too
    target_mixer = _random_params(shapes, jax.random.PRNGKey(2), 0.5)
    params = {"agents": jnp.asarray(ONLINE), "mixer": online_mixer}
    target = {"agents": jnp.asarray(TARGET), "mixer": target_mixer}
    batch = _batch()
    q_tot, y = vd.joint_q_and_targets(_table_q, mixer, params, target, batch, GAMMA, double)
    state = np.asarray(batch["global_state"], np.float64)
    next_state = np.asarray(batch["next_global_state"], np.float64)
    np.testing.assert_allclose(np.asarray(q_tot), _numpy_qmix(online_mixer, TAKEN, state[:, 0]),
                               rtol=1e-5)
    # the target mixer, at the next state of the transition each sequence bootstraps from
    next_tot = [_numpy_qmix(target_mixer, NEXT[double][0], next_state[0, 1]),
                _numpy_qmix(target_mixer, NEXT[double][1], next_state[1, 0])]
    np.testing.assert_allclose(np.asarray(y), _expected_targets(next_tot), rtol=1e-5)


_MONOTONE_MIXER = vd.QMixer(num_agents=3, embed=8, hypernet_hidden=16)


@jax.jit
def _mixer_weights_and_gradient(seed, scale, qs, state):
    shapes = _MONOTONE_MIXER.init(jax.random.PRNGKey(0), jnp.zeros(3), jnp.zeros(4))
    params = _random_params(shapes, jax.random.PRNGKey(seed), scale)
    w1, _, w2, _ = _MONOTONE_MIXER.apply(params, state,
                                         method=_MONOTONE_MIXER.mixing_weights)
    grad = jax.grad(lambda q: _MONOTONE_MIXER.apply(params, q, state))(qs)
    return w1, w2, grad


_floats = st.floats(-100.0, 100.0, width=32)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.01, 10.0),
       qs=hnp.arrays(np.float32, 3, elements=_floats),
       state=hnp.arrays(np.float32, 4, elements=_floats))
def test_qmix_is_monotone_in_every_agent_value(seed, scale, qs, state):
    w1, w2, grad = _mixer_weights_and_gradient(seed, np.float32(scale), qs, state)
    assert np.all(np.asarray(w1) >= 0.0) and np.all(np.asarray(w2) >= 0.0)
    grad = np.asarray(grad)
    assert np.all(np.isfinite(grad)) and np.all(grad >= 0.0), grad


@pytest.mark.parametrize(("mixer", "stored"), [("vdn", False), ("qmix", True)])
def test_global_state_is_stored_only_for_qmix(mixer, stored):
    env, params = make("spread-v3")
    config = vd.VDConfig(**{**TINY.__dict__, "mixer": mixer})
    state = jax.eval_shape(vd.make_learner(config, env, params).init, jax.random.PRNGKey(0),
                           config.hyperparams())
    fields = state.buffer.experience
    assert ("global_state" in fields) == stored
    assert ("next_global_state" in fields) == stored
    if stored:
        assert fields["global_state"].shape[-1] == env.state_dim
    assert (jax.tree.leaves(state.params["mixer"]) != []) == stored


def _greedy_joint(config, env, state):
    net = dqn.make_network(config, env)
    q = jax.vmap(lambda p: net.apply(p["agents"], jnp.ones((2, 1))))(state.params)
    return np.asarray(jnp.argmax(q, axis=-1))  # (runs, 2), the stateless game's joint action


def _matrix_game_runs(mixer, k):
    """16 seeds each of the plain (beta 1) and hysteretic (beta 0.1) learner on penalty-v1."""
    env, params = make("penalty-v1", k=k)
    config = vd.VDConfig(num_envs=4, rollout_length=1, num_updates=300, buffer_size=400,
                         batch_size=32, learning_starts=64, target_update_interval=10,
                         hidden=(16,), mixer=mixer, mixer_embed=8, hypernet_hidden=16,
                         hysteretic=True)
    seeds = 16
    keys = jnp.tile(jax.random.split(jax.random.PRNGKey(0), seeds), (2, 1))
    hp = stack_hyperparams(config.hyperparams(
        lr=3e-3, gamma=0.0, epsilon_decay_fraction=0.5,
        hysteretic_beta=jnp.repeat(jnp.array([1.0, 0.1]), seeds)), 2 * seeds)
    state, metrics = jax.jit(jax.vmap(vd.make_learner(config, env, params).train))(keys, hp)
    joint = _greedy_joint(config, env, state)
    optimal = np.all(joint == 0, axis=1) | np.all(joint == 2, axis=1)
    return joint, optimal[:seeds], optimal[seeds:], np.asarray(metrics["q_mean"][:, -1])


@pytest.mark.slow  # a learning check: in the full suite only
def test_qmix_learns_the_penalty_game():
    """k = 0: both optima are safe; QMIX (plain and hysteretic) picks one in every seed and
    its Q_tot approaches the team reward 2 * 10 (rewards summed over the two agents).
    Measured (16 seeds, key 0): 16/16 and 14/16 (16/16 for both before issue 17 made
    hysteretic_beta a true second learning rate)."""
    _, plain, hysteretic, q_tot = _matrix_game_runs("qmix", 0.0)
    assert plain.sum() >= 15 and hysteretic.sum() >= 12, (plain.sum(), hysteretic.sum())
    assert 16.0 < float(np.mean(q_tot)) < 22.0, q_tot


@pytest.mark.slow  # a learning check: in the full suite only
def test_hysteretic_vdn_coordinates_where_vdn_cannot():
    """k = -25: fitted to exploring data, VDN's sum of per-agent values favours the safe
    (1, 1) (payoff 2); hysteretic VDN (beta 0.1) reaches an optimum (payoff 10).
    Measured (16 seeds, key 0): plain 0/16, all at (1, 1); hysteretic 16/16."""
    joint, plain, hysteretic, q_tot = _matrix_game_runs("vdn", -25.0)
    assert plain.sum() <= 4 and hysteretic.sum() >= 14, (plain.sum(), hysteretic.sum())
    seeds = len(plain)
    assert np.mean(np.all(joint[:seeds] == 1, axis=1)) >= 0.75
    assert 16.0 < float(np.mean(q_tot[seeds:])) < 22.0, q_tot


@pytest.mark.parametrize(("build", "match"), [
    (lambda: vd.VDConfig(mixer="qtran"), "qtran"),
    (lambda: vd.VDConfig(mixer_embed=0), "mixer_embed"),
    (lambda: vd.VDConfig(hypernet_hidden=-1), "hypernet_hidden"),
    (lambda: vd.VDConfig(buffer_size=16, batch_size=32), "buffer_size"),
    (lambda: vd.make_learner(TINY, *make("spread-v3", continuous_actions=True)), "discrete"),
    (lambda: vd.make_learner(TINY, *make("tag-v3")), "teams"),
    (lambda: vd.make_learner(TINY, *make("prisoners-dilemma-v1")), "teams"),
    (lambda: vd.make_learner(dqn.DQNConfig(), *make("spread-v3")), "VDConfig"),
])
def test_bad_config_raises_before_compiling(build, match):
    with pytest.raises(ValueError, match=match):
        build()
