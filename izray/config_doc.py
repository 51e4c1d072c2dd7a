"""The README's configuration table, generated from the config definitions.

Every row comes from :mod:`izray.config`: the key from the dataclass fields of
:class:`~izray.config.RunConfig` (a nested dataclass gives dotted keys, ``caps.task.usd``), the
default from the field's default or default factory, the meaning from the field's entry under
``Attributes:`` in its class's Google-style docstring. So the table cannot drift from the code:
``make docs`` rewrites it, and a test runs ``--check``.

How docstring text becomes a table cell:

* continuation lines are joined; RST literals (double backticks) and cross-reference roles
  become markdown code spans, with ``None``/``True``/``False`` as YAML's ``null``/``true``/
  ``false``; a ``|`` is escaped, so the meaning stays one table cell;
* a literal naming a constant of :mod:`izray._constants` (``MAX_CANDIDATES_FACTOR``) is followed
  by its value, so numbers are written once, in ``_constants.py``;
* rows of a dataclass nested inside a section (``caps.task.*``) end with that nested field's own
  entry (``caps.task``), which says what the group is;
* a mapping to dataclasses (``prices``) is one row, its entry followed by the value's fields.

Usage: ``python -m izray.config_doc [--check] README.md`` rewrites the table between
:data:`START` and :data:`END`; with ``--check`` it only exits 1 if the table is out of date.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import re
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from izray import _constants as C
from izray.config import RunConfig

START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"
STALE = "{name}'s config table is out of date: run `make docs`"

Row = tuple[str, str, str]

_NO_DEFAULT = object()
_ENTRY = re.compile(r"(\w+)(?:\s*\([^)]*\))?:\s*(.*)")
_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")
_YAML_WORDS = {"None": "null", "True": "true", "False": "false"}


class ConfigDocError(ValueError):
    """The config definitions cannot be documented (a field lacks its docstring entry), or the
    README has no table markers."""


def attribute_docs(cls: type) -> dict[str, str]:
    """Field name -> its ``Attributes:`` entry in ``cls``'s own docstring, lines joined."""
    lines = inspect.cleandoc(cls.__dict__.get("__doc__") or "").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Attributes:"]
    if not starts:
        return {}
    base = len(lines[starts[0]]) - len(lines[starts[0]].lstrip())
    entries: dict[str, list[str]] = {}
    entry_indent: int | None = None
    current: list[str] | None = None
    for line in lines[starts[0] + 1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= base:  # the next section (Example:, Note:, ...)
            break
        entry_indent = indent if entry_indent is None else entry_indent
        match = _ENTRY.fullmatch(line.strip()) if indent == entry_indent else None
        if match:
            current = entries.setdefault(match.group(1), [])
            current.append(match.group(2))
        elif current is not None:
            current.append(line.strip())
    return {name: " ".join(parts).strip() for name, parts in entries.items()}


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _literal(match: re.Match[str]) -> str:
    text = match.group(1)
    if text in _YAML_WORDS:
        return _code(_YAML_WORDS[text])
    value = getattr(C, text, None) if re.fullmatch(r"[A-Z][A-Z0-9_]+", text) else None
    if isinstance(value, (bool, int, float, str)):
        return f"{_code(text)} ({_yaml(value)})"
    return _code(text)


def to_markdown(text: str) -> str:
    """RST docstring text as one markdown table cell."""
    text = _ROLE.sub(lambda m: _code(m.group(2).rsplit(".", 1)[-1] if m.group(1)
                                     else m.group(2)), text)
    text = _LITERAL.sub(_literal, text)
    return " ".join(text.split()).replace("|", "\\|")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _yaml_scalar(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return _YAML_WORDS[str(value)]
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, str):
        try:
            plain = value == value.strip() and yaml.safe_load(value) == value
        except yaml.YAMLError:
            plain = False
        return value if plain else json.dumps(value)
    return str(value)


def _yaml(value: Any) -> str:
    """``value`` in YAML flow style, e.g. ``[a, b]``, ``{}``, ``null``, ``"\\n"``."""
    data = _plain(value)
    if isinstance(data, list):
        text = "[" + ", ".join(_yaml(v) for v in data) + "]"
    elif isinstance(data, dict):
        text = "{" + ", ".join(f"{_yaml(k)}: {_yaml(v)}" for k, v in data.items()) + "}"
    else:
        return _yaml_scalar(data)
    try:
        if yaml.safe_load(text) == data:
            return text
    except yaml.YAMLError:
        pass
    return json.dumps(data)  # JSON is YAML, and always reads back as written


def render_default(value: Any) -> str:
    """A default as a table cell: numbers, booleans and ``null`` bare, the rest as code."""
    if value is _NO_DEFAULT:
        return "required"
    if value is None or isinstance(value, (bool, int, float)):
        text = _yaml(value)
    else:
        text = _code(_yaml(value))
    return text.replace("|", "\\|")


def _checked_docs(cls: type) -> dict[str, str]:
    docs = attribute_docs(cls)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in docs]
    if missing:
        raise ConfigDocError(
            f"{cls.__module__}.{cls.__qualname__}: no entry for {', '.join(missing)} under "
            "'Attributes:' in its docstring; every config field needs one (it is the README "
            "table's meaning)")
    return docs


