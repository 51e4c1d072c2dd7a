"""`izray report`: tables in every format, runs side by side, mid-run directories, the plot
and the self-contained HTML page (rendered in headless Chromium).

The run directories are written by hand (no izray run): ``make_run`` writes what a run
leaves behind (config.json, history.jsonl, state/, summary.json when finished)."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from izray.cli import main
from izray.errors import RunStateError
from izray.reporting import (
    format_csv,
    format_json,
    format_markdown,
    load_report,
    top_instructions,
    write_html,
    write_plot,
)

PNG = b"\x89PNG\r\n\x1a\n"
EVIL = 'Reply with the antonym. <script>alert("x")</script> & "quote" </pre>'

#: Per task: (instruction, dev score or None for a failed query, paid?) in tell order.
TRIALS = {
    "antonyms": [
        ("Write the opposite of the word.", 0.55, True),
        ("Give a word that means the opposite.", 0.70, True),
        ("Write the opposite of the word.", 0.55, False),  # seen before: no query
        ("Output the word backwards.", None, True),  # its calls failed
        (EVIL, 0.85, True),
        ("Say the antonym of the input word.", 0.80, True),
        ("Repeat the word.", 0.05, True),
    ],
    "informal_to_formal": [
        ("Rewrite the sentence formally.", 0.41, True),
        ("Make the sentence more polite.", 0.47, True),
        ("Translate the sentence into formal English.", 0.52, True),
        ("Rewrite the sentence formally.", 0.41, False),
        ("Correct the grammar.", 0.33, True),
        ("Rephrase it in a formal register.", 0.50, True),
    ],
}
METRICS = {"antonyms": "exact_match", "informal_to_formal": "f1"}


def config(strategy: str, budget: int = 6, seed: int = 0) -> dict:
    return {
        "seed": seed, "strategy": strategy,
        "tasks": {"names": list(TRIALS), "data_dir": "/data/instruction_induction",
                  "n_exemplars": 5, "n_dev": 20, "n_test": 100, "metrics": {},
                  "reference_instructions": {"antonyms": ["Write the opposite word."]}},
        "generator": {"backend": "vllm", "model": "gemma3-270m", "max_new_tokens": 48},
        "evaluator": {"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini",
                      "api_key_env": "OPENAI_API_KEY", "temperature": 0.0, "max_tokens": 48,
                      "template": "Instruction: {instruction}\n\nInput: {input}\nOutput:"},
        "bo": {"budget": budget, "n_init": 3, "batch_size": 2, "surrogate": "ic_residual",
               "stop_at_max": True},
        "caps": {"task": {"usd": None}, "run": {"usd": 1.0}},
        "prices": {"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}},
    }


def history(task: str, trials, shift: float = 0.0) -> list[dict]:
    out, query = [], 0
    for step, (text, dev, paid) in enumerate(trials, 1):
        query += paid
        rec = {"task": task, "step": step, "candidate": step - 1,
               "z": [round(0.1 * step, 6), -0.2, 0.3], "instruction": text,
               "dev_score": None if dev is None else round(min(1.0, max(0.0, dev + shift)), 4),
               "query": query if paid else None, "cached": not paid,
               "api_calls": 20 if paid else 0, "t": round(3.5 * step, 3)}
        if dev is None:
            rec["error"] = "CallFailed: HTTP 503 after 6 attempts"
        out.append(rec)
    return out


def summary_row(task: str, recs: list[dict], strategy: str, test: float) -> dict:
    best = max((r for r in recs if r["dev_score"] is not None), key=lambda r: r["dev_score"])
    calls = sum(r["api_calls"] for r in recs) + 100
    refs = ([{"instruction": "Write the opposite word.", "dev_score": 0.6, "test_score": 0.58,
              "error": None}] if task == "antonyms" else [])
    return {"strategy": strategy, "best_instruction": best["instruction"],
            "dev_score": best["dev_score"], "test_score": test,
            "queries": sum(r["query"] is not None for r in recs), "candidates": len(recs),
            "api_calls": calls, "prompts": calls, "prompt_tokens": 900 * calls,
            "completion_tokens": 4 * calls, "wall_s": 61.2, "usd": 0.01234, "finished": True,
            "stopped": None, "converged": None,
            "failed_queries": sum(r["query"] is not None and r["dev_score"] is None
                                  for r in recs),
            "raced_queries": 0, "selection": None, "metric": METRICS[task], "n_dev": 20,
            "n_test": 100, "references": refs}


def make_run(path: Path, strategy: str = "instructzero", *, shift: float = 0.0,
             tests: dict | None = None, finished=("antonyms", "informal_to_formal"),
             with_config: bool = True, seed: int = 0) -> Path:
    """A run directory as izray leaves it; tasks not in ``finished`` are mid-search."""
    tests = tests or {"antonyms": 0.83, "informal_to_formal": 0.49}
    path.mkdir(parents=True)
    (path / "state").mkdir()
    cfg = config(strategy, seed=seed)
    if with_config:
        (path / "config.json").write_text(json.dumps(cfg, indent=1))
    recs = {t: history(t, trials if t in finished else trials[:4], shift)
            for t, trials in TRIALS.items()}
    lines = [r for t in recs for r in recs[t]]
    lines.sort(key=lambda r: (r["t"], r["task"]))
    (path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    for t, rs in recs.items():
        (path / "state" / f"{t}.json").write_text(json.dumps(
            {"version": 3, "task": t, "strategy": strategy, "records": rs,
             "queries": sum(r["query"] is not None for r in rs), "finished": t in finished,
             "test_score": tests[t] if t in finished else None, "stopped": None,
             "exhausted": None, "wall_s": 30.0, "references": []}))
    done = {t: summary_row(t, recs[t], strategy, tests[t]) for t in finished}
    if done:
        (path / "summary.json").write_text(json.dumps(
            {"strategy": strategy, "tasks": done, "usage": {}, "config": cfg}, indent=1))
    return path


@pytest.fixture
def runs(tmp_path) -> tuple[Path, Path]:
    return (make_run(tmp_path / "iz-seed0"),
            make_run(tmp_path / "uniform-seed0", "uniform", shift=-0.1,
                     tests={"antonyms": 0.70, "informal_to_formal": 0.51}))


def test_table_of_one_finished_run(runs, capsys):
    assert main(["report", str(runs[0])]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["task", "strategy", "metric", "status", "ref"]
    ant = next(line for line in lines if line.startswith("antonyms"))
    # ref test, best dev, test, queries, candidates, failed, API calls, tokens, USD, stopped by
    assert ant.split()[1:] == ["instructzero", "exact_match", "done", "0.580", "0.850", "0.830",
                               "6", "7", "1", "220", "198.9k", "0.0123", "budget"]
    mean = next(line for line in lines if line.startswith("mean"))
    assert "0.660" in mean.split()  # (0.83 + 0.49) / 2
    assert "Δtest" not in out and "best instructions:" in out
    assert "informal_to_formal: Translate the sentence into formal English." in out


def test_markdown_csv_and_json(runs):
    report = load_report(runs)
    md = format_markdown(report).splitlines()
    # the runs are labelled by their strategies: no strategy column beside the run column
    assert md[0].startswith("| task | run | metric | status |") and md[1].startswith("|---|")
    assert sum(line.startswith("| antonyms |") for line in md) == 2
    assert any(line.startswith("| **mean** |") for line in md)
    assert all("<script>" not in line for line in md)  # a markdown viewer renders HTML

    rows = list(csv.DictReader(io.StringIO(format_csv(report))))
    assert [(r["task"], r["run"]) for r in rows] == [
        ("antonyms", "instructzero"), ("antonyms", "uniform"),
        ("informal_to_formal", "instructzero"), ("informal_to_formal", "uniform"),
        ("mean", "instructzero"), ("mean", "uniform")]
    assert rows[0]["best_instruction"] == EVIL  # csv quoting keeps it whole
    assert float(rows[1]["diff_test"]) == pytest.approx(0.70 - 0.83)
    assert rows[0]["diff_test"] == "" and rows[0]["prompt_tokens"] == str(900 * 220)

    data = json.loads(format_json(report))
    assert [r["label"] for r in data["runs"]] == ["instructzero", "uniform"]
    assert all(r["finished"] and not r["live"] for r in data["runs"])
    assert len(data["rows"]) == 4 and len(data["means"]) == 2
    um = data["means"][1]
    assert um["test_score"] == pytest.approx((0.70 + 0.51) / 2)
    assert um["diff_test"] == pytest.approx(((0.70 - 0.83) + (0.51 - 0.49)) / 2)
    assert um["diff_dev"] == pytest.approx(-0.1)
    assert data["rows"][0]["reference_test"] == 0.58 and data["rows"][2]["reference_test"] is None


def test_several_runs_side_by_side_with_differences(runs, tmp_path, capsys):
    third = make_run(tmp_path / "again" / "uniform-seed0", "uniform", shift=0.05, seed=1)
    assert main(["report", *map(str, runs), str(third)]) == 0
    out = capsys.readouterr().out
    # same strategy twice: the labels are the directories (the shortest distinct tails)
    labels = ["iz-seed0", f"{tmp_path.name}/uniform-seed0", "again/uniform-seed0"]
    heads = re.split(r"\s{2,}", out.splitlines()[0])
    ant = [dict(zip(heads, re.split(r"\s{2,}", line.strip()), strict=True))
           for line in out.splitlines() if line.startswith("antonyms ")]
    assert [r["run"] for r in ant] == labels
    assert heads.index("Δtest") == heads.index("test") + 1
    assert ant[0]["Δtest"] == ant[0]["Δdev"] == "-"  # the first run is the reference
    assert (ant[1]["Δtest"], ant[1]["Δdev"]) == ("-0.130", "-0.100")  # 0.70-0.83, 0.75-0.85
    assert (ant[2]["Δtest"], ant[2]["Δdev"]) == ("+0.000", "+0.050")
    assert "Δtest, Δdev: against iz-seed0" in out


def test_mid_run_directory_from_history_alone(tmp_path, capsys):
    out = make_run(tmp_path / "mid", finished=(), with_config=False)
    shutil.rmtree(out / "state")
    assert not (out / "summary.json").exists()
    report = load_report([out])
    ant = report.runs[0].rows["antonyms"]
    assert ant["status"] == "unfinished" and ant["test_score"] is None
    assert (ant["queries"], ant["candidates"], ant["failed"]) == (3, 4, 1)
    assert ant["dev_score"] == 0.70 and ant["best_instruction"].startswith("Give a word")
    assert ant["api_calls"] == 60 and ant["tokens"] is None and ant["stopped_by"] is None
    assert ant["metric"] == "exact_match"  # the Instruction Induction default
    assert main(["report", str(out)]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("informal_to_formal"))
    assert row.split()[3:6] == ["unfinished", "-", "0.520"] and row.split()[6] == "-"
    assert "mean test over 0 of 2 tasks" in table


def test_running_task_beside_a_finished_one_uses_ledger_and_lock(tmp_path):
    out = make_run(tmp_path / "live", finished=("informal_to_formal",))
    db = sqlite3.connect(out / "ledger.sqlite")
    db.execute("CREATE TABLE calls (id TEXT PRIMARY KEY, tag TEXT, key TEXT, ok INTEGER, "
               "attempts INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER, t REAL)")
    db.executemany("INSERT INTO calls VALUES (?, ?, 'k', 1, ?, 1000, 5, 0)",
                   [(f"c{i}", "antonyms", 1 + (i == 0)) for i in range(70)])
    db.commit()
    db.close()
    with open(out / ".lock", "a+") as lock:  # the driver holds it while it works
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        report = load_report([out])
    rows = report.runs[0].rows
    assert rows["informal_to_formal"]["status"] == "done"
    ant = rows["antonyms"]
    assert ant["status"] == "running" and ant["test_score"] is None
    assert (ant["api_calls"], ant["prompt_tokens"], ant["completion_tokens"]) == (71, 70000, 350)
    assert ant["usd"] == pytest.approx((70000 * 0.15 + 350 * 0.6) / 1e6)
    assert report.means[0]["status"] == "running" and report.means[0]["n_tested"] == 1
    assert load_report([out]).runs[0].rows["antonyms"]["status"] == "unfinished"  # released


def test_stop_reasons(runs):
    path = runs[0] / "summary.json"
    summary = json.loads(path.read_text())
    summary["tasks"]["antonyms"]["stopped"] = ("caps.task.usd=0.01 reached (0.0100 spent, a "
                                               "query needs ~0.0004)")
    summary["tasks"]["informal_to_formal"]["converged"] = ("dev score 1.000 is the maximum "
                                                           "(bo.stop_at_max) after 5 of 6 queries")
    path.write_text(json.dumps(summary))
    rows = load_report(runs[:1]).runs[0].rows
    assert rows["antonyms"]["stopped_by"] == "caps.task.usd=0.01"
    assert rows["antonyms"]["stopped"].startswith("caps.task.usd=0.01 reached")
    assert rows["informal_to_formal"]["stopped_by"] == "stop_at_max"


def test_not_a_run_directory_is_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.json").write_text("{}")
    for path in (tmp_path / "empty", tmp_path / "missing", tmp_path / "file.json"):
        assert main(["report", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("izray: error:"), err
        assert "not an izray run directory" in err[0] and "--out" in err[0]
    with pytest.raises(RunStateError):
        load_report([tmp_path / "empty"])
    damaged = make_run(tmp_path / "damaged")
    for text in ("[1, 2]", '{"tasks": [1]}', '{"tasks": '):
        (damaged / "summary.json").write_text(text)
        assert main(["report", str(damaged)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"izray: error: {damaged}/summary.json is")
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path), "--format", "xml"])


def test_plot_is_a_png(runs, tmp_path, capsys):
    assert write_plot(load_report(runs[:1]), tmp_path / "one.png").read_bytes()[:8] == PNG
    mid = make_run(tmp_path / "mid", finished=("antonyms",))
    assert main(["report", *map(str, runs), str(mid), "--plot", str(tmp_path / "c.png"),
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # the plot's path goes to stderr: stdout stays machine-readable
    assert "c.png" in captured.err
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG


def test_top_instructions_are_distinct_and_best_first(runs):
    run = load_report(runs[:1]).runs[0]
    top = top_instructions(run, "antonyms")
    assert [t["dev_score"] for t in top] == [0.85, 0.80, 0.70, 0.55, 0.05]
    assert top[3] == {"instruction": "Write the opposite of the word.", "dev_score": 0.55,
                      "query": 1}


def test_html_is_escaped_and_self_contained(runs, tmp_path):
    page = write_html(load_report(runs), tmp_path / "r.html").read_text()
    assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "</pre> &amp;" not in page and "&lt;/pre&gt;" in page
    assert "http://" not in page and "https://" not in page  # not even the config's base_url
    assert "api.openai.com/v1" in page
    for ref in ('src="http', "src='http", "href=", "url(", "@import", "<link", "<iframe"):
        assert ref not in page
    assert page.count('src="data:image/png;base64,') == 1
    assert "\n    &quot;n_exemplars&quot;: 5," in page  # the config, pretty-printed
    assert page.count('<tr class="chosen">') == 4  # each task's best in its top 5, per run


def _chromium(which=shutil.which) -> str:
    exe = which("chromium") or which("chromium-browser")
    if exe is None:
        if os.environ.get("IZRAY_NO_BROWSER") == "1":
            pytest.skip("IZRAY_NO_BROWSER=1: no browser test")
        pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium);"
                    " set IZRAY_NO_BROWSER=1 to skip this test explicitly")
    return exe


def test_a_missing_browser_fails_unless_skipped_explicitly(monkeypatch):
    monkeypatch.delenv("IZRAY_NO_BROWSER", raising=False)
    with pytest.raises(pytest.fail.Exception, match=r"\.ci/run installs it"):
        _chromium(lambda name: None)
    monkeypatch.setenv("IZRAY_NO_BROWSER", "1")
    with pytest.raises(pytest.skip.Exception):
        _chromium(lambda name: None)


def _browse(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def test_html_renders_in_headless_chromium(runs, tmp_path):
    exe = _chromium()
    mid = make_run(tmp_path / "mid", "random", finished=("antonyms",))
    page = write_html(load_report([*runs, mid]), tmp_path / "report.html")
    url = page.resolve().as_uri()
    dom = _browse(exe, tmp_path / "p1", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('data-task="antonyms"') == 3
    assert dom.stdout.count('data-task="informal_to_formal"') == 3
    assert dom.stdout.count('data-task="mean"') == 3
    assert "<script>alert" not in dom.stdout  # escaped text, not an element
    assert "unfinished" in dom.stdout
    shot = tmp_path / "shot.png"
    res = _browse(exe, tmp_path / "p2", f"--screenshot={shot}", "--window-size=1200,1600",
                  "--hide-scrollbars", url)
    assert shot.is_file(), f"no screenshot (exit {res.returncode}): {res.stderr[-2000:]}"
    assert shot.read_bytes()[:8] == PNG and shot.stat().st_size > 20_000
    import matplotlib.image

    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (1600, 1200)
    assert img[..., :3].reshape(-1, 3).std(axis=0).max() > 0.05  # not one colour
    if os.environ.get("IZRAY_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["IZRAY_KEEP_SCREENSHOT"])
