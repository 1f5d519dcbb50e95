"""A trained team loaded in one call: ``load_policy(path, which, seed)`` for every learner
family gives the policy whose evaluation the run recorded, plays the same episodes through
PettingZoo, and animates."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxmarl_coop import load_policy, load_run, run
from jaxmarl_coop.envs.pettingzoo import PettingZooEnv, play_episode
from jaxmarl_coop.learners.evaluation import evaluate
from jaxmarl_coop.runs import RunConfig, UsageError
from jaxmarl_coop.runs.training import FINAL_EVAL

#: one tiny run per learner family (spread's dynamics are deterministic given the actions);
#: the edit loop (`-m "not slow"`) runs the first, the cheapest to compile
FAMILIES = {
    "tabular_q": RunConfig(learner="tabular_q", env="penalty-v1", env_param=("k=-25",),
                           config=("num_envs=2", "rollout_length=25")),
    "actor_critic": RunConfig(learner="mappo", env="spread-v3",
                              config=("num_envs=2", "rollout_length=25", "num_minibatches=2",
                                      "hidden=16")),
    "dqn": RunConfig(learner="dqn", env="spread-v3",
                     config=("num_envs=2", "rollout_length=25", "buffer_size=200",
                             "batch_size=16", "learning_starts=50", "hidden=16")),
    "value_decomposition": RunConfig(learner="qmix", env="spread-v3",
                                     config=("num_envs=2", "rollout_length=25",
                                             "buffer_size=200", "batch_size=16",
                                             "learning_starts=50", "hidden=16",
                                             "mixer_embed=8", "hypernet_hidden=16")),
    "recurrent_actor_critic": RunConfig(learner="mappo", env="cue-v1",
                                        config=("num_envs=2", "rollout_length=25",
                                                "num_minibatches=2", "hidden=16",
                                                "recurrent=true", "rnn_hidden=8")),
}
#: periodic and final evaluations of the same length share one compiled program
COMMON = {"seeds": 2, "env_steps": 200, "chunks": 2, "eval_every": 1,
          "periodic_eval_episodes": 3, "eval_episodes": 3, "gif": False}


class _Runs(dict):
    """family -> run folder, each run trained when first asked for (the edit loop,
    ``-m "not slow"``, asks for one family only)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, family: str) -> Path:
        config = dataclasses.replace(FAMILIES[family], **COMMON)
        self[family] = run(config, self.root / family, progress=False).path
        return self[family]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return _Runs(tmp_path_factory.mktemp("teams"))


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize(("which", "section", "key_index"),
                         [("final", "final", FINAL_EVAL), ("best", "absolute", FINAL_EVAL + 1)])
def test_load_policy_gives_the_team_the_run_evaluated(runs, family, which, section, key_index):
    path = runs[family]
    saved = json.loads((path / "eval.json").read_text())
    config = load_run(path).run_config
    episodes = config["eval_episodes"]
    # the run's final evaluations: key fold_in(PRNGKey(seed + 1), index), split over seeds
    eval_key = jax.random.fold_in(jax.random.PRNGKey(config["seed"] + 1), key_index)
    seed = 1  # not the first: the seed index must pick that seed's parameters
    policy, env, env_params = load_policy(path, which=which, seed=seed)
    key = jax.random.split(eval_key, config["seeds"])[seed]
    figures = evaluate(env, env_params, policy, key, episodes)
    np.testing.assert_allclose(float(np.mean(figures["return"])),
                               saved[section]["return"]["per_seed"][seed], rtol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_loaded_team_plays_the_same_episodes_through_pettingzoo(runs, family):
    policy, env, env_params = load_policy(runs[family], "final", seed=1)
    key = jax.random.PRNGKey(3)
    figures = evaluate(env, env_params, policy, key, 2)
    pz = PettingZooEnv(env, env_params)
    for e, episode_key in enumerate(jax.random.split(key, 2)):
        reset_key = jax.random.split(episode_key)[0]  # evaluate's reset key of episode e
        returns = play_episode(policy, pz, options={"key": reset_key})
        np.testing.assert_allclose(returns["team"], float(figures["return"][e]), rtol=1e-5,
                                   atol=1e-5)


def test_a_loaded_team_animates(runs, tmp_path):
    from jaxmarl_coop.envs import render

    policy, env, env_params = load_policy(runs["tabular_q"], "best", seed=0)
    path = render.animate(env, env_params, policy, jax.random.PRNGKey(0), tmp_path / "t.gif",
                          max_steps=5, size=64)
    assert path.read_bytes()[:3] == b"GIF"


def test_load_policy_refuses_what_is_not_there(runs, tmp_path):
    with pytest.raises(UsageError, match="is not a run folder"):
        load_policy(tmp_path)
    with pytest.raises(UsageError, match="seed 5 is not one of the run's 2 seeds"):
        load_policy(runs["tabular_q"], seed=5)
    with pytest.raises(UsageError, match="which must be one of final, best"):
        load_policy(runs["tabular_q"], which="last")
