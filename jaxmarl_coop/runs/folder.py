"""The run folder's format in one place: its files, their writers and readers, its version.

A run folder (``jaxmarl_coop.runs.run`` writes it; ``experiments.train`` is its command line):

    config.json      everything needed to rerun (the RunConfig, learner config, hyperparams,
                     env params) and :data:`FORMAT_VERSION`
    metrics.csv      one row per seed and update: seed, update, env_steps, then the metrics
    marl_eval.json   periodic and absolute evaluations in the marl-eval format
    eval.json        final greedy evaluation, the best parameters re-evaluated ("absolute"),
                     the env's reference policies; mean ± 95% CI over seeds
    timing.json      seconds by part (compile apart, training, evaluation, checkpoints) and
                     training env steps/s, one entry per invocation that reached the end
    curve.png        training return against env steps, mean and 95% band over seeds
    rollout.gif      seed 0's trained team acting (envs that draw themselves)
    checkpoints/     orbax checkpoints (the newest two; ``jaxmarl_coop.checkpoints``)
    corrupt-checkpoints/   only if a resume found the newest checkpoints unreadable: they
                     are moved here, never deleted (``training.run``, docs/bad-input.md)

Every file is written atomically (``runs.io``): a killed run leaves the old file or the new.
The readers here need no JAX. :func:`check_out_folder` and :func:`check_output_file` are
the checks every command runs on the paths it will write (a file where a folder goes, a
path inside a run that would overwrite one of the run's own files: :data:`OWN_FILES`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from jaxmarl_coop.runs.io import write_json_atomic, write_text_atomic

#: Bumped whenever what a run folder or its checkpoints hold changes; others are refused.
#: 2: every env's info has ``invalid_actions``, so learner states (and their checkpoints)
#: hold its episode sums and metrics.csv an ``episode_invalid_actions`` column.
FORMAT_VERSION = 2
#: the config.json format versions :func:`load_run` reads (absent: an older run, read
#: leniently); its files of version 1 differ only by the missing column
READS_FORMAT_VERSIONS = (1, 2)
CONFIG, METRICS, EVAL, MARL_EVAL, TIMING = ("config.json", "metrics.csv", "eval.json",
                                            "marl_eval.json", "timing.json")
CURVE, GIF, CHECKPOINTS = "curve.png", "rollout.gif", "checkpoints"
#: where a resume moves checkpoints it cannot read (never deleted; see docs/bad-input.md)
CORRUPT_CHECKPOINTS = "corrupt-checkpoints"
#: a training run's own files and folders (and a sweep's): no command writes over them
#: except the run itself (``evaluate --json/--gif``, ``plot --out`` ... are refused)
OWN_FILES = (CONFIG, METRICS, EVAL, MARL_EVAL, TIMING, CURVE, GIF, CHECKPOINTS,
             CORRUPT_CHECKPOINTS, "tensorboard", "wandb", "results.csv", "summary.json",
             "heatmap.png")
_INDEX_COLUMNS = ("seed", "update", "env_steps")


# --------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------
def write_config(out: Path, record: dict[str, Any]) -> None:
    """config.json: ``record`` with the format version."""
    write_json_atomic(out / CONFIG, {"format_version": FORMAT_VERSION, **record})


def metric_rows(metrics: dict[str, np.ndarray], first_update: int, steps_per_update: int
                ) -> list[list[Any]]:
    """CSV rows (seed, update, env_steps, metrics...) of one chunk's (seeds, updates) metrics,
    the metrics in sorted order."""
    names = sorted(metrics)
    arrays = [np.asarray(metrics[n], np.float64) for n in names]
    arrays = [a.reshape(a.shape[0], a.shape[1], -1).mean(axis=2) for a in arrays]
    seeds, updates = arrays[0].shape[:2]
    rows = []
    for s in range(seeds):
        for u in range(updates):
            update = first_update + u
            rows.append([s, update, update * steps_per_update, *(a[s, u] for a in arrays)])
    return rows


def write_metrics(out: Path, names: list[str], rows: list[list[Any]]) -> None:
    """metrics.csv, rewritten whole (sorted by seed, then update)."""
    lines = [",".join(["seed", "update", "env_steps", *names])]
    lines += [",".join([str(r[0]), str(r[1]), str(r[2]), *(f"{v:.6g}" for v in r[3:])])
              for r in sorted(rows, key=lambda r: (r[0], r[1]))]
    write_text_atomic(out / METRICS, "\n".join(lines) + "\n")


def read_metric_rows(out: Path, last_update: int) -> tuple[list[str], list[list[Any]]]:
    """Rows of metrics.csv up to ``last_update`` (a resumed run rewrites the rest);
    ``ValueError`` naming the line if the file is malformed."""
    path = out / METRICS
    lines = path.read_text().splitlines()
    if not lines or lines[0].split(",")[:3] != list(_INDEX_COLUMNS):
        raise ValueError(f"{path}: no header {','.join(_INDEX_COLUMNS)},...")
    names = lines[0].split(",")[3:]
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split(",")
        try:
            if len(parts) != 3 + len(names):
                raise ValueError(f"{len(parts)} fields, the header has {3 + len(names)}")
            row = [int(parts[0]), int(parts[1]), int(parts[2]), *(float(p) for p in parts[3:])]
        except ValueError as err:
            raise ValueError(f"{path}, line {number}: {err}") from None
        if row[1] <= last_update:
            rows.append(row)
    return names, rows


def marl_eval_json(env: str, learner: str, seeds: int, periodic: list[dict[str, Any]],
                   absolute: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """The marl-eval layout: env -> task -> algorithm -> seed_i -> step_k / absolute_metrics,
    each metric a list of per-episode values."""
    records = {}
    for s in range(seeds):
        record: dict[str, Any] = {}
        for k, entry in enumerate(periodic):
            record[f"step_{k}"] = {"step_count": entry["env_steps"],
                                   **{m: list(v[s]) for m, v in entry["episodes"].items()}}
        if absolute is not None:
            record["absolute_metrics"] = {m: list(v[s]) for m, v in absolute.items()}
        records[f"seed_{s}"] = record
    return {"jaxmarl_coop": {env: {learner: records}}}


def append_timing(out: Path, timing: dict[str, Any]) -> None:
    """timing.json gets one more invocation (a resumed run adds one per invocation)."""
    earlier = []
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        earlier = json.loads((out / TIMING).read_text())["invocations"]
    write_json_atomic(out / TIMING, {"invocations": [*earlier, timing]})


# --------------------------------------------------------------------------------------------
# where commands may write
# --------------------------------------------------------------------------------------------
def is_run_folder(path: Path) -> bool:
    """A folder holding a training run's or a sweep's config.json."""
    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError):
        return (path / CONFIG).is_file() and ((path / METRICS).exists()
                                              or (path / CHECKPOINTS).exists())
    return isinstance(config, dict) and any(k in config for k in ("run", "sweep",
                                                                   "format_version"))


def owning_run(path: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """``(run folder, own file name)`` if ``path`` is, or lies inside, one of the
    :data:`OWN_FILES` of a run (or sweep) folder; else None."""
    target = Path(os.path.abspath(path))
    for parent in target.parents:
        rel = target.relative_to(parent)
        if rel.parts and rel.parts[0] in OWN_FILES and is_run_folder(parent):
            return parent, rel.parts[0]
    return None


def _writable_parent(path: Path, what: str) -> None:
    """``ValueError`` unless ``path``'s nearest existing ancestor is a writable folder."""
    for parent in Path(os.path.abspath(path)).parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{what} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValueError(f"{what} {path}: cannot write in {parent}")
            return


