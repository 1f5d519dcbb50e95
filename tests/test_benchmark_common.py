"""The helpers every benchmark script reports and times with (``experiments.benchmarks.common``),
that the scripts share only that library, and the benchmarks' tuned settings in
``jaxmarl_coop.presets``."""

import argparse
import ast
import json
import math
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.benchmarks import common
from experiments.benchmarks.common import ci, wilson
from jaxmarl_coop import presets

BENCHMARKS = Path(common.__file__).parent


# --------------------------------------------------------------------------------------------
# statistics and formatting
# --------------------------------------------------------------------------------------------
def test_wilson_interval_known_values() -> None:
    # Textbook values of the 95% Wilson score interval.
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(10, 10)
    assert lo == pytest.approx(0.7225, abs=1e-4) and hi == 1.0
    lo, hi = wilson(3, 10)
    assert (lo, hi) == (pytest.approx(0.1078, abs=1e-4), pytest.approx(0.6032, abs=1e-4))


def test_wilson_contains_the_fraction_and_narrows_with_n() -> None:
    for n in (8, 32, 128):
        lo, hi = wilson(n // 4, n)
        assert lo < 0.25 < hi
    assert np.diff([wilson(n // 4, n)[1] - wilson(n // 4, n)[0] for n in (8, 32, 128)]).max() < 0


def test_wilson_of_no_trials_is_nan() -> None:
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_ci_averages_each_seed_first() -> None:
    out = ci([[1.0, 3.0], [3.0, 5.0]])
    np.testing.assert_allclose(out["per_seed"], [2.0, 4.0])
    assert out["mean"] == pytest.approx(3.0)
    assert out["ci95"] > 0


def test_fmt_pm_and_fraction_ci() -> None:
    assert common.fmt(None, ".2f") == "-" and common.fmt(float("nan"), ".2f") == "-"
    assert common.fmt(1234.5, ",.0f") == "1,234"
    assert common.pm({"mean": 1.0, "ci95": 0.25}) == "1.00 ± 0.25"
    assert common.pm({"mean": 1.0, "ci95": float("nan")}, ".1f") == "1.0 ± -"
    assert common.pm(None) == "-"
    assert common.fraction_ci(0.5, (0.25, 0.75)) == "0.50 [0.25, 0.75]"


def test_table_puts_a_rule_as_wide_as_the_header_under_it() -> None:
    assert common.table("name  value", (f"{n:<5} {v:>5}" for n, v in [("a", 1), ("b", 22)])
                        ) == "name  value\n-----------\na         1\nb        22"
    assert common.table("empty", []) == "empty\n-----"


def test_game_cells_line_up_under_the_game_head() -> None:
    rows = [{"game": "climbing-v1", "k": None}, {"game": "penalty-v1", "k": -25.0}]
    cells = [common.game_cells(r) for r in rows]
    assert cells == ["climbing-v1      -", "penalty-v1     -25"]
    assert {len(c) for c in cells} == {len(common.GAME_HEAD)}


def test_machine_summary_line() -> None:
    machine = {"cpu_model": "CPU X", "usable_cores": 2, "backend": "cpu", "jax_version": "0.1",
               "other_cpu_busy_start": 0.05, "device_kind": "cpu",
               "devices": ["TFRT_CPU_0", "TFRT_CPU_1"]}
    assert common.machine_summary(machine) == (
        "machine: CPU X, 2 cores, backend cpu, jax 0.1; CPUs busy with other processes: 5% "
        "before, - after")
    line = common.machine_summary({**machine, "other_cpu_busy_end": 0.5}, 12.4, device=True)
    assert line.endswith("device cpu (TFRT_CPU_0, TFRT_CPU_1), jax 0.1; CPUs busy with other "
                         "processes: 5% before, 50% after; total 12 s")


# --------------------------------------------------------------------------------------------
# CPU load
# --------------------------------------------------------------------------------------------
def _fake_proc(root: Path, cpu: list[int], utime: int, stime: int) -> Path:
    (root / "self").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text("cpu  " + " ".join(map(str, cpu)) + "\ncpu0 1 2 3 4\n")
    # the command name may hold spaces and parentheses: fields are counted after the last ")"
    fields = ["S"] + ["0"] * 10 + [str(utime), str(stime)] + ["0"] * 5
    (root / "self" / "stat").write_text("4242 (python (x) y) " + " ".join(fields) + "\n")
    return root


def test_cpu_sample_reads_total_idle_and_own_ticks(tmp_path: Path) -> None:
    # user nice system idle iowait irq softirq
    proc = _fake_proc(tmp_path, [100, 0, 50, 800, 50, 0, 0], utime=30, stime=10)
    assert common.cpu_sample(proc) == (1000, 850, 40)
    assert common.cpu_sample(tmp_path / "missing") is None
    (proc / "stat").write_text("cpu  x y\n")
    assert common.cpu_sample(proc) is None


def test_cpu_sample_of_this_machine() -> None:
    sample = common.cpu_sample()
    if sample is None:
        pytest.skip("no /proc here")
    total, idle, own = sample
    assert total >= idle >= 0 and own >= 0


def test_others_busy_excludes_idle_and_this_process() -> None:
    start, end = (1000, 800, 40), (2000, 1300, 240)  # of 1000 ticks: 500 idle, 200 ours
    assert common.others_busy(start, end) == pytest.approx(0.3)
    assert common.others_busy(start, (2000, 2000, 40)) == 0.0  # clamped at 0
    assert common.others_busy(None, end) is None and common.others_busy(end, start) is None
    ticks = os.sysconf("SC_CLK_TCK")
    assert common.own_cores((0, 0, 0), (0, 0, 2 * ticks), 1.0) == pytest.approx(2.0)
    assert common.own_cores(None, end, 1.0) is None and common.own_cores(start, end, 0) is None


# --------------------------------------------------------------------------------------------
# timing, rollouts
# --------------------------------------------------------------------------------------------
def test_timed_train_and_repeats_report_compile_apart() -> None:
    def fn(x: jax.Array) -> jax.Array:
        return jnp.sum(x * 2.0)

    out, timing = common.timed_train(fn, jnp.ones(4))
    assert float(out) == 8.0
    assert {"lower_s", "compile_s", "trace_and_compile_s", "run_s", "other_cpu_busy",
            "own_cores_used"} <= set(timing)
    assert timing["trace_and_compile_s"] >= timing["compile_s"] > 0 and timing["run_s"] > 0
    compiled, _ = common.compile_timed(fn, jnp.ones(4))
    runs = common.timed_repeats(compiled, lambda i: (jnp.full(4, float(i)),), 3)
    assert len(runs["run_s"]) == 3 and runs["median_run_s"] == sorted(runs["run_s"])[1]
    common.add_throughput(timing, seeds=4, steps_per_seed=100)
    assert timing["env_steps_per_s"] == pytest.approx(4 * timing["env_steps_per_s_per_seed"])


def test_random_rollout_sums_every_steps_checksum() -> None:
    def reset(key: jax.Array, offset: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jnp.zeros(()), offset

    def step(key: jax.Array, state: jax.Array, actions: jax.Array, offset: jax.Array
             ) -> tuple[jax.Array, jax.Array]:
        assert actions.shape == (5, 3) and actions.dtype == jnp.int32
        return state + 1, jnp.ones(()) + 0 * jnp.sum(actions)

    rollout = common.random_rollout(reset, step, steps=7, batch=5, num_agents=3, num_actions=4)
    state, checksum = jax.jit(rollout)(jax.random.PRNGKey(0), jnp.asarray(10.0))
    assert float(state) == 7 and float(checksum) == 17.0


def test_rollout_probe_steps_and_throughput() -> None:
    assert common.rollout_probe_steps(32, 4, target_s=0.0) == 32  # --quick: T is the probe
    assert common.rollout_probe_steps(64, 1, target_s=0.5) == common.PROBE_ENV_STEPS
    assert common.rollout_probe_steps(64, 1 << 20, target_s=0.5) == 64
    row = common.rollout_throughput({"steps": 100, "median_run_s": 0.5}, batch=8, num_agents=3)
    assert row["env_steps_per_s"] == 1600 and row["agent_steps_per_s"] == 4800
    assert (row["batch"], row["num_agents"]) == (8, 3)


# --------------------------------------------------------------------------------------------
# results.json, command lines, peers
# --------------------------------------------------------------------------------------------
def test_save_results_stamps_the_end_and_writes_atomically(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.json"
    data = {"machine": {}, "rows": [np.float32(1.5), np.arange(2)]}
    common.save_results(path, data, start=time.perf_counter() - 2.0)
    saved = json.loads(path.read_text())
    assert saved["rows"] == [1.5, [0, 1]] and len(saved["machine"]["loadavg_end"]) == 3
    assert saved["total_wall_s"] >= 2.0
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary left
    common.save_results(path, {"machine": {}, "rows": []})  # without start: no wall time
    assert "total_wall_s" not in json.loads(path.read_text())


def test_start_run_makes_the_folder_and_the_header(tmp_path: Path) -> None:
    args = argparse.Namespace(out=str(tmp_path / "bench"), quick=True)
    out, start, data = common.start_run("demo", ["--quick"], args, "how")
    assert out.is_dir() and start <= time.perf_counter()
    assert data["benchmark"] == "demo" and data["method"] == "how"
    assert data["settings"] == {"out": str(out), "quick": True}
    assert data["command"][-3:] == ["-m", "experiments.benchmarks.demo", "--quick"]
    assert data["machine"]["cpu_count"] and data["machine"]["jax_version"] == jax.__version__


def test_parser_helpers() -> None:
    doc = "Title line.\n\nMore text\n  kept as written."
    p = common.benchmark_parser(doc)
    assert p.description == "Title line." and p.epilog == "More text\n  kept as written."
    assert common.benchmark_parser(doc, epilog=False).epilog is None
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--sizes", nargs="+", type=int, default=None)
    args = p.parse_args(["--seeds", "3"])
    common.fill_defaults(args, {"seeds": 8, "sizes": (1, 2)})
    assert args.seeds == 3 and args.sizes == [1, 2]
    with pytest.raises(SystemExit):
        common.check_at_least_one(p, argparse.Namespace(seeds=0), "seeds")


def test_run_peer_skips_or_records_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    def args(skip: bool, repo: str | None) -> argparse.Namespace:
        return argparse.Namespace(skip_jaxmarl=skip, jaxmarl_repo=repo)

    def fails() -> dict:
        raise FileNotFoundError("no baselines here")

    assert common.run_peer(args(True, "x"), "IQL", fails)["status"] == "skipped"
    assert common.run_peer(args(False, None), "IQL", fails)["status"] == "skipped"
    assert common.run_peer(args(False, "x"), "IQL", fails) == {
        "status": "failed", "error": "FileNotFoundError: no baselines here"}
    assert common.run_peer(args(False, "x"), "IQL", lambda: {"status": "ok"}) == {"status": "ok"}
    assert "JaxMARL IQL not run" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# one library: no benchmark script imports another
# --------------------------------------------------------------------------------------------
def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_benchmark_scripts_import_only_the_common_library() -> None:
    scripts = sorted(set(BENCHMARKS.glob("*.py")) - {BENCHMARKS / "__init__.py",
                                                     BENCHMARKS / "common.py"})
    assert len(scripts) >= 5
    for script in scripts:
        ours = {m for m in _imported_modules(script) if m.startswith("experiments")}
        assert all(m == "experiments.benchmarks" or m.startswith("experiments.benchmarks.common")
                   for m in ours), (script, ours)
    common_imports = _imported_modules(BENCHMARKS / "common.py")
    assert not [m for m in common_imports if m.startswith("experiments")]


# --------------------------------------------------------------------------------------------
# the benchmarks' tuned settings (jaxmarl_coop.presets): the published results depend on them
# --------------------------------------------------------------------------------------------
def test_benchmark_settings_keep_their_published_values() -> None:
    q_config = {"num_envs": 8, "rollout_length": 26, "buffer_size": 130_000,
                "batch_size": 832, "learning_starts": 10_000, "num_epochs": 1,
                "target_update_interval": 200, "n_step": 1, "double_dqn": True,
                "share_params": True, "hidden": (64, 64), "anneal_lr": True}
    q_hp = {"lr": 0.005, "gamma": 0.9, "epsilon_start": 1.0, "epsilon_end": 0.05,
            "epsilon_decay_fraction": 0.1, "tau": 1.0, "max_grad_norm": 25.0}
    q_quick = {"buffer_size": 2080, "batch_size": 64, "learning_starts": 416,
               "target_update_interval": 4}
    a2c_hp = {"ent_coef": 0.01, "gamma": 0.99, "gae_lambda": 0.95, "vf_coef": 0.5,
              "max_grad_norm": 0.5}
    expected = {
        "PPO_CONFIG": {"num_envs": 16, "rollout_length": 128, "num_epochs": 4,
                       "num_minibatches": 4, "hidden": (64, 64), "activation": "tanh",
                       "anneal_lr": True},
        "PPO_HP": {"lr": 1e-3, "ent_coef": 0.01, "gamma": 0.99, "gae_lambda": 0.95,
                   "clip_eps": 0.2, "vf_coef": 0.5, "max_grad_norm": 0.5},
        "PPO_HP_BY_ENV": {"spread-v3": {"ent_coef": 0.06}},
        "A2C_CONFIG": {"num_envs": 16, "rollout_length": 16, "hidden": (64, 64),
                       "activation": "tanh", "anneal_lr": True},
        "A2C_HP": a2c_hp, "MAA2C_HP": {"lr": 4e-3, **a2c_hp}, "IA2C_HP": {"lr": 2e-3, **a2c_hp},
        "TABULAR_HP": {"alpha": 0.1, "gamma": 0.0, "q_init": 0.0},
        "TABULAR_EXPLORATION": {
            "eps 1->0.05 over 50%": {"epsilon_start": 1.0, "epsilon_end": 0.05,
                                     "epsilon_decay_fraction": 0.5},
            "eps 1->0 over 10%": {"epsilon_start": 1.0, "epsilon_end": 0.0,
                                  "epsilon_decay_fraction": 0.1}},
        "MATRIX_TABULAR_HP": {"alpha": 0.1, "gamma": 0.0, "epsilon_start": 1.0,
                              "epsilon_end": 0.05, "epsilon_decay_fraction": 0.5},
        "MATRIX_Q_CONFIG": {"num_envs": 4, "rollout_length": 1, "buffer_size": 400,
                            "batch_size": 32, "learning_starts": 64, "num_epochs": 1,
                            "target_update_interval": 10, "n_step": 1, "double_dqn": True,
                            "share_params": True, "hidden": (16,), "anneal_lr": False},
        "MATRIX_Q_HP": {"lr": 3e-3, "gamma": 0.0, "epsilon_start": 1.0, "epsilon_end": 0.05,
                        "epsilon_decay_fraction": 0.5, "tau": 1.0, "max_grad_norm": 10.0},
        "MATRIX_QMIX_MIXER": {"mixer_embed": 8, "hypernet_hidden": 16},
        "MATRIX_PPO_CONFIG": {"num_envs": 8, "rollout_length": 25, "num_epochs": 4,
                              "num_minibatches": 2, "hidden": (32,), "activation": "tanh",
                              "anneal_lr": True},
        "MATRIX_PPO_HP": {"lr": 3e-3, "gamma": 0.0, "gae_lambda": 0.95, "ent_coef": 0.01},
        "Q_CONFIG": q_config, "Q_HP": q_hp, "Q_QUICK": q_quick,
        "QMIX_MIXER": {"mixer_embed": 32, "hypernet_hidden": 128},
        "DQN_MATCHED": q_config, "DQN_HP": q_hp, "DQN_QUICK": q_quick,
        "HYSTERETIC_BETA": 0.1,
    }

    def exact(a: object, b: object) -> bool:  # equal, and of the same types throughout
        if type(a) is not type(b):
            return False
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(exact(a[k], b[k]) for k in a)
        if isinstance(a, tuple):
            return len(a) == len(b) and all(map(exact, a, b))
        return a == b

    for name, value in expected.items():
        assert exact(getattr(presets, name), value), name


def test_matrix_q_settings_are_the_train_presets_numbers() -> None:
    """mechanisms' matrix-game Q-learners and the penalty-vdn train presets: one source."""
    from jaxmarl_coop.learners.dqn import DQNConfig, DQNHyperparams

    def pairs(items: tuple[str, ...]) -> dict[str, str]:
        return dict(item.split("=", 1) for item in items)

    config, hp = pairs(presets.MATRIX_Q_RUN_CONFIG), pairs(presets.MATRIX_Q_RUN_HP)
    assert set(config) <= set(presets.MATRIX_Q_CONFIG) and set(hp) <= set(presets.MATRIX_Q_HP)
    for name, value in presets.MATRIX_Q_CONFIG.items():
        if name not in config:  # the train preset leaves it to the learner's default
            assert getattr(DQNConfig, name) == value, name
        elif isinstance(value, tuple):
            assert tuple(int(v) for v in config[name].split(",")) == value, name
        else:
            assert int(config[name]) == value, name
    for name, value in presets.MATRIX_Q_HP.items():
        default = getattr(DQNHyperparams, name)
        assert (float(hp[name]) if name in hp else default) == value, name
