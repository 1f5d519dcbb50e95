"""The learner protocol, over every registered learner (as the env conformance test runs over
every env): the module's face, two updates under ``jit(vmap)`` with hyperparameters vmapped,
seed i of the vmap equal to seed i alone, the same key giving the same bits, and a policy from
the trained params that acts legally. A learner added to the registry is picked up here.

Independent and actor-critic learners run on ``tag-v3`` (two teams, so per-team parameters
are vmapped too), value decomposition on ``spread-v3`` (one cooperating team), tabular Q on a
matrix game (a finite observation space). These are the variants' only vmap-equals-alone
checks: the learner modules' own tests do not repeat them.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import QUICK_COMPILE

from jaxmarl_coop.envs import Policy, make
from jaxmarl_coop.learners import registry
from jaxmarl_coop.learners.base import LearnerConfig, stack_hyperparams
from jaxmarl_coop.learners.evaluation import evaluate

#: the smallest settings of each family (a tiny env: the protocol, not learning, is tested)
SMALL = {
    "actor_critic": {"num_envs": 2, "rollout_length": 8, "hidden": (8,)},
    "dqn": {"num_envs": 2, "rollout_length": 4, "buffer_size": 64, "batch_size": 8,
            "learning_starts": 8, "hidden": (8,)},
    "value_decomposition": {"num_envs": 2, "rollout_length": 4, "buffer_size": 64,
                            "batch_size": 8, "learning_starts": 8, "hidden": (8,),
                            "mixer_embed": 4, "hypernet_hidden": 8},
    "tabular_q": {"num_envs": 2, "rollout_length": 4},
}
SWEPT = ("lr", "alpha")  # the hyperparameter given a different value per seed
#: each family's env: two teams where the family can learn several (per-team parameters
#: vmapped too), one cooperating team for value decomposition, a finite observation space
#: for tabular Q
ENVS = {"actor_critic": ("tag-v3", {"max_steps": 10}), "dqn": ("tag-v3", {"max_steps": 10}),
        "value_decomposition": ("spread-v3", {"max_steps": 10}),
        "tabular_q": ("penalty-v1", {"k": -25})}


def _small(spec: registry.LearnerSpec) -> dict:
    family = spec.module.__name__.rsplit(".", 1)[-1]
    small = dict(SMALL[family])
    if spec.config_defaults.get("algorithm") == "ppo":
        small["num_minibatches"] = 2
    return small


#: the default learner is also checked as users' runs compile it (full optimisation; DQN is,
#: by tests/test_train.py's chunked-loop test); its long compile runs in the full suite only
OPTIMISED = ("mappo",)
_FULL = (pytest.mark.optimised, pytest.mark.slow)


@pytest.mark.parametrize("name", [pytest.param(n, marks=_FULL) if n in OPTIMISED else n
                                  for n in registry.learner_names()])
def test_every_learner_follows_the_protocol(name):
    assert jax.config.values["jax_disable_most_optimizations"] is (name not in OPTIMISED
                                                         and QUICK_COMPILE)
    spec = registry.get_learner(name)
    for part in registry.PROTOCOL:
        assert hasattr(spec.module, part), part
    family = spec.module.__name__.rsplit(".", 1)[-1]
    env, env_params = make(*ENVS[family][:1], **ENVS[family][1])
    learner, config = registry.make_learner(name, env, env_params, **_small(spec),
                                            num_updates=2)
    assert isinstance(config, LearnerConfig) and type(config) is spec.config_class
    assert config.total_env_steps == config.num_envs * config.rollout_length * 2
    for key, value in spec.config_defaults.items():  # the registered name's own settings
        assert getattr(config, key) == value or key in _small(spec), key

    swept = next(n for n in SWEPT if n in spec.hp_fields())
    hp = registry.make_hyperparams(name, config)
    base = float(getattr(hp, swept))
    hps = stack_hyperparams(hp.replace(**{swept: jnp.asarray([base, base / 2],
                                                              jnp.float32)}), 2)
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    states, metrics = jax.jit(jax.vmap(learner.train))(keys, hps)
    assert all(np.shape(v)[:2] == (2, 2) for v in metrics.values())  # (seeds, updates)
    assert "episode_return" in metrics

    # seed 1 of the vmap, trained alone with its own hyperparameters
    single = jax.jit(learner.train)
    alone, alone_metrics = single(keys[1], jax.tree.map(lambda x: x[1], hps))
    for got, want in zip(jax.tree.leaves(jax.tree.map(lambda x: x[1], (states, metrics))),
                         jax.tree.leaves((alone, alone_metrics)), strict=True):
        np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                                   rtol=1e-5, atol=1e-6)
    # the same key and hyperparameters again: the same bits
    again = single(keys[1], jax.tree.map(lambda x: x[1], hps))
    for got, want in zip(jax.tree.leaves(again), jax.tree.leaves((alone, alone_metrics)),
                         strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    params = jax.tree.map(lambda x: x[1], spec.module.policy_params(states))
    np.testing.assert_allclose(
        np.asarray(jax.tree.leaves(params)[0]),
        np.asarray(jax.tree.leaves(registry.policy_params(config, alone))[0]),
        rtol=1e-5, atol=1e-6)

    # the trained team acts legally, greedy and sampled, under evaluate too
    for greedy in (True, False):
        policy = registry.make_policy(config, env, params, greedy=greedy)
        assert isinstance(policy, Policy) and policy.initial_carry() == ()
        _, ts = env.reset(jax.random.PRNGKey(0), env_params)
        actions, carry = jax.jit(policy)(jax.random.PRNGKey(1), ts, ())
        assert actions.shape == (env.num_agents,) and carry == ()
        assert bool(jnp.all(ts.action_mask[jnp.arange(env.num_agents), actions]))
    figures = jax.jit(lambda k: evaluate(env, env_params, policy, k, 4))(jax.random.PRNGKey(2))
    assert np.all(np.isfinite(np.asarray(figures["return"])))


def test_the_registry_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="unknown learner 'sarsa'; choose from mappo"):
        registry.get_learner("sarsa")
    env, env_params = make("penalty-v1")
    with pytest.raises(ValueError, match="mappo has no config field layers; valid:"):
        registry.make_learner("mappo", env, env_params, layers=3)
    with pytest.raises(ValueError, match="dqn has no hyperparameter ent_coef"):
        registry.make_hyperparams("dqn", ent_coef=0.1)
    with pytest.raises(ValueError, match="env_steps or num_updates, not both"):
        registry.make_config("mappo", env_steps=100, num_updates=2)
    import types

    with pytest.raises(ValueError, match="lacks make_policy, policy_params"):
        registry.register_learner("broken", types.SimpleNamespace(
            __name__="broken", Config=LearnerConfig, Hyperparams=object,
            make_learner=lambda *a: None))
    assert "broken" not in registry.learner_names()


def test_env_steps_set_the_number_of_updates():
    config = registry.make_config("ippo", env_steps=1000, num_envs=4, rollout_length=25)
    assert config.num_updates == 10 and config.critic == "local"
    assert registry.make_config("ippo", env_steps=1001, num_envs=4,
                                rollout_length=25).num_updates == 11
    assert dataclasses.asdict(registry.make_config("qmix"))["mixer"] == "qmix"
