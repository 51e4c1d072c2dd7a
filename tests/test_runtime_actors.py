"""Tests of izray.runtime.actors: engine output goes to the run's logs, izray's lines stay."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import ray

from izray.config import GeneratorConfig
from izray.runtime.pools import GeneratorPool

CHILD = textwrap.dedent("""
    import logging, os, sys
    from izray.runtime.actors import _setup_logging, redirect_output
    _setup_logging()
    assert redirect_output(sys.argv[1])
    os.write(2, b"[W NUMA] C-level warning\\n")          # what C++ code writes
    print("Loading safetensors checkpoint shards: 100%", file=sys.stderr)  # a progress bar
    print("engine stdout line")
    logging.getLogger("vllm").warning("vllm engine warning")
    logging.getLogger("izray.generation").warning("izray's own warning")
    os.system("echo from a subprocess")                 # the engine's own processes
""")


def test_engine_output_goes_to_the_log_file_and_izray_lines_stay(tmp_path):
    log = tmp_path / "logs" / "generator.log"  # the directory does not exist yet
    proc = subprocess.run([sys.executable, "-c", CHILD, str(log)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    for line in ("C-level warning", "checkpoint shards", "engine stdout line",
                 "vllm engine warning", "from a subprocess"):
        assert line in text, line
        assert line not in proc.stderr + proc.stdout, line
    assert "izray's own warning" in proc.stderr and "izray's own warning" not in text
    assert text.startswith("=== ")  # which actor, when and where


def test_an_unwritable_log_path_leaves_the_output_alone(tmp_path):
    from izray.runtime.actors import redirect_output

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert not redirect_output(str(blocker / "logs" / "generator.log"))  # a file, not a dir
    assert not redirect_output(None)


def test_generator_actors_write_to_the_pools_log(ray_local, tmp_path):
    log = tmp_path / "logs" / "generator.log"
    pool = GeneratorPool(GeneratorConfig(backend="sim", num_actors=1, num_cpus=0), 0, str(log))
    try:
        stats = ray.get(pool.slots[0].actor.stats.remote())
        assert stats["log_path"] == str(log)
        assert log.read_text().startswith("=== ")
    finally:
        pool.shutdown()
