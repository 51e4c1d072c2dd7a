"""The ``izray report --html`` page: one self-contained file.

Inline CSS, the plot as an inline base64 PNG, no scripts and no reference to anything outside
the file (it opens offline, from a mail attachment, and leaks nothing when opened). Every
piece of text is escaped (instructions are LLM output); ``://`` is written as ``&#58;//`` so
that even a URL in the config is text, never something that looks like a link.

Example:
    write_html(load_report(["runs/iz"]), "report.html")
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from izray.reporting.formats import _cell, _columns, _notes
from izray.reporting.plots import write_plot
from izray.reporting.runs import Report, Run

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 20px;
       color: #1f2328; background: #fff; max-width: 1400px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px;
     border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; } h4 { font-size: 13px; margin: 10px 0 4px; }
.meta, .notes { color: #57606a; font-size: 13px; }
table { border-collapse: collapse; font-size: 12px; }
table.results td { white-space: nowrap; }
th, td { padding: 3px 5px; border-bottom: 1px solid #eaeef2; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; vertical-align: bottom; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th.num { text-align: right; }
tr.mean td { font-weight: 600; border-top: 2px solid #d0d7de; background: #f6f8fa; }
tr.first-of-task td { border-top: 1px solid #afb8c1; }
.pos { color: #1a7f37; } .neg { color: #cf222e; }
.status { border-radius: 8px; padding: 0 6px; font-size: 12px; white-space: nowrap; }
.status.done { background: #dafbe1; } .status.running { background: #ddf4ff; }
.status.unfinished { background: #fff8c5; }
.scroll { overflow-x: auto; }
img.plot { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
.instr { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, Menlo,
         Consolas, monospace; font-size: 12.5px; }
.best { background: #f6f8fa; border-left: 3px solid #0969da; padding: 6px 10px;
        margin: 4px 0 8px; }
tr.chosen td { background: #ddf4ff; }
pre.config { background: #f6f8fa; padding: 10px; font-size: 12px; overflow-x: auto;
             max-height: 480px; }
details summary { cursor: pointer; font-size: 13px; margin: 6px 0; }
"""


_TEXT = {"task", "run", "strategy", "metric", "stopped_by"}


def e(text: Any) -> str:
    """``text`` escaped for HTML (text and attribute values), ``://`` made inert."""
    return html.escape(str(text), quote=True).replace("://", "&#58;//")


def top_instructions(run: Run, task: str, k: int = 5) -> list[dict[str, Any]]:
    """The ``k`` distinct instructions of ``task`` with the best dev scores (ties: the first
    scored), each ``{"instruction", "dev_score", "query"}`` (its first scoring query)."""
    best: dict[str, dict[str, Any]] = {}
    for r in run.records(task):
        text, score = r.get("instruction"), r.get("dev_score")
        if not isinstance(text, str) or score is None:
            continue
        if text not in best or score > best[text]["dev_score"]:
            best[text] = {"instruction": text, "dev_score": score,
                          "query": best.get(text, r).get("query")}
    return sorted(best.values(), key=lambda entry: -entry["dev_score"])[:k]


