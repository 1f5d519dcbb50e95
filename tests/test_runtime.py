"""The XLA settings that keep vmapped training from hanging on small CPU machines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import conftest
import pytest

from jaxmarl_coop import runtime
from jaxmarl_coop.runtime import configure_xla

PROGRAM = """
from jaxmarl_coop.runtime import configure_xla
configure_xla()
import jax
from jaxmarl_coop.envs import make
from jaxmarl_coop.learners import actor_critic as ac
from jaxmarl_coop.learners.base import stack_hyperparams
env, params = make("spread-v3")
config = ac.ActorCriticConfig(num_envs=16, rollout_length=128, num_updates=4)
learner = ac.make_learner(config, env, params)
keys = jax.random.split(jax.random.PRNGKey(0), 8)
out = jax.jit(jax.vmap(learner.train))(keys, stack_hyperparams(config.hyperparams(), 8))
print("finished", float(jax.block_until_ready(out[1]["entropy"]).mean()))
"""


@pytest.mark.slow  # a subprocess compiling as runs do: in the full suite only
def test_eight_vmapped_mappo_seeds_finish():
    """This program hung forever (2 cores, jax 0.10.2) before ``configure_xla`` set both flags."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "0"  # the program as a run compiles it
    proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "finished" in proc.stdout


def test_configure_xla_never_overrides_the_user(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
    added = configure_xla()
    assert "--xla_cpu_multi_thread_eigen=false" not in added
    assert os.environ["XLA_FLAGS"].startswith("--xla_cpu_multi_thread_eigen=true")
    monkeypatch.setenv("JAXMARL_COOP_KEEP_XLA_FLAGS", "1")
    monkeypatch.setenv("XLA_FLAGS", "")
    assert configure_xla() == [] and os.environ["XLA_FLAGS"] == ""


def _programs(recurrent: bool = False):
    """Every learner's vmapped ``train`` (2 seeds), as the tests and experiments build it:
    the feed-forward ones, or with ``recurrent`` the recurrent ones."""
    import jax

    from jaxmarl_coop.envs import make
    from jaxmarl_coop.learners import actor_critic, dqn, tabular_q, value_decomposition
    from jaxmarl_coop.learners.base import stack_hyperparams

    spread, spread_params = make("spread-v3")
    tag, tag_params = make("tag-v3", continuous_actions=True)
    climbing, climbing_params = make("climbing-v1")
    cases = [
        ("mappo", actor_critic, actor_critic.ActorCriticConfig(num_updates=1), spread,
         spread_params),
        ("ia2c continuous", actor_critic, actor_critic.ActorCriticConfig(
            algorithm="a2c", critic="local", policy="gaussian_tanh", num_updates=1), tag,
         tag_params),
        ("recurrent mappo", actor_critic, actor_critic.ActorCriticConfig(
            num_updates=1, recurrent=True), spread, spread_params),
        ("recurrent ia2c continuous", actor_critic, actor_critic.ActorCriticConfig(
            algorithm="a2c", critic="local", policy="gaussian_tanh", share_params=False,
            num_updates=1, recurrent=True), tag, tag_params),
        ("dqn", dqn, dqn.DQNConfig(num_updates=1), spread, spread_params),
        ("vdn", value_decomposition, value_decomposition.VDConfig(mixer="vdn", num_updates=1),
         spread, spread_params),
        ("qmix", value_decomposition, value_decomposition.VDConfig(num_updates=1), spread,
         spread_params),
        ("recurrent dqn", dqn, dqn.DQNConfig(num_updates=1, recurrent=True), spread,
         spread_params),
        ("recurrent qmix", value_decomposition, value_decomposition.VDConfig(
            num_updates=1, recurrent=True), spread, spread_params),
        ("tabular_q", tabular_q, tabular_q.TabularQConfig(num_updates=1), climbing,
         climbing_params),
    ]
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    for name, module, config, env, params in cases:
        if name.startswith("recurrent") is not recurrent:
            continue
        learner = module.make_learner(config, env, params)
        hp = stack_hyperparams(config.hyperparams(), 2)
        yield name, jax.jit(jax.vmap(learner.train)).lower(keys, hp).as_text()


def test_no_learner_program_calls_lapack():
    """A batched LAPACK call (QR in flax's orthogonal init, vmapped over seeds) deadlocked
    jaxlib 0.10's CPU runtime on 2 cores; learners must build their programs without one."""
    for name, text in _programs():
        assert re.search(r"lapack_\w+|geqrf", text) is None, name


@pytest.mark.slow  # four more learner lowerings: in the full suite only
def test_no_recurrent_learner_program_calls_lapack():
    """The same for the recurrent programs: a GRU's recurrent kernel is orthogonal by default
    (a QR) in flax; ours use the LAPACK-free initialiser."""
    names = []
    for name, text in _programs(recurrent=True):
        assert re.search(r"lapack_\w+|geqrf", text) is None, name
        names.append(name)
    assert len(names) == 4, names


def test_set_cpu_device_count(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    runtime.set_cpu_device_count(2)
    assert os.environ["XLA_FLAGS"] == ("--xla_cpu_multi_thread_eigen=false "
                                       "--xla_force_host_platform_device_count=2")
    runtime.set_cpu_device_count(2)  # the same count again: unchanged
    assert os.environ["XLA_FLAGS"].count("device_count") == 1
    with pytest.raises(ValueError, match="already sets --xla_force_host_platform_device_count=2"):
        runtime.set_cpu_device_count(4)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="integer >= 1"):
            runtime.set_cpu_device_count(bad)


def test_set_cpu_device_count_gives_that_many_devices():
    code = ("from jaxmarl_coop import runtime; runtime.set_cpu_device_count(3); "
            "import jax; print(jax.local_device_count())")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def _compile_options_overrides() -> dict:
    from jax._src import compiler  # private: the options jit compiles with

    options = compiler.get_compile_options(num_replicas=1, num_partitions=1)
    return dict(options.env_option_overrides)


@pytest.mark.skipif(not conftest.QUICK_FLAG_ADDED,
                    reason="the suite's quick-path XLA flag is not set (conftest.py)")
def test_the_quick_codegen_flag_is_for_the_quick_path_only():
    import jax

    assert conftest.QUICK_COMPILE_FLAG in os.environ["XLA_FLAGS"]  # workers, subprocesses
    name = conftest.QUICK_COMPILE_FLAG.split("=", 1)[0].lstrip("-")
    assert jax.config.values["jax_disable_most_optimizations"]
    assert name not in _compile_options_overrides()


@pytest.mark.optimised
@pytest.mark.skipif(not conftest.QUICK_FLAG_ADDED,
                    reason="the suite's quick-path XLA flag is not set (conftest.py)")
def test_optimised_tests_compile_with_xla_s_default_code_generator():
    name = conftest.QUICK_COMPILE_FLAG.split("=", 1)[0].lstrip("-")
    assert _compile_options_overrides()[name] is True  # as users' runs compile
