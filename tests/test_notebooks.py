"""Every notebook in notebooks/ is stored without outputs and runs top to bottom.

The notebooks run on tiny budgets (well under 2 minutes each on a 2-core CPU). They execute
in a Jupyter kernel of this very interpreter (the one that has the package installed), with
``notebooks/`` as the working directory, as a reader's Jupyter would run them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
manager = pytest.importorskip("jupyter_client.manager")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: code cell {i} has stored outputs"
            assert cell.execution_count is None, \
                f"{path.name}: code cell {i} has an execution count ({cell.execution_count})"


def _kernel_manager() -> manager.AsyncKernelManager:
    """The ``python3`` kernel, run by this interpreter.

    ipykernel's ``python3`` spec names ``python``, which jupyter_client replaces by
    ``sys.executable``; a ``python3`` spec elsewhere on the Jupyter path could name another
    interpreter, so that case is pinned to this one.
    """
    km = manager.AsyncKernelManager(kernel_name="python3")
    if Path(km.format_kernel_cmd()[0]).resolve() != Path(sys.executable).resolve():
        km.kernel_spec.argv = [sys.executable, "-m", "ipykernel_launcher", "-f",
                               "{connection_file}"]
    return km


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path: Path):
    nb = nbformat.read(path, as_version=4)
    km = _kernel_manager()
    assert Path(km.format_kernel_cmd()[0]).resolve() == Path(sys.executable).resolve()
    client = nbclient.NotebookClient(nb, km=km, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    # raises CellExecutionError, naming the cell, if any cell fails; cleanup_kc: shut the
    # kernel down afterwards although we, not the client, made its manager
    client.execute(cleanup_kc=True)
    codes = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in codes), "not every cell ran"