def check_out_folder(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """A folder a command will create or fill: ``ValueError`` (one line, naming ``what``)
    if it is a file, lies where no folder can be made, or inside a run's own files."""
    path = Path(path)
    if str(path).strip() == "":
        raise ValueError(f"{what} must name a folder, got an empty path")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file, not a folder; choose another {what}")
    owner = owning_run(path)
    if owner is not None:
        raise ValueError(f"{what} {path} lies inside {owner[1]} of the run {owner[0]}; "
                         f"choose another {what}")
    _writable_parent(path, what)
    return path


def check_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """A file a command will write: ``ValueError`` (one line, naming ``what``) if it is a
    folder, lies where no file can be made, or is (inside) one of a run's own files."""
    path = Path(path)
    if str(path).strip() == "" or path.name in ("", ".", ".."):
        raise ValueError(f"{what} must name a file, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; name a file")
    owner = owning_run(path)
    if owner is not None:
        raise ValueError(f"{what} {path} would overwrite {owner[1]} of the run {owner[0]}, "
                         "one of its own files; write elsewhere")
    _writable_parent(path, what)
    return path


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------
def read_config(out: Path) -> dict[str, Any]:
    """config.json of the run folder ``out``: a JSON object of this format version with a
    ``run`` object; ``ValueError`` (one line naming the file) otherwise."""
    path = Path(out) / CONFIG
    if not path.is_file():
        raise ValueError(f"{out} is not a run folder (no config.json)")
    saved = _read_json(path, "config.json")
    version = saved.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {version!r}; this version reads "
                         f"{FORMAT_VERSION}")
    if not isinstance(saved.get("run"), dict):
        raise ValueError(f"{path} has no 'run' object (the run's settings); not a training "
                         "run's config.json, or damaged")
    return saved


