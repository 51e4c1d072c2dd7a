"""Generator backends on the real small model: transformers in-process. (vLLM in a Ray actor
is checked against the served path in tests/test_generation_served_backend.py.)

The key property: the embeddings izray assembles are exactly what the model sees for text,
so a prompt built from embeddings continues exactly like the same text prompt.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from izray.generation import GenerationRequest, induction_text
from izray.generation.embeddings import EmbeddingTable
from izray.softprompt import SoftPromptProjection
from izray.tasks import load_task, make_splits

pytestmark = pytest.mark.slow

TEXT = "hot -> cold\nbig -> small\nfast ->"


@pytest.fixture(scope="module")
def hf(small_model):
    from izray.generation.hf_backend import HFGenerator

    return HFGenerator(str(small_model), max_new_tokens=12, max_batch=4)


def test_embedding_table_matches_the_models_input_embeddings(hf, small_model):
    table = EmbeddingTable(small_model)
    ids = hf.tokenizer(TEXT).input_ids
    with torch.no_grad():
        ref = hf.model.get_input_embeddings()(torch.tensor(ids)).float()
    assert table.hidden == 640 and table.multiplier == pytest.approx(640 ** 0.5)
    torch.testing.assert_close(table.lookup(ids), ref, rtol=1e-5, atol=1e-5)
    assert 0.5 < table.std() < 2.0  # Gemma's scaled token embeddings have std ~1


def test_hf_embeddings_path_equals_text_path(hf):
    empty = np.zeros((0, 640), dtype=np.float32)
    via_embeds = hf._generate_embeds([hf.assembler.assemble(empty, TEXT)], [(0.0, None)])[0]
    ids = hf.tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        out = hf.model.generate(ids, max_new_tokens=12, do_sample=False)
    via_text = hf.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert via_embeds == via_text
    assert via_text.strip().startswith("slow")


def test_hf_batched_soft_prompts_give_one_instruction_each(hf):
    task = load_task("larger_number")
    text = induction_text(make_splits(task, 0).exemplars, "The instruction was to")
    proj = SoftPromptProjection.create(10, 5, 640, hf.info.embed_std, 1.0, seed=0)
    zs = np.random.default_rng(0).uniform(-1, 1, (3, 10))
    reqs = [GenerationRequest(f"k{i}", proj(z), text) for i, z in enumerate(zs)]
    padded = hf.generate(reqs)  # batch of 3 with left padding
    single = [hf.generate([r])[0] for r in reqs]  # one at a time, no padding
    assert [r.key for r in padded] == ["k0", "k1", "k2"]
    assert [r.raw for r in padded] == [r.raw for r in single]
    assert all("\n" not in r.instruction for r in padded)


def test_embedding_table_reads_pytorch_bin_checkpoints(small_model, tmp_path):
    """Older hub checkpoints ship only pytorch_model.bin; the table must read those too."""
    import shutil

    from safetensors.torch import load_file

    shutil.copy(small_model / "config.json", tmp_path / "config.json")
    state = load_file(str(next(small_model.glob("*.safetensors"))))
    torch.save({k: v for k, v in state.items() if "embed_tokens" in k},
               tmp_path / "pytorch_model.bin")
    ids = [2, 100, 5000, 262000]
    torch.testing.assert_close(EmbeddingTable(tmp_path).lookup(ids),
                               EmbeddingTable(small_model).lookup(ids))


def test_chat_template_wraps_the_prompt_and_base_models_refuse_it(hf):
    import copy

    from izray.errors import GeneratorError
    from izray.generation.base import PromptAssembler

    embed = hf.assembler.embed
    with pytest.raises(GeneratorError, match="no chat template"):
        PromptAssembler(hf.tokenizer, embed, chat=True)  # the shipped model is a base model
    tok = copy.deepcopy(hf.tokenizer)  # a chat model's tokenizer: Vicuna-style turns
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}USER: {{ m['content'] }}\n"
                         "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")
    chat = PromptAssembler(tok, embed, chat=True)
    assert chat.format(TEXT) == f"USER: {TEXT}\nASSISTANT:"  # bos comes from the prefix once
    soft = np.ones((2, 640), dtype=np.float32)
    got = chat.assemble(soft, TEXT)
    plain = hf.assembler.assemble(soft, f"USER: {TEXT}\nASSISTANT:")
    torch.testing.assert_close(got, plain)
    assert got.shape[0] > hf.assembler.assemble(soft, TEXT).shape[0]
