"""izray.report: atomic JSON writes keep the operator's umask."""

from __future__ import annotations

import json
import os
import stat

import pytest

from izray.report import atomic_write_json


@pytest.mark.parametrize(("mask", "mode"), [(0o077, 0o600), (0o022, 0o644), (0o002, 0o664)])
def test_atomic_write_json_follows_the_umask(tmp_path, mask: int, mode: int):
    old = os.umask(mask)
    try:
        path = tmp_path / "state" / "task.json"
        atomic_write_json(path, {"a": 1})
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"a": 1}
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert [p.name for p in path.parent.iterdir()] == ["task.json"]  # no temp file left
