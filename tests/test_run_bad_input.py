"""The bad-input contract of the command lines and the run library (docs/bad-input.md): a
refused command prints one line on stderr, exits with status 2 and leaves every folder as it
was, byte for byte; resume trusts the checkpoint's own settings; an unreadable checkpoint is
skipped, never deleted; a run can be extended; no command writes over a run's own files.

One tiny tabular run (penalty game, 4 chunks, 2 seeds) is trained once for the module; every
test that changes a folder works on a copy of it."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from folder_checks import assert_refused, snapshot

from experiments import evaluate, plot, reference, train
from experiments import sweep as sweep_cli
from jaxmarl_coop import checkpoints, load_run

ARGS = ["--learner", "tabular_q", "--env", "penalty-v1", "--seeds", "2", "--env-steps", "400",
        "--chunks", "4", "--eval-every", "2", "--periodic-eval-episodes", "2",
        "--eval-episodes", "4", "--no-gif", "--config", "num_envs=2",
        "--config", "rollout_length=10"]
REPO = Path(__file__).resolve().parents[1]
#: the run's results: what a resumed or recovered run must reproduce byte for byte
RESULTS = ("metrics.csv", "eval.json", "marl_eval.json")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bad-input") / "run"
    train.main([*ARGS, "--out", str(out)])
    assert checkpoints.all_steps(out / "checkpoints") == [3, 4]
    return out


def _copy(run_dir: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / name))


def _results(path: Path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in RESULTS}


# --------------------------------------------------------------------------------------------
# options: one line naming the option, before anything runs or is written
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "expected"), [
    (["--hp", "lr=abc"], "lr"),
    (["--hp", "lr=nan"], "lr"),
    (["--hp", "ent_coef=1e39"], "ent_coef"),
    (["--env-param", "max_steps=abc"], "max_steps"),
    (["--env-param", "max_steps=2.5"], "max_steps"),
    (["--env-param", "max_steps=99999999999"], "max_steps"),
    (["--config", "hidden=abc"], "--config hidden"),
    (["--config", "hidden=64,-1"], "--config hidden"),
    (["--seed", "4294967296"], "--seed must be an integer in 0 .. 2147483647"),
    (["--env-steps", str(10**13)], "at most 2,147,483,647 fit the update counter"),
])
def test_train_refuses_a_bad_value_in_one_line(argv, expected, tmp_path, capsys):
    out = tmp_path / "new"
    assert_refused(train.main, [*argv, "--out", str(out)], capsys, expected, out)


def test_out_must_be_a_folder_and_not_inside_a_run(run_dir, tmp_path, capsys):
    assert_refused(train.main, [*ARGS, "--out", str(run_dir / "config.json")], capsys,
                   "config.json is a file, not a folder", run_dir)
    assert_refused(train.main, [*ARGS, "--out", str(run_dir / "checkpoints" / "new")], capsys,
                   "lies inside checkpoints of the run", run_dir)
    assert_refused(train.main, [*ARGS, "--out", str(run_dir)], capsys,
                   "already holds a run", run_dir)
    (tmp_path / "a-file").write_text("x")
    assert_refused(train.main, [*ARGS, "--out", str(tmp_path / "a-file" / "run")], capsys,
                   "a-file is a file, not a folder", tmp_path)
    assert_refused(sweep_cli.main, ["--grid", "lr=0.1", "--out", str(run_dir / "metrics.csv")],
                   capsys, "metrics.csv is a file, not a folder", run_dir)
    assert_refused(reference.main, ["--out", str(run_dir)], capsys,
                   "holds a training run or a sweep", run_dir)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--hp", "alpha=abc"], "alpha"),
    (["--grid", "max_steps=10.5,20"], "--grid max_steps: max_steps is an integer, got 10.5"),
    (["--grid", "max_steps=10,99999999999"], "--grid max_steps: 99999999999 does not fit"),
    (["--grid", "alpha=nan"], "--grid alpha: NaN"),
    (["--grid", "alpha=0.1,0.1"], "--grid alpha: a value is given twice"),
])
def test_sweep_refuses_a_bad_value_in_one_line(argv, expected, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["--learner", "tabular_q", "--env", "penalty-v1", *argv, "--out", str(out)]
    if "--grid" not in argv:
        argv += ["--grid", "alpha=0.1,0.5"]
    assert_refused(sweep_cli.main, argv, capsys, expected, out)


def test_a_sweep_records_what_it_ran(tmp_path):
    """An integer param given 20.0 runs as 20 and is recorded as 20; the episodes it ran
    were that long."""
    out = tmp_path / "sweep"
    sweep_cli.main(["--learner", "tabular_q", "--env", "penalty-v1", "--grid",
                    "max_steps=10,20.0", "--seeds", "1", "--env-steps", "100",
                    "--eval-episodes", "2", "--config", "num_envs=2", "--out", str(out)])
    assert json.loads((out / "config.json").read_text())["axes"] == {"max_steps": [10, 20]}
    lines = (out / "results.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    assert sorted((r["max_steps"], float(r["eval_length"])) for r in rows) == [
        ("10", 10.0), ("20", 20.0)]


# --------------------------------------------------------------------------------------------
# evaluate and plot never write over a run's own files
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("option", "target", "expected"), [
    ("--json", "eval.json", "would overwrite eval.json of the run"),
    ("--json", "config.json", "would overwrite config.json of the run"),
    ("--json", "marl_eval.json", "would overwrite marl_eval.json"),
    ("--json", "timing.json", "would overwrite timing.json"),
    ("--json", "checkpoints/4/extra.json", "would overwrite checkpoints of the run"),
    ("--gif", "rollout.gif", "would overwrite rollout.gif of the run"),
    ("--gif", "curve.png", "would overwrite curve.png"),
    ("--json", "metrics.csv", "would overwrite metrics.csv"),
    ("--json", ".", "is a folder"),
])
def test_evaluate_refuses_to_write_over_the_run(option, target, expected, run_dir, capsys):
    assert_refused(evaluate.main, [str(run_dir), option, str(run_dir / target)], capsys,
                   expected, run_dir)


def test_evaluate_refuses_one_file_for_two_outputs(run_dir, tmp_path, capsys):
    same = str(tmp_path / "out")
    assert_refused(evaluate.main, [str(run_dir), "--json", same, "--gif", same], capsys,
                   "--json and --gif name the same file", run_dir, tmp_path)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--out", "curve.png"], "would overwrite curve.png of the run"),
    (["--out", "metrics.csv"], "would overwrite metrics.csv"),
    (["--compare", "--out", "eval.png"], "--out (its .json)"),
    (["--out", "."], "is a folder"),
])
def test_plot_refuses_to_write_over_the_run(argv, expected, run_dir, capsys):
    argv = [str(run_dir / a) if a in ("curve.png", "metrics.csv", "eval.png", ".") else a
            for a in argv]
    assert_refused(plot.main, [str(run_dir), *argv], capsys, expected, run_dir)


# --------------------------------------------------------------------------------------------
# resume: only --env-steps may come with it, and the checkpoint's settings are the truth
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("extra", "expected"), [
    (["--learner", "qmix", "--seeds", "3"], "--learner, --seeds: not with --resume"),
    (["--preset", "spread-mappo"], "--preset: not with --resume"),
    (["--no-gif"], "--gif: not with --resume"),
    (["--hp", "alpha=0.5"], "--hp: not with --resume"),
    (["--env-steps", "100"], "would shorten the run to 5 updates from 20"),
    (["--env-steps", "0"], "--env-steps must be an integer >= 1"),
])
def test_resume_refuses_other_options(extra, expected, run_dir, capsys):
    assert_refused(train.main, ["--resume", str(run_dir), *extra], capsys, expected, run_dir)


def _edit_run(**fields):
    return lambda c: c["run"].update(fields)


CONFIG_EDITS = {
    "env_steps": (_edit_run(env_steps=40000),
                  "env_steps is 40000 in config.json but 400 in the checkpoint"),
    "hp": (_edit_run(hp=["alpha=0.3"]), 'hp is ["alpha=0.3"] in config.json but []'),
    "seeds": (_edit_run(seeds=3), "seeds is 3 in config.json but 2 in the checkpoint"),
    "learner": (_edit_run(learner="qmix"), 'learner is "qmix" in config.json'),
    "derived": (lambda c: c["hyperparams"].update(alpha=0.3),
                "hyperparams.alpha is 0.3 but the run's settings give 0.1"),
    "no run": (lambda c: c.pop("run"), "has no 'run' object"),
    "unknown field": (_edit_run(wings=2), "run has no field 'wings'"),
    "invalid value": (_edit_run(seeds="abc"), "--seeds must be an integer >= 1, got 'abc'"),
    "invalid pairs": (_edit_run(env_param=5), "--env-param must be NAME=VALUE strings"),
    "invalid hp": (_edit_run(hp=["alpha=abc"]), "alpha"),
}
CONFIG_TEXTS = {"not JSON": ("{", "config.json is not valid JSON"),
                "empty": ("", "config.json is not valid JSON"),
                "a list": ("[1, 2]", "should hold a JSON object, not list"),
                "not UTF-8": ("\udcff", "is not UTF-8")}


@pytest.mark.parametrize("case", [*CONFIG_EDITS, *CONFIG_TEXTS])
def test_resume_and_evaluate_refuse_a_bad_config_json(case, run_dir, tmp_path, capsys):
    out = _copy(run_dir, tmp_path)
    if case in CONFIG_EDITS:
        edit, expected = CONFIG_EDITS[case]
        config = json.loads((out / "config.json").read_text())
        edit(config)
        (out / "config.json").write_text(json.dumps(config))
    else:
        text, expected = CONFIG_TEXTS[case]
        (out / "config.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    assert_refused(train.main, ["--resume", str(out)], capsys, expected, out)
    assert_refused(evaluate.main, [str(out), "--episodes", "2"], capsys, expected, out)


# --------------------------------------------------------------------------------------------
# unreadable checkpoints: skipped with a warning, moved aside on resume, never deleted
# --------------------------------------------------------------------------------------------
DAMAGE = {"data": "state/d/*", "meta": "meta/metadata", "state_metadata": "state/_METADATA"}


def _truncate(checkpoint: Path, pattern: str) -> None:
    files = glob.glob(str(checkpoint / pattern))
    assert files, pattern
    for name in files:
        data = Path(name).read_bytes()
        Path(name).write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", DAMAGE)
def test_evaluate_skips_an_unreadable_newest_checkpoint(damage, run_dir, tmp_path, capsys):
    out = _copy(run_dir, tmp_path)
    _truncate(out / "checkpoints" / "4", DAMAGE[damage])
    before = snapshot(out)
    capsys.readouterr()
    result = evaluate.main([str(out), "--episodes", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint 4 unreadable" in err[0], err
    assert "left in place; using checkpoint 3 (update 15 of 20)" in err[0]
    assert result["env_steps_per_seed"] == 300
    assert snapshot(out) == before


@pytest.mark.parametrize("damage", DAMAGE)
def test_resume_falls_back_to_the_previous_checkpoint(damage, run_dir, tmp_path, capsys):
    out = _copy(run_dir, tmp_path)
    _truncate(out / "checkpoints" / "4", DAMAGE[damage])
    damaged = {Path(k).relative_to(out / "checkpoints" / "4"): v
               for k, v in snapshot(out / "checkpoints" / "4").items()}
    capsys.readouterr()
    train.main(["--resume", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "checkpoint 4 unreadable" in err[0], err
    assert f"moved to {out / 'corrupt-checkpoints'} (not deleted); resuming {out} from " \
           "checkpoint 3 (update 15 of 20)" in err[0]
    kept = out / "corrupt-checkpoints" / "4"  # byte for byte what was damaged
    assert {Path(k).relative_to(kept): v for k, v in snapshot(kept).items()} == damaged
    assert _results(out) == _results(run_dir)
    assert checkpoints.all_steps(out / "checkpoints") == [3, 4]


@pytest.mark.slow  # two subprocesses: in the full suite only
def test_as_commands_they_print_one_line_and_no_late_tracebacks(run_dir, tmp_path):
    """Orbax's reads still pending after a failed one used to end in asyncio tracebacks at
    exit ("Event loop is closed", five of them for a seeds mismatch): run as commands, a
    refused resume prints one line, an evaluation past a damaged checkpoint one warning."""
    edited = _copy(run_dir, tmp_path, "edited")
    config = json.loads((edited / "config.json").read_text())
    config["run"]["seeds"] = 3
    (edited / "config.json").write_text(json.dumps(config))
    damaged = _copy(run_dir, tmp_path, "damaged")
    _truncate(damaged / "checkpoints" / "4", DAMAGE["data"])
    for argv, code, expected in (
            (["experiments.train", "--resume", str(edited)], 2, "error: "),
            (["experiments.evaluate", str(damaged), "--episodes", "2"], 0, "warning: ")):
        before = snapshot(edited, damaged)
        proc = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True,
                              text=True, timeout=240)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == code and len(lines) == 1, proc.stderr[-3000:]
        assert lines[0].startswith(expected), lines
        assert snapshot(edited, damaged) == before


def test_no_intact_checkpoint_is_one_line(run_dir, tmp_path, capsys):
    out = _copy(run_dir, tmp_path)
    for step in ("3", "4"):
        _truncate(out / "checkpoints" / step, DAMAGE["data"])
    for main, argv in ((train.main, ["--resume", str(out)]),
                       (evaluate.main, [str(out), "--episodes", "2"])):
        line = assert_refused(main, argv, capsys, "no intact checkpoint in", out)
        assert "step 4: its array" in line and "step 3: its array" in line


# --------------------------------------------------------------------------------------------
# extending a run
# --------------------------------------------------------------------------------------------
def test_a_run_extended_continues_its_metrics_and_says_so(run_dir, tmp_path, capsys):
    out = _copy(run_dir, tmp_path, "extended")
    capsys.readouterr()
    train.main(["--resume", str(out), "--env-steps", "550"])  # rounded up to 6 chunks of 5
    note = capsys.readouterr().err
    assert "extending" in note and "(20 -> 30 updates, 4 -> 6 chunks) from update 20" in note
    before = (run_dir / "metrics.csv").read_text().splitlines()
    after = (out / "metrics.csv").read_text().splitlines()
    assert after[0] == before[0] and len(after) == 1 + 2 * 30
    assert set(before) <= set(after)  # the first 20 updates of each seed, unchanged
    config = json.loads((out / "config.json").read_text())
    assert (config["run"]["env_steps"], config["run"]["chunks"]) == (600, 6)
    assert (config["num_updates"], config["chunks"], config["env_steps_per_seed"]) == (30, 6,
                                                                                       600)
    (extension,) = config["extensions"]
    assert (extension["at_update"], extension["env_steps_before"], extension["env_steps"],
            extension["num_updates_before"]) == (20, 400, 600, 20)
    assert extension["from"] == {**json.loads((run_dir / "config.json").read_text())["run"],
                                 "out": str(out)}
    data = load_run(out)  # the folder agrees with itself
    assert data.planned_env_steps == 600 and data.env_steps[-1] == 600
    assert [p["env_steps"] for p in data.eval["periodic"]] == [200, 400, 600]
    assert len(json.loads((out / "timing.json").read_text())["invocations"]) == 2
    assert checkpoints.all_steps(out / "checkpoints") == [5, 6]
    # an extension interrupted, before and after its first checkpoint, ends the same
    cut = _copy(run_dir, tmp_path, "cut")
    train.main(["--resume", str(cut), "--env-steps", "600", "--stop-after-chunks", "5"])
    shutil.rmtree(cut / "checkpoints" / "5")  # as if killed before the extension's first one
    train.main(["--resume", str(cut)])
    assert _results(cut) == _results(out)
    # and a resumed extended run is checked against its own, extended, settings
    assert_refused(train.main, ["--resume", str(out), "--env-steps", "500"], capsys,
                   "would shorten the run to 25 updates from 30", out)


def test_a_callback_into_orbaxs_closed_loop_prints_nothing(monkeypatch, capsys):
    """tensorstore finishing an abandoned read calls into asyncio's closed loop; its
    traceback came through ``sys.excepthook``, sometimes before our one-line warning."""
    import asyncio

    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    checkpoints._install_read_noise_filters()
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as err:
        sys.excepthook(type(err), err, err.__traceback__)
    assert capsys.readouterr().err == ""
    try:
        raise RuntimeError("something else")
    except RuntimeError as err:
        sys.excepthook(type(err), err, err.__traceback__)
    assert "something else" in capsys.readouterr().err  # other errors are still shown


def test_an_abandoned_reads_task_is_not_logged_after_a_failed_read(monkeypatch, caplog):
    """Collected after a failed read, orbax's abandoned read tasks made asyncio log "Task
    exception was never retrieved" with tensorstore's error (seven lines after the warning)."""
    import asyncio

    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    checkpoints._install_read_noise_filters()
    monkeypatch.setattr(checkpoints, "_FAILED_READ", True)
    loop = asyncio.new_event_loop()
    try:
        for err in (ValueError("OUT_OF_RANGE: Error opening zarr [tensorstore_spec='{}']"),
                    ValueError("an error of the user's own")):
            loop.call_exception_handler({"message": "Task exception was never retrieved",
                                         "exception": err})
    finally:
        loop.close()
    logged = [str(r.exc_info[1]) for r in caplog.records if r.name == "asyncio"]
    assert logged == ["an error of the user's own"]  # other tasks' errors are still shown
