"""The PettingZoo adapter: PettingZoo's own API tests on every registered env, plus ours."""

from __future__ import annotations

import importlib
import subprocess
import sys

import gymnasium
import jax
import numpy as np
import pytest

pytest.importorskip("pettingzoo")

from pettingzoo.test import parallel_api_test, parallel_seed_test
from pettingzoo.test.state_test import test_parallel_env as check_state_space

from jaxmarl_coop.envs import make, registered
from jaxmarl_coop.envs.pettingzoo import PettingZooEnv, parallel_env

MAX_STEPS = 4  # short episodes keep the whole file fast; num_cycles > MAX_STEPS ends them

# every registered id must appear here (checked below), with its constructor variants
VARIANTS = {
    "spread-v3": [{}, {"continuous_actions": True}],
    "tag-v3": [{}, {"continuous_actions": True}, {"prey_policy": "scripted"}],
    "tracking-v1": [{}, {"continuous_actions": True}],
    "climbing-v1": [{}, {"history": True}],
    "penalty-v1": [{}],
    "prisoners-dilemma-v1": [{}],
    "grid-tracking-v1": [{}],
    "load-balancing-v1": [{}, {"num_dispatchers": 2, "num_servers": 3, "max_delay": 1}],
    "intersection-v1": [{}, {"num_agents": 2}],
    "cue-v1": [{}],
}
CASES = [(env_id, kw) for env_id in sorted(VARIANTS) for kw in VARIANTS[env_id]]
IDS = [f"{e}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for e, kw in CASES]


def test_every_registered_env_is_covered():
    assert set(registered()) <= set(VARIANTS), set(registered()) - set(VARIANTS)


def _random_actions(env: PettingZooEnv, infos: dict) -> dict:
    actions = {}
    for agent in env.agents:
        space = env.action_space(agent)
        mask = infos[agent].get("action_mask")
        actions[agent] = space.sample(mask) if mask is not None else space.sample()
    return actions


def _check_outputs(env: PettingZooEnv, obs, infos, rewards=None, terms=None, truncs=None):
    jax_env = env.jax_env
    for i, agent in enumerate(env.possible_agents):
        space = env.observation_space(agent)
        assert isinstance(obs[agent], np.ndarray) and obs[agent].dtype == space.dtype
        assert obs[agent].shape == (jax_env.agent_obs_dim(i),)
        assert space.contains(obs[agent]), (agent, obs[agent])
        if not jax_env.continuous_actions:
            mask = infos[agent]["action_mask"]
            assert mask.dtype == np.int8 and mask.shape == (jax_env.num_actions,)
        for name, value in infos[agent].items():
            if name != "action_mask":
                assert isinstance(value, (int, float, bool)), (name, value)
        if rewards is not None:
            assert type(rewards[agent]) is float
            assert type(terms[agent]) is bool and type(truncs[agent]) is bool
    assert env.state_space.contains(env.state())


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=IDS)
def test_pettingzoo_api(env_id, kwargs):
    env = parallel_env(env_id, max_steps=MAX_STEPS, seed=0, **kwargs)
    parallel_api_test(env, num_cycles=MAX_STEPS + 2)
    check_state_space(env, seed=0)

    # spaces mirror ours, and every value returned lies in its space
    jax_env = env.jax_env
    for agent in env.possible_agents:
        action_space = env.action_space(agent)
        if jax_env.continuous_actions:
            assert isinstance(action_space, gymnasium.spaces.Box)
            assert action_space.dtype == np.float32 and action_space.shape == (
                jax_env.num_actions,)
            assert np.all(action_space.low == 0.0) and np.all(action_space.high == 1.0)
        else:
            assert action_space == gymnasium.spaces.Discrete(jax_env.num_actions)
    obs, infos = env.reset(seed=1)
    _check_outputs(env, obs, infos)
    for t in range(MAX_STEPS):
        assert env.agents == env.possible_agents
        out = env.step(_random_actions(env, infos))
        obs, rewards, terms, truncs, infos = out
        _check_outputs(env, obs, infos, rewards, terms, truncs)
        assert all(truncs.values()) == (t == MAX_STEPS - 1)
    assert env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})
    env.close()


def _episode(env: PettingZooEnv, seed: int | None) -> list:
    obs, infos = env.reset(seed=seed)
    for agent in env.possible_agents:
        env.action_space(agent).seed(7)
    trace = [obs]
    while env.agents:
        obs, rewards, _, _, infos = env.step(_random_actions(env, infos))
        trace.append((obs, rewards))
    return trace


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                    strict=True))


