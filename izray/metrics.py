"""Ray metrics of a run, for the Ray dashboard, Prometheus and Grafana.

The driver owns a :class:`RunMetrics` and calls :meth:`RunMetrics.update` from its event
loop (throttled to every ``METRICS_EVERY_S``) and once before the summary is written. Every
value comes from state the driver keeps anyway: queries, candidates, tokens and USD per task
(the same numbers as ``summary.json``), call outcomes from the ledger, cache hits and 429s
from the call broker (the evaluator actors carry each call's 429 count back in its outcome,
so the driver sees them with the task that paid), in-flight work from the pools, and the
shared rate limiter's current rate, polled from its actor without blocking the loop.

Metrics go through :mod:`ray.util.metrics`: Ray's per-node metrics agent exports them at
``--metrics-export-port`` with Ray's ``ray_`` prefix, counters with a ``_total`` suffix
(``izray_api_calls`` is scraped as ``ray_izray_api_calls_total``). Tags: ``run`` (the run
directory's name), ``task`` where a value is per task, ``outcome`` for API calls; nothing
per prompt, no URLs, no keys.

Metrics never break a run: if Ray cannot create or record them, that is logged once at
debug level and the run goes on without them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between metric updates while running, at most (Ray exports every 10 s by
#: default; it forgets a gauge not set again within two of its report intervals, so updates
#: come at least once per report interval: :func:`ray_report_interval_s`).
METRICS_EVERY_S = 5.0
#: Seconds the final update waits for the rate limiter's numbers.
FINAL_POLL_S = 2.0
#: What Ray puts before an application metric's name when it exports it.
RAY_PREFIX = "ray_"
#: API call outcomes (``outcome`` tag). ``ok + failed + retried`` are the HTTP requests
#: sent; ``cached`` prompts needed none; ``429`` counts rate-limited responses (which are
#: also among ``retried``, or the last attempt of a ``failed`` call).
OUTCOMES = ("ok", "cached", "retried", "failed", "429")


@dataclass(frozen=True)
class MetricDef:
    """One metric izray exports.

    Attributes:
        name: The name given to Ray (``izray_...``).
        kind: ``counter`` or ``gauge``.
        description: Help text.
        tags: Tag keys besides ``run``.
    """

    name: str
    kind: str
    description: str
    tags: tuple[str, ...] = ()

    @property
    def exported(self) -> str:
        """The name Prometheus scrapes (``ray_`` prefix; counters end in ``_total``)."""
        return RAY_PREFIX + self.name + ("_total" if self.kind == "counter" else "")


METRICS = (
    MetricDef("izray_queries", "counter", "Paid queries (instructions scored on dev)", ("task",)),
    MetricDef("izray_candidates", "counter", "Candidates observed", ("task",)),
    MetricDef("izray_api_calls", "counter", "Black-box prompts by outcome: ok, cached (no "
              "call), retried (attempts beyond the first), failed, 429 (rate-limited "
              "responses)", ("task", "outcome")),
    MetricDef("izray_prompt_tokens", "counter", "Billed prompt tokens", ("task",)),
    MetricDef("izray_completion_tokens", "counter", "Billed completion tokens", ("task",)),
    MetricDef("izray_usd", "counter", "Spend in USD (when prices are configured)", ("task",)),
    MetricDef("izray_best_dev_score", "gauge", "Best dev score so far", ("task",)),
    MetricDef("izray_tasks_done", "gauge", "Tasks finished"),
    MetricDef("izray_tasks_total", "gauge", "Tasks in the run"),
    MetricDef("izray_prompts_in_flight", "gauge", "Black-box prompts in flight"),
    MetricDef("izray_generate_calls_in_flight", "gauge", "Generator actor calls in flight"),
    MetricDef("izray_generate_queued", "gauge", "Generation requests queued for the generators"),
    MetricDef("izray_generator_actors", "gauge", "Generator actors ready"),
    MetricDef("izray_limiter_rpm", "gauge", "Configured requests/min (evaluator.rpm)"),
    MetricDef("izray_limiter_tpm", "gauge", "Configured tokens/min (evaluator.tpm)"),
    MetricDef("izray_limiter_allowed_rpm", "gauge", "Requests/min the shared limiter allows "
              "now (rpm less the margin, after 429 back-off)"),
    MetricDef("izray_limiter_allowed_tpm", "gauge", "Tokens/min the shared limiter allows now"),
    MetricDef("izray_limiter_calls_last_minute", "gauge", "Requests the shared limiter let "
              "through in the last 60 s (every run on the endpoint)"),
)

#: ``factory(kind, name, description, tag_keys)`` -> an object with ``inc(value, tags)``
#: (counters) or ``set(value, tags)`` (gauges).
MetricFactory = Callable[[str, str, str, tuple[str, ...]], Any]


def exported_names() -> set[str]:
    """Every metric name as Prometheus scrapes it from Ray."""
    return {m.exported for m in METRICS}


def run_tag(path: str | Path) -> str:
    """The ``run`` tag of a run directory: its name."""
    return Path(path).resolve().name or "run"


def ray_report_interval_s() -> float | None:
    """Ray's metrics report interval in this process (``RAY_metrics_report_interval_ms``)."""
    try:
        import ray

        return max(1.0, ray._config.metrics_report_interval_ms() / 1000.0)
    except Exception:  # noqa: BLE001 - an internal of Ray: without it, METRICS_EVERY_S
        return None


