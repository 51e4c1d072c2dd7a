"""``izray report``: one or more run directories as a table, a plot and an HTML page.

Works from the run directory alone (no data, no models, no Ray), finished or mid-run. A
finished task's numbers come from ``summary.json``; a task not finished yet (or a run with no
``summary.json`` so far) is rebuilt from ``history.jsonl`` (best dev score and instruction,
queries, candidates, failed queries), ``state/TASK.json`` (references, test score, stop
reason) and ``ledger.sqlite`` (API calls and tokens); its test score is missing until the
task is done. Its status is ``running`` while a driver holds ``OUT/.lock``, else
``unfinished`` (``izray resume OUT`` continues it).

Several run directories are shown side by side per task, each labelled by its strategy
(when the strategies differ) or else its directory name, with the difference of test and
dev score against the first one.

Example:
    report = load_report(["runs/iz", "runs/uniform"])
    print(format_table(report))
    write_plot(report, "curves.png")
"""

from izray.reporting.command import add_parser, cmd_report
from izray.reporting.formats import (
    FORMATS,
    FORMATTERS,
    format_csv,
    format_json,
    format_markdown,
    format_table,
)
from izray.reporting.html import top_instructions, write_html
from izray.reporting.plots import curves, write_plot
from izray.reporting.runs import COLUMNS, FIELDS, Report, Run, load_report

__all__ = [
    "COLUMNS",
    "FIELDS",
    "FORMATS",
    "FORMATTERS",
    "Report",
    "Run",
    "add_parser",
    "cmd_report",
    "curves",
    "format_csv",
    "format_json",
    "format_markdown",
    "format_table",
    "load_report",
    "top_instructions",
    "write_html",
    "write_plot",
]
