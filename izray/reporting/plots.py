"""The best-so-far plot of a :class:`~izray.reporting.runs.Report` (matplotlib, loaded lazily).

Example:
    write_plot(load_report(["runs/iz", "runs/uniform"]), "curves.png")
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from izray.reporting.runs import Report, Run


def curves(report: Report, group: Callable[[Run], str] | None = None,
           length: int | None = None) -> dict[str, dict[str, list]]:
    """Best-so-far dev score per paid query, as :func:`plot_curves` takes it:
    ``{run: {task: [curve]}}`` for one run, ``{task: {run: [curve]}}`` for several. A task
    not finished has NaN after its last query (no carried-forward line into the future).

    Args:
        report: The runs.
        group: Name of a run's line (default: its label); runs with the same name pool their
            curves, e.g. the seeds of one strategy: ``{task: {name: [curve, ...]}}``.
        length: Queries on the x axis (default: the largest budget or query count).
    """
    from izray.analysis import best_so_far

    length = length or max([r.budget or 0 for r in report.runs] +
                           [row.get("queries") or 0 for row in report.rows] + [1])
    out: dict[str, dict[str, list]] = {}
    for run in report.runs:
        for task, row in run.rows.items():
            if not row.get("queries"):
                continue
            curve = best_so_far(run.records(task), length)
            if row["status"] != "done":
                curve[row["queries"]:] = float("nan")
            if group is not None:
                out.setdefault(task, {}).setdefault(group(run), []).append(curve)
            elif len(report.runs) == 1:
                out.setdefault(run.label, {})[task] = [curve]
            else:
                out.setdefault(task, {})[run.label] = [curve]
    return out


def write_plot(report: Report, path: str | Path, group: Callable[[Run], str] | None = None,
               title: str | None = None, length: int | None = None) -> Path:
    """PNG of best-so-far dev score against paid queries: one run, one panel with a line per
    task; several runs, a panel per task plus their mean, a line per run. A finished task's
    line is carried forward to the budget (its result stands), a running one's ends at its
    last query (and the mean panel ends where the first unfinished task does). ``group``
    pools runs into one line each with its mean and spread (see :func:`curves`); ``title``
    replaces the default one."""
    data = curves(report, group, length)
    one = len(report.runs) == 1 and group is None
    if not data:  # nothing scored yet: an empty panel says so
        data = {report.runs[0].label if one else "no paid queries yet": {}}
    title = title or ("best dev score vs paid queries" +
                      ("" if one else ": " + ", ".join(r.label for r in report.runs)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # means over not-yet-reached points
        warnings.simplefilter("ignore", UserWarning)  # a panel with no line has no legend
        return plot_curves(data, path, title, mean_panel=not one,
                           panel_size=(8.0, 4.5) if one else (4.2, 3.0))


def plot_curves(curves: Mapping[str, Mapping[str, Sequence[np.ndarray]]], path: str | Path,
                title: str, *, mean_panel: bool = True,
                panel_size: tuple[float, float] = (4.2, 3.0)) -> Path:
    """Best-so-far dev score against paid queries: one panel per task and one for the mean
    over tasks; one line per strategy (mean over seeds). In the task panels the band spans
    the seeds' min-max; the mean panel has none (its spread would be the tasks' difficulty).

    Args:
        curves: ``{task: {strategy: [curve per seed]}}``. A NaN is a point not reached yet
            (a run still going); it is left out of the means.
        path: PNG to write.
        title: Figure title.
        mean_panel: Add the "mean over tasks" panel. Without it the legend goes beside the
            panels (``izray report`` of one run plots its tasks, many lines, in one panel:
            ``{run: {task: [curve]}}``).
        panel_size: Inches per panel (width, height).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(curves)
    panels = [*tasks, "mean over tasks"] if mean_panel else tasks
    cols = min(3, len(panels))
    rows_n = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(panel_size[0] * cols, panel_size[1] * rows_n),
                             squeeze=False, sharex=True)
    strategies = sorted({s for t in tasks for s in curves[t]})
    colors = {s: f"C{i}" for i, s in enumerate(strategies)}
    for ax, panel in zip(axes.flat, panels, strict=False):
        for s in strategies:
            if panel == "mean over tasks":
                per_task = [np.nanmean(np.stack(curves[t][s]), axis=0) for t in tasks
                            if curves[t].get(s)]
                stack = np.stack(per_task) if per_task else None
                if stack is not None:  # only as far as every task got (a run still going)
                    reached = [np.nonzero(np.isfinite(c))[0] for c in stack]
                    cut = min((int(r[-1]) for r in reached if r.size), default=-1)
                    stack[:, cut + 1:] = np.nan
            else:
                stack = np.stack(curves[panel][s]) if curves[panel].get(s) else None
            if stack is None:
                continue
            x = np.arange(1, stack.shape[1] + 1)
            ax.plot(x, np.nanmean(stack, axis=0), color=colors[s], label=s)
            if stack.shape[0] > 1 and panel != "mean over tasks":
                ax.fill_between(x, np.nanmin(stack, axis=0), np.nanmax(stack, axis=0),
                                color=colors[s], alpha=0.15, linewidth=0)
        ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.3)
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.axis("off")
        elif i + cols >= len(panels):  # nothing below it: it shows the x axis
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("paid queries")
    for ax in axes[:, 0]:
        ax.set_ylabel("best dev score")
    if mean_panel:
        axes.flat[0].legend(fontsize=8)
    else:  # one line per task: many lines, the legend goes beside the panels
        axes.flat[cols - 1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
