"""Tests of izray.testing.simulator over plain HTTP (urllib), independent of izray's client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from izray.testing.simulator import (
    SimConfig,
    count_tokens,
    follow,
    parse_args,
    parse_prompt,
    start_in_thread,
)

PROMPT = "Instruction: Write the plural of the word.\n\nInput: cat\nOutput:"


def http(url: str, body: dict | None = None, headers: dict | None = None,
         raw: bytes | None = None) -> tuple[int, dict, str]:
    """(status, headers, text) of one request; POST when a body is given."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json",
                                                           **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


def completion(base: str, prompt: str = PROMPT, model: str = "sim-model", max_tokens: int = 16,
               headers: dict | None = None) -> tuple[int, dict, str]:
    return http(f"{base}/completions", {"model": model, "prompt": prompt,
                                        "max_tokens": max_tokens}, headers)


def stats(base: str) -> dict:
    status, _, text = http(base.removesuffix("/v1") + "/stats")
    assert status == 200
    return json.loads(text)


@pytest.fixture(scope="module")
def sim() -> Iterator:
    s = start_in_thread(SimConfig(noise=0.0, models=("sim-model", "sim-other")))
    yield s
    s.stop()


# ----------------------------------------------------------------------------- follow()


@pytest.mark.parametrize(("instruction", "x", "expected"), [
    ("Write the plural form of the word.", "cat", "cats"),
    ("Give the PLURAL.", "  Baby ", "babies"),
    ("Output the first letter of the word.", "Apple", "a"),
    ("What is the initial letter?", "zebra", "z"),
    ("Which number is larger?", "3, 17", "17"),
    ("Pick the biggest number.", "-4 -9 -1.5", "-1.5"),
    ("Write the smaller number.", "8 and 2", "2"),
    ("Give the last item.", "a, b, c", "c"),
    ("Convert to uppercase.", "abc", "ABC"),
    ("Add one to it.", "41", "42"),
    ("Name the colour.", "banana", "yellow"),
    ("Say something nice.", "  hello ", "hello"),  # no keyword: echo the input
    ("Which is larger?", "only 5 here", "only 5 here"),  # keyword, not applicable: echo
    ("Write the plural.", "notaword", "notaword"),  # unknown word: echo
    ("Give the first letter, not the plural.", "cat", "cats"),  # the operation listed first wins
])
def test_follow_applies_the_named_operation(instruction: str, x: str, expected: str) -> None:
    assert follow(instruction, x) == expected


def test_parse_prompt_takes_the_last_instruction_and_input() -> None:
    primer = "Instruction: Double the number.\n\nInput: 41\nOutput: 82\n\n"
    assert parse_prompt(primer + PROMPT) == ("Write the plural of the word.", "cat")
    assert parse_prompt("just text ") == ("", "just text")


def test_count_tokens() -> None:
    assert count_tokens("") == 1
    assert count_tokens("x" * 40) == 10


# ----------------------------------------------------------------------- HTTP behaviour


def test_completions_and_chat_answer_by_the_instruction(sim) -> None:
    status, _, text = completion(sim.base_url)
    assert status == 200
    body = json.loads(text)
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == " cats"
    assert body["usage"]["prompt_tokens"] == count_tokens(PROMPT)

    status, _, text = http(f"{sim.base_url}/chat/completions", {
        "model": "sim-model", "max_tokens": 16,
        "messages": [{"role": "user", "content": PROMPT.replace("plural", "first letter")}]})
    assert status == 200
    body = json.loads(text)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "c"}


def test_stats_count_requests_and_tokens(sim) -> None:
    before = stats(sim.base_url)
    for word in ("cat", "dog", "cat"):
        assert completion(sim.base_url, PROMPT.replace("cat", word))[0] == 200
    assert completion(sim.base_url, model="unknown")[0] == 404
    after = stats(sim.base_url)
    assert after["requests"] - before["requests"] == 4
    assert after["ok"] - before["ok"] == 3
    assert after["not_found"] - before["not_found"] == 1
    assert after["prompt_tokens"] - before["prompt_tokens"] == 3 * count_tokens(PROMPT)
    assert after["repeated_prompts"] - before["repeated_prompts"] >= 1
    assert after["max_inflight"] >= 1


def test_models_lists_the_served_models(sim) -> None:
    status, _, text = http(f"{sim.base_url}/models")
    assert status == 200
    assert [m["id"] for m in json.loads(text)["data"]] == ["sim-model", "sim-other"]


