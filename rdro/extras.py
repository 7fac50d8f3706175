"""Optional dependencies: which extra of ``pyproject.toml`` installs which module, and one way to import them.

Heavy or optional parts (transformers, Triton, TRL, DeepSpeed, W&B, alpaca_eval, lm-eval) are imported
lazily; when one is missing, the error names the extra that installs it.
"""

from __future__ import annotations

import importlib
import types

__all__ = ["EXTRA_OF_MODULE", "import_optional"]

#: top-level module -> the extra of rdro that installs it
EXTRA_OF_MODULE = {
    "transformers": "llm",
    "accelerate": "llm",
    "peft": "llm",
    "datasets": "llm",
    "triton": "kernels",
    "trl": "crosscheck",
    "liger_kernel": "crosscheck",
    "deepspeed": "deepspeed",
    "wandb": "wandb",
    "alpaca_eval": "eval",
    "lm_eval": "eval",
}


def import_optional(name: str, purpose: str) -> types.ModuleType:
    """Import the optional module ``name``; if it (not one of its own imports) is missing, raise
    ``ModuleNotFoundError`` saying that ``purpose`` needs it and which extra installs it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        top = name.split(".")[0]
        if exc.name and exc.name.split(".")[0] == top:
            extra = EXTRA_OF_MODULE.get(top)
            how = f"pip install 'rdro[{extra}]'" if extra else f"pip install {top}"
            raise ModuleNotFoundError(f"{purpose} needs the optional package {top!r}: {how}", name=top) from exc
        raise
