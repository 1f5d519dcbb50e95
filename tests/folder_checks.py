"""Test helpers for the bad-input contract (docs/bad-input.md): a folder's files byte for
byte, and a command refused with one line on stderr, exit status 2, nothing written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def snapshot(*paths: str | os.PathLike[str]) -> dict[str, bytes | None]:
    """Every file and folder under ``paths``: file -> its bytes, folder -> None, and a path
    that does not exist -> ``b"<absent>"`` (so that creating it shows as a change)."""
    out: dict[str, bytes | None] = {}
    for root in map(Path, paths):
        if not root.exists():
            out[str(root)] = b"<absent>"
            continue
        if root.is_file():
            out[str(root)] = root.read_bytes()
            continue
        out[str(root)] = None
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames:
                out[os.path.join(dirpath, name)] = None
            for name in filenames:
                path = os.path.join(dirpath, name)
                out[path] = Path(path).read_bytes()
    return out


def assert_refused(main: Callable[[list[str]], Any], argv: list[str],
                   capsys: pytest.CaptureFixture[str], expected: str,
                   *untouched: str | os.PathLike[str]) -> str:
    """``main(argv)`` exits with status 2 and one line on stderr containing ``expected``,
    no traceback, and leaves every path in ``untouched`` as it was, byte for byte (a path
    that did not exist still does not). Returns the line."""
    capsys.readouterr()
    before = snapshot(*untouched)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert expected in err, err
    after = snapshot(*untouched)
    changed = sorted(k for k in set(before) | set(after) if before.get(k, b"?") != after.get(
        k, b"?"))
    assert not changed, f"a refused command changed {changed}"
    return err.strip()
