"""Checkpoints of whole runs with orbax: every seed's learner state plus a JSON record.

A checkpoint is one orbax step folder holding ``state`` (any pytree of arrays: the vmapped
learner state — params, optimiser state, env state, replay buffer, PRNG key, step counter —
and whatever else the run needs to continue exactly, e.g. the best parameters so far) and
``meta`` (JSON: the run's config, progress and :data:`FORMAT_VERSION`). Orbax writes each
step into a temporary folder and renames it when complete, so a run killed while saving
keeps its previous checkpoint.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import jax

#: Bumped whenever what a checkpoint holds changes; older checkpoints are refused.
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, or written by another format version)."""


def _manager(directory: str | os.PathLike[str], create: bool, max_to_keep: int = 2) -> Any:
    import orbax.checkpoint as ocp

    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(Path(directory).resolve(), options=options)


def save(directory: str | os.PathLike[str], step: int, state: Any, meta: dict[str, Any],
         max_to_keep: int = 2) -> Path:
    """Write checkpoint ``step`` (keeping the newest ``max_to_keep``); returns its folder."""
    import orbax.checkpoint as ocp

    meta = {**meta, "format_version": FORMAT_VERSION}
    with _manager(directory, create=True, max_to_keep=max_to_keep) as manager:
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   meta=ocp.args.JsonSave(meta)),
                     force=True)
        manager.wait_until_finished()
    return Path(directory) / str(step)


def latest_step(directory: str | os.PathLike[str]) -> int | None:
    """The newest complete checkpoint step in ``directory`` (None if there is none)."""
    if not Path(directory).is_dir():
        return None
    with _manager(directory, create=False) as manager:
        return manager.latest_step()


def restore_meta(directory: str | os.PathLike[str], step: int | None = None
                 ) -> tuple[int, dict[str, Any]]:
    """``(step, meta)`` of checkpoint ``step`` (default: the newest); checks the version."""
    import orbax.checkpoint as ocp

    step = latest_step(directory) if step is None else step
    if step is None:
        raise CheckpointError(f"no checkpoint in {directory}")
    with _manager(directory, create=False) as manager:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    meta = dict(meta["meta"])
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {Path(directory) / str(step)} has format version {version!r}; this "
            f"version of jaxmarl_coop reads version {FORMAT_VERSION} only (train again, or use "
            "the jaxmarl_coop release that wrote it)")
    return step, meta


def restore(directory: str | os.PathLike[str], like: Any, step: int | None = None
            ) -> tuple[Any, dict[str, Any]]:
    """``(state, meta)`` of checkpoint ``step`` (default: the newest).

    ``like`` gives the structure, shapes and dtypes (e.g. ``jax.eval_shape(init, ...)``);
    a checkpoint that does not match it raises :class:`CheckpointError`.
    """
    import orbax.checkpoint as ocp

    step, meta = restore_meta(directory, step)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
    try:
        with _manager(directory, create=False) as manager:
            out = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract)))
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {Path(directory) / str(step)} does not match this "
                              f"run's learner state: {str(err).splitlines()[0]}") from err
    return out["state"], meta
