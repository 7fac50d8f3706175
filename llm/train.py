"""``rdro train --config recipe.yaml [--key value ...]``: align a causal LM with RDRO or a baseline.

The recipe is a flat YAML mapping of :class:`rdro.llm.trainer.RDROConfig` fields (all of transformers'
``TrainingArguments`` plus ``loss``, ``alpha``, ``model_name_or_path``, ``dataset``, ...); ``--key value``
pairs override it (values parsed as YAML: ``--learning_rate 1e-6 --use_lora true``). Runs as is on
one device, and under ``accelerate launch --config_file <rdro/llm/accelerate_configs/...> -m rdro.cli
train ...`` on many (DDP, FSDP, DeepSpeed ZeRO-3 with CPU offload).

Output (``output_dir``): checkpoints (``checkpoint-N``, resumable with ``--resume_from_checkpoint``),
logs (``report_to``: tensorboard / wandb), the final model + tokenizer in ``output_dir/final`` and
``output_dir/run_config.json`` (the full configuration, seed included).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib.util
import json
import os
import shutil
import sys
import types
import typing

import yaml

from rdro.results import atomic_write_text

__all__ = ["main", "parse_overrides", "build_config", "run"]


#: YAML 1.1's booleans besides true/false: text on the command line (``--save_strategy no``), read as booleans by
#: boolean fields only (:func:`_check_value_types`)
_YAML11_BOOLEANS = {"yes": True, "no": False, "on": True, "off": False, "y": True, "n": False}


def _yaml_value(text, parse: bool = True):
    """``text`` read as a YAML scalar (``parse``: a command-line value; else a recipe's value, parsed already), also
    reading exponent floats without a dot ("1e-5"), which YAML 1.1 leaves as strings. A command-line yes / no / on /
    off / y / n stays text."""
    value = yaml.safe_load(text) if parse and isinstance(text, str) else text
    if isinstance(value, bool) and isinstance(text, str) and text.lower() in _YAML11_BOOLEANS:
        return text
    if isinstance(value, str):
        try:
            return (
                float(value) if any(c in value.lower() for c in ".e") and value.lower() not in ("nan", "inf") else value
            )
        except ValueError:
            return value
    return value


def parse_overrides(tokens: list[str]) -> dict:
    """``["--lr", "1e-5", "--use_lora", "--x=3"]`` → ``{"lr": 1e-5, "use_lora": True, "x": 3}`` (YAML-typed)."""
    out, i = {}, 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) <= 2:
            raise ValueError(f"expected --key value overrides, got {tok!r}")
        key = tok[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            value = tokens[i + 1]
            i += 2
        else:
            value = "true"
            i += 1
        out[key.replace("-", "_")] = _yaml_value(value)
    return out


_TYPE_NAMES = {
    bool: "a boolean (true/false)",
    int: "an integer",
    float: "a number",
    str: "a string",
    type(None): "null",
}


def _check_value_types(values: dict, cls) -> dict:
    """Check each value against the type annotation of its ``cls`` field (only fields typed with bool / int / float /
    str / None / an enum / a Literal; others, such as lists and dicts, are left to the config): a wrong type is a
    ValueError naming the key and the expected type. An integral float for an int field (``1e3``) becomes an int.
    Returns the checked values."""
    hints = typing.get_type_hints(cls)
    out = dict(values)
    for key, value in values.items():
        hint = hints[key]
        union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        parts = typing.get_args(hint) if union else (hint,)
        allowed = set()
        for part in parts:
            if typing.get_origin(part) is typing.Literal:
                if value in typing.get_args(part):
                    allowed = None
                    break
            elif isinstance(part, type) and issubclass(part, enum.Enum):
                allowed.add(str)
            elif part in _TYPE_NAMES:
                allowed.add(part)
            else:  # a list, dict or other type: not checked here
                allowed = None
                break
        if not allowed or any(type(value) is t for t in allowed):
            continue
        if float in allowed and type(value) is int:
            continue
        if int in allowed and type(value) is float and value.is_integer():
            out[key] = int(value)
            continue
        if bool in allowed and isinstance(value, str) and value.lower() in _YAML11_BOOLEANS:
            out[key] = _YAML11_BOOLEANS[value.lower()]
            continue
        expected = " or ".join(_TYPE_NAMES[t] for t in sorted(allowed, key=list(_TYPE_NAMES).index))
        hint = " (YAML reads an unquoted yes/no/on/off as a boolean: quote it)" if type(value) is bool else ""
        raise ValueError(f"{key} must be {expected}, got {value!r} ({type(value).__name__}){hint}")
    return out


def build_config(config_path: str | None, overrides: dict):
    """The :class:`RDROConfig` from a YAML recipe plus overrides; unknown keys are an error."""
    from rdro.llm.trainer import RDROConfig

    values = {}
    if config_path is not None:
        if not os.path.isfile(config_path):
            raise ValueError(f"--config {config_path!r} is not a file")
        with open(config_path) as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"recipe {config_path!r} must be a YAML mapping of RDROConfig fields")
    values = {k: _yaml_value(v, parse=False) for k, v in values.items()}
    values.update(overrides)
    known = {f.name for f in dataclasses.fields(RDROConfig) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown recipe key(s) {unknown}; see `rdro train --help` and RDROConfig's fields")
    for key in ("model_name_or_path", "dataset", "output_dir"):
        if not values.get(key):
            raise ValueError(f"the recipe needs {key!r} (set it in the YAML or pass --{key} ...)")
    return RDROConfig(**_check_value_types(values, RDROConfig))


def _check_launcher() -> None:
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" and not importlib.util.find_spec(
        "deepspeed"
    ):
        raise ValueError(
            "this run was launched with a DeepSpeed accelerate config but deepspeed is not installed: "
            "`pip install 'rdro[deepspeed]'` (needs a CUDA toolchain), or use the ddp / fsdp configs"
        )


def _sharded_launch(args) -> bool:
    env = os.environ
    return (
        env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
        or env.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
        or bool(args.deepspeed)
        or bool(args.fsdp)
    )


def run(args) -> str:
    """Load tokenizer, model (+ LoRA), reference (when needed), data; train; save. Returns the final folder."""
    from rdro.llm.data import load_preference_dataset, to_unpaired, tokenize_dataset
    from rdro.llm.models import apply_lora, load_causal_lm, load_tokenizer
    from rdro.llm.trainer import RDROTrainer

    tokenizer = load_tokenizer(args.model_name_or_path, args.gguf_file)
    with args.main_process_first(desc="load and tokenise the dataset"):
        rows = tokenize_dataset(
            to_unpaired(load_preference_dataset(args.dataset, args.dataset_split)),
            tokenizer,
            args.max_length,
            args.max_prompt_length,
        )
    model = load_causal_lm(args.model_name_or_path, args.gguf_file, args.model_dtype)
    on_the_fly = not args.precompute_ref_logprobs or args.loss == "kto"
    ref_model = None
    if args.loss != "sft" and (args.ref_model_name_or_path or (not args.use_lora and _sharded_launch(args))):
        ref_gguf = None if args.ref_model_name_or_path else args.gguf_file  # the policy's checkpoint: its GGUF file too
        ref_model = load_causal_lm(args.ref_model_name_or_path or args.model_name_or_path, ref_gguf, args.model_dtype)
    elif args.loss != "sft" and not args.use_lora and on_the_fly:
        ref_model = load_causal_lm(args.model_name_or_path, args.gguf_file, args.model_dtype)
    if args.use_lora:
        model = apply_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, args.lora_target_modules)
    trainer = RDROTrainer(model, args, rows, processing_class=tokenizer, ref_model=ref_model)
    del ref_model  # the trainer holds it, and frees it after the precompute pass
    if trainer.is_world_process_zero():
        os.makedirs(args.output_dir, exist_ok=True)
        meta = {
            "config": json.loads(args.to_json_string()),
            "seed": args.seed,
            "alpha": trainer.alpha,
            "rows": len(rows),
        }
        atomic_write_text(os.path.join(args.output_dir, "run_config.json"), json.dumps(meta, indent=1))
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    # written beside and renamed once complete, so that `final` is never half-written
    final = os.path.join(args.output_dir, "final")
    partial = final + ".partial"
    if trainer.is_world_process_zero():
        shutil.rmtree(partial, ignore_errors=True)  # left by a run killed while saving
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(partial)
    trainer.accelerator.wait_for_everyone()  # (some backends write from every process)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(partial)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
    return final


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(
        prog="rdro train",
        description="Align a Qwen2/Llama causal LM with RDRO (or ddro/kto/bco/dpo/sft) on preference data.",
        epilog="Any RDROConfig / TrainingArguments field can be given as --key value, overriding the recipe. "
        "Example: rdro train --config examples/smollm2_cpu_lora.yaml --max_steps 10",
    )
    ap.add_argument("--config", help="YAML recipe (see rdro/llm/recipes/ and examples/)")
    known, rest = ap.parse_known_args(argv)
    try:
        _check_launcher()
        args = build_config(known.config, parse_overrides(rest))
        final = run(args)
    except ValueError as exc:
        print(f"rdro train: error: {exc}", file=sys.stderr)
        return 2
    print(f"rdro train: done; final model in {final}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
