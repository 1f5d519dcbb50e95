"""Checkpoints of whole runs with orbax: every seed's learner state plus a JSON record.

A checkpoint is one orbax step folder holding ``state`` (any pytree of arrays: the vmapped
learner state — params, optimiser state, env state, replay buffer, PRNG key, step counter —
and whatever else the run needs to continue exactly, e.g. the best parameters so far) and
``meta`` (JSON: the run's config, progress and :data:`FORMAT_VERSION`). Orbax writes each
step into a temporary folder and renames it when complete, so a run killed while saving
keeps its previous checkpoint.

A checkpoint can still be damaged afterwards (a disk or a copy that truncates a file).
:func:`restore_newest_intact` reads the newest checkpoint that is whole, and says which newer
ones it skipped and why (:class:`CorruptCheckpoint`); :func:`set_aside` moves a damaged one out
of orbax's folder (never deletes it), so that a run continuing from an older step does not
collide with it. A checkpoint that is whole but not of this run (another format version,
other shapes) is a :class:`CheckpointError`, never "corrupt": nothing is skipped for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: the run folder's format version (``runs.folder``); checkpoints of another are refused
from jaxmarl_coop.runs.folder import FORMAT_VERSION


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, or written by another format version)."""


class CorruptCheckpoint(CheckpointError):
    """A checkpoint whose files cannot be read back (truncated, malformed): ``step``, and
    ``reason`` in one line."""

    def __init__(self, directory: str | os.PathLike[str], step: int, reason: str) -> None:
        self.directory, self.step = Path(directory), step
        _drop_failed_read_noise()  # the failed read's leftovers: not the user's business
        self.reason = " ".join(str(reason).split())[:300] or "unreadable"
        super().__init__(f"checkpoint {self.directory / str(step)} is unreadable: "
                         f"{self.reason}")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Orbax's own log lines (absl) off while reading possibly damaged checkpoints: a
    damaged file is reported once, by us, in one line."""
    logger = logging.getLogger("absl")
    before = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(before)


#: set once a read of a damaged checkpoint has failed (see :func:`_drop_failed_read_noise`)
_FAILED_READ = False


def _traceback_files(tb: Any) -> list[str]:
    """The source files of a traceback's frames, outermost first."""
    files = []
    while tb is not None:
        files.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    return files


def _from_orbax(unraisable: Any) -> bool:
    """An unraisable exception raised in orbax's or tensorstore's code (its traceback), or a
    coroutine of theirs that never finished."""
    code = getattr(unraisable.object, "cr_code", None)
    files = [getattr(code, "co_filename", ""), *_traceback_files(unraisable.exc_traceback)]
    return any(f"{os.sep}{lib}{os.sep}" in f for f in files for lib in ("orbax", "tensorstore"))


def _closed_loop_callback(value: BaseException | None, tb: Any) -> bool:
    """A callback into an asyncio loop that has already closed (tensorstore finishing a read
    after orbax's loop ended): ``RuntimeError("Event loop is closed")`` from asyncio."""
    if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
        return False
    files = _traceback_files(tb)
    return not files or any(f"{os.sep}asyncio{os.sep}" in f for f in files)


def _install_read_noise_filters() -> None:
    """Drop the noise orbax's pending reads leave after a read of a damaged checkpoint fails.

    Its other reads still pending end later, outside any caller: tensorstore's callbacks into
    the closed asyncio loop ("RuntimeError: Event loop is closed", printed through
    ``sys.excepthook`` from tensorstore's threads, possibly before the failure reaches us) and
    orbax's read coroutines, each landing in ``sys.unraisablehook`` as a traceback. A
    callback into a closed loop is dropped whenever it comes (only a read that was abandoned
    makes one); the rest of orbax's and tensorstore's unraisable exceptions, and asyncio's log
    of their tasks' exceptions never retrieved, only after a read has failed (reported in one
    line by :class:`CorruptCheckpoint`). Installed once, before the first read."""
    previous = sys.unraisablehook
    if getattr(previous, "_drops_failed_read_noise", False):
        return

    def unraisable_hook(unraisable: Any) -> None:
        if _closed_loop_callback(unraisable.exc_value, unraisable.exc_traceback) or (
                _FAILED_READ and _from_orbax(unraisable)):
            return
        previous(unraisable)

    previous_except = sys.excepthook

    def except_hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if _closed_loop_callback(value, tb):
            return
        previous_except(kind, value, tb)

    unraisable_hook._drops_failed_read_noise = True  # type: ignore[attr-defined]
    sys.unraisablehook = unraisable_hook
    sys.excepthook = except_hook
    logging.getLogger("asyncio").addFilter(_drop_abandoned_read_tasks)