def test_unknown_model_is_404(sim) -> None:
    status, _, text = completion(sim.base_url, model="gpt-4")
    assert status == 404
    assert json.loads(text)["error"]["code"] == "model_not_found"


def test_non_json_body_is_400(sim) -> None:
    status, _, _ = http(f"{sim.base_url}/completions", raw=b"{not json")
    assert status == 400


def test_api_key_is_enforced(simulator) -> None:
    s = simulator(api_key="sk-sim-key", noise=0.0)
    assert completion(s.base_url)[0] == 401
    assert completion(s.base_url, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert http(f"{s.base_url}/models")[0] == 401
    assert completion(s.base_url, headers={"Authorization": "Bearer sk-sim-key"})[0] == 200
    assert http(f"{s.base_url}/models", headers={"Authorization": "Bearer sk-sim-key"})[0] == 200
    st = stats(s.base_url)
    assert st["unauthorized"] == 2 and st["ok"] == 1 and st["requests"] == 3


def test_rpm_window_answers_429_with_retry_after(simulator) -> None:
    s = simulator(rpm=3)
    codes = [completion(s.base_url)[0] for _ in range(3)]
    assert codes == [200, 200, 200]
    status, headers, text = completion(s.base_url)
    assert status == 429
    assert json.loads(text)["error"]["code"] == "rate_limit_exceeded"
    retry_after = float(headers["Retry-After"])
    assert 55.0 < retry_after <= 60.0  # the oldest request leaves the 60 s window then
    st = stats(s.base_url)
    assert st["rate_limited"] == 1 and st["ok"] == 3
    assert st["window_max_requests"] == 3


def test_tpm_window_counts_prompt_and_max_tokens(simulator) -> None:
    s = simulator(tpm=100)
    prompt_tokens = count_tokens(PROMPT)
    max_tokens = 50 - prompt_tokens  # each request costs 50 tokens against the window
    assert completion(s.base_url, max_tokens=max_tokens)[0] == 200
    assert completion(s.base_url, max_tokens=max_tokens)[0] == 200
    status, headers, _ = completion(s.base_url, max_tokens=max_tokens)
    assert status == 429 and float(headers["Retry-After"]) > 0
    assert stats(s.base_url)["window_max_tokens"] == 100


def test_injected_faults(simulator) -> None:
    s = simulator(fail_429=1.0, retry_after_s=2.5)
    status, headers, _ = completion(s.base_url)
    assert status == 429 and headers["Retry-After"] == "2.5"
    s = simulator(fail_500=1.0)
    assert completion(s.base_url)[0] == 500
    s = simulator(malformed=1.0)
    status, _, text = completion(s.base_url)
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert stats(s.base_url)["injected_malformed"] == 1


def test_noise_replaces_answers_with_the_input_deterministically(simulator) -> None:
    noisy = simulator(noise=1.0)
    assert json.loads(completion(noisy.base_url)[2])["choices"][0]["text"] == " cat"
    a, b = simulator(noise=0.5, seed=9), simulator(noise=0.5, seed=9)
    words = ["cat", "dog", "tree", "book", "lamp", "song", "road", "ring", "star", "bird"]
    answers = [[json.loads(completion(s.base_url, PROMPT.replace("cat", w))[2])
                ["choices"][0]["text"].strip() for w in words] for s in (a, b)]
    assert answers[0] == answers[1]  # same seed, same answers
    wrong = sum(ans == w for ans, w in zip(answers[0], words, strict=True))
    assert 0 < wrong < len(words)


def test_reset_clears_stats(simulator) -> None:
    s = simulator()
    completion(s.base_url)
    assert stats(s.base_url)["requests"] == 1
    assert http(s.base_url.removesuffix("/v1") + "/reset", {})[0] == 200
    assert stats(s.base_url)["requests"] == 0


def test_command_line_arguments() -> None:
    cfg, host, port = parse_args(["--port", "8123", "--rpm", "600", "--latency-ms", "50-200",
                                  "--fail-429", "0.2", "--model", "a", "--model", "b",
                                  "--api-key", "k"])
    assert (host, port) == ("127.0.0.1", 8123)
    assert cfg.rpm == 600 and cfg.latency_ms == (50.0, 200.0) and cfg.fail_429 == 0.2
    assert cfg.models == ("a", "b") and cfg.api_key == "k"