def ray_metric(kind: str, name: str, description: str, tag_keys: tuple[str, ...]) -> Any:
    """A :mod:`ray.util.metrics` counter or gauge."""
    from ray.util import metrics

    cls = metrics.Counter if kind == "counter" else metrics.Gauge
    return cls(name, description=description, tag_keys=tag_keys)


class RunMetrics:
    """Sets the run's Ray metrics from the driver's state.

    Counters are fed from totals the driver keeps (they only grow): each update adds what
    was added since the last one. Totals from the run's state and ledger (queries,
    candidates, tokens, USD, ok/failed/retried calls) include a resumed run's earlier
    sessions, so those counters equal ``summary.json``'s numbers (a new driver is a new
    series, and Prometheus ``rate()`` ignores a series' first sample: no spike at a
    resume); ``cached`` and ``429`` count this driver's session.

    Args:
        run: The ``run`` tag (:func:`run_tag`).
        clock: Monotonic clock, for the throttle.
        factory: Makes one metric (default: :func:`ray_metric`; tests inject fakes).
        every_s: Seconds between updates (the final one is never skipped); default
            ``METRICS_EVERY_S``, or Ray's report interval when that is shorter.
    """

    def __init__(self, run: str, clock: Callable[[], float] = time.monotonic,
                 factory: MetricFactory | None = None, every_s: float | None = None) -> None:
        self.run = run
        self.clock = clock
        self.factory = factory or ray_metric
        self.every_s = every_s
        self.metrics: dict[str, Any] | None = None  # created at the first update
        self.disabled = False
        self._complained = False
        self._last_update: float | None = None
        self._totals: dict[tuple, float] = {}
        self._limiter_ref = None
        self._limiter: dict[str, Any] = {}

    @property
    def limiter(self) -> dict[str, Any]:
        """The shared limiter's last polled stats (empty until it answered)."""
        return self._limiter

    def update(self, driver: Any, final: bool = False) -> None:
        """Set every metric from ``driver`` (throttled unless ``final``); never raises."""
        if self.disabled:
            return
        if self.every_s is None:  # (the driver calls this once Ray is connected)
            self.every_s = min(METRICS_EVERY_S, ray_report_interval_s() or METRICS_EVERY_S)
        now = self.clock()
        if not final and self._last_update is not None and now - self._last_update < self.every_s:
            return
        self._last_update = now
        try:
            if self.metrics is None:
                try:
                    self.metrics = {m.name: self.factory(m.kind, m.name, m.description,
                                                         ("run", *m.tags)) for m in METRICS}
                except Exception as err:  # noqa: BLE001 - no metrics, the run goes on
                    self.disabled = True
                    self._complain("cannot create Ray metrics", err)
                    return
            self._record(driver, final)
        except Exception as err:  # noqa: BLE001 - a metrics failure never breaks a run
            self._complain("metrics update failed", err)

    def _complain(self, what: str, err: BaseException) -> None:
        if not self._complained:
            self._complained = True
            log.debug("%s (%s: %s); the run goes on without them", what, type(err).__name__,
                      str(err).splitlines()[0][:200] if str(err) else "")

    # ---------------------------------------------------------------- recording

    def _count(self, name: str, total: float, **tags: str) -> None:
        key = (name, *sorted(tags.items()))
        delta = total - self._totals.get(key, 0.0)
        if delta > 0:  # (a total never shrinks; if one did, its new value is the base)
            self.metrics[name].inc(delta, tags={"run": self.run, **tags})
        self._totals[key] = total  # after the inc: a failed one is added next time

    def _gauge(self, name: str, value: float | None, **tags: str) -> None:
        if value is not None:
            self.metrics[name].set(float(value), tags={"run": self.run, **tags})

    def _record(self, driver: Any, final: bool) -> None:
        for name, run in driver.runs.items():
            self._count("izray_queries", run.queries, task=name)
            self._count("izray_candidates", run.n_candidates, task=name)
            self._count("izray_prompt_tokens", run.usage.prompt_tokens, task=name)
            self._count("izray_completion_tokens", run.usage.completion_tokens, task=name)
            usd = driver._usd(run.usage)
            if usd is not None:
                self._count("izray_usd", usd, task=name)
            best = run.winner()
            self._gauge("izray_best_dev_score", getattr(best, "score", None), task=name)
        for tag, (ok, failed, requests) in driver.ledger.outcomes_by_tag().items():
            self._count("izray_api_calls", ok, task=tag, outcome="ok")
            self._count("izray_api_calls", failed, task=tag, outcome="failed")
            self._count("izray_api_calls", requests - ok - failed, task=tag, outcome="retried")
        broker = driver.broker
        if broker is not None:
            for tag, n in broker.cached.items():
                self._count("izray_api_calls", n, task=tag, outcome="cached")
            for tag, n in broker.throttled.items():
                self._count("izray_api_calls", n, task=tag, outcome="429")
            self._gauge("izray_prompts_in_flight", broker.inflight)
        runs = list(driver.runs.values())
        self._gauge("izray_tasks_done", sum(r.finished for r in runs))
        self._gauge("izray_tasks_total", len(runs))
        gen = driver.generators
        if gen is not None:
            self._gauge("izray_generate_calls_in_flight", gen.active_calls)
            self._gauge("izray_generate_queued", len(gen.queue))
            self._gauge("izray_generator_actors", gen.size)
        ev = driver.cfg.evaluator
        self._gauge("izray_limiter_rpm", ev.rpm)
        self._gauge("izray_limiter_tpm", ev.tpm)
        limiter = getattr(driver.evaluators, "limiter", None)
        if limiter is not None:
            self._poll_limiter(limiter, final)
            for key in ("allowed_rpm", "allowed_tpm", "calls_last_minute"):
                self._gauge(f"izray_limiter_{key}", self._limiter.get(key))

    def _poll_limiter(self, handle: Any, final: bool) -> None:
        """Collect the limiter's last answer if it is in, and ask again: never blocks the
        loop (the final update waits up to ``FINAL_POLL_S``). The limiter may be shared with
        other runs: its rates are the endpoint's, not this run's alone."""
        import ray

        if self._limiter_ref is None:
            self._limiter_ref = handle.stats.remote()
        ready, _ = ray.wait([self._limiter_ref], timeout=FINAL_POLL_S if final else 0.0)
        if not ready:
            return
        self._limiter_ref = None
        self._limiter = dict(ray.get(ready[0]))
        if not final:
            self._limiter_ref = handle.stats.remote()
