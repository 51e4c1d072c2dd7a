"""A :class:`~izray.reporting.runs.Report` as text: an aligned table, markdown, csv or json.

Example:
    print(FORMATTERS["md"](load_report(["runs/iz"])))
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from izray.reporting.runs import COLUMNS, FIELDS, Report

FORMATS = ("table", "md", "csv", "json")
_SCORES = {"reference_test", "dev_score", "test_score", "reference_dev"}
_DIFFS = {"diff_test", "diff_dev"}


def _columns(report: Report) -> list[tuple[str, str]]:
    """The table's columns: ``run`` and the differences with several runs, ``strategy``
    unless the runs are labelled by it."""
    many = len(report.runs) > 1
    by_strategy = many and all(r.label == r.strategy for r in report.runs)
    return [(k, h) for k, h in COLUMNS
            if (many or (k != "run" and k not in _DIFFS)) and not (by_strategy and
                                                                 k == "strategy")]


def _cell(key: str, value: Any, mean: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key in _SCORES:
        return f"{value:.3f}"
    if key in _DIFFS:
        return f"{value:+.3f}"
    if key == "usd":
        return f"{value:.4f}"
    if key == "tokens" and value >= 10_000:
        return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"
    if isinstance(value, float):
        return f"{value:.1f}" if mean else f"{value:g}"
    return str(value)


def _grid(report: Report) -> tuple[list[str], list[list[str]]]:
    """Headings and text cells of every task row, then the mean rows."""
    cols = _columns(report)
    cells = [[_cell(k, row.get(k)) for k, _ in cols] for row in report.rows]
    cells += [[_cell(k, m.get(k), mean=True) if k != "status" else m["status"] for k, _ in cols]
              for m in report.means]
    return [h for _, h in cols], cells


def _notes(report: Report) -> list[str]:
    notes = []
    for run, mean in zip(report.runs, report.means, strict=True):
        if mean["n_tested"] < mean["n_tasks"]:
            notes.append(f"{run.label}: mean test over {mean['n_tested']} of {mean['n_tasks']} "
                         "tasks (the others have no test score yet)")
    if len(report.runs) > 1:
        notes.append(f"Δtest, Δdev: against {report.runs[0].label} (means: over the tasks "
                     "both have)")
    return notes


def format_table(report: Report, width: int = 100) -> str:
    """Aligned plain text: the table, notes, each row's best instruction (cut to ``width``)."""
    heads, cells = _grid(report)
    widths = [max(len(c) for c in col) for col in zip(heads, *cells, strict=True)]
    numeric = {i for i, (k, _) in enumerate(_columns(report))
               if k not in {"task", "run", "strategy", "metric", "status", "stopped_by"}}

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if i in numeric else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    n = len(report.rows)
    out = [line(heads), line(["-" * w for w in widths]), *map(line, cells[:n]),
           line(["-" * w for w in widths]), *map(line, cells[n:])]
    out += ["", *_notes(report)] if _notes(report) else []
    out += ["", "best instructions:"]
    for row in report.rows:
        who = f"{row['task']} [{row['run']}]" if len(report.runs) > 1 else row["task"]
        text = " ".join(str(row.get("best_instruction") or "(none yet)").split())
        text = text if len(text) <= width else text[:width - 3] + "..."
        out.append(f"  {who}: {text}")
    return "\n".join(out)


def format_markdown(report: Report) -> str:
    """A markdown table, notes and the best instructions."""
    heads, cells = _grid(report)
    md = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    n = len(report.rows)
    md += ["| " + " | ".join(_md(c) for c in row) + " |" for row in cells[:n]]
    md += ["| " + " | ".join(f"**{_md(c)}**" if c != "-" else c for c in row) + " |"
           for row in cells[n:]]
    md += ["", *(f"- {note}" for note in _notes(report))] if _notes(report) else []
    md += ["", "Best instructions:", ""]
    for row in report.rows:
        who = f"{row['task']} [{row['run']}]" if len(report.runs) > 1 else row["task"]
        md.append(f"- **{_md(who)}**: {_md(str(row.get('best_instruction') or '(none yet)'))}")
    return "\n".join(md)


def _md(text: str) -> str:
    return " ".join(text.split()).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")


def format_csv(report: Report) -> str:
    """One line per task and run, then the mean rows (``task`` = ``mean``); raw numbers."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in [*report.rows, *report.means]:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in FIELDS})
    return buf.getvalue().rstrip("\n")


def format_json(report: Report) -> str:
    """``{"runs": [{label, path, strategy, live}], "rows": [...], "means": [...]}``."""
    runs = [{"label": r.label, "path": str(r.path), "strategy": r.strategy, "live": r.live,
             "finished": all(row["status"] == "done" for row in r.rows.values())}
            for r in report.runs]
    return json.dumps({"runs": runs, "rows": report.rows, "means": report.means}, indent=1,
                      ensure_ascii=False)


FORMATTERS = {"table": format_table, "md": format_markdown, "csv": format_csv,
              "json": format_json}
