"""Shared pytest fixtures.

Sections: task data (below). Ray fixtures are to be added in their own section.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# --------------------------------------------------------------------------------------------
# Task data
# --------------------------------------------------------------------------------------------

_DEFAULT_II_DATA = (
    Path(__file__).resolve().parents[1].parent / "shared/data/instruction_induction"
)


@pytest.fixture(scope="session")
def ii_data_dir() -> Path:
    """The shared Instruction Induction data directory (``$IZRAY_TEST_DATA`` overrides it)."""
    path = Path(os.environ.get("IZRAY_TEST_DATA") or _DEFAULT_II_DATA)
    if not (path / "induce").is_dir() or not (path / "execute").is_dir():
        pytest.fail(
            f"Instruction Induction test data not found at {path} (expected induce/ and "
            "execute/ there; set IZRAY_TEST_DATA to the data directory)",
            pytrace=False,
        )
    return path
