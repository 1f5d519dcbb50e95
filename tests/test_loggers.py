"""The extra loggers: names, TensorBoard event files read back (no TensorFlow), resume,
W&B through a fake ``wandb`` module, and the missing-package message."""

from __future__ import annotations

import json
import struct
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jaxmarl_coop import loggers
from jaxmarl_coop.loggers import (
    LOGGER_NAMES,
    Logger,
    LoggerGroup,
    make_loggers,
    parse_logger_names,
)

pytest.importorskip("tensorboardX")

NAN = float("nan")
# 2 seeds x 3 updates per chunk, 10 env steps per update
CHUNK_1 = (np.array([10, 20, 30]),
           {"episode_return": np.array([[1.0, NAN, NAN], [3.0, 4.0, NAN]]),
            "entropy": np.array([[0.5, 0.4, 0.3], [0.7, 0.6, 0.5]])})
CHUNK_2 = (np.array([40, 50, 60]),
           {"episode_return": np.array([[5.0, 6.0, 7.0], [7.0, 8.0, 9.0]]),
            "entropy": np.array([[0.2, 0.1, 0.0], [0.4, 0.3, 0.2]])})
CONFIG = {"learner": "mappo", "env": "spread-v0", "hp": {"lr": 3e-4}}


# --------------------------------------------------------------------------------------------
# reading event files back: TFRecord framing + tensorboardX's bundled Event proto
# --------------------------------------------------------------------------------------------
def read_events(path: Path) -> list[Any]:
    """Every Event of one event file, checking the TFRecord CRCs (a torn write fails here)."""
    from tensorboardX.proto import event_pb2
    from tensorboardX.record_writer import masked_crc32c

    data, events, at = path.read_bytes(), [], 0
    while at < len(data):
        header = data[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[at + 8:at + 12])
        assert header_crc == masked_crc32c(header)
        body = data[at + 12:at + 12 + length]
        (body_crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
        assert body_crc == masked_crc32c(body)
        events.append(event_pb2.Event.FromString(body))
        at += 16 + length
    return events


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` over every event file in ``log_dir`` (the union a
    resumed run leaves), in file-then-write order."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in read_events(path):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def text_tags(log_dir: Path) -> list[str]:
    """The tags of the text summaries (tensor-valued, text plugin) in ``log_dir``."""
    return [value.tag for path in sorted(log_dir.glob("events.out.tfevents.*"))
            for event in read_events(path) for value in event.summary.value
            if value.metadata.plugin_data.plugin_name == "text"]


def points(scalars: dict[str, list[tuple[int, float]]], tag: str) -> dict[int, float]:
    steps = [s for s, _ in scalars[tag]]
    assert len(steps) == len(set(steps)), f"{tag} has a step twice: {steps}"
    return dict(scalars[tag])


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------
def test_parse_logger_names() -> None:
    assert parse_logger_names("csv") == ("csv",)
    assert parse_logger_names("") == ("csv",)
    assert parse_logger_names(" CSV, tensorboard,,tensorboard ,wandb") == LOGGER_NAMES
    with pytest.raises(ValueError, match=r"'tensorbored'.*csv, tensorboard, wandb"):
        parse_logger_names("csv,tensorbored")


def test_csv_alone_logs_nothing(tmp_path: Path) -> None:
    logger = make_loggers(("csv",), tmp_path, "run", CONFIG)
    assert isinstance(logger, LoggerGroup) and logger.loggers == ()
    logger.log_updates(*CHUNK_1)
    logger.log_eval(30, {"return_mean": 1.0})
    logger.close()
    assert list(tmp_path.iterdir()) == []


def test_wrong_shape_names_the_metric(tmp_path: Path) -> None:
    with make_loggers(("csv",), tmp_path, "run", CONFIG) as logger, \
            pytest.raises(ValueError, match=r"'entropy' must be \(seeds, updates=\(3\)\)"):
        logger.log_updates(np.array([10, 20, 30]), {"entropy": np.zeros((2, 4))})


# --------------------------------------------------------------------------------------------
# TensorBoard
# --------------------------------------------------------------------------------------------
def test_tensorboard_means_over_seeds(tmp_path: Path) -> None:
    with make_loggers(("csv", "tensorboard"), tmp_path, "run", CONFIG) as logger:
        logger.log_updates(*CHUNK_1)
        # flushed at every chunk: readable while the run goes on (a killed run keeps it)
        assert points(read_scalars(tmp_path / "tensorboard"), "train/entropy")[30] \
            == pytest.approx(0.4)
        logger.log_updates(*CHUNK_2)
        logger.log_eval(60, {"return_mean": 8.5, "length_mean": NAN})
    scalars = read_scalars(tmp_path / "tensorboard")
    assert set(scalars) == {"train/episode_return", "train/entropy", "eval/return_mean"}
    # NaN seeds left out of the mean; update 3 (every seed NaN) not written at all
    assert points(scalars, "train/episode_return") == pytest.approx(
        {10: 2.0, 20: 4.0, 40: 6.0, 50: 7.0, 60: 8.0})
    assert points(scalars, "train/entropy") == pytest.approx(
        {10: 0.6, 20: 0.5, 30: 0.4, 40: 0.3, 50: 0.2, 60: 0.1})
    assert points(scalars, "eval/return_mean") == pytest.approx({60: 8.5})
    assert text_tags(tmp_path / "tensorboard") == ["config/text_summary"]


def test_tensorboard_per_seed(tmp_path: Path) -> None:
    with make_loggers(("tensorboard",), tmp_path, "run", CONFIG, per_seed=True) as logger:
        logger.log_updates(*CHUNK_1)
    scalars = read_scalars(tmp_path / "tensorboard")
    assert points(scalars, "train/episode_return/seed_0") == pytest.approx({10: 1.0})
    assert points(scalars, "train/episode_return/seed_1") == pytest.approx({10: 3.0, 20: 4.0})
    assert points(scalars, "train/entropy/seed_1") == pytest.approx({10: 0.7, 20: 0.6, 30: 0.5})


def test_tensorboard_resume_appends_without_duplicates(tmp_path: Path) -> None:
    with make_loggers(("tensorboard",), tmp_path, "run", CONFIG) as logger:
        logger.log_updates(*CHUNK_1)
        logger.log_eval(30, {"return_mean": 3.5})
    # resumed from a checkpoint before chunk 1 ended: chunk 1 comes again, then chunk 2
    with make_loggers(("tensorboard",), tmp_path, "run", CONFIG) as logger:
        logger.log_updates(*CHUNK_1)
        logger.log_eval(30, {"return_mean": 3.5})
        logger.log_updates(*CHUNK_2)
        logger.log_eval(60, {"return_mean": 8.5})
    log_dir = tmp_path / "tensorboard"
    # one file per write (config; chunk 1 and its eval; chunk 2 and its eval), whole on disk;
    # the repeated chunk 1 and eval of the resumed opening wrote nothing
    assert len(list(log_dir.glob("events.out.tfevents.*"))) == 5
    scalars = read_scalars(log_dir)
    assert sorted(points(scalars, "train/entropy")) == [10, 20, 30, 40, 50, 60]
    assert points(scalars, "eval/return_mean") == pytest.approx({30: 3.5, 60: 8.5})
    assert text_tags(log_dir) == ["config/text_summary"]  # the config once, not per opening
    progress = json.loads((log_dir / loggers.PROGRESS_FILE).read_text())
    assert progress == {"train_env_steps": 60, "eval_env_steps": 60}


# --------------------------------------------------------------------------------------------
# Weights & Biases, through a fake module
# --------------------------------------------------------------------------------------------
class FakeRun:
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs, self.metrics, self.logged, self.finished = kwargs, [], [], False

    def define_metric(self, name: str, step_metric: str | None = None) -> None:
        self.metrics.append((name, step_metric))

    def log(self, values: dict[str, float]) -> None:
        assert not self.finished
        self.logged.append(values)

    def finish(self) -> None:
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch) -> list[FakeRun]:
    """A ``wandb`` module whose ``init`` records its arguments; returns the runs it made."""
    runs: list[FakeRun] = []
    fake = types.ModuleType("wandb")

    def init(**kwargs: Any) -> FakeRun:
        runs.append(FakeRun(kwargs))
        return runs[-1]

    fake.init = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    return runs


def test_wandb_offline_run_in_the_run_folder(tmp_path: Path, fake_wandb: list[FakeRun]
                                             ) -> None:
    with make_loggers(("wandb",), tmp_path, "my-run", CONFIG) as logger:
        logger.log_updates(*CHUNK_1)
        logger.log_eval(30, {"return_mean": 3.5})
    (run,) = fake_wandb
    run_id = json.loads((tmp_path / "wandb" / loggers.PROGRESS_FILE).read_text())["id"]
    assert run.kwargs == {"dir": str(tmp_path), "name": "my-run", "id": run_id,
                          "resume": "allow", "config": CONFIG, "reinit": "create_new",
                          "mode": "offline", "project": "jaxmarl_coop"}
    assert ("train/*", "env_steps") in run.metrics and ("eval/*", "env_steps") in run.metrics
    assert run.logged == [
        {"env_steps": 10, "train/entropy": pytest.approx(0.6),
         "train/episode_return": pytest.approx(2.0)},
        {"env_steps": 20, "train/entropy": pytest.approx(0.5),
         "train/episode_return": pytest.approx(4.0)},
        {"env_steps": 30, "train/entropy": pytest.approx(0.4)},
        {"env_steps": 30, "eval/return_mean": 3.5}]
    assert run.finished


def test_wandb_resume_continues_the_same_run(tmp_path: Path, fake_wandb: list[FakeRun],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with make_loggers(("wandb",), tmp_path, "my-run", CONFIG) as logger:
        logger.log_updates(*CHUNK_1)
    monkeypatch.setenv("WANDB_MODE", "online")  # the user's choice wins
    monkeypatch.setenv("WANDB_PROJECT", "theirs")
    with make_loggers(("wandb",), tmp_path, "my-run", CONFIG) as logger:
        logger.log_updates(*CHUNK_1)  # repeated after the checkpoint: not logged twice
        logger.log_updates(*CHUNK_2)
    first, second = fake_wandb
    assert second.kwargs["id"] == first.kwargs["id"] and second.kwargs["resume"] == "allow"
    assert "mode" not in second.kwargs and "project" not in second.kwargs
    assert [d["env_steps"] for d in second.logged] == [40, 50, 60]


# --------------------------------------------------------------------------------------------
# missing packages, and the group
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "module"), [("tensorboard", "tensorboardX"),
                                              ("wandb", "wandb")])
def test_missing_package_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             name: str, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(ImportError, match=rf"pip install 'jaxmarl_coop\[{name}\]'"):
        make_loggers(("csv", name), tmp_path, "run", CONFIG)


def test_group_closes_every_logger_then_raises(tmp_path: Path) -> None:
    closed = []

    class Broken(Logger):
        def close(self) -> None:
            closed.append("broken")
            raise RuntimeError("disk full")

    class Fine(Logger):
        def close(self) -> None:
            closed.append("fine")

    with pytest.raises(RuntimeError, match="disk full"):
        LoggerGroup([Broken(), Fine()]).close()
    assert closed == ["broken", "fine"]


def test_a_run_with_the_tensorboard_logger_writes_its_metrics(tmp_path: Path) -> None:
    """``--logger tensorboard`` end to end: the run's per-update metrics (mean over seeds, as
    in metrics.csv) and its periodic evaluations are in the event files."""
    from jaxmarl_coop.runs import RunConfig, load_run, run

    out = run(RunConfig(learner="tabular_q", env="penalty-v1", seeds=2, env_steps=1000,
                        chunks=2, eval_every=1, periodic_eval_episodes=2, eval_episodes=2,
                        gif=False, logger="csv,tensorboard"), tmp_path / "run",
              progress=False).path
    scalars = read_scalars(out / "tensorboard")
    data = load_run(out)
    want = np.nanmean(data.metrics["episode_return"], axis=0)
    got = points(scalars, "train/episode_return")
    assert sorted(got) == [int(s) for s, w in zip(data.env_steps, want, strict=True)
                           if np.isfinite(w)]
    np.testing.assert_allclose([got[int(s)] for s in sorted(got)], want[np.isfinite(want)],
                               rtol=1e-4)
    assert sorted(points(scalars, "eval/return_mean")) == [
        int(e["env_steps"]) for e in json.loads((out / "eval.json").read_text())["periodic"]]
