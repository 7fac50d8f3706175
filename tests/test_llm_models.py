"""rdro.llm.models: loading Qwen2 / Llama checkpoints, architecture errors, recipes; SmolLM2 (slow)."""

from __future__ import annotations

import glob
import os
import time

import pytest
import torch

pytest.importorskip("transformers")

from rdro.llm.models import (  # noqa: E402
    apply_lora,
    check_architecture,
    freeze_bottom_layers,
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
    reloaded = load_tokenizer(str(tmp_path))
    assert reloaded.pad_token == "<pad>"
    text = "What is 2 plus 3 ?"  # the saved tokenizer, not a BPE rebuilt for the model type (Qwen2 dropped every word)
    ids = reloaded(text)["input_ids"]
    assert ids == tok(text)["input_ids"] and set(text.split()) <= set(reloaded.convert_ids_to_tokens(ids))


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


def _deep_tiny(model_type: str, n_layers: int = 4):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    cls = LlamaConfig if model_type == "llama" else Qwen2Config
    config = cls(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_frozen_bottom_layers_replay_the_same_outputs(model_type):
    """Replayed bottom layers give the logits of the intact model (right and left padding, explicit positions), the
    cache is filled once and shared by deep copies, the frozen layers get no gradient, the top layers do."""
    import copy

    intact = _deep_tiny(model_type)
    model = copy.deepcopy(intact)
    frozen = freeze_bottom_layers(model, 3)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 40, (3, 9), generator=gen)
    right = torch.ones_like(ids)
    right[0, 6:] = 0
    right[2, 4:] = 0

    def logits(m, ids, mask, **kw):
        return m(input_ids=ids, attention_mask=mask, use_cache=False, **kw).logits

    want = logits(intact, ids, right)
    first = logits(model, ids, right)  # computes the bottom layers and fills the cache
    assert frozen.stats == {"replayed_rows": 0, "computed_rows": 3} and len(frozen.cache) == 3
    again = logits(model, ids, right)  # replayed: the 3 bottom layers do not run
    assert frozen.stats["replayed_rows"] == 3
    real = right.bool()
    torch.testing.assert_close(first[real], want[real], rtol=0, atol=0)
    torch.testing.assert_close(again[real], want[real], rtol=1e-6, atol=1e-6)
    # the same rows left-padded with explicit positions (the sampler's layout), replayed from the right-padded pass
    lengths = right.sum(1)
    left_ids = torch.zeros_like(ids)
    left = torch.zeros_like(right)
    for b, n in enumerate(lengths.tolist()):
        left_ids[b, ids.shape[1] - n :] = ids[b, :n]
        left[b, ids.shape[1] - n :] = 1
    positions = (left.cumsum(1) - 1).clamp(min=0)
    replayed = logits(model, left_ids, left, position_ids=positions)
    assert frozen.stats["replayed_rows"] == 6
    torch.testing.assert_close(replayed[left.bool()], want[real], rtol=1e-5, atol=1e-5)
    # a deep copy (one per trained method) shares the cache; LoRA on the top layer trains, the frozen ones do not
    lora = apply_lora(copy.deepcopy(model), r=2, alpha=4, target_modules=["model.layers.3.self_attn.q_proj"])
    copied = lora.base_model.model.model.layers[0]
    assert copied.cache is frozen.cache
    before = dict(copied.stats)
    out = logits(lora, ids, right)
    assert copied.stats == {**before, "replayed_rows": before["replayed_rows"] + 3}  # served from the shared cache
    out[real].sum().backward()
    grads = {n: p.grad for n, p in lora.named_parameters() if p.requires_grad}
    assert grads and all("layers.3." in n and "lora_" in n for n in grads)
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())


def test_frozen_bottom_layers_generate_and_check_arguments():
    import copy

    intact = _deep_tiny("llama")
    model = copy.deepcopy(intact)
    freeze_bottom_layers(model, 2)
    prompt = torch.tensor([[5, 6, 7, 8]])
    kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
    # generation with a KV cache runs the frozen layers (they fill their part of the cache), same tokens
    assert torch.equal(model.generate(prompt, **kw), intact.generate(prompt, **kw))
    with pytest.raises(ValueError, match="n_bottom"):
        freeze_bottom_layers(copy.deepcopy(intact), 4)
    with pytest.raises(ValueError, match="n_bottom"):
        freeze_bottom_layers(copy.deepcopy(intact), 0)
    with pytest.raises(ValueError, match="frozen already"):
        freeze_bottom_layers(model, 1)