def _default(f: dataclasses.Field, parent: Any) -> Any:
    if parent is not _NO_DEFAULT:
        return getattr(parent, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _NO_DEFAULT


def _value_fields(cls: type) -> str:
    docs = _checked_docs(cls)
    parts = []
    for f in dataclasses.fields(cls):
        meaning = to_markdown(docs[f.name]).rstrip(".")
        parts.append(f"`{f.name}` (default {render_default(_default(f, _NO_DEFAULT))}): {meaning}")
    return "Each value: " + "; ".join(parts) + "."


def _walk(cls: type, prefix: str, parent: Any, context: str, rows: list[Row]) -> None:
    docs = _checked_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, tp, default = prefix + f.name, hints[f.name], _default(f, parent)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            # A root section (bo) only prefixes keys; a deeper one (caps.task) also explains.
            inner = " ".join(filter(None, [to_markdown(docs[f.name]), context])) if prefix else ""
            _walk(tp, key + ".", default, inner, rows)
            continue
        meaning = to_markdown(docs[f.name])
        args = typing.get_args(tp)
        if typing.get_origin(tp) is dict and isinstance(args[1], type) and \
                dataclasses.is_dataclass(args[1]):
            meaning += " " + _value_fields(args[1])
        rows.append((key, render_default(default), " ".join(filter(None, [meaning, context]))))


def config_rows(root: type = RunConfig) -> list[tuple[str, str, str]]:
    """One ``(key, default, meaning)`` row per config key under the dataclass ``root``.

    Raises:
        ConfigDocError: a field (of ``root`` or of a dataclass in it) has no docstring entry.
        TypeError: ``root`` is not a dataclass type.
    """
    if not (isinstance(root, type) and dataclasses.is_dataclass(root)):
        raise TypeError(f"config_rows needs a dataclass type (got {root!r})")
    rows: list[Row] = []
    _walk(root, "", _NO_DEFAULT, "", rows)
    return rows


def config_table(root: type = RunConfig) -> str:
    """The markdown table ``| key | default | meaning |`` of :func:`config_rows`."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{key}` | {default} | {meaning} |" for key, default, meaning in config_rows(root)]
    return "\n".join(lines)


def update_readme(text: str, root: type = RunConfig) -> str:
    """``text`` with the table between :data:`START` and :data:`END` regenerated."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ConfigDocError(f"no {START} ... {END} markers around the config table")
    block = f"{START}\n\n{config_table(root)}\n\n{END}"
    return text[:start] + block + text[end + len(END):]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m izray.config_doc [--check] README.md``; returns the exit code.

    0: the table is (now) up to date; 1: ``--check`` found it out of date; 2: the file cannot
    be read or has no markers, or a config field is undocumented.
    """
    parser = argparse.ArgumentParser(
        prog="python -m izray.config_doc",
        description="Rewrite the README's config table from izray/config.py.")
    parser.add_argument("--check", action="store_true",
                        help="only check: exit 1 if the table is out of date")
    parser.add_argument("readme", nargs="?", default="README.md", type=Path)
    args = parser.parse_args(argv)
    path: Path = args.readme
    try:
        text = path.read_text(encoding="utf-8")
        new = update_readme(text)
    except OSError as err:
        print(f"{parser.prog}: error: cannot read {path}: {err.strerror}", file=sys.stderr)
        return 2
    except ConfigDocError as err:
        print(f"{parser.prog}: error: {path}: {err}", file=sys.stderr)
        return 2
    if new == text:
        return 0
    if args.check:
        print(STALE.format(name=path.name), file=sys.stderr)
        return 1
    path.write_text(new, encoding="utf-8")
    print(f"{path}: config table rewritten ({len(config_rows())} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
