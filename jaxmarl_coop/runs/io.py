"""Run folders: files written atomically, so a killed run never leaves half a file."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        arr = np.asarray(value)
        return _jsonable(arr.item() if arr.ndim == 0 else arr.tolist())
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a run folder is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically: a killed writer leaves the old file or the new."""
    return write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """JSON (numpy and jax arrays become lists) written atomically."""
    return write_text_atomic(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def mean_ci95(values: Any) -> tuple[float, float]:
    """Mean and half-width of a 95% Student-t confidence interval over the first axis."""
    arr = np.asarray(values, dtype=np.float64).reshape(len(values), -1).mean(axis=1)
    n = arr.shape[0]
    if n < 2:
        return float(arr.mean()), float("nan")
    # two-sided 97.5% quantiles of Student's t for small n, normal beyond
    t_table = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365,
               9: 2.306, 10: 2.262, 12: 2.201, 16: 2.131, 20: 2.093, 32: 2.040, 64: 1.998}
    t = t_table.get(n) or t_table[max(k for k in t_table if k <= n)] if n <= 64 else 1.96
    return float(arr.mean()), float(t * arr.std(ddof=1) / np.sqrt(n))
