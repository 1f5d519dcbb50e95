"""The XLA settings that keep vmapped training from hanging on small CPU machines."""

from __future__ import annotations

import os
import subprocess
import sys

from jaxmarl_coop.runtime import configure_xla

PROGRAM = """
from jaxmarl_coop.runtime import configure_xla
configure_xla()
import jax
from jaxmarl_coop.envs import make
from jaxmarl_coop.learners import actor_critic as ac
from jaxmarl_coop.learners.base import stack_hyperparams
env, params = make("spread-v3")
config = ac.ActorCriticConfig(num_envs=16, rollout_length=128, num_updates=20)
learner = ac.make_learner(config, env, params)
keys = jax.random.split(jax.random.PRNGKey(0), 8)
out = jax.jit(jax.vmap(learner.train))(keys, stack_hyperparams(config.hyperparams(), 8))
print("finished", float(jax.block_until_ready(out[1]["entropy"]).mean()))
"""


def test_eight_vmapped_mappo_seeds_finish():
    """This program hung forever (2 cores, jax 0.10.2) before ``configure_xla`` set both flags."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
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