@dataclasses.dataclass
class RunData:
    """One run folder, loaded: per-update training metrics of every seed, and its evaluation.

    ``metrics[name]`` has shape ``(num_seeds, len(env_steps))``: the updates that every seed
    has (``complete_updates`` of them); rows of updates only some seeds reached are dropped
    and counted in ``dropped_rows``, and ``notes`` says so in words.
    """

    name: str
    path: Path
    config: dict[str, Any]
    env_steps: np.ndarray
    metrics: dict[str, np.ndarray]
    eval: dict[str, Any] | None = None
    updates: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    seeds: tuple[int, ...] = ()
    complete_updates: int = 0
    dropped_rows: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def run_config(self) -> dict[str, Any]:
        """The ``run`` section of config.json (older folders: the top level)."""
        run = self.config.get("run")
        return run if isinstance(run, dict) else self.config

    @property
    def learner(self) -> str:
        return str(self.run_config.get("learner", "?"))

    @property
    def env(self) -> str:
        return str(self.run_config.get("env", "?"))

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    @property
    def planned_env_steps(self) -> int | None:
        """Env steps per seed the run was set to reach (None if config.json does not say)."""
        updates, per_update = self.config.get("num_updates"), self.config.get(
            "env_steps_per_update")
        if isinstance(updates, int) and isinstance(per_update, int):
            return updates * per_update
        return None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: {what} is not UTF-8 text ({err.reason} at byte "
                         f"{err.start})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: {what} is not valid JSON ({err})") from None
    except OSError as err:
        raise ValueError(f"{path}: {what} cannot be read ({err.strerror or err})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: {what} should hold a JSON object, not {type(obj).__name__}")
    return obj


