"""The served generator: soft prompts as ``prompt_embeds`` to a vLLM OpenAI server.

Fast: the wire format, config checks, and a stub server (a real HTTP server on loopback that
decodes what the openai client sent). Slow: the real vLLM CPU server started with
``--enable-prompt-embeds`` gives the same instructions as the in-process vLLM engine, and
``izray run`` works against generator and black-box servers at a URL.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from izray.config import config_from_dict
from izray.errors import ConfigError, GeneratorError
from izray.generation import GenerationRequest, induction_text
from izray.generation.served_backend import encode_embeds
from izray.softprompt import SoftPromptProjection
from izray.tasks import load_task, make_splits


def test_embeds_travel_as_base64_of_torch_save():
    x = torch.randn(7, 640)
    raw = base64.b64decode(encode_embeds(x))
    torch.testing.assert_close(torch.load(io.BytesIO(raw), weights_only=True), x)


@pytest.mark.parametrize(("sets", "needle"), [
    (["generator.base_url=http://h:1/v1"], "generator.base_url: is for generator.backend=served"),
    (["generator.backend=served", "generator.base_url=ftp://h"],
     "generator.base_url: must be an http(s) URL"),
    (["generator.backend=served", "evaluator.base_url=http://h:1/v1", "evaluator.model=m"],
     "generator.base_url: must be set for generator.backend=served"),
    (["generator.backend=served", "generator.model=/some/other/model"],
     "generator.model: must equal server.model"),
    (["generator.backend=served", "generator.concurrency=0"], "generator.concurrency"),
])
def test_served_settings_are_checked(sets, needle):
    with pytest.raises(ConfigError) as exc:
        config_from_dict({}, sets)
    assert str(exc.value).startswith(needle), str(exc.value)


def test_served_on_the_embedded_server_and_on_a_url_are_valid():
    one = config_from_dict({}, ["generator.backend=served"])
    assert one.generator.base_url is None and one.evaluator.embedded
    fleet = config_from_dict({}, ["generator.backend=served",
                                  "generator.base_url=http://vllm:8000/v1",
                                  "evaluator.base_url=http://api:1/v1", "evaluator.model=m"])
    assert fleet.generator.base_url == "http://vllm:8000/v1"


# ------------------------------------------------------------------ stub server (slow: model)


class _Stub(BaseHTTPRequestHandler):
    seen: list[dict] = []  # noqa: RUF012 - the test's record of requests
    refuse = False

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # /v1/models
        self._send(200, {"object": "list", "data": [{"id": "served-gemma", "object": "model",
                                                     "created": 0, "owned_by": "t"}]})

    def do_POST(self):  # /v1/completions
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({**body, "auth": self.headers.get("Authorization")})
        if type(self).refuse:
            self._send(400, {"error": {"message": "You must set `--enable-prompt-embeds` to "
                                       "input `prompt_embeds`.", "type": "BadRequestError",
                                       "code": 400}})
            return
        x = torch.load(io.BytesIO(base64.b64decode(body["prompt_embeds"])), weights_only=True)
        text = f" Write {x.shape[0]}x{x.shape[1]} {x.dtype}.\n\nInput: ignored"
        self._send(200, {"id": "c", "object": "text_completion", "created": 0,
                         "model": body["model"], "choices": [
                             {"index": 0, "text": text, "finish_reason": "stop"}]})


@pytest.fixture()
def stub():
    _Stub.seen, _Stub.refuse = [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.mark.slow
def test_the_request_carries_prefix_soft_prompt_and_text_embeds(stub, small_model):
    from izray.generation import build_generator

    gen = build_generator("served", str(small_model), base_url=stub, max_new_tokens=20,
                          server_key="per-run-key", concurrency=2)
    assert gen.served_model == "served-gemma" and gen.info.backend == "served"
    soft = np.zeros((5, 640), dtype=np.float32)
    text = "hot -> cold\nbig -> small\nfast ->"
    n_text = len(gen.assembler.tokenizer(text, add_special_tokens=False).input_ids)
    out = gen.generate([GenerationRequest("a", soft, text), GenerationRequest("b", None, text)])
    # <bos> + 5 soft tokens + the text; the stop strings cut the continuation.
    assert [r.instruction for r in out] == [f"Write {1 + 5 + n_text}x640 torch.float32.",
                                            f"Write {1 + n_text}x640 torch.float32."]
    req = _Stub.seen[0]
    assert req["model"] == "served-gemma" and req["temperature"] == 0
    assert req["max_tokens"] == 20 and req["auth"] == "Bearer per-run-key"
    _Stub.refuse = True
    with pytest.raises(GeneratorError, match="start the server with --enable-prompt-embeds"):
        gen.generate([GenerationRequest("c", soft, text)])


@pytest.mark.slow
def test_an_unknown_served_model_or_a_dead_server_is_a_clear_error(stub, small_model):
    from izray.generation.served_backend import ServedGenerator

    with pytest.raises(GeneratorError, match="does not serve 'vicuna'"):
        ServedGenerator(str(small_model), base_url=stub, served_model="vicuna")
    with pytest.raises(GeneratorError, match="did not answer"):
        ServedGenerator(str(small_model), base_url="http://127.0.0.1:9/v1", max_retries=0)


# ------------------------------------------------------------------ the real vLLM server

SERVER_KEY = "k-served"  # the test server's key; per run, never a real secret


@pytest.fixture(scope="module")
def real_server(small_model, tmp_path_factory):
    """One real vLLM CPU server with ``--enable-prompt-embeds`` for this module's tests: the
    generator server and the black box of a cluster that runs its own vLLM servers."""
    from izray.runtime.server import LocalModelServer

    log = tmp_path_factory.mktemp("real-server") / "server.log"
    server = LocalModelServer(str(small_model), "gen", max_model_len=1024, log_path=log,
                              api_key=SERVER_KEY, extra_args=["--enable-prompt-embeds"])
    try:
        server.wait_ready(900)
        yield server
    finally:
        server.stop()


TEXT = "hot -> cold\nbig -> small\nfast ->"


@pytest.mark.slow
def test_real_vllm_server_gives_the_in_process_engines_instructions(ray_local, small_model,
                                                                   real_server):
    """The in-process vLLM CPU engine in a Ray actor (the production path of
    ``generator.backend: vllm``) and the served path give the same greedy instructions."""
    from izray.generation.served_backend import ServedGenerator
    from izray.runtime.actors import GeneratorActor

    actor = GeneratorActor.options(num_cpus=1).remote(
        "vllm", str(small_model), {"max_new_tokens": 24, "max_model_len": 512, "seed": 0})
    try:
        info = ray_local.get(actor.info.remote(), timeout=900)
        assert info.hidden == 640 and info.backend == "vllm"
        served = ServedGenerator(str(small_model), base_url=real_server.base_url,
                                 api_key=SERVER_KEY, max_new_tokens=24)
        assert (served.info.hidden, served.info.embed_std) == (info.hidden, info.embed_std)
        task = load_task("larger_number")
        text = induction_text(make_splits(task, 0).exemplars, "The instruction was to")
        proj = SoftPromptProjection.create(10, 5, 640, info.embed_std, 1.0, seed=0)
        zs = np.random.default_rng(1).uniform(-1, 1, (4, 10))
        reqs = [GenerationRequest("plain", np.zeros((0, 640), dtype=np.float32), TEXT)]
        reqs += [GenerationRequest(f"z{i}", proj(z), text) for i, z in enumerate(zs)]
        reqs.append(GenerationRequest("ape", None, text, temperature=0.7, seed=3))
        in_process = ray_local.get(actor.generate.remote(reqs), timeout=600)
        assert [r.key for r in in_process] == ["plain", "z0", "z1", "z2", "z3", "ape"]
        # Plain token embeddings reproduce the text prompt's greedy continuation.
        assert in_process[0].raw.strip().startswith("slow")
        over_http = served.generate(reqs)
        assert [r.instruction for r in over_http] == [r.instruction for r in in_process]
        assert len({r.instruction for r in over_http[1:5]}) >= 2  # the soft prompt matters
    finally:
        ray_local.kill(actor)


@pytest.mark.slow
def test_a_run_against_servers_at_urls(real_server, ii_data_dir, tmp_path):
    """`izray run` with the generator and the black box both at a URL (a cluster's own vLLM
    servers), here strategy APE, on task data izray has never seen, with a reference
    instruction scored beside the search: nothing is started but the driver."""
    data = tmp_path / "data"
    for split in ("induce", "execute"):
        (data / split).mkdir(parents=True)
        shutil.copy(ii_data_dir / split / "larger_animal.json", data / split / "bigger_beast.json")
    out = tmp_path / "run"
    ref = "Write the larger of the two animals."
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(OPENAI_API_KEY=SERVER_KEY, IZRAY_GENERATOR_API_KEY=SERVER_KEY)
    sets = ["strategy=ape", "bo.budget=4", "bo.n_init=4", "bo.stop_at_max=false",
            "bo.batch_size=2", "bo.max_candidates=20", "tasks.n_dev=5", "tasks.n_test=5",
            "generator.max_new_tokens=24", "generator.backend=served",
            f"generator.base_url={real_server.base_url}", "generator.served_model=gen",
            f"evaluator.base_url={real_server.base_url}", "evaluator.model=gen",
            "evaluator.api=completions",  # a base model: the server has no chat template
            f"tasks.reference_instructions={{bigger_beast: [{ref}]}}"]
    proc = subprocess.run([sys.executable, "-m", "izray.cli", "run", "--data-dir", str(data),
                           "--tasks", "bigger_beast", "--out", str(out),
                           *(x for s in sets for x in ("--set", s))],
                          capture_output=True, text=True, timeout=900, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategy"] == "ape"
    r = summary["tasks"]["bigger_beast"]
    assert r["strategy"] == "ape" and r["finished"]
    assert r["queries"] == 4 and r["candidates"] >= 4
    assert 0.0 <= r["test_score"] <= 1.0
    assert r["references"][0]["instruction"] == ref
    assert 0.0 <= r["references"][0]["dev_score"] <= 1.0
    assert 0.0 <= r["references"][0]["test_score"] <= 1.0
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == r["candidates"]
    assert len({h["instruction"] for h in history if h["query"]}) == 4
    assert all(h["z"] is None and len(h["exemplars"]) == 5 for h in history)
    assert "yours " in proc.stdout and "-> izray" in proc.stdout
    # Neither server key reached what the run wrote.
    for path in out.rglob("*"):
        if path.is_file():
            assert SERVER_KEY not in path.read_text(errors="replace"), path