def write_html(report: Report, path: str | Path) -> Path:
    """Write the page: the table, the plot, each task's best and top instructions, and each
    run's config. Returns ``path``."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="izray-report-") as tmp:
        png = write_plot(report, Path(tmp) / "plot.png").read_bytes()
    labels = ", ".join(r.label for r in report.runs)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>izray report: {e(labels)}</title>", f"<style>{CSS}</style></head><body>",
             "<h1>izray report</h1>", _runs_meta(report), "<h2>Results</h2>",
             _table(report)]
    notes = _notes(report)
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts += ["<h2>Best dev score against paid queries</h2>",
              ('<img class="plot" alt="best-so-far dev score against paid queries" '
               f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'),
              "<h2>Instructions</h2>", *(_task_section(report, t) for t in report.tasks),
              "<h2>Configuration</h2>", *(_config(run, len(report.runs) == 1)
                                          for run in report.runs),
              "</body></html>"]
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def _runs_meta(report: Report) -> str:
    items = []
    for run, mean in zip(report.runs, report.means, strict=True):
        cfg = run.config
        model = (cfg.get("evaluator") or {}).get("model") or (cfg.get("server") or {}).get("model")
        facts = [f"strategy {run.strategy}", f"budget {run.budget}" if run.budget else "",
                 f"model {model}" if model else "", f"seed {cfg['seed']}" if "seed" in cfg else "",
                 mean["status"]]
        items.append(f"<li><b>{e(run.label)}</b>: {e(run.path)} "
                     f"({e(', '.join(f for f in facts if f))})</li>")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return f'<ul class="meta">{"".join(items)}<li>generated {e(stamp)}</li></ul>'


def _td(key: str, value: Any, mean: bool = False) -> str:
    text = value if key == "status" and mean else _cell(key, value, mean)
    if key == "status":
        return f'<td><span class="status {e(value)}">{e(text)}</span></td>'
    cls = [] if key in _TEXT else ["num"]
    if key in {"diff_test", "diff_dev"} and isinstance(value, (int, float)):
        cls.append("pos" if value > 1e-12 else "neg" if value < -1e-12 else "")
    attr = f' class="{" ".join(c for c in cls if c)}"' if cls else ""
    return f"<td{attr}>{e(text)}</td>"


def _table(report: Report) -> str:
    cols = _columns(report)
    head = "".join(f"<th>{e(h)}</th>" if k in _TEXT or k == "status" else
                   f'<th class="num">{e(h)}</th>' for k, h in cols)
    body, last = [], None
    for row in report.rows:
        cls = ' class="first-of-task"' if last is not None and row["task"] != last else ""
        last = row["task"]
        body.append(f'<tr{cls} data-task="{e(row["task"])}">'
                    + "".join(_td(k, row.get(k)) for k, _ in cols) + "</tr>")
    for m in report.means:
        body.append('<tr class="mean" data-task="mean">'
                    + "".join(_td(k, m.get(k), mean=True) for k, _ in cols) + "</tr>")
    return (f'<div class="scroll"><table class="results"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _task_section(report: Report, task: str) -> str:
    out = [f'<section class="task"><h3>{e(task)}</h3>']
    for run in report.runs:
        row = run.rows.get(task)
        if row is None:
            continue
        if len(report.runs) > 1:
            out.append(f"<h4>{e(run.label)}</h4>")
        best = row.get("best_instruction")
        out.append('<div class="best">best: '
                   + (f'<span class="instr">{e(best)}</span>' if best else "(none yet)")
                   + f' <span class="meta">(dev {e(_cell("dev_score", row.get("dev_score")))},'
                   f' test {e(_cell("test_score", row.get("test_score")))})</span></div>')
        top = top_instructions(run, task)
        if top:
            out.append("<table><thead><tr><th>#</th><th>dev</th><th>query</th>"
                       "<th>instruction</th></tr></thead><tbody>")
            for i, t in enumerate(top, 1):
                cls = ' class="chosen"' if t["instruction"] == best else ""
                out.append(f'<tr{cls}><td class="num">{i}</td>'
                           f'<td class="num">{e(_cell("dev_score", t["dev_score"]))}</td>'
                           f'<td class="num">{e(_cell("queries", t["query"]))}</td>'
                           f'<td class="instr">{e(t["instruction"])}</td></tr>')
            out.append("</tbody></table>")
    out.append("</section>")
    return "\n".join(out)


def _config(run: Run, open_: bool) -> str:
    text = json.dumps(run.config, indent=2, ensure_ascii=False, sort_keys=False)
    return (f"<details{' open' if open_ else ''}><summary>{e(run.label)}: {e(run.path)}"
            f"/config.json</summary><pre class=\"config\">{e(text)}</pre></details>")
