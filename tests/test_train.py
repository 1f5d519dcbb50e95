"""experiments/train.py end to end: run folder, resume, kills, user errors, presets."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from folder_checks import assert_refused

from experiments import evaluate, train
from jaxmarl_coop import checkpoints
from jaxmarl_coop.runs import preset, preset_names, training
from jaxmarl_coop.runs.team import load_team

REPO = Path(__file__).resolve().parents[1]

#: a DQN run small enough for CI, with a replay buffer, env state and keys to checkpoint
DQN_ARGS = ["--learner", "dqn", "--env", "spread-v3", "--seeds", "2", "--env-steps", "2560",
            "--chunks", "4", "--eval-every", "2", "--periodic-eval-episodes", "4",
            "--eval-episodes", "8", "--no-gif", "--config", "num_envs=4",
            "--config", "rollout_length=8", "--config", "learning_starts=64",
            "--config", "buffer_size=512", "--config", "batch_size=32"]


def _files(run_dir: Path) -> dict[str, str]:
    return {name: (run_dir / name).read_text()
            for name in ("metrics.csv", "eval.json", "marl_eval.json")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "whole"
    train.main([*DQN_ARGS, "--out", str(out)])
    return out


@pytest.mark.slow  # an IPPO run end to end: full suite only (the edit loop has tabular runs)
def test_train_writes_every_file_of_the_run_folder(tmp_path):
    out = tmp_path / "run"
    result = train.main(["--learner", "ippo", "--env", "spread-v3", "--seeds", "2",
                         "--env-steps", "6000", "--chunks", "3", "--eval-every", "1",
                         "--periodic-eval-episodes", "4", "--eval-episodes", "8",
                         "--config", "num_envs=4", "--config", "rollout_length=25",
                         "--config", "num_minibatches=2", "--out", str(out)])
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["learner"] == "ippo" and config["learner_config"]["critic"] == "local"
    assert config["num_updates"] == 60 and config["hyperparams"]["lr"] == 2e-3
    assert config["format_version"] == checkpoints.FORMAT_VERSION

    lines = (out / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:3] == ["seed", "update", "env_steps"]
    assert {"episode_return", "entropy", "value_loss"} <= set(header)
    assert len(lines) == 1 + 2 * 60
    last = dict(zip(header, lines[-1].split(","), strict=True))
    assert (last["seed"], last["update"], last["env_steps"]) == ("1", "60", "6000")

    saved = json.loads((out / "eval.json").read_text())
    for part in ("final", "absolute"):
        assert len(saved[part]["return"]["per_seed"]) == 2
        assert np.isfinite(saved[part]["return"]["mean"])
        assert saved[part]["length"]["mean"] == 25.0
    assert set(saved["references"]) == {"random"}
    assert [p["env_steps"] for p in saved["periodic"]] == [2000, 4000, 6000]
    assert result.path == out
    assert result.evaluation["final"]["return"]["mean"] == saved["final"]["return"]["mean"]

    marl = json.loads((out / "marl_eval.json").read_text())
    seeds = marl["jaxmarl_coop"]["spread-v3"]["ippo"]
    assert set(seeds) == {"seed_0", "seed_1"}
    assert [seeds["seed_0"][f"step_{k}"]["step_count"] for k in range(3)] == [2000, 4000, 6000]
    assert len(seeds["seed_1"]["step_2"]["return"]) == 4
    assert len(seeds["seed_0"]["absolute_metrics"]["return"]) == 8

    (timing,) = json.loads((out / "timing.json").read_text())["invocations"]
    assert timing["env_steps"] == 2 * 6000 and timing["chunks"] == 3
    for part in ("compile_s", "train_s", "eval_s", "final_eval_s", "checkpoint_s"):
        assert 0 < timing[part] < timing["wall_s"], part
    assert timing["env_steps_per_s"] == pytest.approx(12000 / timing["train_s"])
    assert "timing" not in saved  # eval.json holds only what the key decides

    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "rollout.gif").read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    assert checkpoints.latest_step(out / "checkpoints") == 3
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow  # needs the DQN run of `uninterrupted`: in the full suite only
def test_a_resumed_run_ends_exactly_like_the_uninterrupted_one(tmp_path, uninterrupted):
    out = tmp_path / "cut"
    assert train.main([*DQN_ARGS, "--out", str(out), "--stop-after-chunks", "1"]
                      ).stopped_after_chunk == 1
    assert not (out / "eval.json").exists()
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 2 * 20
    train.main(["--resume", str(out)])
    assert _files(out) == _files(uninterrupted)
    (timing,) = json.loads((out / "timing.json").read_text())["invocations"]
    assert timing["chunks"] == 3  # the resumed invocation trained the last 3 of 4 chunks


@pytest.mark.slow
def test_a_killed_run_keeps_its_files_and_resumes_exactly(tmp_path, uninterrupted):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.train", *DQN_ARGS,
                             "--out", str(out)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while checkpoints.latest_step(out / "checkpoints") is None:
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    json.loads((out / "config.json").read_text())  # whole, not half-written
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) >= 1 + 2 * 20 and all(r.count(",") == rows[0].count(",") for r in rows)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    train.main(["--resume", str(out)])
    assert _files(out) == _files(uninterrupted)


#: tabular Q in 20 short chunks, each checkpointed: many places to be killed, little compute
FAULT_ARGS = ["--learner", "tabular_q", "--env", "penalty-v1", "--seeds", "2",
              "--env-steps", "1000", "--chunks", "20", "--eval-every", "3",
              "--periodic-eval-episodes", "2", "--eval-episodes", "4", "--no-gif",
              "--config", "num_envs=2", "--config", "rollout_length=5"]


def _steps(checkpoint_dir: Path) -> tuple[list[int], bool]:
    """The finished checkpoint steps, and whether orbax is writing one (a temporary folder)."""
    try:
        names = os.listdir(checkpoint_dir)
    except OSError:
        return [], False
    return (sorted(int(n) for n in names if n.isdigit()),
            any(".orbax-checkpoint-tmp" in n for n in names))


@pytest.mark.slow
def test_ten_kills_at_random_points_resume_to_the_uninterrupted_run(tmp_path):
    """SIGKILL at seeded random points, 10 times in a row (while starting, between chunks,
    during a checkpoint write), resuming each time: the end equals a run never killed."""
    whole = tmp_path / "whole"
    train.main([*FAULT_ARGS, "--out", str(whole)])
    out, rng = tmp_path / "killed", random.Random(16)
    kills, during_write = 0, 0
    while kills < 10:
        argv = (["--resume", str(out)] if (out / "config.json").exists()
                else [*FAULT_ARGS, "--out", str(out)])
        log = (tmp_path / f"stderr-{kills}.txt").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "experiments.train", *argv], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=log)
        mode = ("write", "chunk", "start")[kills % 3]
        target = _steps(out / "checkpoints")[0][-1:] or [0]
        target = target[0] + rng.randint(1, 3)
        deadline, start = time.monotonic() + 240, time.monotonic()
        wait = rng.uniform(0.0, 8.0)
        while proc.poll() is None:
            steps, writing = _steps(out / "checkpoints")
            if (mode == "write" and writing) or (mode == "start" and time.monotonic() - start
                                                 > wait) or (mode == "chunk" and steps
                                                             and steps[-1] >= target):
                if mode == "chunk":
                    time.sleep(rng.uniform(0.0, 0.05))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                during_write += _steps(out / "checkpoints")[1] and mode == "write"
                break
            assert time.monotonic() < deadline, f"invocation {kills} hung"
            time.sleep(0.001)
        log.close()
        assert proc.returncode in (0, -signal.SIGKILL), (tmp_path / f"stderr-{kills}.txt"
                                                         ).read_text()[-3000:]
        if proc.returncode == 0:  # it finished before the kill came: the run is done
            break
    assert during_write >= 1, "no kill landed during a checkpoint write"
    train.main(["--resume", str(out)])
    assert _files(out) == _files(whole)


@pytest.mark.slow  # needs the DQN run of `uninterrupted`: in the full suite only
def test_evaluate_reloads_the_trained_team(tmp_path, uninterrupted, capsys):
    saved = json.loads((uninterrupted / "eval.json").read_text())
    run, params, _ = load_team(uninterrupted, "final")
    again = run.evaluate(params, 8, run.eval_key(training.FINAL_EVAL))  # the final eval's key
    np.testing.assert_allclose(again["return"].mean(axis=1),
                               saved["final"]["return"]["per_seed"], rtol=1e-6)
    result = evaluate.main([str(uninterrupted), "--episodes", "8",
                            "--json", str(tmp_path / "e.json")])
    assert np.isfinite(result["evaluation"]["return"]["mean"])
    assert result["env_steps_per_seed"] == 2560
    assert json.loads((tmp_path / "e.json").read_text())["which"] == "final"
    best = evaluate.main([str(uninterrupted), "--episodes", "4", "--which", "best",
                          "--gif", str(tmp_path / "team.gif")])
    assert np.isfinite(best["evaluation"]["return"]["mean"])
    assert (tmp_path / "team.gif").read_bytes()[:3] == b"GIF"
    assert "greedy episodes per seed" in capsys.readouterr().out


def test_a_checkpoint_of_another_format_version_is_refused(tmp_path, monkeypatch):
    state = {"w": np.arange(3.0), "obstacles": np.zeros((0, 2), np.float32)}
    current = checkpoints.FORMAT_VERSION
    monkeypatch.setattr(checkpoints, "FORMAT_VERSION", current - 1)
    checkpoints.save(tmp_path / "ck", 1, state, {"note": "old"})
    monkeypatch.setattr(checkpoints, "FORMAT_VERSION", current)
    with pytest.raises(checkpoints.CheckpointError,
                       match=rf"format version {current - 1}; .* reads version {current}"):
        checkpoints.restore(tmp_path / "ck", state)
    checkpoints.save(tmp_path / "ck", 2, state, {"note": "new"})
    restored, meta = checkpoints.restore(tmp_path / "ck", state)
    np.testing.assert_array_equal(restored["w"], state["w"])
    assert restored["obstacles"].shape == (0, 2)  # orbax refuses empty arrays; we rebuild them
    with pytest.raises(checkpoints.CheckpointError, match="holds 2 arrays but"):
        checkpoints.restore(tmp_path / "ck", {"w": state["w"]})
    assert meta["note"] == "new" and meta["format_version"] == current


@pytest.mark.slow  # two programs compiled as runs compile them: in the full suite only
@pytest.mark.optimised  # different programs, equal results: as runs compile them too
def test_the_chunked_loop_equals_one_train_call():
    run, _ = train.parse_args(["--learner", "dqn", "--env", "spread-v3", "--env-steps", "1280",
                               "--chunks", "4", "--config", "learning_starts=64",
                               "--config", "buffer_size=1000", "--config", "batch_size=32"])
    built = training.build(run)
    config, hp, learner, chunks = built.config, built.hp, built.learner, built.chunks
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


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_builds(name):
    built = training.build(preset(name))
    assert built.config.num_updates % built.chunks == 0 and built.env.num_agents >= 1


def test_a_hysteretic_beta_compiles_the_two_rate_optimiser():
    """``--hp hysteretic_beta=0.1`` (and a sweep over it) switches the learner's static
    ``hysteretic`` config on; without a beta below 1 it stays off (the plain step)."""
    from jaxmarl_coop.runs import RunConfig
    from jaxmarl_coop.runs.sweep import _grid_wants_hysteretic

    for learner in ("dqn", "vdn"):
        on = training.build(RunConfig(learner=learner, env="penalty-v1",
                                      hp={"hysteretic_beta": 0.1}, env_steps=1000))
        off = training.build(RunConfig(learner=learner, env="penalty-v1", env_steps=1000))
        assert on.config.hysteretic and not off.config.hysteretic
    assert training.build(preset("penalty-hysteretic-vdn")).config.hysteretic
    assert _grid_wants_hysteretic(["lr=0.1,0.2", "hysteretic_beta=1,0.1"], "qmix", ())
    assert not _grid_wants_hysteretic(["hysteretic_beta=1.0"], "qmix", ())
    assert not _grid_wants_hysteretic(["hysteretic_beta=0.1"], "tabular_q", ())
    assert not _grid_wants_hysteretic(["hysteretic_beta=0.1"], "dqn", ("hysteretic=false",))


def test_explicit_options_override_the_preset():
    run, _ = train.parse_args(["--preset", "spread-mappo", "--seeds", "2", "--hp", "lr=0.01"])
    assert run.env == "spread-v3" and run.seeds == 2 and run.env_steps == 3_000_000
    assert run.hp == ("lr=0.001", "ent_coef=0.06", "lr=0.01")
    hp = training.build(run).hp
    assert float(hp.lr) == pytest.approx(0.01)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--learner", "sarsa"], "unknown learner 'sarsa'; choose from mappo"),
    (["--env", "nope-v9"], "unknown env 'nope-v9'; choose from"),
    (["--env-steps", "-3"], "--env-steps must be an integer >= 1, got -3"),
    (["--env-steps", "many"], "argument --env-steps: invalid int value: 'many'"),
    (["--env-param", "wings=2"], "no option 'wings'"),
    (["--hp", "lr=0"], "lr must be > 0.0"),
    (["--hp", "alpha=0.1"], "mappo has no hyperparameter alpha; valid:"),
    (["--config", "layers=3"], "mappo has no settable config field layers; valid:"),
    (["--learner", "tabular_q"], "integer observation index"),
    (["--preset", "spread-sarsa"], "invalid choice: 'spread-sarsa'"),
    (["--seeds", "3", "--devices", "2"], "--seeds 3 must be a multiple of --devices 2"),
    (["--resume", "/no/such/run"], "/no/such/run is not a run folder (no config.json)"),
])
def test_bad_cli_input_is_one_line_without_traceback(argv, expected, capsys):
    # in-process (the same main the command runs): exit status 2 and one line on stderr
    with pytest.raises(SystemExit) as exc:
        train.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_command_line_itself_exits_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "experiments.train", "--learner", "sarsa"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 2 and "unknown learner 'sarsa'" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # needs the DQN run of `uninterrupted`: in the full suite only
def test_an_existing_run_folder_is_not_overwritten(tmp_path, uninterrupted, capsys):
    assert_refused(train.main, [*DQN_ARGS, "--out", str(uninterrupted)], capsys,
                   "already holds a run; continue it with --resume", uninterrupted)


DEVICES_PROGRAM = """
import sys
from pathlib import Path
import jax
jax.config.update("jax_log_compiles", True)
from experiments import train
out = Path(sys.argv[1])
args = ["--learner", "ippo", "--env", "spread-v3", "--seeds", "2", "--env-steps", "400",
        "--chunks", "2", "--eval-every", "1", "--periodic-eval-episodes", "2",
        "--eval-episodes", "4", "--no-gif", "--config", "num_envs=4",
        "--config", "rollout_length=25", "--config", "num_minibatches=2"]
