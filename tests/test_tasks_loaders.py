"""Tests of the task loaders: Instruction Induction files, JSONL files, built-ins, registry."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from izray.errors import TaskError
from izray.tasks import (
    ALL_24,
    BUILTIN_TASKS,
    ENV_DATA_DIR,
    TASK_METRICS,
    Example,
    Task,
    list_tasks,
    load_builtin_task,
    load_induction_task,
    load_jsonl_task,
    load_task,
    resolve_data_dir,
)
from izray.tasks.builtin import N_POOL, N_TEST, PLURALS

REPO_ROOT = Path(__file__).resolve().parents[1]


def one_line(err: pytest.ExceptionInfo[TaskError]) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


def raw_examples(data_dir: Path, split: str, name: str) -> list[dict]:
    data = json.loads((data_dir / split / f"{name}.json").read_text(encoding="utf-8"))
    return [data["examples"][k] for k in sorted(data["examples"], key=int)]


def write_json(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def ii_file(*examples: dict) -> dict:
    return {
        "metadata": {"num_examples": len(examples)},
        "examples": {str(i + 1): ex for i, ex in enumerate(examples)},
    }


# --------------------------------------------------------------------------------------------
# Example / Task
# --------------------------------------------------------------------------------------------


def test_example_stores_answers_as_tuple_and_rejects_none() -> None:
    example = Example("ox", ["oxen", "oxes"])  # type: ignore[arg-type]
    assert example.answers == ("oxen", "oxes")
    assert example.output == "oxen"
    assert hash(example) == hash(Example("ox", ("oxen", "oxes")))
    with pytest.raises(TaskError, match="no answers"):
        Example("ox", ())


def test_task_rejects_unknown_metric_and_empty_pool() -> None:
    pool = (Example("a", ("b",)),)
    with pytest.raises(TaskError, match="unknown metric 'bleu'"):
        Task(name="t", metric="bleu", pool=pool, test=None, source="x")
    with pytest.raises(TaskError, match="no examples"):
        Task(name="t", metric="f1", pool=(), test=None, source="x")
    with pytest.raises(TaskError, match="empty test split"):
        Task(name="t", metric="f1", pool=pool, test=(), source="x")


# --------------------------------------------------------------------------------------------
# Instruction Induction: the 24 shared tasks
# --------------------------------------------------------------------------------------------


def test_all_24_matches_the_shared_data(ii_data_dir: Path) -> None:
    names = sorted(p.stem for p in (ii_data_dir / "induce").glob("*.json"))
    assert names == sorted(ALL_24)
    assert len(ALL_24) == 24


@pytest.mark.parametrize("name", ALL_24)
def test_every_shared_task_loads(name: str, ii_data_dir: Path) -> None:
    task = load_induction_task(name, ii_data_dir)
    assert task.name == name
    assert task.metric == TASK_METRICS[name]
    assert task.source == str(ii_data_dir / "induce" / f"{name}.json")
    assert task.test is not None
    assert len(task.pool) == len(raw_examples(ii_data_dir, "induce", name))
    assert len(task.test) == len(raw_examples(ii_data_dir, "execute", name))
    for example in task.pool + task.test:
        assert isinstance(example.input, str) and example.input.strip()
        assert example.answers and all(
            isinstance(a, str) and a.strip() for a in example.answers
        )
        assert len(set(example.answers)) == len(example.answers)


def test_small_task_sizes(ii_data_dir: Path) -> None:
    sizes = {
        name: (len(t.pool), len(t.test or ()))
        for name in (
            "cause_and_effect",
            "common_concept",
            "informal_to_formal",
            "antonyms",
        )
        for t in [load_induction_task(name, ii_data_dir)]
    }
    assert sizes == {
        "cause_and_effect": (26, 25),
        "common_concept": (17, 16),
        "informal_to_formal": (15, 15),
        "antonyms": (2592, 100),
    }


def test_cause_and_effect_shape(ii_data_dir: Path) -> None:
    task = load_induction_task("cause_and_effect", ii_data_dir)
    raws = raw_examples(ii_data_dir, "induce", "cause_and_effect")
    cause_first = 0
    for example, raw in zip(task.pool, raws, strict=True):
        match = re.fullmatch(r"Sentence 1: (.+) Sentence 2: (.+)", example.input)
        assert match is not None
        assert {match.group(1), match.group(2)} == {raw["cause"], raw["effect"]}
        assert example.answers == (raw["cause"],)
        cause_first += match.group(1) == raw["cause"]
    assert 0 < cause_first < len(raws)  # both orders occur


def test_cause_and_effect_order_is_stable_across_processes(ii_data_dir: Path) -> None:
    here = [e.input for e in load_induction_task("cause_and_effect", ii_data_dir).pool]
    code = (
        "import json, sys; from izray.tasks import load_induction_task; "
        "print(json.dumps([e.input for e in "
        "load_induction_task('cause_and_effect', sys.argv[1]).pool]))"
    )
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO_ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", code, str(ii_data_dir)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert json.loads(out.stdout) == here


def test_common_concept_shape(ii_data_dir: Path) -> None:
    task = load_induction_task("common_concept", ii_data_dir)
    assert task.test is not None
    raws = raw_examples(ii_data_dir, "execute", "common_concept")
    for example, raw in zip(task.test, raws, strict=True):
        assert example.input == ", ".join(raw["items"])
        assert example.answers == tuple(dict.fromkeys(raw["all_common_concepts"]))


def test_rhymes_shape(ii_data_dir: Path) -> None:
    task = load_induction_task("rhymes", ii_data_dir)
    raws = raw_examples(ii_data_dir, "induce", "rhymes")
    for example, raw in zip(task.pool, raws, strict=True):
        assert example.input == raw["input"]
        assert example.answers[0] == raw["output"]
        assert set(example.answers) == set(raw["other_rhymes"]) | {raw["output"]}


@pytest.mark.parametrize(
    "name", ["translation_en-de", "translation_en-es", "translation_en-fr"]
)
def test_translation_shape(name: str, ii_data_dir: Path) -> None:
    task = load_induction_task(name, ii_data_dir)
    raws = raw_examples(ii_data_dir, "induce", name)
    assert any(len(e.answers) > 1 for e in task.pool)
    for example, raw in zip(task.pool, raws, strict=True):
        assert example.answers[0] == raw["output"]
        accepted = {
            t for t in raw["possible_translations"] if t.strip()
        }  # the data has ""
        assert set(example.answers) == accepted | {raw["output"]}


@pytest.mark.parametrize("name", ["antonyms", "word_in_context", "taxonomy_animal"])
def test_generic_tasks_use_input_and_output(name: str, ii_data_dir: Path) -> None:
    task = load_induction_task(name, ii_data_dir)
    raws = raw_examples(ii_data_dir, "induce", name)
    assert [(e.input, e.answers) for e in task.pool] == [
        (r["input"], (r["output"],)) for r in raws
    ]


def test_missing_execute_file_means_carved_test(tmp_path: Path) -> None:
    write_json(tmp_path / "induce" / "t.json", ii_file({"input": "a", "output": "b"}))
    task = load_induction_task("t", tmp_path)
    assert task.test is None
    assert task.pool == (Example("a", ("b",)),)
    assert task.metric == "exact_match"


def test_examples_are_ordered_by_numeric_id(tmp_path: Path) -> None:
    data = {
        "examples": {
            "10": {"input": "j", "output": "10"},
            "2": {"input": "b", "output": "2"},
        }
    }
    write_json(tmp_path / "induce" / "t.json", data)
    assert [e.input for e in load_induction_task("t", tmp_path).pool] == ["b", "j"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("t", "{not json", "not valid JSON"),
        ("t", json.dumps({"metadata": {}}), 'no "examples" object'),
        ("t", json.dumps([1, 2]), 'no "examples" object'),
        ("t", json.dumps({"examples": {}}), 'empty "examples"'),
        ("t", json.dumps({"examples": 3}), '"examples" must be an object'),
        (
            "t",
            json.dumps(ii_file({"input": "a"})),
            "example '1': field 'output' is missing",
        ),
        (
            "t",
            json.dumps(ii_file({"input": "a", "output": 5})),
            "field 'output' is missing or",
        ),
        (
            "t",
            json.dumps(ii_file({"input": " ", "output": "b"})),
            "field 'input' is empty",
        ),
        ("t", json.dumps(ii_file("just a string")), "expected an object"),
        ("cause_and_effect", json.dumps(ii_file({"cause": "x"})), "field 'effect'"),
        ("common_concept", json.dumps(ii_file({"items": "a, b"})), "field 'items'"),
        (
            "rhymes",
            json.dumps(ii_file({"input": "a", "output": "b"})),
            "field 'other_rhymes'",
        ),
        (
            "translation_en-xx",
            json.dumps(
                ii_file({"input": "a", "output": "b", "possible_translations": []})
            ),
            "field 'possible_translations' has no non-empty strings",
        ),
    ],
)
def test_bad_induction_files(
    name: str, content: str, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "induce" / f"{name}.json"
    path.parent.mkdir()
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TaskError) as info:
        load_induction_task(name, tmp_path)
    message = one_line(info)
    assert str(path) in message
    assert expected in message


def test_bad_execute_file_is_reported(tmp_path: Path) -> None:
    write_json(tmp_path / "induce" / "t.json", ii_file({"input": "a", "output": "b"}))
    bad = tmp_path / "execute" / "t.json"
    bad.parent.mkdir()
    bad.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(TaskError) as info:
        load_induction_task("t", tmp_path)
    assert str(bad) in one_line(info) and "UTF-8" in one_line(info)


def test_missing_induction_file(tmp_path: Path) -> None:
    with pytest.raises(TaskError) as info:
        load_induction_task("nope", tmp_path)
    assert "does not exist" in one_line(info) and "izray tasks" in one_line(info)


# --------------------------------------------------------------------------------------------
# JSONL
# --------------------------------------------------------------------------------------------


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_task_with_and_without_test_file(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "plurals.jsonl",
        '{"input": "cat", "output": "cats"}',
        "",
        '{"input": "ox", "outputs": ["oxen", "oxes", "oxen"]}',
    )
    task = load_jsonl_task("plurals", tmp_path)
    assert task.pool == (Example("cat", ("cats",)), Example("ox", ("oxen", "oxes")))
    assert task.test is None
    assert task.metric == "exact_match"
    assert task.source == str(tmp_path / "plurals.jsonl")

    write_lines(tmp_path / "plurals.test.jsonl", '{"input": "dog", "output": "dogs"}')
    task = load_jsonl_task("plurals", tmp_path, metric="contains")
    assert task.test == (Example("dog", ("dogs",)),)
    assert task.metric == "contains"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{bad json", "not valid JSON"),
        ('["input", "output"]', "expected a JSON object"),
        ('{"output": "x"}', '"input" is missing'),
        ('{"input": "x"}', 'exactly one of "output"'),
        ('{"input": "x", "output": "y", "outputs": ["y"]}', 'exactly one of "output"'),
        ('{"input": "x", "output": ""}', '"output" is empty'),
        ('{"input": "x", "outputs": "y"}', '"outputs" must be a list of strings'),
        ('{"input": "x", "outputs": [""]}', '"outputs" has no non-empty string'),
    ],
)
def test_bad_jsonl_lines_name_file_and_line(
    line: str, expected: str, tmp_path: Path
) -> None:
    path = write_lines(
        tmp_path / "t.jsonl",
        '{"input": "a", "output": "b"}',
        "",  # blank lines count in the numbering
        line,
    )
    with pytest.raises(TaskError) as info:
        load_jsonl_task("t", tmp_path)
    message = one_line(info)
    assert f"{path}:3:" in message
    assert expected in message


def test_bad_jsonl_test_file_is_reported(tmp_path: Path) -> None:
    write_lines(tmp_path / "t.jsonl", '{"input": "a", "output": "b"}')
    bad = write_lines(tmp_path / "t.test.jsonl", '{"input": "a"}')
    with pytest.raises(TaskError) as info:
        load_jsonl_task("t", tmp_path)
    assert f"{bad}:1:" in one_line(info)


def test_empty_jsonl_and_bad_metric(tmp_path: Path) -> None:
    write_lines(tmp_path / "empty.jsonl", "", "  ")
    with pytest.raises(TaskError) as info:
        load_jsonl_task("empty", tmp_path)
    assert "has no examples" in one_line(info)
    write_lines(tmp_path / "t.jsonl", '{"input": "a", "output": "b"}')
    with pytest.raises(TaskError, match="unknown metric 'accuracy'"):
        load_jsonl_task("t", tmp_path, metric="accuracy")
    with pytest.raises(TaskError, match="does not exist"):
        load_jsonl_task("missing", tmp_path)


# --------------------------------------------------------------------------------------------
# Built-in tasks
# --------------------------------------------------------------------------------------------

# SHA-256 prefixes of each built-in task's examples: generation must never change silently.
BUILTIN_DIGESTS = {
    "larger_number": "fb3643730d3046b6",
    "last_item": "33e039637a47a81b",
    "first_letter": "32e5527cf7732ba3",
    "plural": "b2ed4337a032852b",
    "smaller_number": "da3876f9acf9e515",
    "first_item": "fc4c5ccdbff50bdd",
    "reverse_word": "7b19bcd6cc61538e",
    "add_one": "69ad81f3dd2d981e",
}


def digest(task: Task) -> str:
    blob = json.dumps(
        [[e.input, list(e.answers)] for e in task.pool + (task.test or ())]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", BUILTIN_TASKS)
def test_builtin_task_shape(name: str) -> None:
    task = load_builtin_task(name)
    assert (task.name, task.metric, task.source) == (name, "exact_match", "builtin")
    assert task.test is not None
    assert (len(task.pool), len(task.test)) == (N_POOL, N_TEST) == (200, 50)
    pool_inputs = [e.input for e in task.pool]
    test_inputs = [e.input for e in task.test]
    assert len(set(pool_inputs)) == N_POOL and len(set(test_inputs)) == N_TEST
    assert not set(pool_inputs) & set(test_inputs)
    assert digest(task) == BUILTIN_DIGESTS[name]


def test_builtin_answers_are_correct() -> None:
    plural_of = dict(PLURALS)
    for name, check in {
        "larger_number": lambda s: str(max(int(x) for x in s.split(", "))),
        "last_item": lambda s: s.split(", ")[-1],
        "first_letter": lambda s: s[0],
        "plural": lambda s: plural_of[s],
        "smaller_number": lambda s: str(min(int(x) for x in s.split(", "))),
        "first_item": lambda s: s.split(", ")[0],
        "reverse_word": lambda s: s[::-1],
        "add_one": lambda s: str(int(s) + 1),
    }.items():
        task = load_builtin_task(name)
        for example in task.pool + (task.test or ()):
            assert example.answers == (check(example.input),), (name, example)
    numbers = [e.input.split(", ") for e in load_builtin_task("larger_number").pool]
    assert all(len(pair) == 2 and pair[0] != pair[1] for pair in numbers)
    sizes = {len(e.input.split(", ")) for e in load_builtin_task("last_item").pool}
    assert sizes == {3, 4, 5}


def test_plural_list_has_irregulars() -> None:
    plural_of = dict(PLURALS)
    assert len(PLURALS) >= 150 and len(plural_of) == len(PLURALS)
    assert plural_of["child"] == "children" and plural_of["mouse"] == "mice"
    assert plural_of["fox"] == "foxes" and plural_of["city"] == "cities"


def test_builtin_generation_is_stable_across_processes() -> None:
    code = (
        "import hashlib, json; from izray.tasks import load_builtin_task; "
        "t = load_builtin_task('last_item'); "
        "print(hashlib.sha256(json.dumps([[e.input, list(e.answers)] "
        "for e in t.pool + t.test]).encode()).hexdigest()[:16])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "987", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == BUILTIN_DIGESTS["last_item"]


def test_unknown_builtin() -> None:
    with pytest.raises(TaskError, match="not a built-in task"):
        load_builtin_task("antonyms")


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@pytest.fixture
def no_env_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)


@pytest.fixture
def mixed_dir(tmp_path: Path) -> Path:
    write_json(
        tmp_path / "induce" / "alpha.json", ii_file({"input": "a", "output": "b"})
    )
    write_json(
        tmp_path / "induce" / "both.json", ii_file({"input": "ii", "output": "ii"})
    )
    write_json(
        tmp_path / "execute" / "both.json", ii_file({"input": "x", "output": "y"})
    )
    write_lines(tmp_path / "both.jsonl", '{"input": "jsonl", "output": "jsonl"}')
    write_lines(
        tmp_path / "beta.jsonl",
        *[f'{{"input": "{i}", "output": "o"}}' for i in range(7)],
    )
    write_lines(tmp_path / "beta.test.jsonl", '{"input": "t", "output": "o"}')
    write_lines(tmp_path / "plural.jsonl", '{"input": "shadowed", "output": "x"}')
    return tmp_path


def test_resolve_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    assert resolve_data_dir(None) is None
    assert resolve_data_dir("") is None
    assert resolve_data_dir(str(tmp_path)) == tmp_path
    monkeypatch.setenv(ENV_DATA_DIR, "/from/env")
    assert resolve_data_dir(None) == Path("/from/env")
    assert resolve_data_dir(tmp_path) == tmp_path  # the argument wins
    monkeypatch.setenv(ENV_DATA_DIR, "~/data")
    assert resolve_data_dir(None) == Path.home() / "data"


def test_list_tasks_builtins_only(no_env_data_dir: None) -> None:
    infos = list_tasks(None)
    assert [i.name for i in infos] == list(BUILTIN_TASKS)
    assert {(i.kind, i.n_pool, i.n_test, i.source) for i in infos} == {
        ("builtin", 200, 50, "builtin")
    }


def test_list_tasks_shared_data(ii_data_dir: Path) -> None:
    infos = list_tasks(str(ii_data_dir))
    assert [i.name for i in infos] == list(BUILTIN_TASKS) + sorted(ALL_24)
    by_name = {i.name: i for i in infos}
    assert by_name["common_concept"].kind == "instruction_induction"
    assert (by_name["common_concept"].n_pool, by_name["common_concept"].n_test) == (
        17,
        16,
    )
    assert by_name["synonyms"].metric == "contains"
    assert by_name["antonyms"].source == str(ii_data_dir / "induce" / "antonyms.json")


def test_list_tasks_mixed_dir(mixed_dir: Path) -> None:
    infos = {i.name: i for i in list_tasks(mixed_dir)}
    assert set(infos) == set(BUILTIN_TASKS) | {"alpha", "both", "beta"}
    assert (
        infos["alpha"].kind == "instruction_induction" and infos["alpha"].n_test is None
    )
    assert infos["both"].kind == "instruction_induction"  # induce/ wins over .jsonl
    assert (infos["beta"].kind, infos["beta"].n_pool, infos["beta"].n_test) == (
        "jsonl",
        7,
        1,
    )
    assert infos["plural"].kind == "builtin"  # built-ins shadow data files


def test_load_task_resolution_order(mixed_dir: Path) -> None:
    assert load_task("both", mixed_dir).pool == (Example("ii", ("ii",)),)
    assert load_task("plural", mixed_dir).source == "builtin"
    beta = load_task("beta", mixed_dir)
    assert beta.source == str(mixed_dir / "beta.jsonl") and beta.test is not None
    with pytest.raises(TaskError, match="not found"):
        load_task("beta.test", mixed_dir)  # a test file is not a task of its own


def test_load_task_from_env(monkeypatch: pytest.MonkeyPatch, ii_data_dir: Path) -> None:
    monkeypatch.setenv(ENV_DATA_DIR, str(ii_data_dir))
    task = load_task("antonyms")
    assert task.source == str(ii_data_dir / "induce" / "antonyms.json")


def test_load_task_metric_override(ii_data_dir: Path) -> None:
    assert load_task("antonyms", ii_data_dir).metric == "exact_match"
    assert load_task("antonyms", ii_data_dir, metric="contains").metric == "contains"
    assert load_task("plural", metric="f1").metric == "f1"
    assert (
        load_builtin_task("plural").metric == "exact_match"
    )  # the cached task is untouched
    with pytest.raises(TaskError) as info:
        load_task("antonyms", ii_data_dir, metric="accuracy")
    assert "unknown metric 'accuracy'" in one_line(info)


def test_unknown_task_suggests_close_names(ii_data_dir: Path) -> None:
    with pytest.raises(TaskError) as info:
        load_task("antonymz", ii_data_dir)
    message = one_line(info)
    assert f"task 'antonymz' not found in {ii_data_dir}" in message
    assert f"izray tasks --data-dir {ii_data_dir}" in message
    assert "did you mean 'antonyms'" in message


def test_unknown_task_without_data_dir(no_env_data_dir: None) -> None:
    with pytest.raises(TaskError) as info:
        load_task("plurl")
    message = one_line(info)
    assert "no data directory is set" in message and "did you mean 'plural'" in message
    with pytest.raises(TaskError) as info:
        load_task("antonyms")
    assert "Instruction Induction task" in one_line(info) and ENV_DATA_DIR in one_line(
        info
    )
    with pytest.raises(TaskError) as info:
        load_task("zzzzzz")
    assert "did you mean" not in one_line(info)


@pytest.mark.parametrize("name", ["", "../antonyms", "a/b", ".hidden", " antonyms"])
def test_invalid_task_names(name: str, ii_data_dir: Path) -> None:
    with pytest.raises(TaskError) as info:
        load_task(name, ii_data_dir)
    assert "invalid task name" in one_line(info)


def test_missing_or_empty_data_dir(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for call in (lambda: list_tasks(missing), lambda: load_task("plural", missing)):
        with pytest.raises(TaskError) as info:
            call()
        assert f"data directory {missing} does not exist" in one_line(info)
    a_file = write_lines(tmp_path / "file.txt", "x")
    with pytest.raises(TaskError) as info:
        list_tasks(a_file)
    assert "is not a directory" in one_line(info)
    empty = tmp_path / "empty"
    (empty / "induce").mkdir(parents=True)
    (empty / "notes.txt").write_text("no tasks here")
    for call in (lambda: list_tasks(empty), lambda: load_task("antonyms", empty)):
        with pytest.raises(TaskError) as info:
            call()
        assert f"data directory {empty} contains no tasks" in one_line(info)


def test_env_data_dir_that_does_not_exist(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "gone"))
    with pytest.raises(TaskError) as info:
        list_tasks()
    assert "does not exist" in one_line(info) and ENV_DATA_DIR in one_line(info)
