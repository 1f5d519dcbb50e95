"""Compare run folders: a summary table and training curves over seeds.

    python -m experiments.plot runs/mappo-tracking-v1-20261126-101500
    python -m experiments.plot runs/mappo-* runs/ippo-* --stat iqm --out compare.png
    python -m experiments.plot RUN_A RUN_B --metric entropy --labels mappo ippo

Prints one row per run (training ``--metric`` over the last 5% of updates, and the greedy
evaluation returns from eval.json when the run has finished), draws each run's ``--stat``
over seeds with its 95% band against env steps, and writes the figure to ``--out``
(default ``compare.png`` in the current folder, or inside the run folder when there is a
single run). Works on the files alone: no JAX.

    python -m experiments.plot --compare runs/mappo-* runs/ippo-* runs/qmix-*

``--compare``: several algorithms (the runs' learners, or ``--labels``) over several tasks
(their envs), from each seed's final greedy return, normalised per task (min-max over every
seed given): IQM and mean with rliable's stratified-bootstrap 95% intervals, the probability
of improvement of every pair, performance profiles (``jaxmarl_coop.plots.compare``). Writes
``--out`` (default compare.png) and the numbers beside it as JSON (same name, .json).

``--out`` (or its .json) naming one of a run's own files (config.json, metrics.csv,
eval.json, curve.png, ...) is refused in one line, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.cli import Parser, one_line
from jaxmarl_coop import plots
from jaxmarl_coop.runs.folder import check_output_file
from jaxmarl_coop.runs.io import write_json_atomic


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(prog="python -m experiments.plot", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run folders written by experiments.train")
    p.add_argument("--metric", default="episode_return",
                   help="a metrics.csv column (default episode_return)")
    p.add_argument("--stat", default="mean", choices=plots.STATS,
                   help="center over seeds: mean (Student-t band) or iqm (bootstrap band)")
    p.add_argument("--out", default=None,
                   help="figure path (default compare.png here, or in the single RUN_DIR)")
    p.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                   help="legend labels, one per RUN_DIR (default the folder names)")
    p.add_argument("--title", default=None, help="figure title (default the env ids)")
    p.add_argument("--compare", action="store_true",
                   help="algorithms x tasks: IQM, probability of improvement, performance "
                        "profiles of the final greedy returns (needs rliable: [stats])")
    p.add_argument("--points", type=int, default=200,
                   help="bin longer curves to about this many points (default 200)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    try:
        if args.labels is not None and len(args.labels) != len(args.run_dirs):
            raise ValueError(f"{len(args.labels)} --labels for {len(args.run_dirs)} run "
                             "folders; give one label per RUN_DIR")
        if args.points < 1:
            raise ValueError(f"--points must be >= 1, got {args.points}")
        if args.out is not None:  # before anything is read: a refused path writes nothing
            check_output_file(args.out, "--out")
            if args.compare:
                check_output_file(Path(args.out).with_suffix(".json"), "--out (its .json)")
        runs = [plots.load_run(d) for d in args.run_dirs]
        if args.compare:
            return _compare(runs, args)
        plots.check_metric(runs, args.metric)
        for run in runs:
            for note in run.notes:
                print(f"note: {note}", file=sys.stderr)
        table = plots.summary_table(runs, metric=args.metric, stat=args.stat)
        if args.out is not None:
            out = Path(args.out)
        elif len(runs) == 1:
            out = runs[0].path / "compare.png"
        else:
            out = Path("compare.png")
        check_output_file(out, "--out")
        plots.plot_curves(runs, metric=args.metric, stat=args.stat, path=out,
                          labels=args.labels, title=args.title, points=args.points)
    except (ValueError, OSError, ImportError) as err:  # ImportError: rliable, naming the extra
        lines = str(err).strip().splitlines() or [type(err).__name__]
        print(f"error: {one_line(lines[0])}", file=sys.stderr)
        raise SystemExit(2) from None
    print(table)
    print(f"wrote {out}")
    return out


def _compare(runs: list[plots.RunData], args: argparse.Namespace) -> Path:
    out = Path(args.out or "compare.png")
    check_output_file(out, "--out")
    check_output_file(out.with_suffix(".json"), "--out (its .json)")
    result = plots.compare(runs, labels=args.labels)
    plots.plot_compare(result, out)
    write_json_atomic(out.with_suffix(".json"), result)
    print(plots.compare_table(result))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return out


if __name__ == "__main__":
    main()