def _batch(vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[2, 9:] = 0
    targets = torch.full_like(ids, -100)
    targets[:, 4:10] = ids[:, 5:11]
    targets[2, 8:] = -100
    return ids, mask, targets


def test_lora_on_lm_head_is_not_skipped_by_the_fused_path(monkeypatch, caplog):
    """LoRA on lm_head: the fused path's values and the gradients reaching the head's adapter equal those of the full
    logits (it falls back to them, said once); modules_to_save=["lm_head"] keeps the fused op and agrees too."""
    import logging

    from peft import LoraConfig, get_peft_model

    import rdro.llm.kernels as kernels
    import rdro.llm.models as models

    monkeypatch.setattr(models, "_fused_fallback_logged", False)
    model = apply_lora(tiny_causal_lm("qwen2", 60), r=4, alpha=8, target_modules=["q_proj", "lm_head"])
    head = model.base_model.model.lm_head
    torch.nn.init.normal_(head.lora_B.default.weight)
    assert not models.lm_head_supports_fused(model)
    args = _batch(60)
    lora = [head.lora_A.default.weight, head.lora_B.default.weight]
    with caplog.at_level(logging.WARNING, logger="rdro.llm.models"):
        fused = models.sequence_logprobs_fused(model, *args)
        models.sequence_logprobs_fused(model, *args)
    full = models.sequence_logprobs_full_logits(model, *args)
    torch.testing.assert_close(fused, full)
    weights = torch.tensor([1.0, -0.5, 2.0])
    for g_fused, g_full in zip(torch.autograd.grad((fused * weights).sum(), lora),
                               torch.autograd.grad((full * weights).sum(), lora)):  # fmt: skip
        assert float(g_full.abs().sum()) > 0
        torch.testing.assert_close(g_fused, g_full)
    assert sum("not a plain nn.Linear" in r.getMessage() for r in caplog.records) == 1
    with model.disable_adapter():  # π_ref: the base head
        base = tiny_causal_lm("qwen2", 60)
        torch.testing.assert_close(models.sequence_logprobs_fused(model, *args),
                                   models.sequence_logprobs_full_logits(base, *args))  # fmt: skip

    saved = get_peft_model(tiny_causal_lm("qwen2", 60), LoraConfig(r=4, target_modules=["q_proj"],
                           modules_to_save=["lm_head"], task_type="CAUSAL_LM"))  # fmt: skip
    copy = saved.base_model.model.lm_head.modules_to_save["default"]
    with torch.no_grad():
        copy.weight.add_(torch.randn_like(copy.weight))
    assert models.lm_head_supports_fused(saved)
    calls = []
    original = kernels.sequence_logprobs
    monkeypatch.setattr(kernels, "sequence_logprobs", lambda *a, **k: calls.append(1) or original(*a, **k))
    fused = models.sequence_logprobs_fused(saved, *args)
    assert calls  # the fused op ran, on the trained copy of the head
    torch.testing.assert_close(fused, models.sequence_logprobs_full_logits(saved, *args), rtol=1e-5, atol=1e-4)
    g_fused = torch.autograd.grad(fused.sum(), copy.weight)[0]
    g_full = torch.autograd.grad(models.sequence_logprobs_full_logits(saved, *args).sum(), copy.weight)[0]
    torch.testing.assert_close(g_fused, g_full, rtol=1e-4, atol=1e-5)


def test_lora_target_modules_and_model_dtype_inputs(tmp_path):
    from rdro.llm.models import lora_target_modules

    assert apply_lora(tiny_causal_lm("qwen2", 60), target_modules="q_proj").peft_config["default"].target_modules == {
        "q_proj"
    }
    both = apply_lora(tiny_causal_lm("qwen2", 60), target_modules="q_proj,v_proj")
    assert both.peft_config["default"].target_modules == {"q_proj", "v_proj"}
    assert lora_target_modules("all-linear") == ["all-linear"]
    every = apply_lora(tiny_causal_lm("qwen2", 60), target_modules="all-linear")
    targets = {name.split(".")[-1] for name in every.peft_config["default"].target_modules}
    assert {"q_proj", "down_proj"} <= targets and "lm_head" not in targets  # peft's shorthand, not a module name
    with pytest.raises(ValueError, match="lora_target_modules must be a list of module names"):
        lora_target_modules({"q_proj": 1})
    tiny_causal_lm("qwen2", 60).save_pretrained(tmp_path)
    assert load_causal_lm(str(tmp_path), dtype="bfloat16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"model_dtype must be one of \['auto', 'bfloat16', 'float16', 'float32'\]"):
        load_causal_lm(str(tmp_path), dtype="bf16")
