"""The ``izray`` command line.

    izray run [CONFIG.yaml] [--tasks a,b] [--data-dir DIR] [--out DIR] [--set key=value ...]
    izray resume OUT [--set key=value ...]
    izray tasks [--data-dir DIR]
    izray data fetch [DIR]

Errors izray expects (bad config, unknown task, unreachable endpoint, ...) print one line
``izray: error: ...`` and exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

from izray.errors import IzrayError, RunStateError

log = logging.getLogger("izray")


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("izray")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="izray", description="InstructZero on Ray: find the "
                                "instruction a black-box LLM does best with.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="optimize instructions for tasks")
    run.add_argument("config", nargs="?", help="YAML config (default: built-in defaults)")
    run.add_argument("--tasks", help="comma-separated task names (overrides tasks.names)")
    run.add_argument("--data-dir", help="task data directory (default: $IZRAY_DATA_DIR)")
    run.add_argument("--out", help="run directory to create (default: runs/<timestamp>)")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set bo.budget=40 (repeatable)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    resume = sub.add_parser("resume", help="continue a run that stopped (crash, kill, cap)")
    resume.add_argument("out", help="the run directory")
    resume.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="change an operational key (ray.*, caps.*, evaluator.rpm, ...)")
    resume.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    tasks = sub.add_parser("tasks", help="list the tasks izray can run")
    tasks.add_argument("--data-dir", help="task data directory (default: $IZRAY_DATA_DIR)")

    data = sub.add_parser("data", help="task data")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download the public Instruction Induction data")
    fetch.add_argument("dir", nargs="?", default="data/instruction_induction",
                       help="where to put it (default: ./data/instruction_induction)")
    fetch.add_argument("--url", help="mirror of the GitHub tree's data/raw folder")
    fetch.add_argument("--tasks", help="comma-separated subset of the 24 tasks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(getattr(args, "verbose", False))
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "resume":
            return cmd_resume(args)
        if args.command == "tasks":
            return cmd_tasks(args)
        if args.command == "data":
            return cmd_fetch(args)
    except IzrayError as err:
        print(f"izray: error: {err}", file=sys.stderr)
        return err.exit_code
    except (OSError, sqlite3.OperationalError) as err:  # the machine: a full disk, permissions
        print(f"izray: error: {_describe_os_error(err, getattr(args, 'out', None))}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("izray: interrupted", file=sys.stderr)
        return 130
    return 2  # pragma: no cover


def _describe_os_error(err: BaseException, out: str | None) -> str:
    """One line for an error of the machine under a run, and how to go on."""
    cause = getattr(err, "cause", None)  # raised in an actor: Ray's error wraps the original
    if isinstance(cause, (OSError, sqlite3.OperationalError)):
        err = cause
    if isinstance(err, OSError):
        where = f" {err.filename}" if err.filename else ""
        what = f"cannot write{where}: {err.strerror or err}"
    else:
        what = f"a database of the run cannot be written: {err}"
    then = f"; fix it (free space, permissions), then `izray resume {out}`" if out else ""
    return what + then


def cmd_tasks(args: argparse.Namespace) -> int:
    from izray.tasks import list_tasks

    infos = list_tasks(args.data_dir)
    print(f"{'task':28} {'kind':22} {'pool':>6} {'test':>6}  metric")
    for t in infos:
        test = "-" if t.n_test is None else str(t.n_test)
        print(f"{t.name:28} {t.kind:22} {t.n_pool:>6} {test:>6}  {t.metric}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from izray.tasks import fetch_instruction_induction

    dest = Path(args.dir)
    kwargs = {}
    if args.url:
        kwargs["base_url"] = args.url.rstrip("/")
    if args.tasks:
        kwargs["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
    paths = fetch_instruction_induction(dest, progress=lambda msg: log.info("%s", msg), **kwargs)
    print(f"{len(paths)} files in {dest}; use them with --data-dir {dest} "
          f"or export IZRAY_DATA_DIR={dest.resolve()}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from izray.config import config_to_dict, load_config

    overrides = list(args.sets)
    if args.tasks:
        # As strings, whatever they look like: `--tasks 123` names a task "123".
        names = [t.strip() for t in args.tasks.split(",") if t.strip()]
        overrides.append(f"tasks.names={json.dumps(names)}")
    if args.data_dir:
        overrides.append(f"tasks.data_dir={args.data_dir}")
    cfg = load_config(args.config, overrides)
    out = Path(args.out) if args.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    if (out / "config.json").is_file():  # the same job submitted again: continue it
        from izray.driver import saved_config

        saved = saved_config(out)
        if saved != config_to_dict(cfg):
            key = _first_difference(saved, config_to_dict(cfg))
            raise RunStateError(f"{out} holds a run with a different config (at {key}); choose "
                                "another --out, or `izray resume` it")
        log.info("%s holds this run already: continuing it", out)
        return run_config(cfg, out, resume=True)
    return run_config(cfg, out)


#: Keys a resume may change: how the run executes, not what it computes.
RESUMABLE_PREFIXES = ("ray.", "caps.", "prices.", "server.startup_timeout_s", "generator.num_",
                      "generator.max_actors", "generator.max_batch", "generator.kv_cache_gb",
                      "generator.gpu_memory_utilization", "evaluator.rpm", "evaluator.tpm",
                      "evaluator.num_actors", "evaluator.concurrency", "evaluator.timeout_s",
                      "evaluator.max_attempts", "evaluator.api_key_env", "evaluator.api_key_file",
                      "evaluator.base_url", "evaluator.cache_path")


def cmd_resume(args: argparse.Namespace) -> int:
    from izray.config import config_from_dict
    from izray.driver import saved_config

    out = Path(args.out)
    if not out.is_dir():
        raise RunStateError(f"{out} is not a directory; pass the run directory `izray run` made")
    saved = saved_config(out)
    for item in args.sets:
        key = item.partition("=")[0].strip()
        if not key.startswith(RESUMABLE_PREFIXES):
            raise RunStateError(f"resume cannot change {key}: it changes what the run computes;"
                                " start a new run instead")
    if "***@" in str(saved.get("evaluator", {}).get("base_url") or "") and not any(
            s.startswith("evaluator.base_url=") for s in args.sets):
        raise RunStateError("the run's endpoint URL had credentials, which were not saved; pass "
                            "it again with --set evaluator.base_url=...")
    cfg = config_from_dict(saved, args.sets)
    return run_config(cfg, out, resume=True)


def _first_difference(a, b, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".") or "top level"


def run_config(cfg, out: Path, resume: bool = False) -> int:
    """Run ``cfg`` into ``out`` (new, or continued with ``resume``); print the results."""
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
    from izray.report import format_results

    print(format_results(summary))
    print(f"results: {out / 'summary.json'}  history: {out / 'history.jsonl'}")
    return 0


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
    session = start_pools(cfg, rundir.path)
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
        session.shutdown()
        if ray.is_initialized() and session.owns_ray:
            ray.shutdown()
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


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
