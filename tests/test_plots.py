"""Run-folder loading, aggregation over seeds, plots and the ``experiments.plot`` CLI, on
synthetic run folders (no training, no JAX)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxmarl_coop import plots

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _summary(per_seed: list[float]) -> dict[str, object]:
    return {"mean": float(np.mean(per_seed)), "ci95": 0.5, "per_seed": per_seed}


def make_run(root: Path, name: str = "mappo-tracking-v1-test", seeds: int = 3,
             updates: int = 40, steps_per_update: int = 256, with_eval: bool = True,
             drop_last: int = 0) -> Path:
    """A run folder in the format of ``experiments.train`` (format_version 1); seed 0 lacks
    its last ``drop_last`` updates."""
    out = root / name
    out.mkdir(parents=True)
    config = {"format_version": 1,
              "run": {"learner": "mappo", "env": "tracking-v1", "seeds": seeds,
                      "env_steps": updates * steps_per_update, "chunks": 4},
              "learner_config": {"num_envs": 2, "rollout_length": 128},
              "hyperparams": {"lr": 0.002}, "num_updates": updates,
              "env_steps_per_update": steps_per_update}
    (out / "config.json").write_text(json.dumps(config))
    lines = ["seed,update,env_steps,entropy,episode_return,episode_collisions"]
    for s in range(seeds):
        for u in range(1, updates + 1 - (drop_last if s == 0 else 0)):
            ret = "nan" if u % 3 == 0 else f"{-50 + u + s:.6g}"  # no episode ended: nan
            lines.append(f"{s},{u},{u * steps_per_update},{1.6 - 0.01 * u:.6g},{ret},"
                         f"{0.1 * s:.6g}")
    (out / "metrics.csv").write_text("\n".join(lines) + "\n")
    if with_eval:
        per_seed = [float(s) for s in range(seeds)]
        metrics = {"return": _summary(per_seed), "length": _summary([50.0] * seeds),
                   "collisions": _summary([0.1] * seeds)}
        (out / "eval.json").write_text(json.dumps({
            "episodes_per_seed": 8, "final": metrics, "absolute": metrics,
            "references": {"random": {"return": _summary([-80.0] * seeds)},
                           "greedy_chase": {"return": _summary([-20.0] * seeds)}},
            "periodic": [{"env_steps": 512, "return": _summary(per_seed)}]}))
    return out


def test_load_run_shapes(tmp_path: Path) -> None:
    run = plots.load_run(make_run(tmp_path, seeds=3, updates=40))
    assert run.name == "mappo-tracking-v1-test"
    assert (run.learner, run.env, run.num_seeds) == ("mappo", "tracking-v1", 3)
    assert run.env_steps.shape == (40,) and run.env_steps[-1] == 40 * 256
    assert set(run.metrics) == {"entropy", "episode_return", "episode_collisions"}
    assert all(v.shape == (3, 40) for v in run.metrics.values())
    assert np.isnan(run.metrics["episode_return"][:, 2]).all()
    assert run.metrics["episode_return"][1, 0] == -50 + 1 + 1
    assert run.eval is not None and run.complete_updates == 40 and not run.notes


def test_load_run_incomplete_and_errors(tmp_path: Path) -> None:
    run = plots.load_run(make_run(tmp_path, name="short", drop_last=5, with_eval=False))
    assert run.eval is None and run.complete_updates == 35 and run.dropped_rows == 10
    assert run.metrics["entropy"].shape == (3, 35) and run.notes
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        plots.load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty.*config\.json is missing"):
        plots.load_run(tmp_path / "empty")
    bad = make_run(tmp_path, name="bad")
    (bad / "metrics.csv").write_text("seed,update,env_steps,episode_return\n0,1,256\n")
    with pytest.raises(ValueError, match=r"metrics\.csv, line 2: 3 fields"):
        plots.load_run(bad)
    (bad / "metrics.csv").write_text("seed,update,env_steps,episode_return\n0,1,256,abc\n")
    with pytest.raises(ValueError, match="episode_return holds 'abc'"):
        plots.load_run(bad)


def test_aggregate_mean_and_t_interval() -> None:
    values = np.array([[1.0, 10.0], [2.0, np.nan], [4.0, 12.0], [7.0, 20.0]])
    center, low, high = plots.aggregate(values, "mean")
    np.testing.assert_allclose(center, [3.5, 14.0])
    # by hand: t(0.975, df=3) = 3.182446, t(0.975, df=2) = 4.302653
    half0 = 3.182446 * np.std([1, 2, 4, 7], ddof=1) / np.sqrt(4)
    half1 = 4.302653 * np.std([10, 12, 20], ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(high - center, [half0, half1], rtol=1e-5)
    np.testing.assert_allclose(center - low, [half0, half1], rtol=1e-5)
    c, lo, hi = plots.aggregate([5.0], "mean")  # one seed: a center, no interval
    assert c == 5.0 and np.isnan(lo) and np.isnan(hi)


def test_aggregate_iqm_bootstrap() -> None:
    values = np.arange(1.0, 9.0)[::-1].copy()  # 8 seeds: IQM = mean(3, 4, 5, 6)
    center, low, high = plots.aggregate(values, "iqm", seed=3)
    assert center == pytest.approx(4.5)
    assert low <= center <= high and low < high
    again = plots.aggregate(values, "iqm", seed=3)
    assert (again[1], again[2]) == (low, high)
    columns = np.stack([values, values + 10.0, values], axis=1)
    columns[0, 2] = np.nan  # a missing seed in one column
    c, lo, hi = plots.aggregate(columns, "iqm", num_bootstrap=500)
    np.testing.assert_allclose(c[:2], [4.5, 14.5])
    assert c[2] == pytest.approx(4.0)  # seeds 1..7: drop 1 at each end, mean(2, ..., 6)
    assert np.all(lo <= c) and np.all(c <= hi)


def test_aggregate_bad_stat() -> None:
    with pytest.raises(ValueError, match=r"'median'.*'mean', 'iqm'"):
        plots.aggregate(np.ones((3, 2)), stat="median")


def test_plot_curves_writes_png_atomically(tmp_path: Path) -> None:
    run = plots.load_run(make_run(tmp_path, updates=500))
    out = tmp_path / "figs" / "curve.png"
    fig = plots.plot_curves([run], stat="iqm", path=out, points=50)
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in out.parent.iterdir()) == ["curve.png"]
    ax = fig.axes[0]
    assert len(ax.lines[0].get_xdata()) == 50
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["mappo-tracking-v1-test (3 seeds)", "random", "greedy_chase"]


def test_summary_table(tmp_path: Path) -> None:
    runs = [plots.load_run(make_run(tmp_path, name=n)) for n in ("run-a", "run-b")]
    table = plots.summary_table(runs, stat="iqm")
    assert "run-a" in table and "run-b" in table and "1 ± 0.5" in table
    assert len(table.splitlines()) == 4


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "experiments.plot", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MPLBACKEND": "Agg"})


def test_cli_table_and_png(tmp_path: Path) -> None:
    a, b = make_run(tmp_path, name="run-a"), make_run(tmp_path, name="run-b", drop_last=2)
    out = tmp_path / "cmp.png"
    proc = _cli(str(a), str(b), "--stat", "iqm", "--out", str(out), "--labels", "A", "B")
    assert proc.returncode == 0, proc.stderr
    assert "run-a" in proc.stdout and "run-b" in proc.stdout and str(out) in proc.stdout
    assert out.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("case", ["missing", "metric"])
def test_cli_user_errors(tmp_path: Path, case: str) -> None:
    run = make_run(tmp_path)
    args = [str(tmp_path / "missing")] if case == "missing" else [str(run), "--metric", "nope"]
    proc = _cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    if case == "metric":
        assert "nope" in proc.stderr and "episode_return" in proc.stderr
    assert not (run / "compare.png").exists()


def test_cli_label_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from experiments import plot

    run = make_run(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        plot.main([str(run), "--labels", "a", "b"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 --labels for 1 run") and len(err.strip().splitlines()) == 1


def make_finished(root: Path, learner: str, env: str, returns: list[float]) -> Path:
    """A finished run folder of ``learner`` on ``env`` whose seeds' final greedy returns are
    ``returns``."""
    out = make_run(root, name=f"{learner}-{env}", seeds=len(returns), updates=4)
    config = json.loads((out / "config.json").read_text())
    config["run"].update(learner=learner, env=env)
    (out / "config.json").write_text(json.dumps(config))
    saved = json.loads((out / "eval.json").read_text())
    saved["final"]["return"] = _summary(returns)
    (out / "eval.json").write_text(json.dumps(saved))
    return out


def test_the_iqm_band_is_rliables_stratified_bootstrap() -> None:
    rly = pytest.importorskip("rliable.library")
    values = np.random.default_rng(0).normal(size=(10, 3))
    center, low, high = plots.aggregate(values, "iqm", num_bootstrap=300, seed=5)
    np.random.seed(5)  # what plots.aggregate seeds rliable's resampling with
    want = rly.StratifiedBootstrap(np.sort(values, axis=0)).conf_int(  # seeds in order
        lambda x: plots._trimmed_mean(np.sort(x, axis=0), 10, axis=0), reps=300, size=0.95,
        method="percentile")
    np.testing.assert_allclose(low, want[0])
    np.testing.assert_allclose(high, want[1])
    np.testing.assert_allclose(center, [np.mean(np.sort(c)[2:8]) for c in values.T])


def test_compare_normalises_per_task_and_ranks(tmp_path: Path) -> None:
    pytest.importorskip("rliable")
    runs = [make_finished(tmp_path / "a", "mappo", "spread-v3", [-30.0, -28.0, -29.0, -27.0]),
            make_finished(tmp_path / "b", "ippo", "spread-v3", [-60.0, -58.0, -59.0, -57.0]),
            make_finished(tmp_path / "c", "mappo", "tracking-v1", [40.0, 42.0, 41.0, 43.0]),
            make_finished(tmp_path / "d", "ippo", "tracking-v1", [10.0, 12.0, 11.0, 13.0])]
    result = plots.compare(runs, reps=200)
    assert result["algorithms"] == ["ippo", "mappo"]
    assert result["tasks"] == ["spread-v3", "tracking-v1"]
    assert result["normalisation"]["low"] == {"spread-v3": -60.0, "tracking-v1": 10.0}
    assert result["normalisation"]["high"] == {"spread-v3": -27.0, "tracking-v1": 43.0}
    # every mappo seed beats every ippo seed on both tasks: P(mappo > ippo) = 1, and back 0
    poi = result["probability_of_improvement"]
    assert poi["mappo > ippo"]["value"] == 1.0 and poi["ippo > mappo"]["value"] == 0.0
    iqm = result["iqm"]
    assert iqm["ippo"]["high"] < iqm["mappo"]["low"]  # separated intervals
    assert 0.0 <= iqm["ippo"]["value"] < 0.2 and 0.8 < iqm["mappo"]["value"] <= 1.0
    assert result == plots.compare(runs, reps=200)  # deterministic
    twin = make_finished(tmp_path / "e", "ippo2", "spread-v3", [-30.0, -28.0, -29.0, -27.0])
    same = plots.compare([*runs[:2], twin], labels=["x", "y", "z"], reps=100)
    assert same["probability_of_improvement"]["x > z"]["value"] == pytest.approx(0.5)
    profile = result["performance_profile"]
    assert profile["tau"][0] == 0.0 and profile["mappo"]["fraction"][-1] == 0.0


@pytest.mark.slow  # three runs and a subprocess: in the full suite only
def test_compare_command_line(tmp_path: Path) -> None:
    pytest.importorskip("rliable")
    dirs = [make_finished(tmp_path / k, learner, env, r) for k, learner, env, r in (
        ("a", "mappo", "spread-v3", [1.0, 2.0, 3.0]), ("b", "qmix", "spread-v3", [0.0, 1.0, 2.0]))]
    out = tmp_path / "cmp.png"
    proc = _cli("--compare", *map(str, dirs), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "probability of improvement" in proc.stdout and "mappo > qmix" in proc.stdout
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert json.loads(out.with_suffix(".json").read_text())["algorithms"] == ["mappo", "qmix"]
    one = _cli("--compare", str(dirs[0]), "--out", str(tmp_path / "x.png"))
    assert one.returncode == 2 and "at least 2 algorithms" in one.stderr
    assert len(one.stderr.strip().splitlines()) == 1
