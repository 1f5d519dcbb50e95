"""experiments/benchmarks/gpu.sh: its dry run lists every step with its command, runs nothing
and creates nothing (the real run needs a GPU and is recorded in the README)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "benchmarks" / "gpu.sh"
STEPS = ("info", "install", "verify", "env_throughput", "scaling", "train_mappo", "train_ippo",
         "train_dqn", "train_tabular_q", "train_vdn", "train_qmix", "train_mappo_rnn")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_dry_run_lists_every_step_and_creates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, GPU_SH_DRY_RUN="1", GPU_SH_BUDGET_S="100000", OUT=str(out),
               GPU_SH_PEERS="0", GPU_SH_SITE=str(tmp_path / "site"))
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in STEPS:
        assert f"=== {name} (timeout" in proc.stdout, name
    assert "skipped" not in proc.stdout
    for learner in ("mappo", "ippo", "dqn", "tabular_q", "vdn", "qmix"):
        assert f"--learner {learner} " in proc.stdout, learner
    assert not out.exists() and not (tmp_path / "site").exists()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_small_budget_skips_steps_instead_of_overrunning(tmp_path: Path) -> None:
    env = dict(os.environ, GPU_SH_DRY_RUN="1", GPU_SH_BUDGET_S="200", OUT=str(tmp_path / "o"),
               GPU_SH_PEERS="0")
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "=== train_qmix: skipped" in proc.stdout


@pytest.mark.slow  # the script end to end: in the full suite only
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_quick_run_on_cpu_passes_verify_and_writes_a_summary(tmp_path: Path) -> None:
    # The real run refuses a CPU (its timings would not be GPU timings); a quick run, which
    # only checks the plumbing, accepts one.
    out = tmp_path / "out"
    env = dict(os.environ, GPU_SH_QUICK="1", GPU_SH_PEERS="0", GPU_SH_STEPS="info verify",
               OUT=str(out), PYTHON=sys.executable, GPU_SH_WORK=str(tmp_path / "work"))
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    status = {s["step"]: s["status"] for s in summary["steps"]}
    assert status["info"] == "ok" and status["verify"] == "ok"
    assert status["train_qmix"] == "not selected" and summary["failed_steps"] == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_lac_peer_runs_only_when_asked(tmp_path: Path) -> None:
    # learn_actor_critic against JaxMARL takes ~200 s on an H100: an opt-in, not a default
    base = dict(os.environ, GPU_SH_DRY_RUN="1", GPU_SH_BUDGET_S="100000", GPU_SH_PEERS="1",
                JAXMARL_WHEEL=str(tmp_path / "jaxmarl-0.2.0-py3-none-any.whl"),
                JAXMARL_REPO=str(tmp_path / "JaxMARL"), OUT=str(tmp_path / "o"))
    for lac, listed in (("0", False), ("1", True)):
        proc = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env={**base, "GPU_SH_LAC": lac},
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "=== install_peers (timeout" in proc.stdout
        assert "=== train_mappo_smax (timeout" in proc.stdout  # SMAX needs the peers' jaxmarl
        assert ("=== lac_peer (timeout" in proc.stdout) is listed, lac
