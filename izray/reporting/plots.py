"""The best-so-far plot of a :class:`~izray.reporting.runs.Report` (matplotlib, loaded lazily).

Example:
    write_plot(load_report(["runs/iz", "runs/uniform"]), "curves.png")
"""

from __future__ import annotations

import warnings
from pathlib import Path

from izray.reporting.runs import Report


def curves(report: Report) -> dict[str, dict[str, list]]:
    """Best-so-far dev score per paid query, as :func:`izray.analysis.plot_curves` takes it:
    ``{run: {task: [curve]}}`` for one run, ``{task: {run: [curve]}}`` for several. A task
    not finished has NaN after its last query (no carried-forward line into the future)."""
    from izray.analysis import best_so_far

    length = max([r.budget or 0 for r in report.runs] +
                 [row.get("queries") or 0 for row in report.rows] + [1])
    out: dict[str, dict[str, list]] = {}
    for run in report.runs:
        for task, row in run.rows.items():
            if not row.get("queries"):
                continue
            curve = best_so_far(run.records(task), length)
            if row["status"] != "done":
                curve[row["queries"]:] = float("nan")
            if len(report.runs) == 1:
                out.setdefault(run.label, {})[task] = [curve]
            else:
                out.setdefault(task, {})[run.label] = [curve]
    return out


def write_plot(report: Report, path: str | Path) -> Path:
    """PNG of best-so-far dev score against paid queries: one run, one panel with a line per
    task; several runs, a panel per task plus their mean, a line per run. A finished task's
    line is carried forward to the budget (its result stands), a running one's ends at its
    last query (and the mean panel ends where the first unfinished task does)."""
    from izray.analysis import plot_curves

    data = curves(report)
    one = len(report.runs) == 1
    if not data:  # nothing scored yet: an empty panel says so
        data = {report.runs[0].label if one else "no paid queries yet": {}}
    title = ("best dev score vs paid queries" +
             ("" if one else ": " + ", ".join(r.label for r in report.runs)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # means over not-yet-reached points
        warnings.simplefilter("ignore", UserWarning)  # a panel with no line has no legend
        return plot_curves(data, path, title, mean_panel=not one,
                           panel_size=(8.0, 4.5) if one else (4.2, 3.0))