def test_seeding_reproduces_episodes():
    env = parallel_env("spread-v3", max_steps=MAX_STEPS)
    other = parallel_env("spread-v3", max_steps=MAX_STEPS)
    first = _episode(env, seed=3)
    assert _same(first, _episode(other, seed=3))
    assert _same(first, _episode(env, seed=3))  # re-seeding restarts the key stream
    assert not _same(first[0], _episode(env, seed=4)[0])
    # constructor seed == reset seed; reset() without a seed continues the stream
    seeded = parallel_env("spread-v3", max_steps=MAX_STEPS, seed=3)
    assert _same(first, _episode(seeded, seed=None))
    assert not _same(first[0], _episode(seeded, seed=None)[0])
    parallel_seed_test(lambda: parallel_env("tag-v3", max_steps=MAX_STEPS), num_cycles=10)


@pytest.mark.parametrize("env_id", ["tag-v3", "climbing-v1"])
def test_one_step_matches_the_jax_env(env_id):
    jax_env, params = make(env_id, max_steps=MAX_STEPS)
    env = PettingZooEnv(jax_env, params, seed=5)
    obs, _ = env.reset()
    actions = {a: i % jax_env.num_actions for i, a in enumerate(env.possible_agents)}
    obs1, rewards, terms, truncs, infos1 = env.step(actions)

    # the documented key path: key, sub = split(key) before reset and before each step
    key, k_reset = jax.random.split(jax.random.PRNGKey(5))
    state, ts0 = jax.jit(jax_env.reset)(k_reset, params)
    _, k_step = jax.random.split(key)
    joint = np.array([actions[a] for a in env.possible_agents], np.int32)
    _, ts1 = jax.jit(jax_env.step)(k_step, state, joint, params)

    for i, agent in enumerate(env.possible_agents):
        width = jax_env.agent_obs_dim(i)
        np.testing.assert_allclose(obs[agent], np.asarray(ts0.obs)[i, :width], rtol=1e-6)
        np.testing.assert_allclose(obs1[agent], np.asarray(ts1.obs)[i, :width], rtol=1e-6)
        assert not np.any(np.asarray(ts1.obs)[i, width:])  # only padding was dropped
        assert rewards[agent] == pytest.approx(float(ts1.reward[i]), rel=1e-6)
        assert terms[agent] == bool(ts1.terminated) and truncs[agent] == bool(ts1.truncated)
        for name, value in ts1.info.items():
            assert infos1[agent][name] == pytest.approx(float(value), rel=1e-6)
        np.testing.assert_array_equal(infos1[agent]["action_mask"],
                                      np.asarray(ts1.action_mask[i], np.int8))
    np.testing.assert_allclose(env.state(), np.asarray(ts1.global_state), rtol=1e-6)


def test_bad_actions_are_clear_errors():
    env = parallel_env("spread-v3", max_steps=MAX_STEPS, seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})
    env.reset()
    with pytest.raises(ValueError, match="missing"):
        env.step({"agent_0": 0})
    with pytest.raises(ValueError, match="unknown"):
        env.step({**dict.fromkeys(env.agents, 0), "nobody": 0})
    with pytest.raises(ValueError, match="one int"):
        env.step({**dict.fromkeys(env.agents, 0), "agent_1": 0.5})
    with pytest.raises(ValueError, match="render_mode"):
        parallel_env("spread-v3", render_mode="human")


def test_metadata_and_agents():
    env = parallel_env("tag-v3", prey_policy="learn")
    assert env.metadata["name"] == "tag-v3"
    assert env.metadata["render_modes"] == ["rgb_array"]
    assert env.metadata["is_parallelizable"] is True
    assert env.possible_agents == list(env.jax_env.agent_names)
    assert env.agents == []
    env.reset(seed=0)
    assert env.agents == env.possible_agents and env.agents is not env.possible_agents


def test_render_rgb_array():
    env = parallel_env("spread-v3", render_mode="rgb_array", seed=0)
    env.reset()
    try:
        frame = env.render()
    except (NotImplementedError, AttributeError) as err:  # Env.render lands separately
        pytest.xfail(f"Env.render not available for spread-v3 yet: {err}")
    assert isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[-1] == 3
    assert frame.dtype == np.uint8
    quiet = parallel_env("spread-v3", seed=0)
    quiet.reset()
    with pytest.warns(UserWarning, match="render_mode"):
        assert quiet.render() is None


def test_missing_pettingzoo_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pettingzoo", None)
    monkeypatch.delitem(sys.modules, "jaxmarl_coop.envs.pettingzoo")
    with pytest.raises(ImportError, match="pip install pettingzoo"):
        importlib.import_module("jaxmarl_coop.envs.pettingzoo")


def test_envs_package_does_not_import_pettingzoo():
    code = "import sys, jaxmarl_coop.envs; assert 'pettingzoo' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
