"""rdro.llm.models: loading Qwen2 / Llama checkpoints, architecture errors, recipes; SmolLM2 (slow)."""

from __future__ import annotations

import glob
import os
import time

import pytest
import torch

pytest.importorskip("transformers")

from rdro.llm.models import (  # noqa: E402
    check_architecture,
    load_causal_lm,
    load_tokenizer,
    resolve_model_path,
    tiny_causal_lm,
    word_level_tokenizer,
)

RECIPES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "llm", "recipes", "*.yaml")))


@pytest.fixture(scope="module")
def tok():
    return word_level_tokenizer(["What is 2 plus 3 ?", "It is 5 ."])


@pytest.mark.parametrize("model_type,cls", [("qwen2", "Qwen2ForCausalLM"), ("llama", "LlamaForCausalLM")])
def test_load_local_checkpoint(tmp_path, tok, model_type, cls):
    model = tiny_causal_lm(model_type, len(tok))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = load_causal_lm(str(tmp_path))
    assert type(loaded).__name__ == cls
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert load_tokenizer(str(tmp_path)).pad_token == "<pad>"


def test_unknown_architecture_and_bad_paths(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unsupported model architecture 'gpt2'"):
        load_causal_lm(str(tmp_path))
    with pytest.raises(ValueError, match="unsupported model architecture"):
        check_architecture(GPT2Config())
    with pytest.raises(ValueError, match="is not a local folder or .gguf file"):
        resolve_model_path(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="gguf_file 'x.gguf' not found"):
        resolve_model_path(str(tmp_path), "x.gguf")
    with pytest.raises(ValueError, match="model_type must be one of"):
        tiny_causal_lm("gpt2", 10)


@pytest.mark.parametrize("recipe", RECIPES, ids=[os.path.basename(r) for r in RECIPES])
def test_paper_recipes_hold_the_paper_settings(recipe):
    from rdro.llm.train import build_config

    assert len(RECIPES) == 4
    # fp16 needs a GPU; everything else is checked as written
    cfg = build_config(recipe, {"fp16": False, "output_dir": "unused"})
    assert cfg.learning_rate == 5e-7 and cfg.lr_scheduler_type == "cosine" and cfg.warmup_steps == 0.1
    assert cfg.max_length == 1024 and cfg.max_prompt_length == 512 and cfg.seed == 42 and cfg.num_train_epochs == 1
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * 8 == 128  # 8 GPUs
    assert cfg.gradient_checkpointing and cfg.loss == "rdro" and cfg.alpha == "auto"
    with open(recipe) as f:
        assert "fp16: true" in f.read()


# --------------------------------------------------------------------------- the real SmolLM2-135M (slow)


@pytest.mark.slow
def test_smollm2_gguf_converts_and_loads_fast():
    from rdro.llm.models import smollm2_model_dir

    folder = smollm2_model_dir()  # converts once (≈ 30 s), cached afterwards
    t0 = time.perf_counter()
    model = load_causal_lm("smollm2-135m-instruct")
    assert time.perf_counter() - t0 < 5.0  # < 1 s on an idle machine; generous for a shared one
    assert type(model).__name__ == "LlamaForCausalLM" and folder.endswith("SmolLM2-135M-Instruct")
    tok = load_tokenizer("smollm2-135m-instruct")
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 plus 2?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=32, do_sample=False)
    assert "4" in tok.decode(out[0, ids["input_ids"].shape[1] :])
    # the GGUF itself loads too (dequantised, unmarked so that it can be trained), with the same weights
    from rdro.llm.models import smollm2_gguf_path

    direct = load_causal_lm(smollm2_gguf_path())
    assert not getattr(direct.config, "quantization_config", None) and direct.hf_quantizer is None
    torch.testing.assert_close(direct.model.embed_tokens.weight, model.model.embed_tokens.weight)


@pytest.mark.slow
def test_smollm2_lora_rdro_trains(tmp_path):
    from rdro.llm.train import main

    recipe = os.path.join(os.path.dirname(__file__), "..", "examples", "smollm2_cpu_lora.yaml")
    data = os.path.join(os.path.dirname(__file__), "..", "llm", "data", "arithmetic_preferences.jsonl")
    args = [
        "--config",
        recipe,
        "--dataset",
        data,
        "--output_dir",
        str(tmp_path),
        "--max_steps",
        "4",
        "--save_steps",
        "4",
    ]
    assert main(args) == 0
    assert os.path.isfile(tmp_path / "final" / "adapter_model.safetensors")
