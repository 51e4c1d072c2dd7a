"""transformers backend: ``generate(inputs_embeds=...)``, batched with left padding.

For CPUs and for models vLLM lacks. Slower than vLLM on GPUs (no continuous batching).
"""

from __future__ import annotations

import torch

from izray.errors import GeneratorError
from izray.generation.base import Generator, ModelInfo, PromptAssembler

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class HFGenerator(Generator):
    """A transformers causal LM fed with soft prompts.

    Args:
        model: Local checkpoint directory or hub id.
        dtype: ``auto`` (float32 on CPU, bfloat16 on GPU) or an explicit dtype.
        max_new_tokens: Greedy tokens per instruction.
        max_batch: Prompts per forward batch.
        chat_template: Wrap the text in the tokenizer's chat template (``PromptAssembler``).
    """

    def __init__(self, model: str, *, dtype: str = "auto", max_new_tokens: int = 64,
                 max_batch: int = 16, chat_template: bool = False) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype = _DTYPES.get(dtype) or (torch.bfloat16 if device == "cuda" else torch.float32)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype).to(device)
        except (OSError, ValueError) as err:
            raise GeneratorError(f"transformers could not load {model}: "
                                 f"{str(err).splitlines()[0]}") from err
        self.model.eval()
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.max_batch = max_batch
        emb = self.model.get_input_embeddings()

        @torch.no_grad()
        def embed(ids: list[int]) -> torch.Tensor:
            return emb(torch.tensor(ids, device=device)).float().cpu()

        self.assembler = PromptAssembler(self.tokenizer, embed, chat=chat_template)
        sample = torch.randint(0, emb.num_embeddings, (4096,),
                               generator=torch.Generator().manual_seed(0))
        self.info = ModelInfo(model=model, backend="hf", hidden=int(emb.embedding_dim),
                              embed_std=float(embed(sample.tolist()).std()))
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id

    @torch.no_grad()
    def _generate_embeds(self, embeds: list[torch.Tensor],
                         sampling: list[tuple[float, int | None]]) -> list[str]:
        """Greedy requests in batches; sampled ones one at a time, each under its own seed
        (transformers samples from the global RNG, so a batch could not keep seeds apart)."""
        out: list[str | None] = [None] * len(embeds)
        greedy = [i for i, (t, _) in enumerate(sampling) if t <= 0]
        for start in range(0, len(greedy), self.max_batch):
            idx = greedy[start:start + self.max_batch]
            for i, text in zip(idx, self._batch([embeds[i] for i in idx]), strict=True):
                out[i] = text
        for i, (t, seed) in enumerate(sampling):
            if t > 0:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0 if seed is None else seed)
                    out[i] = self._batch([embeds[i]], temperature=t)[0]
        return [o or "" for o in out]

    def _batch(self, chunk: list[torch.Tensor], temperature: float = 0.0) -> list[str]:
        width = max(e.shape[0] for e in chunk)
        hidden = chunk[0].shape[1]
        batch = torch.zeros(len(chunk), width, hidden, dtype=self.model.dtype)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, e in enumerate(chunk):  # left padding: generation continues at the right end
            batch[i, width - e.shape[0]:] = e.to(self.model.dtype)
            mask[i, width - e.shape[0]:] = 1
        sample = ({"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0
                  else {"do_sample": False})
        tokens = self.model.generate(inputs_embeds=batch.to(self.device),
                                     attention_mask=mask.to(self.device),
                                     max_new_tokens=self.max_new_tokens,
                                     pad_token_id=self.pad_id, **sample)
        return self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
