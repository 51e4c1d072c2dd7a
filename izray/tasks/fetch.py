"""Downloading the public Instruction Induction data into a data directory.

izray ships no task data. :func:`fetch_instruction_induction` downloads the 24 tasks of the
Instruction Induction benchmark (Honovich et al., 2022; Apache-2.0) from the authors' GitHub
repository into the layout :mod:`izray.tasks.induction` reads: ``DEST/induce/NAME.json`` and
``DEST/execute/NAME.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from izray.errors import TaskError

__all__ = ["ALL_24", "DEFAULT_URL", "SPLIT_DIRS", "fetch_instruction_induction"]

DEFAULT_URL = (
    "https://raw.githubusercontent.com/orhonovich/instruction-induction/main/data/raw"
)
"""Base URL; files are fetched from ``{base_url}/{induce,execute}/{task}.json``."""

ALL_24: tuple[str, ...] = (
    "active_to_passive",
    "antonyms",
    "cause_and_effect",
    "common_concept",
    "diff",
    "first_word_letter",
    "informal_to_formal",
    "larger_animal",
    "letters_list",
    "negation",
    "num_to_verbal",
    "orthography_starts_with",
    "rhymes",
    "second_word_letter",
    "sentence_similarity",
    "sentiment",
    "singular_to_plural",
    "sum",
    "synonyms",
    "taxonomy_animal",
    "translation_en-de",
    "translation_en-es",
    "translation_en-fr",
    "word_in_context",
)
"""The 24 Instruction Induction task names."""

SPLIT_DIRS: tuple[str, ...] = ("induce", "execute")
"""The sub-directories of the layout: the induction pool and the withheld test split."""

_README = """# Instruction Induction data

Downloaded by izray from {base_url}
(the `data/raw` folder of https://github.com/orhonovich/instruction-induction).

Source: Honovich, Shaham, Bowman, Levy (2022), "Instruction Induction: From Few Examples to
Natural Language Task Descriptions", arXiv:2205.10782. License: Apache-2.0.

`induce/NAME.json` holds each task's demonstration pool (exemplars and dev split), and
`execute/NAME.json` its withheld test examples. Use this folder as izray's data directory
(`--data-dir` or `IZRAY_DATA_DIR`).
"""


def _problem(data: bytes) -> str | None:
    """Why ``data`` is not a usable task file, or ``None`` if it is one."""
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"not valid JSON ({err})"
    if not isinstance(parsed, dict) or not isinstance(parsed.get("examples"), dict):
        return 'no "examples" object'
    if not parsed["examples"]:
        return 'an empty "examples" object'
    return None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _download(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "izray"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        raise TaskError(
            f"HTTP {err.code} fetching {url} (check the task name and the base URL; the "
            "default is " + DEFAULT_URL + ")"
        ) from None
    except urllib.error.URLError as err:
        raise TaskError(
            f"cannot fetch {url}: {err.reason} (check the network connection and proxy "
            "settings, or copy the files into the data directory by hand)"
        ) from None
    except (TimeoutError, OSError) as err:
        raise TaskError(
            f"cannot fetch {url}: {err} (check the network connection, or raise the timeout)"
        ) from None


def fetch_instruction_induction(
    dest: Path,
    *,
    base_url: str = DEFAULT_URL,
    tasks: Sequence[str] = ALL_24,
    timeout: float = 60,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Download Instruction Induction task files into ``dest``.

    For every task, ``{base_url}/induce/{task}.json`` and ``{base_url}/execute/{task}.json`` are
    downloaded to ``dest/induce/`` and ``dest/execute/``. A file already present that parses as
    JSON with a non-empty ``"examples"`` object is kept and not downloaded again; a present but
    invalid one is replaced. Each file is validated before it is written, and written atomically
    (temporary file, then ``os.replace``), so an interrupted fetch leaves no half-written file.
    A ``README.md`` noting the source and license is written to ``dest``.

    Args:
        dest: The data directory to fill (created if missing).
        base_url: The URL prefix holding ``induce/`` and ``execute/``.
        tasks: The task names to fetch.
        timeout: Timeout of each HTTP request, in seconds.
        progress: Called with a one-line message per file (downloaded or already present).

    Returns:
        The paths of the task files (``induce`` then ``execute`` for each task, in order),
        whether downloaded or already present. ``README.md`` is not included.

    Raises:
        TaskError: On an invalid task name, a network or HTTP error (the message has the URL),
            a downloaded file that is not a valid task file, or a file system error.
    """
    if not tasks:
        raise TaskError("no tasks to fetch (give at least one task name)")
    for task in tasks:
        if not task or "/" in task or "\\" in task or task.startswith("."):
            raise TaskError(
                f"invalid task name {task!r} (use names such as 'antonyms')"
            )
    dest = Path(dest)
    base_url = base_url.rstrip("/")
    try:
        for split in SPLIT_DIRS:
            (dest / split).mkdir(parents=True, exist_ok=True)
        _write_atomic(dest / "README.md", _README.format(base_url=base_url).encode())
    except OSError as err:
        raise TaskError(
            f"cannot write to {dest}: {err} (choose a writable directory)"
        ) from None

    paths = []
    for task in tasks:
        for split in SPLIT_DIRS:
            path = dest / split / f"{task}.json"
            paths.append(path)
            if path.is_file() and _problem(path.read_bytes()) is None:
                if progress is not None:
                    progress(f"present    {path}")
                continue
            url = f"{base_url}/{split}/{task}.json"
            data = _download(url, timeout)
            problem = _problem(data)
            if problem is not None:
                raise TaskError(
                    f"{url} is not an Instruction Induction task file: {problem} "
                    "(check the base URL)"
                )
            try:
                _write_atomic(path, data)
            except OSError as err:
                raise TaskError(
                    f"cannot write {path}: {err} (check permissions)"
                ) from None
            if progress is not None:
                progress(f"downloaded {path}")
    return paths
