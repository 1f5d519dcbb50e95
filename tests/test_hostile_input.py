"""Property: whatever a user types, each command either accepts it or exits with status 2
and one line on stderr, never a traceback, and never changes an existing run folder; and
``make()`` with any keywords either builds an env with numeric params or raises a one-line
``ValueError`` (docs/bad-input.md, docs/environments.md#bad-input).

Random option names (the commands' own and made-up ones) and values (numbers, huge,
negative, NaN, empty, unicode text, paths into a run's own files) are fed to the ``main``
of ``train``, ``sweep``, ``evaluate`` and ``plot`` in this process. Nothing trains or
compiles: the run's entry points (a run's initial state, a checkpoint restore, the sweep's
program and its first write) are replaced by a stand-in that stops there, so an accepted
command ends at the point where it would have started work. Hypothesis is derandomised (the
same examples on every run) and bounded to a few seconds."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from folder_checks import snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import evaluate, plot, train
from experiments import sweep as sweep_cli
from jaxmarl_coop import checkpoints, parallel
from jaxmarl_coop.envs import make, registered
from jaxmarl_coop.learners import registry
from jaxmarl_coop.runs import sweep as sweep_lib
from jaxmarl_coop.runs import training

RUN_ARGS = ["--learner", "tabular_q", "--env", "penalty-v1", "--seeds", "2", "--env-steps",
            "200", "--chunks", "2", "--eval-every", "1", "--periodic-eval-episodes", "2",
            "--eval-episodes", "2", "--no-gif", "--config", "num_envs=2",
            "--config", "rollout_length=10"]
SETTINGS = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


class _Stop(Exception):
    """Raised where the command would start work: everything before it was checked."""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile") / "run"
    train.main([*RUN_ARGS, "--out", str(out)])
    return out


@pytest.fixture
def stopped(monkeypatch, tmp_path) -> Path:
    """No training, compiling or writing past the checks; the working folder a temporary
    one (relative outputs land there). Returns it."""

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(training.Run, "initial", stop)
    monkeypatch.setattr(checkpoints, "restore_newest_intact", stop)
    monkeypatch.setattr(parallel, "run_grid", stop)
    monkeypatch.setattr(sweep_lib, "write_json_atomic", stop)  # a sweep's first write
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


# -- what a hostile user types ----------------------------------------------------------------
SPECIAL = st.sampled_from([
    "", " ", "0", "-1", "-0", "1.5", "nan", "NaN", "inf", "-inf", "1e400", "9" * 400,
    "18446744073709551617", "true", "false", "None", "[1, 2]", "a=b", "=", "==", ",", "1,2",
    "ß", "名前", "\u202e", "0x10", "1_000", "💥", "../x", "a b"])
NUMBER = st.one_of(st.integers(-3, 2000), st.integers(), st.integers(-2**70, 2**70),
                   st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1)).map(str)
#: mostly numbers (most options take one), then the odd strings, then any text
VALUE = st.one_of(NUMBER, NUMBER, NUMBER, SPECIAL, st.text(max_size=8))
#: relative paths only (the cwd is a temporary folder), no way up out of it
RELATIVE = st.text(alphabet=st.characters(blacklist_characters="/\\\x00~"), min_size=1,
                   max_size=8).filter(lambda s: s.strip(". ") != "")


def _flags(parser: argparse.ArgumentParser) -> dict[str, bool]:
    """Long option -> whether it takes a value (distributed start-up and help left out)."""
    out = {}
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag not in ("--help", "--distributed"):
                out[flag] = action.nargs != 0
    return out


def _pair_names(learner: str = "tabular_q", env_id: str = "penalty-v1"
                ) -> dict[str, list[str]]:
    """The names each NAME=VALUE option takes for ``learner`` on ``env_id``."""
    from jaxmarl_coop.envs.registry import _REGISTRY, _constructor_args

    spec = registry.get_learner(learner)
    _, params = make(env_id)
    env_names = [f.name for f in dataclasses.fields(params)]
    hp = sorted(spec.hp_fields())
    return {"--hp": hp, "--config": sorted(spec.config_fields()),
            "--env-param": [*env_names, *_constructor_args(_REGISTRY[env_id])],
            "--grid": [*hp, *env_names]}


PAIR_NAMES = _pair_names()


@st.composite
def argv_for(draw, flags: dict[str, bool], paths: list[str]) -> list[str]:
    """0-4 options: real or made-up names, each with a hostile value (NAME=VALUE pairs for
    the pair options; paths, some into the run's own files, for path options)."""
    argv: list[str] = []
    real = st.sampled_from(sorted(flags))
    given = sorted(set(flags) & set(PAIR_NAMES))
    pairs = st.sampled_from(given) if given else real
    made_up = st.text(max_size=6).map(lambda t: "--" + t)
    names = st.one_of(real, real, real, pairs, pairs, made_up)
    for _ in range(draw(st.integers(0, 3))):
        flag = draw(names)
        if not flags.get(flag, True):
            argv.append(flag)
            continue
        if flag in PAIR_NAMES:
            known = st.sampled_from(PAIR_NAMES[flag])
            name = draw(st.one_of(known, known, known, st.text(max_size=6)))
            values = draw(st.lists(VALUE, min_size=1, max_size=3 if flag == "--grid" else 1))
            value = f"{name}={','.join(values)}"
        elif flag in ("--out", "--json", "--gif", "--resume"):
            value = draw(st.one_of(st.sampled_from(paths), RELATIVE))
        else:
            value = draw(VALUE)
        argv += [flag, value]
    return argv


def _check(main, argv: list[str], run_dir: Path, before: dict, capsys) -> int:
    """``main(argv)`` is accepted (returns, or reaches the stand-in: 0) or refused in one
    line with status 2; no traceback; the run folder as it was. Returns the status."""
    capsys.readouterr()
    code = 0
    try:
        main(argv)
    except _Stop:
        pass
    except SystemExit as exc:
        code = exc.code or 0
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (argv, err)
    assert snapshot(run_dir) == before, argv
    return code


def _paths(run_dir: Path) -> list[str]:
    return [str(run_dir), str(run_dir / "config.json"), str(run_dir / "eval.json"),
            str(run_dir / "metrics.csv"), str(run_dir / "curve.png"),
            str(run_dir / "checkpoints" / "2" / "x.json"), "new-folder", "x.json", "x.gif"]


def test_train_takes_anything_or_refuses_it_in_one_line(run_dir, stopped, capsys):
    before, flags, paths = snapshot(run_dir), _flags(train.build_parser()), _paths(run_dir)

    @SETTINGS
    @given(st.data())
    def check(data):
        argv = data.draw(argv_for(flags, paths))
        if "--resume" not in argv:
            argv = ["--learner", "tabular_q", "--env", "penalty-v1", "--out", "run", *argv]
        codes.add(_check(train.main, argv, run_dir, before, capsys))

    codes: set[int] = set()
    check()
    assert codes == {0, 2}  # some examples were accepted, some refused
    assert _check(train.main, ["--resume", str(run_dir)], run_dir, before, capsys) == 0


def test_sweep_takes_anything_or_refuses_it_in_one_line(run_dir, stopped, capsys):
    before, flags, paths = snapshot(run_dir), _flags(sweep_cli.build_parser()), _paths(run_dir)

    @SETTINGS
    @given(st.data())
    def check(data):
        argv = ["--learner", "tabular_q", "--env", "penalty-v1", "--grid", "alpha=0.1,0.5",
                "--out", "sweep", *data.draw(argv_for(flags, paths))]
        codes.add(_check(sweep_cli.main, argv, run_dir, before, capsys))

    codes: set[int] = set()
    check()
    assert codes == {0, 2}


def test_evaluate_takes_anything_or_refuses_it_in_one_line(run_dir, stopped, capsys):
    parser = argparse.ArgumentParser()
    for flag in ("--episodes", "--which", "--seed", "--gif", "--seed-index", "--json"):
        parser.add_argument(flag)
    before, flags, paths = snapshot(run_dir), _flags(parser), _paths(run_dir)

    @SETTINGS
    @given(st.data())
    def check(data):
        where = data.draw(st.one_of(*[st.just(str(run_dir))] * 4, RELATIVE, VALUE))
        argv = [where, *data.draw(argv_for(flags, paths))]
        codes.add(_check(evaluate.main, argv, run_dir, before, capsys))

    codes: set[int] = set()
    check()
    assert codes == {0, 2}


def test_plot_takes_anything_or_refuses_it_in_one_line(run_dir, stopped, capsys):
    parser = argparse.ArgumentParser()
    for flag in ("--metric", "--stat", "--out", "--title", "--points"):
        parser.add_argument(flag)
    parser.add_argument("--compare", action="store_true")
    before, flags, paths = snapshot(run_dir), _flags(parser), _paths(run_dir)

    @settings(SETTINGS, max_examples=30)  # each accepted one draws a figure
    @given(st.data())
    def check(data):
        where = data.draw(st.one_of(*[st.just(str(run_dir))] * 4, RELATIVE, VALUE))
        argv = [where, "--out", "figure.png", *data.draw(argv_for(flags, paths))]
        codes.add(_check(plot.main, argv, run_dir, before, capsys))

    codes: set[int] = set()
    check()
    assert codes == {0, 2}


# -- make() -----------------------------------------------------------------------------------
PY_VALUE = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                     st.booleans(), st.none(), st.text(max_size=6), SPECIAL,
                     st.lists(st.floats(-10, 10), max_size=3), st.integers(-3, 70))


