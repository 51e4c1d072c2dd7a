"""The README's config table is generated from izray/config.py and must be up to date."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from izray.config import RunConfig
from izray.config_doc import (
    END,
    START,
    ConfigDocError,
    config_rows,
    config_table,
    main,
    render_default,
    to_markdown,
)

README = Path(__file__).resolve().parents[1] / "README.md"
STALE = "README.md's config table is out of date: run `make docs`"


def _leaf_keys(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            keys += _leaf_keys(tp, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def test_readme_table_is_up_to_date(capsys):
    assert main(["--check", str(README)]) == 0, capsys.readouterr().err


def test_every_leaf_field_is_one_row():
    rows = config_rows()
    keys = [key for key, _, _ in rows]
    assert keys == _leaf_keys(RunConfig)
    assert {"caps.task.usd", "caps.run.queries", "prices", "ray.stop_grace_s",
            "generator.kv_cache_gb", "server.kv_cache_gb"} <= set(keys)
    assert all(meaning and "\n" not in meaning for _, _, meaning in rows)


def test_defaults_and_meanings_render_as_markdown():
    rows = {key: (default, meaning) for key, default, meaning in config_rows()}
    assert rows["tasks.names"][0] == "`[larger_number, last_item]`"
    assert rows["ray.address"] == (
        "null", "Ray cluster address (`null`: `$RAY_ADDRESS` if set, else a local cluster).")
    assert rows["bo.stop_at_max"][0] == "true" and rows["bo.budget"][0] == "150"
    assert rows["evaluator.stop"][0] == '`["\\n"]`'
    assert rows["softprompt.scale"][0] == "1.0" and rows["evaluator.rate_margin"][0] == "0.02"
    assert "`MAX_CANDIDATES_FACTOR` (5) times `budget`" in rows["bo.max_candidates"][1]
    assert "Ceiling per task" in rows["caps.task.usd"][1]
    assert "`prompt` (default 0.0): USD per million prompt tokens" in rows["prices"][1]
    assert to_markdown("a | b ``x``\n   c :mod:`izray.racing` :class:`~izray.config.Caps`") == (
        "a \\| b `x` c `izray.racing` `Caps`")
    assert render_default("a|b") == "`a\\|b`" and render_default({}) == "`{}`"


# Small config trees at module level: typing.get_type_hints resolves names in module globals.


@dataclass(frozen=True)
class _Undocumented:
    """A section with a field its docstring forgot.

    Attributes:
        ok: Documented.
    """

    ok: int = 1
    forgotten: str = "x"


@dataclass(frozen=True)
class _BadRoot:
    """Root.

    Attributes:
        seed: A seed.
        inner: A section.
    """

    seed: int = 0
    inner: _Undocumented = field(default_factory=_Undocumented)


@dataclass(frozen=True)
class _Leaf:
    """Leaf.

    Attributes:
        limit: A limit (``None``: none).
    """

    limit: float | None = None


@dataclass(frozen=True)
class _Section:
    """Section.

    Attributes:
        name: A name.
        scope: Per scope.
    """

    name: str = "a b"
    scope: _Leaf = field(default_factory=lambda: _Leaf(limit=2.5))


@dataclass(frozen=True)
class _Root:
    """Root.

    Attributes:
        seed: A seed, documented over
            two lines.
        section: A section.

    Example:
        not_an_entry: ignored.
    """

    seed: int = 0
    section: _Section = field(default_factory=_Section)


def test_a_field_without_a_docstring_entry_raises():
    with pytest.raises(ConfigDocError,
                       match=r"_Undocumented: no entry for forgotten under 'Attributes:'"):
        config_rows(_BadRoot)
    with pytest.raises(TypeError):
        config_rows(_Root())  # type: ignore[arg-type]


def test_rows_of_a_small_documented_tree():
    assert config_rows(_Root) == [
        ("seed", "0", "A seed, documented over two lines."),
        ("section.name", "`a b`", "A name."),
        ("section.scope.limit", "2.5", "A limit (`null`: none). Per scope."),
    ]


def test_check_on_a_stale_copy_fails_with_one_line(tmp_path, capsys):
    lines = README.read_text(encoding="utf-8").split("\n")
    row = next(i for i, line in enumerate(lines) if line.startswith("| `ray.stop_grace_s` |"))
    stale = tmp_path / "README.md"
    stale.write_text("\n".join(lines[:row] + lines[row + 1:]), encoding="utf-8")
    assert main(["--check", str(stale)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == STALE and err.count("\n") == 1


def test_write_then_check_round_trip(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nprose before\n\n{START}\nold table\n{END}\n\nprose after\n",
                      encoding="utf-8")
    assert main([str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# title\n\nprose before\n\n") and text.endswith("\n\nprose after\n")
    assert config_table() in text and "old table" not in text
    assert main(["--check", str(readme)]) == 0
    assert main([str(readme)]) == 0 and readme.read_text(encoding="utf-8") == text


def test_missing_markers_is_an_error(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no table here\n", encoding="utf-8")
    assert main(["--check", str(readme)]) == 2
    assert "markers" in capsys.readouterr().err