def _drop_abandoned_read_tasks(record: logging.LogRecord) -> bool:
    """asyncio logs "Task exception was never retrieved" when one of orbax's abandoned reads
    is collected: after a failed read, one whose exception is tensorstore's is dropped."""
    exc = record.exc_info[1] if record.exc_info else None
    if not (_FAILED_READ and exc is not None and "never retrieved" in str(record.msg)):
        return True
    files = _traceback_files(exc.__traceback__)
    from_store = "tensorstore" in str(exc) or any(
        f"{os.sep}{lib}{os.sep}" in f for f in files for lib in ("orbax", "tensorstore"))
    return not from_store


def _drop_failed_read_noise() -> None:
    """After a failed read: orbax's and tensorstore's leftovers are not the user's business
    (see :func:`_install_read_noise_filters`)."""
    global _FAILED_READ
    _FAILED_READ = True
    _install_read_noise_filters()


def _manager(directory: str | os.PathLike[str], create: bool, max_to_keep: int = 2) -> Any:
    import orbax.checkpoint as ocp

    absl = logging.getLogger("absl")
    if absl.getEffectiveLevel() < logging.WARNING:  # orbax logs every save at INFO
        absl.setLevel(logging.WARNING)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(Path(directory).resolve(), options=options)


def save(directory: str | os.PathLike[str], step: int, state: Any, meta: dict[str, Any],
         max_to_keep: int = 2) -> Path:
    """Write checkpoint ``step`` (keeping the newest ``max_to_keep``); returns its folder."""
    import orbax.checkpoint as ocp

    leaves = jax.tree.leaves(state)
    meta = {**meta, "format_version": FORMAT_VERSION, "num_leaves": len(leaves)}
    with _manager(directory, create=True, max_to_keep=max_to_keep) as manager:
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_payload(leaves)),
                                                   meta=ocp.args.JsonSave(meta)),
                     force=True)
        manager.wait_until_finished()
    return Path(directory) / str(step)


def _payload(leaves: list[Any]) -> dict[str, Any]:
    """The leaves orbax stores, by position; it refuses zero-size arrays (e.g. an env with no
    obstacles), which are rebuilt from the target structure on restore instead."""
    return {str(i): leaf for i, leaf in enumerate(leaves) if np.size(leaf) > 0}


def all_steps(directory: str | os.PathLike[str]) -> list[int]:
    """The complete checkpoint steps in ``directory`` (orbax renamed them), oldest first;
    a folder still being written (or left by a killed writer) is not one."""
    if not Path(directory).is_dir():
        return []
    with _quiet(), _manager(directory, create=False) as manager:
        return sorted(int(s) for s in manager.all_steps())


def latest_step(directory: str | os.PathLike[str]) -> int | None:
    """The newest complete checkpoint step in ``directory`` (None if there is none)."""
    steps = all_steps(directory)
    return steps[-1] if steps else None


def restore_meta(directory: str | os.PathLike[str], step: int | None = None
                 ) -> tuple[int, dict[str, Any]]:
    """``(step, meta)`` of checkpoint ``step`` (default: the newest); checks the version.
    :class:`CorruptCheckpoint` if the record cannot be read."""
    import orbax.checkpoint as ocp

    step = latest_step(directory) if step is None else step
    if step is None:
        raise CheckpointError(f"no checkpoint in {directory}")
    try:
        with _quiet(), _manager(directory, create=False) as manager:
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        meta = meta["meta"]
    except Exception as err:  # orbax raises anything from a damaged file; reported in one line
        raise CorruptCheckpoint(directory, step, f"its record (meta) cannot be read: "
                                f"{type(err).__name__}: {err}") from err
    if not isinstance(meta, dict):
        raise CorruptCheckpoint(directory, step, "its record (meta) is not a JSON object")
    meta = dict(meta)
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {Path(directory) / str(step)} has format version {version!r}; this "
            f"version of jaxmarl_coop reads version {FORMAT_VERSION} only (train again, or use "
            "the jaxmarl_coop release that wrote it)")
    return step, meta


def _stored_shapes(where: Path) -> dict[str, tuple[tuple[int, ...], Any]]:
    """``{leaf index: (shape, dtype)}`` as the checkpoint's own metadata describes its arrays
    (``CorruptCheckpoint``-worthy ``ValueError`` if that metadata cannot be read)."""
    import orbax.checkpoint as ocp

    tree = ocp.StandardCheckpointHandler().metadata(where.resolve() / "state")
    tree = getattr(tree, "item_metadata", tree)
    if tree is None or not hasattr(tree, "items"):
        raise ValueError("its array metadata (state/_METADATA) cannot be read")
    return {str(k): (tuple(v.shape), np.dtype(v.dtype)) for k, v in tree.items()}