train.main([*args, "--out", str(out / "one"), "--devices", "1"])
train.main([*args, "--out", str(out / "two"), "--devices", "2"])
"""


@pytest.mark.slow
def test_seeds_sharded_over_two_devices_match_one_device(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", DEVICES_PROGRAM, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=280, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one compile of the chunk program per run: over the mesh its outputs keep the inputs'
    # sharding, so feeding them back does not compile it again
    assert proc.stderr.count("Finished XLA compilation of jit(chunk)") == 2, proc.stderr[-3000:]
    # the same numbers up to float rounding (each device count compiles its own program)
    tables = [np.genfromtxt(tmp_path / name / "metrics.csv", delimiter=",", names=True)
              for name in ("one", "two")]
    assert tables[0].dtype.names == tables[1].dtype.names and len(tables[0]) == 2 * 4
    for column in tables[0].dtype.names:
        np.testing.assert_allclose(tables[1][column], tables[0][column], rtol=1e-4, atol=1e-5,
                                   err_msg=column)
    finals = [json.loads((tmp_path / name / "eval.json").read_text())["final"]
              for name in ("one", "two")]
    np.testing.assert_allclose(finals[1]["return"]["per_seed"], finals[0]["return"]["per_seed"],
                               rtol=1e-4)


@pytest.mark.parametrize("module", ["train", "sweep", "evaluate", "plot", "reference"])
def test_every_command_prints_its_help(module):
    """argparse formats help strings with %: a stray % once crashed ``train --help``."""
    proc = subprocess.run([sys.executable, "-m", f"experiments.{module}", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout and "Traceback" not in proc.stderr
