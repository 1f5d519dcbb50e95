"""Extra metric sinks for a training run: TensorBoard and Weights & Biases (``--logger``).

A run always writes its own ``metrics.csv`` (``runs.folder``); the loggers here are additional
views of the same numbers, chosen by name: ``csv`` (the default: nothing extra),
``tensorboard``, ``wandb``, or several comma-separated (``csv,tensorboard``).

Everything here is host-side numpy, called by the run loop between jitted chunks::

    logger = make_loggers(parse_logger_names("tensorboard,wandb"), run_dir, run_dir.name, config)
    try:
        for chunk in ...:
            logger.log_updates(env_steps, metrics)    # (updates,) and {name: (seeds, updates)}
            logger.log_eval(env_steps_now, {"return_mean": 12.3})   # when it evaluated
    finally:
        logger.close()

Naming, the same in every backend: per metric the mean over seeds (NaN-aware: a seed whose
update finished no episode holds NaN and is left out; a point where every seed is NaN is not
written) as ``train/<metric>``, with the x axis the env steps *per seed*; with
``per_seed=True`` also ``train/<metric>/seed_<i>`` (off by default: 64 seeds times a dozen
metrics drown the dashboard, and metrics.csv holds every seed anyway); evaluations as
``eval/<name>``.

Resume: a resumed run reopens the same folder and keeps logging into it. Because it continues
from its newest checkpoint, it may repeat chunks that were logged after that checkpoint. Each
backend therefore records in ``<its folder>/logged.json`` the last env step it wrote (train and
eval apart) and drops points at or before it, so every step appears once; a resumed run
reproduces those chunks exactly, so what was kept is what would have been written.

The backends are optional imports; a missing one raises an ImportError naming the extra to
install (``pip install 'jaxmarl_coop[tensorboard]'`` / ``'jaxmarl_coop[wandb]'``).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import secrets
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from jaxmarl_coop.runs.io import write_json_atomic

#: the names ``--logger`` accepts; ``csv`` adds nothing (metrics.csv is always written)
LOGGER_NAMES = ("csv", "tensorboard", "wandb")
#: each backend's folder inside the run folder
TENSORBOARD_DIR, WANDB_DIR = "tensorboard", "wandb"
#: the small record each backend keeps in its folder (last env steps logged; wandb's run id)
PROGRESS_FILE = "logged.json"
#: the W&B project when the user has not set WANDB_PROJECT
WANDB_PROJECT = "jaxmarl_coop"


def parse_logger_names(text: str) -> tuple[str, ...]:
    """``"csv,tensorboard"`` -> ``("csv", "tensorboard")``: comma-separated, blanks and
    duplicates dropped (first order kept); an unknown name raises ValueError naming it and the
    valid ones. An empty text means ``("csv",)``."""
    names: list[str] = []
    for part in str(text).split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in LOGGER_NAMES:
            raise ValueError(f"unknown logger {part.strip()!r} in --logger {text!r}; choose from "
                             f"{', '.join(LOGGER_NAMES)} (several comma-separated)")
        if name not in names:
            names.append(name)
    return tuple(names) or ("csv",)


def _import_backend(module: str, extra: str) -> ModuleType:
    """``module``, or an ImportError whose message is the one-line fix."""
    try:
        return importlib.import_module(module)
    except ImportError as err:  # also sys.modules[module] = None (how the tests simulate it)
        raise ImportError(f"--logger {extra} needs the {module} package: "
                          f"pip install 'jaxmarl_coop[{extra}]'") from err


# --------------------------------------------------------------------------------------------
# the chunk's numbers
# --------------------------------------------------------------------------------------------
def check_chunk(env_steps: Any, metrics: Mapping[str, Any]) -> tuple[np.ndarray,
                                                                      dict[str, np.ndarray]]:
    """``env_steps`` as int64 (updates,) and ``metrics`` as float64 (seeds, updates) arrays;
    a wrong shape raises ValueError naming the metric and the expected shape (a silent
    broadcast would log another seed's numbers)."""
    steps = np.asarray(env_steps)
    if steps.ndim != 1:
        raise ValueError(f"env_steps must be (updates,), got shape {steps.shape}")
    steps = steps.astype(np.int64)
    arrays = {}
    for name, value in metrics.items():
        array = np.asarray(value, np.float64)
        if array.ndim != 2 or array.shape[1] != steps.shape[0]:
            raise ValueError(f"metric {name!r} must be (seeds, updates=({steps.shape[0]})), "
                             f"got shape {array.shape}")
        arrays[str(name)] = array
    return steps, arrays


def seed_means(metrics: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per metric the (updates,) mean over seeds of a (seeds, updates) array, ignoring NaN
    (no episode finished); NaN where every seed is NaN. No RuntimeWarning, unlike nanmean."""
    means = {}
    for name, array in metrics.items():
        present = ~np.isnan(array)
        count = present.sum(axis=0)
        total = np.where(present, array, 0.0).sum(axis=0)
        means[name] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return means


def update_points(env_steps: np.ndarray, metrics: Mapping[str, np.ndarray], per_seed: bool
                  ) -> list[tuple[int, dict[str, float]]]:
    """The chunk as ``[(env_steps, {tag: value})]``, one entry per update with something to
    write: ``train/<metric>`` (mean over seeds) and, with ``per_seed``,
    ``train/<metric>/seed_<i>``; NaN values are left out, and so are updates left empty."""
    means = seed_means(metrics)
    points = []
    for u, step in enumerate(env_steps):
        values: dict[str, float] = {}
        for name in sorted(metrics):
            if not math.isnan(means[name][u]):
                values[f"train/{name}"] = float(means[name][u])
            if per_seed:
                for seed, value in enumerate(metrics[name][:, u]):
                    if not math.isnan(value):
                        values[f"train/{name}/seed_{seed}"] = float(value)
        if values:
            points.append((int(step), values))
    return points


def eval_values(summary: Mapping[str, Any]) -> dict[str, float]:
    """``{name: value}`` -> ``{"eval/<name>": float}``, NaN left out (as in training)."""
    values = {f"eval/{name}": float(value) for name, value in summary.items()}
    return {tag: value for tag, value in values.items() if not math.isnan(value)}


# --------------------------------------------------------------------------------------------
# loggers
# --------------------------------------------------------------------------------------------
class Logger:
    """Where a run's metrics go besides metrics.csv. This base class logs nothing (``csv``).

    ``log_updates(env_steps, metrics)``: one chunk; ``env_steps`` (updates,) the env steps per
    seed after each update, ``metrics`` ``{name: (seeds, updates)}`` floats, NaN where a seed's
    update finished no episode. ``log_eval(env_steps, summary)``: an evaluation at that env
    step, ``{name: float}`` (e.g. the mean greedy return over seeds). ``close()``: flush and
    release; a logger is also a context manager.
    """

    def log_updates(self, env_steps: np.ndarray, metrics: Mapping[str, np.ndarray]) -> None:
        """Log one chunk of updates (see the class docstring)."""

    def log_eval(self, env_steps: int, summary: Mapping[str, float]) -> None:
        """Log one evaluation (see the class docstring)."""

    def close(self) -> None:
        """Flush and release whatever the logger holds."""

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LoggerGroup(Logger):
    """Fans every call out to several loggers (none: logs nothing). ``close`` closes them all
    even when one fails, then raises the first failure."""

    def __init__(self, loggers: Iterable[Logger]) -> None:
        self.loggers = tuple(loggers)

    def log_updates(self, env_steps: np.ndarray, metrics: Mapping[str, np.ndarray]) -> None:
        """Check the chunk's shapes once, then hand it to every logger."""
        steps, arrays = check_chunk(env_steps, metrics)
        for logger in self.loggers:
            logger.log_updates(steps, arrays)

    def log_eval(self, env_steps: int, summary: Mapping[str, float]) -> None:
        """Hand the evaluation to every logger."""
        for logger in self.loggers:
            logger.log_eval(env_steps, summary)

    def close(self) -> None:
        """Close every logger; re-raise the first error after trying them all."""
        error: BaseException | None = None
        for logger in self.loggers:
            try:
                logger.close()
            except BaseException as err:
                error = error or err
        if error is not None:
            raise error


class _ResumableLogger(Logger):
    """A backend that remembers, in ``folder/logged.json``, the last env step it logged (train
    and eval apart) and drops points at or before it: a resumed run repeats the chunks after
    its last checkpoint, and each step must appear once."""

    def __init__(self, folder: Path, per_seed: bool) -> None:
        self.folder = Path(folder)
        self.per_seed = per_seed
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / PROGRESS_FILE
        self.resumed = path.exists()
        self.progress: dict[str, Any] = json.loads(path.read_text()) if self.resumed else {}
        self.progress.setdefault("train_env_steps", -1)
        self.progress.setdefault("eval_env_steps", -1)

    def _save_progress(self) -> None:
        write_json_atomic(self.folder / PROGRESS_FILE, self.progress)

    def log_updates(self, env_steps: np.ndarray, metrics: Mapping[str, np.ndarray]) -> None:
        """Write the chunk's new points (those past the last logged step), flush, record."""
        steps, arrays = check_chunk(env_steps, metrics)
        points = [(step, values) for step, values in update_points(steps, arrays, self.per_seed)
                  if step > self.progress["train_env_steps"]]
        if points:
            self._write(points)
        if steps.size and int(steps.max()) > self.progress["train_env_steps"]:
            self.progress["train_env_steps"] = int(steps.max())
            self._save_progress()

    def log_eval(self, env_steps: int, summary: Mapping[str, float]) -> None:
        """Write the evaluation unless that step was logged already, flush, record."""
        step = int(env_steps)
        if step <= self.progress["eval_env_steps"]:
            return
        values = eval_values(summary)
        if values:
            self._write([(step, values)])
        self.progress["eval_env_steps"] = step
        self._save_progress()

    def _write(self, points: list[tuple[int, dict[str, float]]]) -> None:
        """Write ``[(env_steps, {tag: value})]`` and flush (a killed run keeps them)."""
        raise NotImplementedError


class TensorBoardLogger(_ResumableLogger):
    """TensorBoard event files (through tensorboardX: no TensorFlow) in ``run_dir/tensorboard``.

    Scalars ``train/<metric>`` and ``eval/<name>`` at global step = env steps per seed (see the
    module docstring); the config as JSON text under ``config`` when the folder is new. Each
    chunk is written to an event file of its own, closed before the next chunk (tensorboardX
    writes through a background thread that ``flush`` does not wait for; closing does), so a
    killed run keeps every chunk it logged; TensorBoard reads the union of the files.
    """

    def __init__(self, run_dir: Path, run_name: str, config: Mapping[str, Any],
                 per_seed: bool = False) -> None:
        self._tensorboardx = _import_backend("tensorboardX", "tensorboard")
        super().__init__(Path(run_dir) / TENSORBOARD_DIR, per_seed)
        if not self.resumed:
            text = json.dumps(dict(config), indent=2, sort_keys=True, default=str)
            writer = self._open()
            # four-space indent: TensorBoard renders text as markdown, this keeps it verbatim
            writer.add_text("config", f"run **{run_name}**\n\n"
                            + "\n".join("    " + line for line in text.splitlines()), 0)
            writer.close()
            self._save_progress()

    def _open(self) -> Any:
        # tensorboardX names the file by the second and host: a unique suffix keeps two
        # files of the same second apart
        suffix = f".{os.getpid()}.{secrets.token_hex(4)}"
        return self._tensorboardx.SummaryWriter(logdir=str(self.folder), flush_secs=30,
                                                filename_suffix=suffix)

    def _write(self, points: list[tuple[int, dict[str, float]]]) -> None:
        writer = self._open()
        for step, values in points:
            for tag, value in values.items():
                writer.add_scalar(tag, value, step)
        writer.close()  # drains tensorboardX's queue and closes the file: whole on disk

    def close(self) -> None:
        """Nothing is left open (every chunk's file was closed when written)."""


def _wandb_run_id() -> str:
    """A fresh W&B run id: 8 lowercase letters and digits (what W&B itself makes)."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class WandbLogger(_ResumableLogger):
    """A Weights & Biases run whose files live in ``run_dir/wandb``.

    Offline unless the user chose otherwise: ``WANDB_MODE`` is respected when set (e.g.
    ``online`` with an account), else ``mode="offline"`` (sync later with ``wandb sync
    run_dir/wandb/offline-run-*``). The project is ``WANDB_PROJECT`` or ``jaxmarl_coop``; the
    run's name is ``run_name``, its config the run's config. The run id is made once and kept
    in ``run_dir/wandb/logged.json``, and the run opened with ``resume="allow"``, so a resumed
    run folder continues the same W&B run. Metrics are named as in TensorBoard and plotted
    against ``env_steps`` (``define_metric``), not W&B's own step counter.
    """

    def __init__(self, run_dir: Path, run_name: str, config: Mapping[str, Any],
                 per_seed: bool = False) -> None:
        wandb = _import_backend("wandb", "wandb")
        super().__init__(Path(run_dir) / WANDB_DIR, per_seed)
        if "id" not in self.progress:
            self.progress["id"] = _wandb_run_id()
            self._save_progress()
        init: dict[str, Any] = {"dir": str(Path(run_dir)),  # W&B writes into dir/wandb
                                "name": run_name, "id": self.progress["id"],
                                "resume": "allow", "config": dict(config),
                                "reinit": "create_new"}  # never hand back another open run
        if not os.environ.get("WANDB_MODE"):
            init["mode"] = "offline"
        if not os.environ.get("WANDB_PROJECT"):
            init["project"] = WANDB_PROJECT
        self.run = wandb.init(**init)
        self.run.define_metric("env_steps")
        self.run.define_metric("train/*", step_metric="env_steps")
        self.run.define_metric("eval/*", step_metric="env_steps")

    def _write(self, points: list[tuple[int, dict[str, float]]]) -> None:
        for step, values in points:
            self.run.log({"env_steps": step, **values})

    def close(self) -> None:
        """Finish the W&B run (writes its files; uploads when online)."""
        self.run.finish()


#: the backend behind each logger name (``csv`` has none)
BACKENDS: dict[str, type[_ResumableLogger]] = {"tensorboard": TensorBoardLogger,
                                               "wandb": WandbLogger}


def make_loggers(names: Iterable[str], run_dir: str | os.PathLike[str], run_name: str,
                 config: Mapping[str, Any], per_seed: bool = False) -> Logger:
    """One logger fanning out to the backends ``names`` (from :func:`parse_logger_names`;
    ``("csv",)`` alone logs nothing) writing under ``run_dir``; ``config`` is the run's
    JSON-able config, ``per_seed`` adds ``train/<metric>/seed_<i>`` scalars. A backend whose
    package is missing raises ImportError with the install line; if a later backend fails to
    open, those already opened are closed."""
    names = parse_logger_names(",".join(names))
    opened: list[Logger] = []
    try:
        for name in names:
            if name in BACKENDS:
                opened.append(BACKENDS[name](Path(run_dir), run_name, config, per_seed))
    except BaseException:
        LoggerGroup(opened).close()
        raise
    return LoggerGroup(opened)
