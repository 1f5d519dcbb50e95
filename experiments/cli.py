"""What the command lines share: one-line errors, options generated from config dataclasses,
and the several-processes options. Scripts import this module, never one another."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import typing
from collections.abc import Callable
from typing import Any

from jaxmarl_coop import parallel
from jaxmarl_coop.runs.config import UsageError

__all__ = ["DISTRIBUTED_OPTIONS", "Parser", "UsageError", "add_dataclass_options",
           "add_distributed_options", "one_line", "one_line_errors", "start_distributed"]


def one_line(text: str) -> str:
    """``text`` on one line: line breaks of any kind (``\\n``, ``\\r``, ``\\x85``,
    ``\\u2028`` ...) that a typed value brings are shown escaped."""
    return "".join(repr(c)[1:-1] if len(f"a{c}b".splitlines()) > 1 else c for c in text)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit status 2 (no usage block)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {one_line(message)} (see --help)\n")


def one_line_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """A ``main`` whose ``UsageError`` (a user error) is printed as one line, exit status 2."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except UsageError as err:  # a library's message may run on: its first line
            lines = str(err).strip().splitlines() or [type(err).__name__]
            print(f"error: {one_line(lines[0])}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapped


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type,
                          skip: tuple[str, ...] = ()) -> None:
    """One option per field of the dataclass ``cls`` (``--env-steps`` for ``env_steps``),
    help from the field's ``metadata["help"]``; bools get ``--x/--no-x``, tuples are
    repeatable ``NAME=VALUE``. Defaults are suppressed, so only given options are parsed."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        helptext = f"{f.metadata.get('help', '')} (default {f.default!r})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=helptext,
                                default=argparse.SUPPRESS)
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(flag, action="append", metavar="NAME=VALUE", help=helptext,
                                default=argparse.SUPPRESS)
        else:
            parser.add_argument(flag, type=kind, help=helptext, default=argparse.SUPPRESS)


#: options that start several processes (not run settings: a resumed run may run elsewhere)
DISTRIBUTED_OPTIONS = ("distributed", "coordinator_address", "num_processes", "process_id")


def add_distributed_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """``--distributed`` and the arguments of ``jax.distributed.initialize``."""
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group(
        "several processes", "one program over the devices of several processes (hosts); "
        "process 0 writes the results, the others nothing")
    group.add_argument("--distributed", action="store_true",
                       default=argparse.SUPPRESS if suppress else False,
                       help="join the processes with jax.distributed.initialize before any "
                            "other JAX use; options not given are detected by JAX (Slurm, "
                            "Open MPI, TPU pods, ...)")
    group.add_argument("--coordinator-address", metavar="HOST:PORT", default=default,
                       help="address of process 0's coordinator (with --distributed)")
    group.add_argument("--num-processes", type=int, metavar="N", default=default,
                       help="number of processes (with --distributed)")
    group.add_argument("--process-id", type=int, metavar="I", default=default,
                       help="this process's index, 0 .. N-1 (with --distributed)")


def start_distributed(options: dict[str, Any]) -> bool:
    """Join the processes if ``options["distributed"]`` (``UsageError`` if that fails or the
    other options come without it); returns whether distributed. Call before any JAX use."""
    given = {k: options.get(k) for k in DISTRIBUTED_OPTIONS[1:]
             if options.get(k) is not None}
    if not options.get("distributed"):
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise UsageError(f"{flags}: only with --distributed")
        return False
    count, index = given.get("num_processes"), given.get("process_id")
    if count is not None and count < 1:
        raise UsageError(f"--num-processes must be an integer >= 1, got {count}")
    if index is not None and (index < 0 or (count is not None and index >= count)):
        raise UsageError(f"--process-id must be in 0 .. --num-processes - 1, got {index}")
    try:
        parallel.initialize_distributed(**given)
    except (ValueError, TypeError, RuntimeError) as err:
        raise UsageError(f"--distributed: jax.distributed.initialize failed: "
                         f"{str(err).splitlines()[0]}") from err
    return True
