"""Ray metrics (izray.metrics) and the Grafana dashboard that shows them.

The cluster test is the judge: a real run on a `ray start --head --metrics-export-port`
cluster, read back from the node's Prometheus endpoint and checked against the run's
summary and the black-box simulator's own request count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import SECRET

from izray.evaluation.ledger import Usage
from izray.metrics import METRICS, RAY_PREFIX, RunMetrics, exported_names, run_tag

DASHBOARD = Path(__file__).resolve().parents[1] / "cluster" / "grafana-dashboard.json"

# ------------------------------------------------------------------------------ fakes


class FakeMetric:
    def __init__(self, kind: str, name: str, tag_keys: tuple[str, ...]) -> None:
        self.kind, self.name, self.tag_keys = kind, name, tag_keys
        self.values: dict[tuple, float] = {}
        self.incs: list[float] = []

    def _key(self, tags: dict[str, str]) -> tuple:
        assert set(tags) == set(self.tag_keys), (self.name, tags)
        assert all(isinstance(v, str) for v in tags.values())
        return tuple(sorted(tags.items()))

    def inc(self, value: float, tags: dict[str, str]) -> None:
        assert self.kind == "counter" and value > 0
        self.incs.append(value)
        key = self._key(tags)
        self.values[key] = self.values.get(key, 0.0) + value

    def set(self, value: float, tags: dict[str, str]) -> None:
        assert self.kind == "gauge"
        self.values[self._key(tags)] = value


class Factory:
    def __init__(self) -> None:
        self.made: dict[str, FakeMetric] = {}

    def __call__(self, kind, name, description, tag_keys):
        assert name.startswith("izray_") and description
        self.made[name] = FakeMetric(kind, name, tag_keys)
        return self.made[name]

    def value(self, name: str, **tags: str) -> float | None:
        return self.made[name].values.get(tuple(sorted({"run": "r1", **tags}.items())))


def fake_run(queries=0, candidates=0, usage=None, finished=False, best=None):
    run = SimpleNamespace(queries=queries, n_candidates=candidates, usage=usage or Usage(),
                          finished=finished)
    run.winner = lambda: None if best is None else SimpleNamespace(score=best)
    return run


class FakeLedger:
    def __init__(self, outcomes: dict[str, tuple[int, int, int]]) -> None:
        self.outcomes = outcomes

    def outcomes_by_tag(self) -> dict[str, tuple[int, int, int]]:
        return dict(self.outcomes)


def fake_driver(**runs):
    """What RunMetrics reads of a Driver."""
    return SimpleNamespace(
        runs=runs,
        _usd=lambda u: u.prompt_tokens * 1e-6,
        ledger=FakeLedger({"a": (10, 1, 13)}),
        broker=SimpleNamespace(cached={"a": 4}, throttled={"a": 2}, inflight=7),
        generators=SimpleNamespace(active_calls=2, queue=[1, 2, 3], size=1),
        evaluators=SimpleNamespace(limiter=None),
        cfg=SimpleNamespace(evaluator=SimpleNamespace(rpm=600.0, tpm=None)))


# ------------------------------------------------------------------------------ unit


def test_run_metrics_add_the_delta_of_each_total():
    t = [0.0]
    factory = Factory()
    m = RunMetrics("r1", clock=lambda: t[0], factory=factory, every_s=5.0)
    a = fake_run(3, 4, Usage(13, 1000, 50), best=0.5)
    driver = fake_driver(a=a, b=fake_run())
    m.update(driver)
    assert set(factory.made) == {d.name for d in METRICS}
    assert all(factory.made[d.name].tag_keys == ("run", *d.tags) for d in METRICS)
    v = factory.value
    assert v("izray_queries", task="a") == 3 and v("izray_candidates", task="a") == 4
    assert v("izray_queries", task="b") is None  # a counter's series starts at its first inc
    assert v("izray_prompt_tokens", task="a") == 1000
    assert v("izray_completion_tokens", task="a") == 50
    assert v("izray_usd", task="a") == pytest.approx(0.001)
    assert v("izray_api_calls", task="a", outcome="ok") == 10
    assert v("izray_api_calls", task="a", outcome="failed") == 1
    assert v("izray_api_calls", task="a", outcome="retried") == 2  # 13 requests - 11 calls
    assert v("izray_api_calls", task="a", outcome="cached") == 4
    assert v("izray_api_calls", task="a", outcome="429") == 2
    assert v("izray_best_dev_score", task="a") == 0.5
    assert v("izray_best_dev_score", task="b") is None  # nothing observed yet
    assert (v("izray_tasks_done"), v("izray_tasks_total")) == (0, 2)
    assert (v("izray_prompts_in_flight"), v("izray_generate_calls_in_flight"),
            v("izray_generate_queued"), v("izray_generator_actors")) == (7, 2, 3, 1)
    assert v("izray_limiter_rpm") == 600 and v("izray_limiter_tpm") is None

    # Throttled: nothing changes within every_s.
    a.queries = 5
    t[0] = 2.0
    m.update(driver)
    assert v("izray_queries", task="a") == 3

    # Later: only what was added since the last update is added.
    t[0] = 6.0
    a.usage = Usage(20, 1500, 80)
    a.finished = True
    a.winner = lambda: SimpleNamespace(score=0.75)
    driver.ledger.outcomes = {"a": (15, 1, 20)}
    driver.broker.cached["a"] = 4  # unchanged: no inc
    driver.broker.throttled["a"] = 5
    driver.broker.inflight = 0
    m.update(driver)
    assert v("izray_queries", task="a") == 5
    assert factory.made["izray_queries"].incs == [3, 2]
    assert v("izray_prompt_tokens", task="a") == 1500
    assert v("izray_api_calls", task="a", outcome="ok") == 15
    assert v("izray_api_calls", task="a", outcome="retried") == 4
    assert v("izray_api_calls", task="a", outcome="cached") == 4
    assert factory.made["izray_api_calls"].incs.count(4) == 1  # cached's first inc only
    assert v("izray_api_calls", task="a", outcome="429") == 5
    assert v("izray_best_dev_score", task="a") == 0.75
    assert v("izray_tasks_done") == 1 and v("izray_prompts_in_flight") == 0

    # The final update is never throttled; a total that shrank adds nothing.
    a.queries = 4
    m.update(driver, final=True)
    assert v("izray_queries", task="a") == 5


def test_metrics_failures_never_break_a_run(caplog, monkeypatch):
    driver = fake_driver(a=fake_run(1))

    def broken_factory(*args):
        raise RuntimeError("no metrics here")

    caplog.set_level(logging.DEBUG, logger="izray.metrics")
    m = RunMetrics("r1", factory=broken_factory, every_s=0.0)
    m.update(driver)
    m.update(driver, final=True)
    assert m.disabled
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert "no metrics here" in caplog.records[0].getMessage()

    caplog.clear()
    factory = Factory()
    m = RunMetrics("r1", factory=factory, every_s=0.0)

    def bad_inc(self, value, tags):
        raise ValueError("export broken")

    with monkeypatch.context() as patch:
        patch.setattr(FakeMetric, "inc", bad_inc)
        for _ in range(3):
            m.update(driver)  # fails every time, logged once
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.DEBUG
    assert not m.disabled
    m.update(driver)  # works again once the failure is gone
    assert factory.value("izray_queries", task="a") == 1
    # Without a Ray connection the real metrics record nothing, and raise nothing.
    m = RunMetrics("r1")
    m.update(driver, final=True)
    assert m.every_s == 5.0 and not m.disabled  # Ray's report interval (10 s) is longer


def test_run_tag_is_the_run_directory_name(tmp_path):
    assert run_tag(tmp_path / "night-run") == "night-run"
    assert all(d.exported.startswith(RAY_PREFIX + "izray_") for d in METRICS)
    assert "ray_izray_api_calls_total" in exported_names()
    assert "ray_izray_tasks_done" in exported_names()


# ------------------------------------------------------------------------------ inputs


def test_429s_are_counted_per_call_and_carried_to_the_outcome(simulator):
    from izray.errors import CallFailed
    from izray.evaluation import Evaluator
    from izray.evaluation.client import BlackBoxClient

    async def no_sleep(seconds: float) -> None:
        pass

    sim = simulator(fail_first_429=2, retry_after_s=0.0)
    ok = BlackBoxClient(sim.base_url, "sim-model", sleep=no_sleep, max_attempts=5)
    [outcome] = asyncio.run(Evaluator(ok, 2).evaluate(["Input: cat\nOutput:"]))
    assert (outcome.ok, outcome.attempts, outcome.throttled) == (True, 3, 2)
    sim = simulator(fail_429=1.0, retry_after_s=0.0)
    never = BlackBoxClient(sim.base_url, "sim-model", sleep=no_sleep, max_attempts=3)
    with pytest.raises(CallFailed) as exc:
        asyncio.run(never.complete("Input: cat\nOutput:"))
    assert exc.value.attempts == exc.value.throttled == 3 == sim.stats.injected_429


def test_broker_counts_cached_prompts_and_429s_per_task(tmp_path, monkeypatch):
    from izray.evaluation import CachedAnswer, CallOutcome, ResponseCache, cache_key
    from izray.evaluation.ledger import Ledger
    from izray.runtime import calls

    monkeypatch.setattr(calls, "get_unwrapped", lambda ref: ref)  # the "ref" is the result
    settings = {"model": "m"}
    cache = ResponseCache(tmp_path / "cache.sqlite")
    cache.put_many({cache_key(settings, "p0"): CachedAnswer("old", 1, 1)})
    ledger = Ledger(tmp_path / "ledger.sqlite")
    sent, handlers = [], {}
    broker = calls.CallBroker(
        cache, ledger, settings, submit=lambda prompts, tag, route: sent.append(prompts) or
        len(sent), finish=lambda ref: None, register=handlers.__setitem__)
    broker.request(["p0", "p1", "p2"], lambda *a: None, tag="a")
    broker.request(["p1"], lambda *a: None, tag="b")  # shares a's call in flight
    assert sent == [["p1", "p2"]] and broker.inflight == 2
    assert broker.cached == {"a": 1, "b": 1}
    handlers[1](
        [CallOutcome("x", 3, 1, attempts=3, call_id="c1", throttled=2),
         CallOutcome(None, attempts=2, error="failed", call_id="c2", throttled=1)])
    assert broker.throttled == {"a": 3} and broker.inflight == 0
    assert ledger.outcomes_by_tag() == {"a": (1, 1, 5)}
    broker.request(["p3"], lambda *a: None, tag="b")
    handlers[2]([CallOutcome("known")])  # answered in the evaluator without a call
    assert broker.cached == {"a": 1, "b": 2} and ledger.outcomes_by_tag() == {"a": (1, 1, 5)}
    cache.close()
    ledger.close()


def test_limiter_reports_calls_in_the_last_minute_and_its_allowed_rate():
    from izray.evaluation.ratelimit import DECREASE, RateLimiter

    t = [0.0]
    lim = RateLimiter(rpm=60, tpm=6000, clock=lambda: t[0], margin=0.5)
    assert [lim.reserve(10) for _ in range(3)] == [0.0, 2.0, 4.0]  # 30 rpm after the margin
    assert lim.calls_last_minute() == 1  # the other two slots are still ahead
    t[0] = 4.0
    assert lim.calls_last_minute() == 3
    t[0] = 61.0
    assert lim.calls_last_minute() == 2  # the slot at 0 s left the window
    t[0] = 63.0
    assert lim.calls_last_minute() == 1
    assert lim.allowed() == (30.0, 3000.0)
    lim.on_throttled(None)
    assert lim.allowed() == pytest.approx((30.0 * DECREASE, 3000.0 * DECREASE))
    assert RateLimiter(rpm=None, tpm=100).allowed() == (None, 100)


# ------------------------------------------------------------------------------ dashboard


def dashboard_panels(dash: dict) -> list[dict]:
    out = []
    for panel in dash["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows
    return out


def dashboard_metric_names(dash: dict) -> set[str]:
    names = set()
    for panel in dashboard_panels(dash):
        for target in panel.get("targets", []):
            names |= set(re.findall(r"\b(?:ray_)?izray_\w+", target["expr"]))
    return names


def test_dashboard_is_valid_and_uses_exported_names():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["schemaVersion"] >= 39 and dash["title"] and dash["uid"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    run = variables["run"]
    assert run["type"] == "query" and "label_values(" in json.dumps(run["query"])
    assert ", run)" in run["definition"]
    panels = [p for p in dashboard_panels(dash) if p["type"] != "row"]
    assert len({p["id"] for p in dashboard_panels(dash)}) == len(dashboard_panels(dash))
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert 'run=~"$run"' in target["expr"], (panel["title"], target["expr"])
            assert target["datasource"]["uid"] == "${datasource}"
    used = dashboard_metric_names(dash)
    assert used <= exported_names(), used - exported_names()  # no unprefixed names either
    assert used == exported_names(), exported_names() - used  # every metric is shown
    titles = " ".join(p["title"].lower() for p in panels)
    for word in ("queries", "api calls", "429", "tokens", "usd", "in flight", "rpm",
                 "best dev", "tasks done"):
        assert word in titles, word


# ------------------------------------------------------------------------------ cluster

DRIVER = """
import json, sys
from pathlib import Path
from izray.app import run_config
from izray.config import config_from_dict
summary = run_config(config_from_dict({}, json.loads(sys.argv[1])), Path(sys.argv[2]))
print("DONE", flush=True)
sys.stdin.read()  # stay connected: Ray exports a process's metrics while it lives
"""

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text page: ``(name, labels, value)``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and not line.startswith("#"):
            out.append((m[1], dict(LABEL.findall(m[2] or "")), float(m[3])))
    return out


def izray_values(samples, run: str) -> dict[tuple, float]:
    """``(name, task, outcome) -> value`` of one run (summed over Ray's series)."""
    out: dict[tuple, float] = {}
    for name, labels, value in samples:
        if "izray" in name and labels.get("run") == run:
            key = (name, labels.get("task"), labels.get("outcome"))
            out[key] = out.get(key, 0.0) + value
    return out


@pytest.mark.slow
def test_a_run_exports_its_metrics_to_prometheus(metrics_ray_head, simulator, tmp_path):
    sim = simulator(api_key=SECRET, latency_ms=(40, 120), fail_429=0.05, retry_after_s=0.05,
                    seed=1)
    out = tmp_path / "night-run"
    overrides = [
        "tasks.names=[plural, larger_number]", "generator.backend=sim",
        f"evaluator.base_url={sim.base_url}", "evaluator.model=sim-model",
        "evaluator.rpm=6000", "evaluator.tpm=10000000", "evaluator.max_attempts=8",
        "prices.sim-model.prompt=0.5", "prices.sim-model.completion=1.5",
        "bo.budget=9", "bo.n_init=3", "bo.batch_size=3", "tasks.n_dev=10", "tasks.n_test=5",
        "bo.stop_at_max=false", f"ray.address={metrics_ray_head.gcs}"]
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(overrides), str(out)],
                            env=metrics_ray_head.client_env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        live = []  # scrapes while the run is under way: the operator's view
        while reader.is_alive():
            try:
                samples = scrape(metrics_ray_head.metrics_port)
            except OSError:  # the node's metrics agent is still starting
                samples = []
            live.append((round(time.monotonic() - t0, 1), izray_values(samples, "night-run")))
            reader.join(1.0)
        assert lines[0].strip() == "DONE", proc.communicate(timeout=30)[1][-3000:]
        t_run = time.monotonic() - t0
        summary = json.loads((out / "summary.json").read_text())
        tasks = summary["tasks"]
        stats = sim.stats.as_dict()

        def settled(v: dict) -> bool:  # the final update has been exported
            return (v.get(("ray_izray_tasks_done", None, None)) == 2
                    and all(v.get(("ray_izray_queries_total", t, None)) == r["queries"]
                            for t, r in tasks.items())
                    and ("ray_izray_limiter_calls_last_minute", None, None) in v)

        deadline = time.monotonic() + 60
        while True:
            samples = scrape(metrics_ray_head.metrics_port)
            v = izray_values(samples, "night-run")
            if settled(v) or time.monotonic() > deadline:
                break
            time.sleep(1)
        t_export = time.monotonic() - t0 - t_run
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert settled(v), sorted(v.items())
    print(f"run {t_run:.1f} s, metrics exported {t_export:.1f} s after it ended")
    # While it ran, the run was visible (its gauges are set from the loop's first turn; its
    # counters once something was counted, which may come after the last export before the
    # end on a fast machine, so they are not asserted here).
    assert any(x.get(("ray_izray_tasks_total", None, None)) == 2 for _, x in live), live

    # Every metric izray defines was exported, under the names the dashboard uses.
    scraped = {name for name, _, _ in samples}
    assert exported_names() <= scraped, exported_names() - scraped
    assert dashboard_metric_names(json.loads(DASHBOARD.read_text())) <= scraped
    # No secret in any label.
    assert not any(SECRET in json.dumps(labels) for _, labels, _ in samples)

    def calls(outcome: str) -> float:
        return sum(v.get(("ray_izray_api_calls_total", t, outcome), 0.0) for t in tasks)

    assert v[("ray_izray_tasks_total", None, None)] == 2
    for t, r in tasks.items():
        assert v[("ray_izray_queries_total", t, None)] == r["queries"] == 9
        assert v[("ray_izray_candidates_total", t, None)] == r["candidates"]
        assert v[("ray_izray_best_dev_score", t, None)] == pytest.approx(r["dev_score"])
        assert v[("ray_izray_prompt_tokens_total", t, None)] == r["prompt_tokens"]
        assert v[("ray_izray_completion_tokens_total", t, None)] == r["completion_tokens"]
        assert v[("ray_izray_usd_total", t, None)] == pytest.approx(r["usd"], rel=1e-6)
        assert (v[("ray_izray_api_calls_total", t, "ok")]
                + v.get(("ray_izray_api_calls_total", t, "failed"), 0.0)
                + v.get(("ray_izray_api_calls_total", t, "retried"), 0.0)) == r["api_calls"]
    # Every request the server saw is counted once: answered, retried or failed.
    assert calls("ok") + calls("failed") + calls("retried") == stats["requests"]
    assert calls("ok") == stats["ok"] <= stats["requests"]
    assert calls("429") == stats["injected_429"] + stats["rate_limited"] > 0
    assert calls("retried") >= calls("429") - calls("failed")
    # Nothing in flight at the end; the limiter's rate against the configured one.
    for name in ("prompts_in_flight", "generate_calls_in_flight", "generate_queued"):
        assert v[(f"ray_izray_{name}", None, None)] == 0, name
    assert v[("ray_izray_generator_actors", None, None)] >= 1
    assert v[("ray_izray_limiter_rpm", None, None)] == 6000
    assert v[("ray_izray_limiter_tpm", None, None)] == 10_000_000
    allowed = v[("ray_izray_limiter_allowed_rpm", None, None)]
    assert 0 < allowed < 6000 * 0.98  # the 429s cut it below the configured rate less margin
    assert 0 < v[("ray_izray_limiter_allowed_tpm", None, None)] <= 10_000_000
    assert 0 < v[("ray_izray_limiter_calls_last_minute", None, None)] <= stats["requests"]
