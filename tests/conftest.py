"""Test setup: safe XLA flags before any JAX computation (see ``jaxmarl_coop.runtime``), and
the benchmark smoke tests' shared runner."""

import os
from pathlib import Path

from jaxmarl_coop.runtime import configure_xla

configure_xla()

# One compiled program is built once per test run: JAX's persistent compilation cache, shared
# by the xdist workers and by the subprocesses the tests start (command lines, benchmarks,
# notebooks inherit the environment). Its keys hold the program, the compile options and the
# jax version, so a hit is the same executable; it lives in .pytest_cache (not in git).
# Set JAX_COMPILATION_CACHE_DIR yourself to move it, or to "" to compile everything afresh.
_CACHE = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax-compilation-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# Tests check what programs compute, not how fast: XLA's quick compile path (most optimisation
# passes off) takes almost half off the suite, the same on every worker and subprocess. Tests
# marked `optimised` compile as users' runs do (full optimisation), so that what holds for
# the programs users run is checked too; JAX_DISABLE_MOST_OPTIMIZATIONS=0 runs every test so.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402

#: whether tests not marked ``optimised`` compile on XLA's quick path
QUICK_COMPILE = os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"].lower() in ("1", "true")
jax.config.update("jax_disable_most_optimizations", QUICK_COMPILE)

if _CACHE:
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))

import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def finite(x: Any) -> bool:
    """A finite number, or a ``{"mean": ...}`` summary with a finite mean."""
    if isinstance(x, dict):
        x = x["mean"]
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@pytest.fixture(autouse=True)
def _optimisation(request: pytest.FixtureRequest):
    """Programs compiled in a test marked ``optimised`` get XLA's full optimisation."""
    if request.node.get_closest_marker("optimised") is None:
        yield
        return
    before = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


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