def restore(directory: str | os.PathLike[str], like: Any, step: int | None = None,
            check_meta: Callable[[int, dict[str, Any]], None] | None = None
            ) -> tuple[Any, dict[str, Any]]:
    """``(state, meta)`` of checkpoint ``step`` (default: the newest).

    ``like`` gives the structure, shapes and dtypes (e.g. ``jax.eval_shape(init, ...)``).
    ``check_meta(step, meta)``, if given, is called on the record before the arrays are read
    (it raises to refuse the checkpoint; :class:`CorruptCheckpoint` to skip it). Raises
    :class:`CorruptCheckpoint` if a file cannot be read back, :class:`CheckpointError` if the
    checkpoint is whole but not of this state.
    """
    import orbax.checkpoint as ocp

    _install_read_noise_filters()  # before the read: a damaged file's noise can come first
    step, meta = restore_meta(directory, step)
    if check_meta is not None:
        check_meta(step, meta)
    where = Path(directory) / str(step)
    leaves, treedef = jax.tree.flatten(like)
    if meta.get("num_leaves") != len(leaves):
        raise CheckpointError(f"checkpoint {where} holds {meta.get('num_leaves')} arrays but "
                              f"this run's state has {len(leaves)}: not this run's checkpoint")
    abstract = _payload([jax.ShapeDtypeStruct(np.shape(x), x.dtype) for x in leaves])
    try:
        with _quiet():
            stored = _stored_shapes(where)
    except Exception as err:
        raise CorruptCheckpoint(directory, step, f"its array metadata cannot be read: "
                                f"{type(err).__name__}: {err}") from err
    for name, want in abstract.items():
        have = stored.get(name)
        if have is None:
            raise CorruptCheckpoint(directory, step, f"array {name} is missing")
        if have != (tuple(want.shape), np.dtype(want.dtype)):
            raise CheckpointError(
                f"checkpoint {where} does not match this run's learner state: array {name} "
                f"is {have[1]}{list(have[0])}, the run's is {want.dtype}{list(want.shape)}")
    try:
        with _quiet(), _manager(directory, create=False) as manager:
            out = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract)))
        stored_arrays = out["state"]
    except Exception as err:  # shapes agreed: what fails now is a damaged file
        raise CorruptCheckpoint(directory, step, f"its arrays cannot be read: "
                                f"{type(err).__name__}: {err}") from err
    restored = [stored_arrays[str(i)] if str(i) in stored_arrays
                else jnp.zeros(np.shape(x), x.dtype) for i, x in enumerate(leaves)]
    return jax.tree.unflatten(treedef, restored), meta


@dataclasses.dataclass(frozen=True)
class Restored:
    """What :func:`restore_newest_intact` found: the state and record of checkpoint
    ``step``, and the newer checkpoints it ``skipped`` (newest first) as unreadable."""

    state: Any
    meta: dict[str, Any]
    step: int
    skipped: tuple[CorruptCheckpoint, ...] = ()


def restore_newest_intact(directory: str | os.PathLike[str], like: Any,
                          check_meta: Callable[[int, dict[str, Any]], None] | None = None
                          ) -> Restored:
    """The newest checkpoint in ``directory`` that reads back whole (see :func:`restore`),
    skipping unreadable newer ones. ``CheckpointError`` if there is none (the message names
    each checkpoint and why it was unreadable) or if one is whole but not of this run; what
    ``check_meta`` raises is raised as is. Reads only: nothing is moved or deleted."""
    steps = all_steps(directory)
    if not steps:
        raise CheckpointError(f"no checkpoint in {directory}")
    skipped: list[CorruptCheckpoint] = []
    for step in reversed(steps):
        try:
            state, meta = restore(directory, like, step, check_meta)
        except CorruptCheckpoint as err:
            skipped.append(err)
            continue
        return Restored(state, meta, step, tuple(skipped))
    reasons = "; ".join(f"step {e.step}: {e.reason[:120]}" for e in skipped)
    raise CheckpointError(f"no intact checkpoint in {directory} (left as they are): {reasons}")


def set_aside(directory: str | os.PathLike[str], step: int, to: str | os.PathLike[str]
              ) -> Path:
    """Move checkpoint ``step`` out of ``directory`` into the folder ``to`` (as ``to/STEP``,
    or ``to/STEP-1``, ``-2`` ... if taken); returns where it went. Never deletes."""
    source, target_dir = Path(directory) / str(step), Path(to)
    target_dir.mkdir(parents=True, exist_ok=True)
    target, n = target_dir / str(step), 0
    while target.exists():
        n += 1
        target = target_dir / f"{step}-{n}"
    shutil.move(str(source), str(target))
    return target