@SETTINGS
@given(st.data())
def test_make_builds_numeric_params_or_refuses_in_one_line(data):
    from jaxmarl_coop.envs.registry import _REGISTRY, _constructor_args

    env_id = data.draw(st.sampled_from(registered()))
    _, defaults = make(env_id)
    names = st.one_of(st.sampled_from(_constructor_args(_REGISTRY[env_id])),
                      st.sampled_from([f.name for f in dataclasses.fields(defaults)]),
                      st.text(max_size=6))
    kwargs = data.draw(st.dictionaries(names, PY_VALUE, max_size=3))
    kwargs.pop("debug", None)  # a switch for stepping, checked in tests/envs
    try:
        _, params = make(env_id, **kwargs)
    except ValueError as err:
        message = str(err).strip()
        assert message and "\n" not in message, (env_id, kwargs, message)
        return
    for leaf in jax.tree.leaves(params):
        assert np.asarray(leaf).dtype.kind in "biuf", (env_id, kwargs, leaf)


def test_the_stand_in_stops_before_any_work(run_dir, stopped, tmp_path):
    """The property tests' stand-ins are where work starts: an accepted train, resume,
    evaluate and sweep reach them, and nothing was written."""
    out = tmp_path / "fresh"
    with pytest.raises(_Stop):
        train.main([*RUN_ARGS, "--out", str(out)])
    with pytest.raises(_Stop):
        train.main(["--resume", str(shutil.copytree(run_dir, tmp_path / "copy"))])
    with pytest.raises(_Stop):
        evaluate.main([str(run_dir)])
    with pytest.raises(_Stop):
        sweep_cli.main(["--learner", "tabular_q", "--env", "penalty-v1", "--grid",
                        "alpha=0.1,0.5", "--out", str(tmp_path / "sweep")])
    assert not out.exists() and not (tmp_path / "sweep").exists()
