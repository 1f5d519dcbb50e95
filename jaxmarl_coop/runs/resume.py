"""What a resume checks and changes, apart from the training loop (no JAX here).

A run folder's ``config.json`` says what the run is; each checkpoint's record (``meta``)
holds the settings of the run that wrote it. The checkpoint's settings are the truth: a
resume (and ``evaluate``, ``load_policy``) refuses a ``config.json`` that disagrees with them,
naming the first field that differs, and a ``config.json`` whose derived sections (learner
config, hyperparameters, env params, update counts) contradict its own ``run`` settings.

The one change a resume makes is to extend a run to more env steps
(``--resume RUN_DIR --env-steps N``): :func:`extend` keeps the run's updates per chunk (so its
checkpoints, evaluations and metrics rows line up) and adds chunks; the change is recorded in
``config.json["extensions"]``. The rules, and what happens to schedules that depend on the
number of updates, are in docs/bad-input.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import Any

from jaxmarl_coop.runs.config import RunConfig, UsageError

#: config.json sections computed from its ``run`` settings (compared on resume)
DERIVED = ("learner_config", "hyperparams", "env_params", "num_updates",
           "env_steps_per_update", "chunks", "env_steps_per_seed")


def run_config_from_record(fields: Any, where: str, out: str | None = None) -> RunConfig:
    """The :class:`RunConfig` of a saved ``run`` object (config.json's or a checkpoint's);
    ``UsageError`` naming ``where`` for a missing object, an unknown field or a bad value.
    Fields absent take their defaults (older folders); ``out`` replaces the saved one."""
    if not isinstance(fields, dict):
        raise UsageError(f"{where}: 'run' must be an object of run settings, got "
                         f"{type(fields).__name__}")
    known = [f.name for f in dataclasses.fields(RunConfig)]
    unknown = sorted(set(fields) - set(known), key=str)
    if unknown:
        raise UsageError(f"{where}: run has no field {', '.join(map(repr, unknown))}; its "
                         f"fields: {', '.join(known)}")
    values = dict(fields)
    for name in ("env_param", "hp", "config"):
        if isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    if out is not None:
        values["out"] = out
    try:
        return RunConfig(**values)
    except (ValueError, TypeError) as err:
        raise UsageError(f"{where}: {str(err).splitlines()[0]}") from err


def first_difference(a: RunConfig, b: RunConfig, ignore: tuple[str, ...] = ("out",)
                     ) -> str | None:
    """The first field (in declaration order) where ``a`` and ``b`` differ, if any."""
    for f in dataclasses.fields(RunConfig):
        if f.name not in ignore and getattr(a, f.name) != getattr(b, f.name):
            return f.name
    return None


def _mismatch(saved: Any, expected: Any, path: str) -> tuple[str, Any, Any] | None:
    if isinstance(saved, dict) and isinstance(expected, dict):
        for key in saved:  # keys one side lacks: another code version, not an edit
            if key in expected:
                found = _mismatch(saved[key], expected[key], f"{path}.{key}")
                if found:
                    return found
        return None
    if _canonical(saved) != _canonical(expected):
        return path, saved, expected
    return None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def check_record(saved: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    """``UsageError`` naming the first of config.json's :data:`DERIVED` values that is not
    what its ``run`` settings give (``expected``: the record rebuilt from them)."""
    for key in DERIVED:
        if key in saved and key in expected:
            found = _mismatch(saved[key], expected[key], key)
            if found:
                path, have, want = found
                raise UsageError(f"{where}: {path} is {_short(have)} but the run's settings "
                                 f"give {_short(want)} (config.json was edited?); put it back")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def disagreement(folder_run: RunConfig, checkpoint_run: RunConfig, step: int, where: str,
                 out: str) -> str:
    """The one line refusing a config.json that disagrees with the checkpoint's settings."""
    field = first_difference(folder_run, checkpoint_run)
    have, truth = getattr(folder_run, field), getattr(checkpoint_run, field)
    hint = f"put it back to {_short(_jsonable(truth))}"
    if field == "env_steps" and isinstance(have, int) and have > truth:
        hint += f", or extend the run with --resume {out} --env-steps {have}"
    return (f"{where} does not match the run in checkpoint {step}: {field} is "
            f"{_short(_jsonable(have))} in config.json but {_short(_jsonable(truth))} in the "
            f"checkpoint, whose settings are the run's; {hint}")


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def extend(run: RunConfig, num_updates: int, updates_per_chunk: int, steps_per_update: int,
           env_steps: int) -> RunConfig | None:
    """The run extended to at least ``env_steps`` env steps per seed, in whole chunks of its
    ``updates_per_chunk`` (so that ``training.build`` gives the same chunk length back);
    None if that is the run's own length; ``UsageError`` if it would shorten the run."""
    updates = math.ceil(env_steps / steps_per_update)
    updates = math.ceil(updates / updates_per_chunk) * updates_per_chunk
    if updates == num_updates:
        return None
    if updates < num_updates:
        raise UsageError(f"--env-steps {env_steps} would shorten the run to {updates} updates "
                         f"from {num_updates} ({num_updates * steps_per_update:,} env steps per "
                         "seed); a run can only be extended")
    return dataclasses.replace(run, env_steps=updates * steps_per_update,
                               chunks=updates // updates_per_chunk)


def extension_entry(before: RunConfig, after: RunConfig, at_update: int,
                    num_updates_before: int, num_updates: int, argv: list[str]
                    ) -> dict[str, Any]:
    """What config.json["extensions"] records of one extension."""
    return {"from": dataclasses.asdict(before), "at_update": at_update,
            "env_steps_before": before.env_steps,
            "env_steps": after.env_steps, "num_updates_before": num_updates_before,
            "num_updates": num_updates, "chunks_before": before.chunks,
            "chunks": after.chunks,
            "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "argv": argv}


def extension_base(saved: dict[str, Any], where: str, out: str) -> RunConfig | None:
    """The settings before config.json's latest extension (a checkpoint written before it
    may continue under the extended settings); None if the run was never extended."""
    extensions = saved.get("extensions")
    if extensions is None:
        return None
    if not isinstance(extensions, list) or not extensions or not isinstance(
            extensions[-1], dict) or "from" not in extensions[-1]:
        raise UsageError(f"{where}: 'extensions' must be a list of extension records")
    return run_config_from_record(extensions[-1]["from"], f"{where} (extensions)", out)
