"""The ``izray report`` subcommand: its argument parser and what it runs.

Example:
    add_parser(parser.add_subparsers(dest="command"))
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from izray.reporting.formats import FORMATS, FORMATTERS
from izray.reporting.html import write_html
from izray.reporting.plots import write_plot
from izray.reporting.runs import load_report


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``izray report`` to the ``izray`` subparsers ``sub``."""
    p = sub.add_parser("report", help="tables, a plot and an HTML page of run directories "
                       "(offline, also mid-run)")
    p.add_argument("runs", nargs="+", metavar="OUT",
                   help="run directories (several: side by side, compared with the first)")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (default), md, csv or json")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")
    p.add_argument("--plot", metavar="FILE.png", help="also write the best-so-far plot")
    return p


def cmd_report(args: argparse.Namespace) -> int:
    """Print the report in ``args.format``; write ``--plot`` and ``--html`` if asked."""
    report = load_report(args.runs)
    print(FORMATTERS[args.format](report))
    if args.plot:
        print(f"plot: {write_plot(report, args.plot)}", file=sys.stderr)
    if args.html:
        print(f"html: {write_html(report, args.html)}", file=sys.stderr)
    return 0
