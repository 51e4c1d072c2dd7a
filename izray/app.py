"""The application: start, continue and resume runs; the run's own log file.

The CLI (:mod:`izray.cli`) parses arguments and prints; this module does the work, so a
script or a notebook can run izray the same way::

    from izray.app import run_new
    from izray.config import load_config

    summary = run_new(load_config("examples/quickstart.yaml"), Path("runs/q"))
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from izray.config import RunConfig, check_resume_overrides, first_difference
from izray.errors import IzrayError, RunStateError

log = logging.getLogger("izray")


def run_new(cfg: RunConfig, out: Path) -> dict[str, Any]:
    """Run ``cfg`` into a new ``out``, or continue it if ``out`` holds this very run (the
    same job submitted again); returns the summary.

    Raises:
        RunStateError: ``out`` holds a run with another config.
    """
    if holds_this_run(cfg, out):
        log.info("%s holds this run already: continuing it", out)
        return run_config(cfg, out, resume=True)
    return run_config(cfg, out)


def holds_this_run(cfg: RunConfig, out: Path) -> bool:
    """Whether ``out`` holds a run of ``cfg`` (False: no run there).

    Raises:
        RunStateError: ``out`` holds a run with another config.
    """
    from izray.config import config_to_dict
    from izray.driver import saved_config

    if not (out / "config.json").is_file():
        return False
    saved = saved_config(out)
    if saved != config_to_dict(cfg):
        key = first_difference(saved, config_to_dict(cfg))
        raise RunStateError(f"{out} holds a run with a different config (at {key}); choose "
                            "another --out, or `izray resume` it")
    return True


def resume_run(out: Path, sets: list[str]) -> dict[str, Any]:
    """Continue the run in ``out`` with operational overrides ``sets``; returns the summary.

    Raises:
        RunStateError: ``out`` is not a run, or ``sets`` change what the run computes.
    """
    from izray.config import config_from_dict
    from izray.driver import saved_config

    if not out.is_dir():
        raise RunStateError(f"{out} is not a directory; pass the run directory `izray run` made")
    saved = saved_config(out)
    check_resume_overrides(saved, sets)
    return run_config(config_from_dict(saved, sets), out, resume=True)


def run_config(cfg: RunConfig, out: Path, resume: bool = False) -> dict[str, Any]:
    """Run ``cfg`` into ``out`` (new, or continued with ``resume``); returns the summary.

    A new run directory that fails before anything was paid is removed; one that holds paid
    answers stays, to be resumed.

    Raises:
        IzrayError: bad input (tasks, models, endpoint, key, state), in one line.
    """
    from izray.config import config_to_dict
    from izray.driver import prepare_tasks
    from izray.report import RunDir
    from izray.runtime.session import preflight

    tasks = prepare_tasks(cfg)  # bad tasks fail here, before anything is created
    preflight(cfg)
    created = not out.exists()
    rundir = RunDir(out, resume=resume)
    if not resume:
        rundir.write_config(config_to_dict(cfg))
    ok = False
    try:
        summary = _execute(cfg, rundir, tasks, resume)
        ok = True
    finally:
        rundir.close()
        if not ok and created and _nothing_recorded(out):
            shutil.rmtree(out, ignore_errors=True)
    return summary


def _nothing_recorded(out: Path) -> bool:
    """Whether a new run directory holds nothing worth keeping: no history, no journaled
    call, no ledgered call and no cached answer (a failed start leaves only its config)."""
    from izray.report import CACHE, LEDGER

    history = out / "history.jsonl"
    if history.exists() and history.stat().st_size > 0:
        return False
    from izray.evaluation.ledger import read_journals

    journal = out / "journal"
    if journal.is_dir():
        # Evaluators journal every answer before the driver sees it: none journaled, none
        # to keep, whatever state the databases are in (a full disk may leave them torn).
        # (Calls lost in flight have no answer to keep either.)
        try:
            return not any(r.ok for r in read_journals(journal))
        except (IzrayError, OSError):
            return False  # cannot tell: keep it
    for name, table in ((LEDGER, "calls WHERE ok = 1"), (CACHE, "answers")):
        path = out / name
        if not path.exists() or path.stat().st_size == 0:  # never written (e.g. a full disk)
            continue
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                if db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                    return False
            finally:
                db.close()
        except sqlite3.Error:
            return False  # cannot tell: keep it
    return True


def _execute(cfg, rundir, tasks, resume: bool) -> dict:
    import ray

    from izray.driver import Driver, describe_endpoint
    from izray.runtime.session import start_pools

    driver = Driver(cfg, rundir, tasks)
    if resume:
        done = driver.load()
        queries = sum(r.queries for r in driver.runs.values())
        log.info("resuming %s: %d/%d task(s) finished, %d queries done", rundir.path, done,
                 len(tasks), queries)
        if done == len(tasks):  # nothing to do; the summary may be stale (a kill before it)
            summary = driver.summary()
            rundir.write_summary(summary)
            driver.close()
            return summary
    log.info("izray: %d task(s) %s, budget %d each, black box: %s; run directory %s",
             len(tasks), ", ".join(t.name for t, _ in tasks), cfg.bo.budget,
             describe_endpoint(cfg), rundir.path)
    # SIGTERM/SIGINT: abort while the pools start; afterwards stop safely (izray.stopping).
    # Installed again once Ray is connected: ray.init sets its own SIGTERM handler.
    stop = driver.stop
    stop.raising = True
    stop.install()
    try:
        session = start_pools(cfg, rundir.path, on_connected=stop.install)
    except BaseException:
        stop.restore()
        driver.close()
        raise
    stop.raising = False
    # From here on the run is under way: its log also goes to OUT/logs/driver.log (appended
    # by every resume). Not before, so that bad input leaves a run directory untouched.
    file_log = _log_to_file(rundir.path / "logs" / DRIVER_LOG)
    _file_only(file_log, logging.INFO, "%s %s: %d task(s) %s, budget %d each, black box %s",
               "resumed" if resume else "started", rundir.path, len(tasks),
               ",".join(t.name for t, _ in tasks), cfg.bo.budget, describe_endpoint(cfg))
    try:
        driver.attach(session.generators, session.evaluators, session.info,
                      session.call_settings)
        return driver.run()
    except BaseException as err:  # the terminal shows it as `izray: error: ...`
        _file_only(file_log, logging.ERROR, "run stopped: %s: %s", type(err).__name__,
                   str(err).splitlines()[0] if str(err) else "")
        raise
    finally:
        driver.close()
        session.shutdown()  # the run's actors (detached ones too) and its autoscaler request
        if ray.is_initialized() and session.owns_ray:
            ray.shutdown()
        stop.restore()
        _stop_logging_to_file(file_log)


#: The driver's log inside the run directory.
DRIVER_LOG = "driver.log"


def _log_to_file(path: Path) -> logging.Handler:
    """Also send izray's log to ``path`` (appending), with dates, at INFO and above."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                           "%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger("izray")
    handler.previous_level = logger.level  # type: ignore[attr-defined]
    if logger.getEffectiveLevel() > logging.INFO:  # used as a library: still log the run
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


def _file_only(handler: logging.Handler, level: int, msg: str, *args) -> None:
    """A line for the run's log file that the terminal has already seen in another form."""
    handler.handle(logging.makeLogRecord({"name": "izray", "levelno": level,
                                          "levelname": logging.getLevelName(level),
                                          "msg": msg, "args": args}))


def _stop_logging_to_file(handler: logging.Handler) -> None:
    logger = logging.getLogger("izray")
    logger.removeHandler(handler)
    logger.setLevel(handler.previous_level)  # type: ignore[attr-defined]
    handler.close()


