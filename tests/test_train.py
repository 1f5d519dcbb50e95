"""experiments/train.py end to end, its chunked loop, and its one-line user errors."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import train


def test_train_runs_end_to_end_and_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    result = train.main(["--learner", "ippo", "--env", "spread-v3", "--seeds", "2",
                         "--env-steps", "6000", "--chunks", "3", "--eval-episodes", "8",
                         "--config", "num_envs=4", "--config", "rollout_length=25",
                         "--config", "num_minibatches=2", "--out", str(out)])
    config = json.loads((out / "config.json").read_text())
    assert config["learner"] == "ippo" and config["config"]["critic"] == "local"
    assert config["config"]["num_updates"] == 60 and config["hyperparams"]["lr"] == 2e-3
    lines = (out / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert {"seed", "update", "env_steps", "episode_return", "entropy"} <= set(header)
    assert len(lines) == 1 + 2 * 60
    saved = json.loads((out / "eval.json").read_text())
    assert len(saved["greedy_eval"]["return"]["per_seed"]) == 2
    assert np.isfinite(saved["greedy_eval"]["return"]["mean"])
    assert result["greedy_eval"]["length"]["mean"] == 25.0


def test_the_chunked_loop_equals_one_train_call():
    args = train.parse_args(["--learner", "dqn", "--env", "spread-v3", "--env-steps", "1280",
                             "--chunks", "4", "--config", "learning_starts=64",
                             "--config", "buffer_size=1000", "--config", "batch_size=32"])
    _, _, _, config, hp, learner, chunks = train.build(args)
    per_chunk = config.num_updates // chunks
    state = jax.jit(learner.init)(jax.random.PRNGKey(0), hp)
    step = jax.jit(lambda s: jax.lax.scan(lambda c, _: learner.update(c), s, None,
                                          length=per_chunk))
    losses = []
    for _ in range(chunks):
        state, metrics = step(state)
        losses.append(np.asarray(metrics["loss"]))
    whole_state, whole = jax.jit(learner.train)(jax.random.PRNGKey(0), hp)
    np.testing.assert_allclose(np.concatenate(losses), np.asarray(whole["loss"]), rtol=1e-6)
    for x, y in zip(jax.tree.leaves(state.params), jax.tree.leaves(whole_state.params),
                    strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--learner", "sarsa"], "unknown learner 'sarsa'; choose from mappo"),
    (["--env", "nope-v9"], "unknown env 'nope-v9'; choose from"),
    (["--env-steps", "-3"], "--env-steps must be >= 1, got -3"),
    (["--env-param", "wings=2"], "no option 'wings'"),
    (["--hp", "lr=0"], "lr must be > 0.0"),
    (["--learner", "tabular_q"], "integer observation index"),
])
def test_bad_cli_input_is_one_line_without_traceback(argv, expected):
    proc = subprocess.run([sys.executable, "-m", "experiments.train", *argv],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
