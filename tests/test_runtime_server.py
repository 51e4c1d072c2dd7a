"""The embedded model server's process: its key travels in the environment, never argv."""

from __future__ import annotations

import subprocess
from typing import ClassVar

from izray.runtime import server as server_mod
from izray.runtime.server import LocalModelServer


class _Popen:
    """Records what LocalModelServer would start, starts nothing."""

    seen: ClassVar[dict] = {}

    def __init__(self, cmd, **kwargs) -> None:
        _Popen.seen = {"cmd": cmd, "env": kwargs["env"]}
        self.pid = -1

    def poll(self):
        return 0


def test_key_in_environment_not_command_line(monkeypatch, tmp_path):
    monkeypatch.setattr(server_mod.subprocess, "Popen", _Popen)
    monkeypatch.setenv("VLLM_API_KEY", "inherited-key")
    srv = LocalModelServer("/models/m", "m", log_path=tmp_path / "s.log", api_key="run-key-123")
    assert _Popen.seen["env"]["VLLM_API_KEY"] == "run-key-123"
    assert not any("run-key-123" in part for part in _Popen.seen["cmd"])
    assert "--api-key" not in _Popen.seen["cmd"]
    # Loopback unless told otherwise.
    assert _Popen.seen["cmd"][_Popen.seen["cmd"].index("--host") + 1] == "127.0.0.1"
    assert srv.base_url.startswith("http://127.0.0.1:")


def test_no_key_drops_an_inherited_one(monkeypatch):
    # A key left in the node's environment would lock out the run's own evaluators.
    monkeypatch.setattr(server_mod.subprocess, "Popen", _Popen)
    monkeypatch.setenv("VLLM_API_KEY", "inherited-key")
    LocalModelServer("/models/m", "m")
    assert "VLLM_API_KEY" not in _Popen.seen["env"]
    assert subprocess.DEVNULL is not None
