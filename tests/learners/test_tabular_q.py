"""Independent tabular Q-learning: the update rule, whole runs vmapped, learning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmarl_coop.envs import make
from jaxmarl_coop.learners import tabular_q
from jaxmarl_coop.learners.base import stack_hyperparams


def test_q_update_on_hand_computed_values():
    q = jnp.zeros((2, 3, 2)).at[0, 1].set(jnp.array([4.0, 8.0])).at[1, 2].set(jnp.array([1.0,
                                                                                         -1.0]))
    s = jnp.array([[0, 2]])  # one env, two agents
    a = jnp.array([[1, 0]])
    r = jnp.array([[1.0, 2.0]])
    s_next = jnp.array([[1, 2]])
    mask = jnp.ones((1, 2, 2), bool)
    out = tabular_q.q_update(q, s, a, r, jnp.array([False]), s_next, mask, 0.5, 0.9)
    # agent 0: Q[0,0,1] = 0 + 0.5 (1 + 0.9 * 8 - 0) = 4.1
    # agent 1: Q[1,2,0] = 1 + 0.5 (2 + 0.9 * max(1, -1) - 1) = 1.95
    assert float(out[0, 0, 1]) == pytest.approx(4.1)
    assert float(out[1, 2, 0]) == pytest.approx(1.95)
    changed = np.argwhere(np.asarray(out != q))
    assert changed.tolist() == [[0, 0, 1], [1, 2, 0]]
    # terminal: no bootstrap; an illegal next action is never the max
    term = tabular_q.q_update(q, s, a, r, jnp.array([True]), s_next, mask, 0.5, 0.9)
    assert float(term[0, 0, 1]) == pytest.approx(0.5)
    masked = tabular_q.q_update(q, s, a, r, jnp.array([False]), s_next,
                                jnp.array([[[True, False], [True, True]]]), 0.5, 0.9)
    assert float(masked[0, 0, 1]) == pytest.approx(0.5 * (1 + 0.9 * 4.0))


def test_duplicate_hits_in_one_batch_are_averaged():
    q = jnp.zeros((1, 1, 2))
    s = jnp.zeros((2, 1), jnp.int32)
    a = jnp.zeros((2, 1), jnp.int32)
    r = jnp.array([[1.0], [3.0]])
    out = tabular_q.q_update(q, s, a, r, jnp.array([True, True]), s, jnp.ones((2, 1, 2), bool),
                             0.5, 0.9)
    assert float(out[0, 0, 0]) == pytest.approx(0.5 * 2.0)


def test_a_next_state_without_legal_actions_bootstraps_zero():
    # issue 17: gamma * 0 * max(-inf) was NaN at a terminal, -inf elsewhere
    q = jnp.ones((1, 2, 2))
    s, a, s_next = jnp.array([[0], [0]]), jnp.array([[1], [1]]), jnp.array([[1], [1]])
    r = jnp.array([[2.0], [2.0]])
    no_legal = jnp.zeros((2, 1, 2), bool)
    for terminated in (jnp.array([True, True]), jnp.array([False, False])):
        out = tabular_q.q_update(q, s, a, r, terminated, s_next, no_legal, 0.5, 0.9)
        assert np.all(np.isfinite(np.asarray(out)))
        assert float(out[0, 0, 1]) == pytest.approx(1.0 + 0.5 * (2.0 + 0.0 - 1.0))
    # with a legal action the max is over the legal ones only, as before
    legal = jnp.array([[[False, True]], [[False, True]]])
    out = tabular_q.q_update(q.at[0, 1, 0].set(50.0), s, a, r, jnp.array([False, False]),
                             s_next, legal, 0.5, 0.9)
    assert float(out[0, 0, 1]) == pytest.approx(1.0 + 0.5 * (2.0 + 0.9 * 1.0 - 1.0))


def test_hysteretic_q_update_scales_only_negative_td_errors():
    q = jnp.zeros((2, 3, 2)).at[0, 1].set(jnp.array([4.0, 8.0])).at[1, 2].set(jnp.array([1.0,
                                                                                         -1.0]))
    s, a, s_next = jnp.array([[0, 2]]), jnp.array([[1, 0]]), jnp.array([[1, 2]])
    r = jnp.array([[1.0, -2.0]])
    mask = jnp.ones((1, 2, 2), bool)
    out = tabular_q.q_update(q, s, a, r, jnp.array([False]), s_next, mask, 0.5, 0.9, 0.25)
    # agent 0: delta = 1 + 0.9 * 8 - 0 = 8.2 >= 0: the full rate, 0 + 0.5 * 8.2 = 4.1
    # agent 1: delta = -2 + 0.9 * 1 - 1 = -2.1 < 0: 1 + 0.25 * 0.5 * (-2.1) = 0.7375
    assert float(out[0, 0, 1]) == pytest.approx(4.1)
    assert float(out[1, 2, 0]) == pytest.approx(0.7375)
    plain = tabular_q.q_update(q, s, a, r, jnp.array([False]), s_next, mask, 0.5, 0.9)
    assert float(plain[1, 2, 0]) == pytest.approx(1.0 - 0.5 * 2.1)
    # duplicates: TD errors +1 and -3 on one entry -> (1 + 0.25 * (-3)) / 2, then * alpha
    dup = tabular_q.q_update(jnp.zeros((1, 1, 2)), jnp.zeros((2, 1), jnp.int32),
                             jnp.zeros((2, 1), jnp.int32), jnp.array([[1.0], [-3.0]]),
                             jnp.array([True, True]), jnp.zeros((2, 1), jnp.int32),
                             jnp.ones((2, 1, 2), bool), 0.5, 0.9, 0.25)
    assert float(dup[0, 0, 0]) == pytest.approx(0.5 * (1.0 - 0.75) / 2)


def _greedy_joint_actions(env, q):
    return np.asarray(jnp.argmax(q[:, :, 0, :], axis=-1))  # (seeds, N) for a stateless game


def test_finds_the_optimum_of_the_penalty_game_in_nearly_all_seeds():
    env, params = make("penalty-v1", k=0.0)
    config = tabular_q.TabularQConfig(num_envs=4, rollout_length=25, num_updates=100)
    learner = tabular_q.make_learner(config, env, params)
    keys = jax.random.split(jax.random.PRNGKey(0), 16)
    hp = stack_hyperparams(config.hyperparams(alpha=0.1, gamma=0.0), 16)
    state, metrics = jax.jit(jax.vmap(learner.train))(keys, hp)
    joint = _greedy_joint_actions(env, state.q)
    optimal = np.all(joint == 0, axis=1) | np.all(joint == 2, axis=1)
    assert optimal.sum() >= 15, joint
    assert metrics["episode_optimal"].shape == (16, 100)
    assert np.nanmean(metrics["episode_optimal"][:, -10:]) > 0.8  # late episodes mostly optimal


def test_hysteretic_learners_climb_where_plain_ones_do_not():
    """Matignon et al. 2007: on the climbing game independent Q-learners settle on a safe
    joint action ((1, 1) or (2, 2)); hysteretic ones (beta = 0.1) find the optimum (0, 0).
    Measured (16 seeds, key 0): plain 0/16, hysteretic 16/16."""
    env, params = make("climbing-v1")
    config = tabular_q.TabularQConfig(num_envs=4, rollout_length=25, num_updates=100)
    learner = tabular_q.make_learner(config, env, params)
    seeds = 16
    keys = jnp.tile(jax.random.split(jax.random.PRNGKey(0), seeds), (2, 1))
    hp = stack_hyperparams(config.hyperparams(
        alpha=0.1, gamma=0.0, hysteretic_beta=jnp.repeat(jnp.array([1.0, 0.1]), seeds)),
        2 * seeds)
    state, metrics = jax.jit(jax.vmap(learner.train))(keys, hp)
    optimal = np.all(_greedy_joint_actions(env, state.q) == 0, axis=1)
    plain, hysteretic = int(optimal[:seeds].sum()), int(optimal[seeds:].sum())
    assert plain <= 4 and hysteretic >= 14, (plain, hysteretic)
    late = np.asarray(metrics["episode_optimal"][:, -10:])
    assert np.nanmean(late[seeds:]) > 0.8 > np.nanmean(late[:seeds])


@pytest.mark.slow  # a second vmap-equals-alone check (the protocol has one): full suite only
def test_vmap_over_alpha_gamma_epsilon_equals_single_runs():
    env, params = make("grid-tracking-v1", max_steps=10)
    config = tabular_q.TabularQConfig(num_envs=2, rollout_length=10, num_updates=20)
    learner = tabular_q.make_learner(config, env, params)
    hps = tabular_q.TabularQHyperparams(alpha=jnp.array([0.1, 0.5, 0.9]),
                                        gamma=jnp.array([0.0, 0.5, 0.99]),
                                        epsilon_end=jnp.array([0.0, 0.1, 0.5]))
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    state, metrics = jax.jit(jax.vmap(learner.train))(keys, stack_hyperparams(hps, 3))
    for i in range(3):
        hp = tabular_q.TabularQHyperparams(alpha=float(hps.alpha[i]), gamma=float(hps.gamma[i]),
                                           epsilon_end=float(hps.epsilon_end[i]))
        alone, alone_metrics = jax.jit(learner.train)(keys[i], hp)
        np.testing.assert_allclose(np.asarray(state.q[i]), np.asarray(alone.q), atol=1e-5)
        np.testing.assert_allclose(np.asarray(metrics["epsilon"][i]),
                                   np.asarray(alone_metrics["epsilon"]), rtol=1e-6)
    assert not np.allclose(np.asarray(state.q[0]), np.asarray(state.q[1]))
    again, _ = jax.jit(jax.vmap(learner.train))(keys, stack_hyperparams(hps, 3))
    np.testing.assert_array_equal(np.asarray(again.q), np.asarray(state.q))


def test_epsilon_schedule_decays_linearly_then_holds():
    env, params = make("climbing-v1")
    config = tabular_q.TabularQConfig(num_envs=1, rollout_length=10, num_updates=10)
    _, metrics = jax.jit(tabular_q.make_learner(config, env, params).train)(
        jax.random.PRNGKey(0), config.hyperparams(epsilon_start=1.0, epsilon_end=0.1,
                                                  epsilon_decay_fraction=0.5))
    eps = np.asarray(metrics["epsilon"])  # value at the last step of each update
    np.testing.assert_allclose(eps[:4], [1 - 0.9 * s / 50 for s in (9, 19, 29, 39)], rtol=1e-5)
    np.testing.assert_allclose(eps[5:], 0.1, rtol=1e-6)


@pytest.mark.parametrize(("build", "match"), [
    (lambda: tabular_q.TabularQHyperparams(epsilon_start=1.1), "epsilon_start"),
    (lambda: tabular_q.TabularQHyperparams(alpha=0.0), "alpha"),
    (lambda: tabular_q.TabularQHyperparams(gamma=-0.1), "gamma"),
    (lambda: tabular_q.TabularQHyperparams(hysteretic_beta=0.0), "hysteretic_beta"),
    (lambda: tabular_q.TabularQHyperparams(hysteretic_beta=1.5), "hysteretic_beta"),
    (lambda: tabular_q.TabularQConfig(num_envs=0), "num_envs"),
    (lambda: tabular_q.make_learner(tabular_q.TabularQConfig(), *make("spread-v3")),
     "integer observation index"),
])
def test_bad_config_raises(build, match):
    with pytest.raises(ValueError, match=match):
        build()