def _parse_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """Header and a (rows, columns) float array; ``ValueError`` naming the bad line."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path} is empty (expected a header {','.join(_INDEX_COLUMNS)},...)")
    header = [h.strip() for h in lines[0].split(",")]
    missing = [c for c in _INDEX_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: header lacks column(s) {', '.join(missing)} "
                         f"(got {','.join(header)})")
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: header repeats a column name ({','.join(header)})")
    if len(lines) == 1:
        raise ValueError(f"{path} has a header but no rows (the run has not finished an "
                         "update yet)")
    cells = [line.split(",") for line in lines[1:]]
    for i, row in enumerate(cells):
        if len(row) != len(header):
            raise ValueError(f"{path}, line {i + 2}: {len(row)} fields, the header has "
                             f"{len(header)} (truncated or malformed file)")
    try:
        data = np.array(cells, dtype=np.float64)
    except ValueError:
        for i, row in enumerate(cells):
            for name, cell in zip(header, row, strict=True):
                try:
                    float(cell)
                except ValueError:
                    raise ValueError(f"{path}, line {i + 2}: column {name} holds {cell!r}, "
                                     "not a number") from None
        raise
    return header, data


def load_run(path: str | os.PathLike[str]) -> RunData:
    """Load the run folder ``path`` (see :class:`RunData`).

    Raises ``FileNotFoundError`` when the folder, its config.json or its metrics.csv is
    missing, and ``ValueError`` when a file is malformed (the message names the file and
    what is wrong). ``eval.json`` is optional (an unfinished run has none).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run folder")
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder (expected a run folder written by "
                         "experiments.train)")
    for required in ("config.json", "metrics.csv"):
        if not (path / required).is_file():
            raise FileNotFoundError(f"{path} is not a run folder: {required} is missing")
    config = _read_json(path / "config.json", "config.json")
    version = config.get("format_version")
    if version is not None and version not in READS_FORMAT_VERSIONS:
        raise ValueError(f"{path / 'config.json'} has format_version {version!r}; this version "
                         f"reads {', '.join(map(str, READS_FORMAT_VERSIONS))}")
    header, data = _parse_csv(path / "metrics.csv")
    col = {name: i for i, name in enumerate(header)}
    names = [h for h in header if h not in _INDEX_COLUMNS]
    seed_col, update_col = data[:, col["seed"]], data[:, col["update"]]
    if not (np.all(np.isfinite(seed_col)) and np.all(np.isfinite(update_col))):
        raise ValueError(f"{path / 'metrics.csv'}: seed and update must be integers")
    seed_ids = seed_col.astype(np.int64)
    update_ids = update_col.astype(np.int64)
    pairs = seed_ids * (int(update_ids.max()) + 1) + update_ids
    if len(np.unique(pairs)) != len(pairs):
        raise ValueError(f"{path / 'metrics.csv'}: a (seed, update) pair appears twice")
    seeds = [int(s) for s in np.unique(seed_ids)]
    per_seed = {s: set(update_ids[seed_ids == s].tolist()) for s in seeds}
    common = sorted(set.intersection(*per_seed.values()))
    if not common:
        raise ValueError(f"{path / 'metrics.csv'}: no update that all {len(seeds)} seeds have")
    notes = []
    counts = {s: len(u) for s, u in per_seed.items()}
    if len(set(counts.values())) > 1:
        notes.append(f"{path.name}: seeds have {min(counts.values())} to "
                     f"{max(counts.values())} updates; using the {len(common)} all seeds have")
    run_section = config.get("run")
    planned_seeds = run_section.get("seeds") if isinstance(run_section, dict) else None
    if isinstance(planned_seeds, int) and planned_seeds != len(seeds):
        notes.append(f"{path.name}: config.json says {planned_seeds} seeds, metrics.csv has "
                     f"{len(seeds)}")
    updates = np.asarray(common, dtype=np.int64)
    keep = np.isin(update_ids, updates)
    data, seed_ids, update_ids = data[keep], seed_ids[keep], update_ids[keep]
    order = np.lexsort((update_ids, seed_ids))  # seed-major, then update
    table = data[order].reshape(len(seeds), len(updates), len(header))
    steps = table[:, :, col["env_steps"]]
    if not np.all(steps == steps[:1]):
        raise ValueError(f"{path / 'metrics.csv'}: seeds disagree on env_steps at the same "
                         "update")
    eval_path = path / "eval.json"
    return RunData(
        name=path.resolve().name, path=path, config=config,
        env_steps=steps[0].astype(np.int64),
        metrics={n: np.ascontiguousarray(table[:, :, col[n]]) for n in names},
        eval=_read_json(eval_path, "eval.json") if eval_path.is_file() else None,
        updates=updates, seeds=tuple(seeds), complete_updates=len(updates),
        dropped_rows=int((~keep).sum()), notes=notes)


