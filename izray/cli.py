"""The ``izray`` command line.

    izray run [CONFIG.yaml] [--tasks a,b] [--data-dir DIR] [--out DIR] [--set key=value ...]
    izray resume OUT [--set key=value ...]
    izray tasks [--data-dir DIR]
    izray data fetch [DIR]
    izray validate [CONFIG.yaml] [--tasks a,b] [--data-dir DIR] [--out DIR] [--set key=value ...]
    izray report OUT [OUT ...] [--format table|md|csv|json] [--html FILE] [--plot FILE.png]

Errors izray expects (bad config, unknown task, unreachable endpoint, ...) print one line
``izray: error: ...`` and exit non-zero. Exit codes (:mod:`izray.errors`): 0 every task
finished; 3 the run ended with a task stopped by a cap or without a test score; 2 bad
input; 130 stopped by SIGTERM/SIGINT (``izray resume OUT`` continues).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path

from izray.errors import EXIT_INCOMPLETE, EXIT_OK, Interrupted, IzrayError

log = logging.getLogger("izray")


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    # A terminal shows the time; a job's log (read the next morning) or a file, the date too.
    from izray.stopping import RAY_JOB_ENV

    dated = not sys.stderr.isatty() or RAY_JOB_ENV in os.environ
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s",
                                           "%Y-%m-%d %H:%M:%S" if dated else "%H:%M:%S"))
    root = logging.getLogger("izray")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="izray", description="InstructZero on Ray: find the "
                                "instruction a black-box LLM does best with.")
    p.add_argument("--version", action="version", version=f"izray {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="optimize instructions for tasks")
    validate = sub.add_parser("validate", help="check a run's config, tasks, models and "
                              "endpoint without starting it, and estimate its cost")
    for cmd in (run, validate):
        cmd.add_argument("config", nargs="?", help="YAML config (default: built-in defaults)")
        cmd.add_argument("--tasks", help="comma-separated task names (overrides tasks.names)")
        cmd.add_argument("--data-dir", help="task data directory (default: $IZRAY_DATA_DIR)")
        cmd.add_argument("--out", help="run directory to create (default: runs/<timestamp>)")
        cmd.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config key, e.g. --set bo.budget=40 (repeatable)")
        cmd.add_argument("-v", "--verbose", action="store_true", help="debug logging")

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

    from izray.reporting import add_parser as _add_report

    _add_report(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(getattr(args, "verbose", False))
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "resume":
            return cmd_resume(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "tasks":
            return cmd_tasks(args)
        if args.command == "data":
            return cmd_fetch(args)
        if args.command == "report":
            from izray.reporting import cmd_report

            return cmd_report(args)
    except Interrupted as err:
        print(f"izray: {err}", file=sys.stderr)
        return err.exit_code
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


def _load(args: argparse.Namespace):
    """The config ``run`` and ``validate`` get from a file, ``--tasks``, ``--data-dir``, ``--set``."""
    from izray.config import load_config

    overrides = list(args.sets)
    if args.tasks:
        # As strings, whatever they look like: `--tasks 123` names a task "123".
        names = [t.strip() for t in args.tasks.split(",") if t.strip()]
        overrides.append(f"tasks.names={json.dumps(names)}")
    if args.data_dir:
        overrides.append(f"tasks.data_dir={args.data_dir}")
    return load_config(args.config, overrides)


def cmd_validate(args: argparse.Namespace) -> int:
    from izray.validate import format_plan, validate

    cfg = _load(args)
    plan = validate(cfg, Path(args.out) if args.out else None)
    print(format_plan(plan, cfg))
    print("valid: `izray run` with the same arguments would start")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from izray.app import run_new

    cfg = _load(args)
    out = Path(args.out) if args.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    args.out = str(out)  # for the error line's `izray resume OUT`
    return _print_results(run_new(cfg, out), out)


def cmd_resume(args: argparse.Namespace) -> int:
    from izray.app import resume_run

    out = Path(args.out)
    return _print_results(resume_run(out, args.sets), out)


def _print_results(summary: dict, out: Path) -> int:
    from izray.report import format_results

    print(format_results(summary))
    print(f"results: {out / 'summary.json'}  history: {out / 'history.jsonl'}")
    return exit_code(summary)


def exit_code(summary: dict) -> int:
    """0 if every task finished with a test score; 3 if one was stopped by a cap (raise it,
    then `izray resume`) or has no test score (its calls failed).

    Example:
        >>> exit_code({"tasks": {"a": {"finished": True, "stopped": None, "test_score": 0.5}}})
        0
        >>> exit_code({"tasks": {"a": {"finished": True, "stopped": "caps.max_api_calls",
        ...                             "test_score": 0.5}}})
        3
    """
    for row in summary["tasks"].values():
        stopped = str(row.get("stopped") or "")
        capped = stopped and not stopped.startswith("bo.max_candidates")  # that one: no more
        if capped or not row.get("finished", True) or row.get("test_score") is None:
            return EXIT_INCOMPLETE  # new instructions to find; the task has its result
    return EXIT_OK


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("izray")
    except PackageNotFoundError:  # a source tree on PYTHONPATH
        from izray import __version__

        return __version__


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
