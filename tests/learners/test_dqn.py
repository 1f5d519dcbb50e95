"""Independent DQN: state size, parameter groups, replay, config checks, learning (vmapping
and determinism: tests/learners/test_protocol.py)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmarl_coop.envs import make, random_policy
from jaxmarl_coop.learners import dqn, registry
from jaxmarl_coop.learners.base import stack_hyperparams
from jaxmarl_coop.learners.evaluation import evaluate

TINY = dqn.DQNConfig(num_envs=4, rollout_length=2, num_updates=40, buffer_size=200,
                     batch_size=16, learning_starts=32, target_update_interval=5, n_step=2,
                     hidden=(16,))


def _leaves_equal(a, b, atol=0.0):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def test_state_does_not_grow_with_training_length():
    env, params = make("spread-v3")
    shapes = []
    for updates in (10, 1000):
        config = dqn.DQNConfig(**{**TINY.__dict__, "num_updates": updates})
        learner = dqn.make_learner(config, env, params)
        out = jax.eval_shape(learner.train, jax.random.PRNGKey(0), config.hyperparams())
        shapes.append(out)
    state_sizes = [sum(x.size for x in jax.tree.leaves(s[0])) for s in shapes]
    assert state_sizes[0] == state_sizes[1]
    assert shapes[1][1]["loss"].shape == (1000,)  # metrics: one value per update


@pytest.mark.slow  # a learner compile of its own: in the full suite only
@pytest.mark.parametrize("share", [True, False])
def test_parameter_groups(share):
    env, params = make("tag-v3")  # two teams: predators and prey
    config = dqn.DQNConfig(**{**TINY.__dict__, "share_params": share})
    state = dqn.make_learner(config, env, params).init(jax.random.PRNGKey(0),
                                                       config.hyperparams())
    groups = jax.tree.leaves(state.params)[0].shape[0]
    assert groups == (2 if share else 4)
    first_layer = state.params["params"]["Dense_0"]["kernel"]
    assert first_layer.shape[1] == env.obs_dim + (env.num_agents if share else 0)


@pytest.mark.slow  # a learning check: in the full suite only
def test_double_dqn_and_n_step_switches_change_learning():
    env, params = make("tracking-v1")
    runs = {}
    for double, n_step in ((True, 1), (False, 1), (True, 3)):
        config = dqn.DQNConfig(**{**TINY.__dict__, "double_dqn": double, "n_step": n_step})
        runs[(double, n_step)] = jax.jit(dqn.make_learner(config, env, params).train)(
            jax.random.PRNGKey(0), config.hyperparams())[1]["loss"]
    assert not np.allclose(runs[(True, 1)], runs[(False, 1)])
    assert not np.allclose(runs[(True, 1)], runs[(True, 3)])


@pytest.mark.slow  # a learner compile of its own: in the full suite only
def test_learning_rate_annealing():
    env, params = make("spread-v3")
    config = dqn.DQNConfig(**{**TINY.__dict__, "anneal_lr": True, "learning_starts": 0})
    _, metrics = jax.jit(dqn.make_learner(config, env, params).train)(
        jax.random.PRNGKey(0), config.hyperparams(lr=0.01))
    lr = np.asarray(metrics["lr"])  # after each update
    np.testing.assert_allclose(lr, 0.01 * (1 - np.arange(TINY.num_updates) / TINY.num_updates),
                               rtol=1e-5)


def test_hysteretic_td_loss_weights_negative_errors_by_beta():
    prediction = jnp.array([1.0, 3.0, 2.0])
    target = jnp.array([2.0, 1.0, 2.0])  # TD errors target - Q: +1, -2, 0
    loss, grad = jax.value_and_grad(dqn.td_loss)(prediction, target, 0.25)
    # weights 1, 0.25, 1: 0.5 * mean(1 * 1, 0.25 * 4, 0) = 1/3
    assert float(loss) == pytest.approx(1.0 / 3.0)
    np.testing.assert_allclose(np.asarray(grad), [-1.0 / 3.0, 0.25 * 2.0 / 3.0, 0.0],
                               rtol=1e-6)
    assert float(dqn.td_loss(prediction, target, 1.0)) == pytest.approx(0.5 * 5.0 / 3.0)
    # the target is held fixed: no gradient flows into it
    target_grad = jax.grad(dqn.td_loss, argnums=1)(prediction, target, 0.25)
    np.testing.assert_array_equal(np.asarray(target_grad), 0.0)


def _fit_constant(beta, target, steps, lr=0.01):
    """A single estimate Q = 5 regressed on a batch of 8 equal targets by the learner's
    optimiser (``td_gradients`` + ``hysteretic_adam``); Q after each of ``steps`` steps."""
    params = {"q": jnp.asarray(5.0)}
    opt = dqn.hysteretic_adam(lr, 10.0)
    state = opt.init(params)
    out = []
    for _ in range(steps):
        _, _, grads = dqn.td_gradients(lambda p: (jnp.full((8,), p["q"]), jnp.full((8,), target)),
                                       params, beta)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        out.append(float(params["q"]))
    return np.array(out)


def test_hysteretic_adam_learns_negative_td_errors_at_beta_times_the_rate():
    # issue 17: with the weight only in the loss, Adam cancelled it: all-negative TD errors
    # gave 4.990 / 4.900 / 4.506 after 1 / 10 / 50 steps for beta = 1 and beta = 0.1 alike
    plain, hysteretic = _fit_constant(1.0, 0.0, 50), _fit_constant(0.1, 0.0, 50)
    np.testing.assert_allclose(plain[[0, 9, 49]], [4.990, 4.900, 4.506], atol=1e-3)
    assert np.all(hysteretic > plain)
    np.testing.assert_allclose(5.0 - hysteretic[[0, 9, 49]], 0.1 * (5.0 - plain[[0, 9, 49]]),
                               rtol=0.05)
    # good news (all TD errors positive) moves at the full rate whatever beta is
    np.testing.assert_array_equal(_fit_constant(0.1, 10.0, 10), _fit_constant(1.0, 10.0, 10))


def test_hysteretic_adam_with_equal_gradients_is_clipped_adam_bit_for_bit():
    params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros((4,))}
    ours, reference = dqn.hysteretic_adam(0.01, 1.0), optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(0.01))
    state, ref_state = ours.init(params), reference.init(params)
    rng = np.random.default_rng(0)
    for scale in (0.01, 3.0, 0.1, 10.0):  # below and above the clipping norm
        grads = {k: jnp.asarray(rng.normal(size=p.shape) * scale, jnp.float32)
                 for k, p in params.items()}
        updates, state = ours.update((grads, grads), state, params)
        ref_updates, ref_state = reference.update(grads, ref_state, params)
        _leaves_equal(updates, ref_updates)
        _leaves_equal(state, ref_state)


@pytest.mark.slow  # a learner compile of its own: in the full suite only
def test_step_counters_do_not_overflow_int32():
    # issue 17: env steps counted in int32 wrapped past 2**31, turning epsilon back to its
    # start and learning off (env_steps < learning_starts)
    env, params = make("spread-v3")
    config = dqn.DQNConfig(num_envs=8, num_updates=400_000_000, hidden=(16,))
    learner = dqn.make_learner(config, env, params)
    state = learner.init(jax.random.PRNGKey(0), config.hyperparams())
    update = jax.jit(learner.update)
    for _ in range(2):
        state, metrics = update(state)
    assert not bool(metrics["learning"])
    state = state.replace(update_step=jnp.asarray(300_000_000, jnp.int32))  # 2.4e9 env steps
    state, metrics = update(state)
    assert bool(metrics["learning"])
    assert float(metrics["epsilon"]) == pytest.approx(0.05)
    np.testing.assert_allclose(float(metrics["env_steps"]), 300_000_001 * 8, rtol=1e-6)


@pytest.mark.slow  # a learning check: in the full suite only
def test_hysteretic_dqn_coordinates_on_the_penalty_game():
    """With a large miscoordination penalty (k = -25) independent DQN learners settle on the
    safe (1, 1); hysteretic ones (beta = 0.1) mostly reach an optimum, (0, 0) or (2, 2).
    Measured (16 seeds, key 0): plain 0/16, hysteretic 11/16 (16/16 before issue 17, when
    beta was a loss weight that Adam partly cancelled)."""
    env, params = make("penalty-v1", k=-25.0)
    config = dqn.DQNConfig(num_envs=4, rollout_length=1, num_updates=300, buffer_size=400,
                           batch_size=32, learning_starts=64, target_update_interval=10,
                           hidden=(16,), hysteretic=True)
    seeds = 16
    keys = jnp.tile(jax.random.split(jax.random.PRNGKey(0), seeds), (2, 1))
    hp = stack_hyperparams(config.hyperparams(
        lr=3e-3, gamma=0.0, epsilon_decay_fraction=0.5,
        hysteretic_beta=jnp.repeat(jnp.array([1.0, 0.1]), seeds)), 2 * seeds)
    state, _ = jax.jit(jax.vmap(dqn.make_learner(config, env, params).train))(keys, hp)
    net = dqn.make_network(config, env)
    q = jax.vmap(lambda p: net.apply(p, jnp.ones((2, 1))))(state.params)  # (runs, 2, A)
    joint = np.asarray(jnp.argmax(q, axis=-1))
    optimal = np.all(joint == 0, axis=1) | np.all(joint == 2, axis=1)
    plain, hysteretic = int(optimal[:seeds].sum()), int(optimal[seeds:].sum())
    assert plain <= 4 and hysteretic >= 9, (plain, hysteretic)


@pytest.mark.parametrize(("build", "match"), [
    (lambda: dqn.DQNConfig(buffer_size=16, batch_size=32), "buffer_size"),
    (lambda: dqn.DQNConfig(num_envs=0), "num_envs"),
    (lambda: dqn.DQNConfig(n_step=0), "n_step"),
    (lambda: dqn.DQNConfig(hidden=()), "hidden"),
    (lambda: dqn.DQNHyperparams(epsilon_start=1.5), "epsilon_start"),
    (lambda: dqn.DQNHyperparams(epsilon_end=-0.1), "epsilon_end"),
    (lambda: dqn.DQNHyperparams(lr=0.0), "lr"),
    (lambda: dqn.DQNHyperparams(gamma=1.2), "gamma"),
    (lambda: dqn.DQNHyperparams(hysteretic_beta=0.0), "hysteretic_beta"),
    (lambda: dqn.DQNHyperparams(hysteretic_beta=2.0), "hysteretic_beta"),
])
def test_bad_config_raises_before_compiling(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_continuous_env_is_rejected():
    env, params = make("spread-v3", continuous_actions=True)
    with pytest.raises(ValueError, match="discrete"):
        dqn.make_learner(TINY, env, params)


@pytest.mark.slow  # a learning check: in the full suite only
def test_dqn_clearly_beats_random_on_tracking():
    env, params = make("tracking-v1")
    config = dqn.DQNConfig(num_envs=16, rollout_length=2, num_updates=1500, buffer_size=20_000,
                           batch_size=64, learning_starts=2_000, target_update_interval=50)
    hp = config.hyperparams(lr=1e-3, gamma=0.95, epsilon_decay_fraction=0.3)
    state, _ = jax.jit(dqn.make_learner(config, env, params).train)(
        jax.random.PRNGKey(0), hp)
    key = jax.random.PRNGKey(1)
    policy = dqn.make_policy(config, env, state.params, greedy=True)
    trained = evaluate(env, params, policy, key, 128)
    rand = evaluate(env, params, random_policy(env), key, 128)
    trained_return, random_return = float(trained["return"].mean()), float(rand["return"].mean())
    assert trained_return > random_return + 60.0, (trained_return, random_return)
    assert float(trained["mean_distance"].mean()) < 0.6 * float(rand["mean_distance"].mean())


def test_a_beta_below_one_needs_the_hysteretic_switch():
    """Without ``hysteretic=True`` the learner compiles the plain step, which would ignore a
    beta below 1: refused when the hyperparameters are built, and at an eager init."""
    config = dqn.DQNConfig(num_envs=2, num_updates=2, buffer_size=16, batch_size=4,
                           learning_starts=0)
    with pytest.raises(ValueError, match=r"hysteretic_beta=0\.1 needs .*hysteretic=True"):
        config.hyperparams(hysteretic_beta=0.1)
    with pytest.raises(ValueError, match="hysteretic=True"):
        registry.make_hyperparams("vdn", None, hysteretic_beta=0.5)
    env, params = make("penalty-v1")
    learner = dqn.make_learner(config, env, params)
    with pytest.raises(ValueError, match="hysteretic=True"):
        learner.init(jax.random.PRNGKey(0), dqn.DQNHyperparams(hysteretic_beta=0.1))
    assert config.hyperparams(hysteretic_beta=1.0).hysteretic_beta == 1.0  # plain: fine
    hysteretic = dataclasses.replace(config, hysteretic=True)
    assert hysteretic.hyperparams(hysteretic_beta=0.1).hysteretic_beta == 0.1
