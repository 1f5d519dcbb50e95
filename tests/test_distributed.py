"""--distributed: two processes joined by jax.distributed.initialize on the CPU backend (gloo
collectives) run a sweep and a training run as one program over their 2 x 2 faked devices; the
results, gathered and written by process 0 alone, equal the one-process results. Plus the
flags, the arguments passed to jax.distributed.initialize, and the global mesh's layout."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments import cli, sweep, train
from jaxmarl_coop import parallel
from jaxmarl_coop.runs import RunConfig

REPO = Path(__file__).resolve().parents[1]

#: 2 settings x 3 seeds = 6 runs over 4 devices: padded to 8, the padding dropped
SWEEP_ARGS = ["--learner", "tabular_q", "--env", "penalty-v1", "--grid", "alpha=0.1,0.5",
              "--grid", "k=-50", "--seeds", "3", "--env-steps", "800", "--eval-episodes", "4",
              "--config", "num_envs=4"]
#: 4 seeds, one per device; one chunk, evaluated and checkpointed
TRAIN_ARGS = ["--learner", "tabular_q", "--env", "climbing-v1", "--seeds", "4",
              "--env-steps", "400", "--chunks", "1", "--eval-every", "1",
              "--periodic-eval-episodes", "4", "--eval-episodes", "4", "--no-gif",
              "--config", "num_envs=4"]

#: one process of the pair: argv = process id, port, sweep args, train args (JSON)
PROCESS = """
import json, sys
from pathlib import Path

from experiments import sweep, train
from jaxmarl_coop.runs import run as run_library

pid, port, sweep_args, train_args = int(sys.argv[1]), sys.argv[2], *map(json.loads, sys.argv[3:])
flags = ["--distributed", "--coordinator-address", f"localhost:{port}", "--num-processes", "2",
         "--process-id", str(pid)]
sweep.main([*sweep_args, "--out", "sweep", *flags])   # joins the processes, then sweeps
import jax

assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
run, _ = train.parse_args([*train_args, "--devices", "2"])
result = run_library(run, Path("train"), progress=False, distributed=True)
print("final return", result.evaluation["final"]["return"]["mean"], flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _csv(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), np.array([[float(x) for x in line.split(",")]
                                          for line in lines[1:]])


def _numbers(tree):
    """The numbers of a JSON tree, flattened in key order (NaN for null)."""
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in _numbers(tree[k])]
    if isinstance(tree, list):
        return [x for v in tree for x in _numbers(v)]
    if isinstance(tree, bool) or isinstance(tree, str):
        return []
    return [float("nan") if tree is None else float(tree)]


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    cwds = [tmp_path / "process0", tmp_path / "process1"]  # separate: what does 1 write?
    for cwd in cwds:
        cwd.mkdir()
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-c", PROCESS, str(i), port,
                               json.dumps(SWEEP_ARGS), json.dumps(TRAIN_ARGS)],
                              cwd=cwds[i], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:  # meanwhile, the same in this process (one device)
        ref_sweep = sweep.main([*SWEEP_ARGS, "--out", str(tmp_path / "ref_sweep")])
        train.main([*TRAIN_ARGS, "--out", str(tmp_path / "ref_train")])
        outputs = [p.communicate(timeout=150)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, text[-3000:]
    assert "results folder: sweep" in outputs[0] and "results folder" not in outputs[1]
    assert "run folder: train" in outputs[0] and "run folder" not in outputs[1]

    assert list(cwds[1].iterdir()) == []  # process 1 wrote nothing, checkpoints included
    sweep_dir, train_dir = cwds[0] / "sweep", cwds[0] / "train"
    config = json.loads((sweep_dir / "config.json").read_text())
    assert config["processes"] == 2 and config["devices"] == 4 and config["runs"] == 6
    head, got = _csv(sweep_dir / "results.csv")
    ref_head, ref = _csv(tmp_path / "ref_sweep" / "results.csv")
    assert head == ref_head and got.shape == ref.shape == (6, len(head))
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert [p["values"] for p in summary["points"]] == [p["values"]
                                                        for p in ref_sweep["points"]]

    assert json.loads((train_dir / "config.json").read_text())["processes"] == 2
    assert sorted(p.name for p in (train_dir / "checkpoints").iterdir()) == ["1"]
    head, got = _csv(train_dir / "metrics.csv")
    ref_head, ref = _csv(tmp_path / "ref_train" / "metrics.csv")
    assert head == ref_head and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    for name in ("eval.json", "marl_eval.json"):
        got, ref = (json.loads((d / name).read_text())
                    for d in (train_dir, tmp_path / "ref_train"))
        np.testing.assert_allclose(_numbers(got), _numbers(ref), rtol=1e-5)


# --------------------------------------------------------------------------------------------
# without a second process
# --------------------------------------------------------------------------------------------
class _Called(Exception):
    pass


@pytest.fixture
def initialize(monkeypatch):
    """Records the arguments of jax.distributed.initialize and stops there."""
    calls = []

    def fake(**kwargs):
        calls.append(kwargs)
        raise _Called

    monkeypatch.setattr(jax.distributed, "initialize", fake)
    return calls


FLAGS = ["--distributed", "--coordinator-address", "10.0.0.1:1234", "--num-processes", "4",
         "--process-id", "3"]
GIVEN = {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}


def test_train_flags_are_extras_not_run_config_fields():
    run, extras = train.parse_args(["--seeds", "8", *FLAGS])
    assert extras == {"distributed": True, **GIVEN}
    assert run == dataclasses.replace(RunConfig(), seeds=8)
    assert train.parse_args(["--seeds", "8"])[1] == {}
    assert not {f.name for f in dataclasses.fields(RunConfig)} & set(cli.DISTRIBUTED_OPTIONS)


@pytest.mark.parametrize("main", [
    lambda flags: train.main(["--learner", "tabular_q", "--env", "climbing-v1", *flags]),
    lambda flags: sweep.main(["--learner", "tabular_q", "--env", "climbing-v1",
                              "--grid", "alpha=0.1", *flags])], ids=["train", "sweep"])
@pytest.mark.parametrize("flags, expected", [
    (FLAGS, GIVEN),
    (["--distributed"], {}),  # all detected by JAX (Slurm, TPU pods, ...)
    (["--distributed", "--process-id", "0"], {"process_id": 0}),
])
def test_distributed_calls_initialize_with_the_flags_given(initialize, main, flags, expected):
    with pytest.raises(_Called):
        main(flags)
    assert initialize == [expected]


@pytest.mark.parametrize("flags, expected", [
    (["--process-id", "1"], "--process-id: only with --distributed"),
    (["--distributed", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be in 0 .. --num-processes - 1, got 2"),
    (["--distributed", "--num-processes", "0"], "--num-processes must be an integer >= 1"),
])
def test_bad_distributed_flags_are_one_line(initialize, capsys, flags, expected):
    for main in (train.main, sweep.main):
        args = ["--grid", "alpha=0.1"] if main is sweep.main else []
        with pytest.raises(SystemExit) as exit_info:
            main(["--learner", "tabular_q", "--env", "climbing-v1", *args, *flags])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    assert initialize == []


def test_a_failed_initialize_is_one_line(monkeypatch, capsys):
    def fail(**kwargs):
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr(jax.distributed, "initialize", fail)
    with pytest.raises(SystemExit):
        train.main(["--distributed"])
    assert capsys.readouterr().err == ("error: --distributed: jax.distributed.initialize "
                                       "failed: coordinator_address should be defined.\n")


@dataclasses.dataclass(frozen=True)
class FakeDevice:
    id: int
    process_index: int


def test_the_global_mesh_puts_each_process_in_one_block():
    devices = [FakeDevice(100 * p + i, p) for p in (2, 0, 1) for i in (1, 0, 2)]
    mesh = parallel.seed_mesh(global_devices=True, all_devices=devices)
    assert mesh.axis_names == (parallel.AXIS,) and mesh.size == 9
    assert [(d.process_index, d.id) for d in mesh.devices] == [
        (p, 100 * p + i) for p in range(3) for i in range(3)]
    mesh = parallel.seed_mesh(2, global_devices=True, all_devices=devices)
    assert [d.id for d in mesh.devices] == [0, 1, 100, 101, 200, 201]
    with pytest.raises(ValueError, match="4 devices per process requested but each of the 3 "
                                         "processes has only 3"):
        parallel.seed_mesh(4, global_devices=True, all_devices=devices)
    with pytest.raises(ValueError, match="every process needs the same number of devices"):
        parallel.seed_mesh(global_devices=True, all_devices=devices[1:])
    # one process: the global mesh is the local one
    assert list(parallel.seed_mesh(global_devices=True).devices) == jax.local_devices()


def test_one_process_broadcast_and_gather_are_identities():
    assert parallel.is_main_process()
    assert parallel.broadcast_text("runs/x") == "runs/x"
    tree = {"a": jax.numpy.arange(3), "b": np.ones(2)}
    out = parallel.gather(tree)
    assert all(isinstance(v, np.ndarray) for v in out.values())
    np.testing.assert_array_equal(out["a"], np.arange(3))
