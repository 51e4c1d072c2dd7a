"""Tests of izray.evaluation.cache: the sqlite response cache and its keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from izray.config import load_config
from izray.evaluation.cache import CachedAnswer, ResponseCache, cache_key, endpoint_settings

SETTINGS = {"base_url": "https://api.example.com/v1", "model": "gpt-x", "api": "chat",
            "temperature": 0.0, "max_tokens": 48, "stop": ["\n"]}
PROMPT = "Instruction: Write the plural.\n\nInput: cat\nOutput:"


@pytest.fixture()
def cache(tmp_path: Path):
    c = ResponseCache(tmp_path / "cache.sqlite")
    yield c
    c.close()


def test_put_get_round_trip(cache: ResponseCache) -> None:
    k1, k2 = cache_key(SETTINGS, PROMPT), cache_key(SETTINGS, PROMPT + " ")
    answer = CachedAnswer(" cats", 14, 2)
    cache.put_many({k1: answer, k2: CachedAnswer("", 15, 0)})
    got = cache.get_many([k1, k2, "missing"])
    assert got == {k1: answer, k2: CachedAnswer("", 15, 0)}  # an empty answer is an answer
    assert len(cache) == 2
    assert cache.get_many([]) == {}


def test_put_replaces_and_empty_put_is_a_no_op(cache: ResponseCache) -> None:
    k = cache_key(SETTINGS, PROMPT)
    cache.put_many({k: CachedAnswer("a", 1, 1)})
    cache.put_many({k: CachedAnswer("b", 2, 3)})
    cache.put_many({})
    assert cache.get_many([k]) == {k: CachedAnswer("b", 2, 3)}
    assert len(cache) == 1


def test_many_keys_past_the_sql_chunk(cache: ResponseCache) -> None:
    items = {cache_key(SETTINGS, f"prompt {i}"): CachedAnswer(f"answer {i}", i, 1)
             for i in range(1234)}
    cache.put_many(items)
    keys = list(items) + [cache_key(SETTINGS, "never stored")]
    got = cache.get_many(keys)
    assert got == items


def test_unicode_and_newlines_survive(cache: ResponseCache) -> None:
    prompt = "Instruction: Übersetze {x}\n\nInput: naïve — 東京\nOutput:"
    k = cache_key(SETTINGS, prompt)
    cache.put_many({k: CachedAnswer("東京\n2行目", 9, 4)})
    assert cache.get_many([k])[k].text == "東京\n2行目"


def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "run" / "nested" / "cache.sqlite"  # parent directories are created
    first = ResponseCache(path)
    k = cache_key(SETTINGS, PROMPT)
    first.put_many({k: CachedAnswer(" cats", 14, 2)})
    first.close()
    assert path.exists()
    second = ResponseCache(path)
    try:
        assert second.get_many([k]) == {k: CachedAnswer(" cats", 14, 2)}
        assert len(second) == 1
    finally:
        second.close()


def test_two_handles_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    a, b = ResponseCache(tmp_path / "c.sqlite"), ResponseCache(tmp_path / "c.sqlite")
    try:
        k = cache_key(SETTINGS, PROMPT)
        a.put_many({k: CachedAnswer("x", 1, 1)})
        assert b.get_many([k]) == {k: CachedAnswer("x", 1, 1)}
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------------------- keys


@pytest.mark.parametrize(("field", "value"), [
    ("base_url", "https://other.example.com/v1"),
    ("model", "gpt-y"),
    ("api", "completions"),
    ("temperature", 0.7),
    ("max_tokens", 49),
    ("stop", ["\n", "###"]),
    ("stop", None),
])
def test_key_changes_with_any_setting(field: str, value) -> None:
    changed = dict(SETTINGS, **{field: value})
    assert cache_key(changed, PROMPT) != cache_key(SETTINGS, PROMPT)


def test_key_covers_every_endpoint_setting() -> None:
    settings = endpoint_settings(load_config(None, ["evaluator.base_url=https://api.example.com/v1",
                                                    "evaluator.model=gpt-x"]))
    assert set(settings) == {"endpoint", "model", "api", "temperature", "max_tokens", "stop"}
    base = cache_key(settings, PROMPT)
    for name, value in settings.items():
        other = "something else" if not isinstance(value, (int, float)) else value + 1
        assert cache_key(dict(settings, **{name: other}), PROMPT) != base, name


@pytest.mark.parametrize("prompt", [PROMPT + " ", PROMPT.replace("cat", "Cat"), "", PROMPT[:-1]])
def test_key_changes_with_the_prompt(prompt: str) -> None:
    assert cache_key(SETTINGS, prompt) != cache_key(SETTINGS, PROMPT)


def test_key_ignores_setting_order_and_is_sha256_hex() -> None:
    reordered = dict(reversed(list(SETTINGS.items())))
    k = cache_key(SETTINGS, PROMPT)
    assert cache_key(reordered, PROMPT) == k
    assert len(k) == 64 and int(k, 16) >= 0


def test_key_does_not_mix_settings_and_prompt() -> None:
    # The prompt is a separate JSON field: no prompt can impersonate another setting.
    assert cache_key({"a": "b"}, "c") != cache_key({"a": "bc"}, "")
    assert cache_key({}, '"x"') != cache_key({}, "x")


def test_key_is_stable_across_processes() -> None:
    code = ("import json, sys; from izray.evaluation.cache import cache_key; "
            "s, p = json.load(sys.stdin); print(cache_key(s, p))")
    here = cache_key(SETTINGS, PROMPT)
    # Another process, with another str-hash seed than ours (the key must not use hash()).
    seed = "1" if os.environ.get("PYTHONHASHSEED") == "2" else "2"
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps([SETTINGS, PROMPT]),
                         capture_output=True, text=True, check=True, timeout=60,
                         env={**os.environ, "PYTHONHASHSEED": seed})
    assert out.stdout.strip() == here


def test_keys_need_no_secret() -> None:
    base = ["evaluator.base_url=https://api.example.com/v1", "evaluator.model=gpt-x"]
    variants = [base, [*base, "evaluator.api_key_env=OTHER_KEY"],
                [*base, "evaluator.api_key_file=/run/secrets/key"]]
    keys = {cache_key(endpoint_settings(load_config(None, v)), PROMPT) for v in variants}
    assert len(keys) == 1  # rotating the key keeps every cached answer usable
    # Credentials in the URL never reach the settings (they are journaled and hashed).
    secret = "sk-cache-test-SECRET-0f9e8d"
    with_creds = endpoint_settings(load_config(None, [
        f"evaluator.base_url=https://user:{secret}@api.example.com/v1", "evaluator.model=gpt-x"]))
    assert secret not in json.dumps(with_creds)
    assert with_creds["endpoint"] == "https://***@api.example.com/v1"


def test_embedded_endpoint_is_named_by_its_model_not_its_port() -> None:
    settings = endpoint_settings(load_config(None, []))  # no base_url: the embedded server
    assert settings["endpoint"].startswith("embedded:")


def test_the_database_holds_no_prompt_or_secret_in_clear(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    c = ResponseCache(path)
    c.put_many({cache_key(SETTINGS, "a distinctive prompt text"): CachedAnswer("y", 1, 1)})
    c.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"a distinctive prompt text" not in raw  # only its hash is stored
    assert b"api.example.com" not in raw



def test_a_journaled_answer_that_is_not_text_is_a_paid_call_without_an_answer(tmp_path):
    from izray.evaluation.ledger import read_journals

    (tmp_path / "w.jsonl").write_text("\n".join(json.dumps(d) for d in [
        {"id": "a", "key": "k1", "ok": True, "text": "cats", "attempts": 1},
        {"id": "b", "key": "k2", "ok": True, "text": ["cats"], "attempts": 1},
        {"id": "c", "key": "k3", "ok": True, "text": 7, "attempts": 2}]) + "\n")
    records = {r.id: r for r in read_journals(tmp_path)}
    assert set(records) == {"a", "b", "c"}  # every paid call is still accounted for
    assert records["a"].ok and records["a"].text == "cats"
    assert not records["b"].ok and records["b"].text is None and records["b"].error
    assert not records["c"].ok and records["c"].attempts == 2
