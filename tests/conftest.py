"""Test setup: safe XLA flags before any JAX computation (see ``jaxmarl_coop.runtime``), and
the benchmark smoke tests' shared runner."""

from jaxmarl_coop.runtime import configure_xla

configure_xla()

import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def finite(x: Any) -> bool:
    """A finite number, or a ``{"mean": ...}`` summary with a finite mean."""
    if isinstance(x, dict):
        x = x["mean"]
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@pytest.fixture
def run_benchmark(tmp_path: Path) -> Callable[..., tuple[subprocess.CompletedProcess, dict,
                                                         Path]]:
    """``run_benchmark(name, *args, timeout=...)``: ``python -m experiments.benchmarks.NAME
    ARGS --out TMP/NAME`` from the repository root; asserts it exited 0 and left its
    results.json (and no temporary file); returns ``(process, results, out folder)``."""

    def run(name: str, *args: str, timeout: float = 280) -> tuple[subprocess.CompletedProcess,
                                                                   dict, Path]:
        out = tmp_path / name
        proc = subprocess.run(
            [sys.executable, "-m", f"experiments.benchmarks.{name}", *args, "--out", str(out)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        data = json.loads((out / "results.json").read_text())
        assert not list(out.glob("*.tmp"))  # the atomic writes left no temporary file
        return proc, data, out

    return run
