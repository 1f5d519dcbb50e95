"""Bad learner input is refused when it is built, with one line naming what to pass instead:
hyperparameters of the wrong type, config switches that are not bools, layer widths, and
a first argument to ``make_learner`` that is neither a name nor a config. No compiling."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmarl_coop.envs import make
from jaxmarl_coop.learners import registry
from jaxmarl_coop.learners.base import stack_hyperparams

HYPERPARAMS = sorted({registry.get_learner(n).module.Hyperparams
                      for n in registry.learner_names()}, key=lambda c: c.__name__)


@pytest.mark.parametrize("hp_class", HYPERPARAMS, ids=lambda c: c.__name__)
def test_every_hyperparameter_refuses_what_is_not_a_number(hp_class):
    for field in dataclasses.fields(hp_class):
        for bad, shown in (("x", r"'x' \(str\)"), ([0.1, 0.2], r"\[0\.1, 0\.2\] \(list\)"),
                           (True, r"True \(bool\)"), (None, None)):
            if bad is None:  # JAX puts None in in_axes trees: it must pass
                hp_class(**{field.name: None})
                continue
            with pytest.raises(ValueError, match=rf"{hp_class.__name__}\.{field.name} must be "
                                                 rf"a number \(int or float\), got {shown}"):
                hp_class(**{field.name: bad})


def test_hyperparams_still_pass_through_jax_transformations():
    hp = registry.make_hyperparams("mappo")
    stacked = stack_hyperparams(hp, 3)  # a leading seed axis, as runs and sweeps use
    assert stacked.lr.shape == (3,)
    jax.tree.map(lambda _: object(), hp)
    jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), hp)
    doubled = jax.jit(jax.vmap(lambda h: h.replace(lr=h.lr * 2)))(stacked)
    np.testing.assert_allclose(np.asarray(doubled.lr), 2 * hp.lr)
    with pytest.raises(ValueError, match=r"ActorCriticHyperparams\.lr must be a number"):
        dataclasses.replace(hp, lr="1e-3")


def test_make_learner_names_what_to_pass_first():
    env, params = make("penalty-v1")
    for bad in (None, 5, ["mappo"]):
        with pytest.raises(ValueError, match=r"make_learner takes a learner name \(mappo, .*\) "
                                             r"or a learner config"):
            registry.make_learner(bad, env, params)
    with pytest.raises(ValueError, match=r"make_learner needs an env .*envs\.make"):
        registry.make_learner("mappo", "penalty-v1", params)
    with pytest.raises(ValueError, match="unknown learner None"):
        registry.make_config(None)
    with pytest.raises(ValueError, match=r"unknown learner \['dqn'\]"):
        registry.get_learner(["dqn"])


@pytest.mark.parametrize("name", ["mappo", "dqn", "qmix"])
def test_hidden_takes_one_int_as_one_layer_and_refuses_the_rest(name):
    assert registry.make_config(name, hidden=64).hidden == (64,)
    assert registry.make_config(name, hidden=[32, 16]).hidden == (32, 16)
    config_class = registry.get_learner(name).config_class.__name__
    for bad in ("abc", "64,64", (), [64, 0], 2.5, (64.0,), True):
        with pytest.raises(ValueError, match=rf"{config_class}\.hidden must be layer widths: a "
                                             r"tuple of ints >= 1 such as \(64, 64\), or one "
                                             r"int for one layer"):
            registry.make_config(name, hidden=bad)


@pytest.mark.parametrize("name", registry.learner_names())
def test_config_switches_must_be_real_bools(name):
    config = registry.make_config(name)
    switches = [f.name for f in dataclasses.fields(config)
                if isinstance(getattr(config, f.name), bool)]
    for switch in switches:
        for bad in ("yes", 0, 1, None):
            with pytest.raises(ValueError, match=rf"{type(config).__name__}\.{switch} must be "
                                                 rf"True or False, got {bad!r}"):
                registry.make_config(name, **{switch: bad})
