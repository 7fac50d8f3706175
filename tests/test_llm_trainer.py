"""RDROTrainer on tiny Qwen2 / Llama models (hidden 32, 2 layers, word-level tokenizer of the shipped data)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch

pytest.importorskip("transformers")

from rdro.llm.data import example_dataset_path, load_preference_dataset, to_unpaired, tokenize_dataset  # noqa: E402
from rdro.llm.models import tiny_causal_lm, word_level_tokenizer  # noqa: E402
from rdro.llm.trainer import RDROConfig, RDROTrainer  # noqa: E402

MAX_LEN, MAX_PROMPT = 40, 24


def _texts(ds):
    return [m["content"] for col in ("prompt", "completion") for conv in ds[col] for m in conv]


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    unpaired = to_unpaired(load_preference_dataset(example_dataset_path()))
    paired = to_unpaired(load_preference_dataset(example_dataset_path(paired=True)))
    tok = word_level_tokenizer(_texts(unpaired) + _texts(paired))
    return {
        "tok": tok,
        "rows": tokenize_dataset(unpaired, tok, MAX_LEN, MAX_PROMPT),
        "pairs": tokenize_dataset(paired, tok, MAX_LEN, MAX_PROMPT),
    }


def _config(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "out"),
        max_length=MAX_LEN,
        max_prompt_length=MAX_PROMPT,
        per_device_train_batch_size=8,
        learning_rate=5e-3,
        max_steps=20,
        use_cpu=True,
        seed=0,
        save_strategy="no",
        disable_tqdm=True,
        lr_scheduler_type="constant",
    )
    base.update(kw)
    return RDROConfig(**base)


def _losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _naive_sequence_logprobs(model, row):
    """Independent reference: full forward on one unpadded row, log-softmax, gather the completion tokens."""
    ids = torch.tensor([row["input_ids"]])
    logp = torch.log_softmax(model(input_ids=ids).logits.float()[0], dim=-1)
    start = row["completion_start"]
    return sum(logp[s - 1, ids[0, s]] for s in range(start, ids.shape[1]))


@pytest.mark.parametrize("model_type,tie", [("qwen2", False), ("llama", True)])
def test_sequence_logprobs_equal_naive(setup, tmp_path, model_type, tie):
    model = tiny_causal_lm(model_type, len(setup["tok"]), tie=tie)
    trainer = RDROTrainer(model, _config(tmp_path), setup["rows"], processing_class=setup["tok"])
    batch = trainer.data_collator([setup["rows"][i] for i in range(6)])  # padded, mixed lengths
    args = (batch["input_ids"], batch["attention_mask"], batch["targets"])
    fused = trainer._sequence_logprobs(model, *args)
    naive = torch.stack([_naive_sequence_logprobs(model, setup["rows"][i]) for i in range(6)])
    torch.testing.assert_close(fused, naive, rtol=1e-5, atol=1e-4)
    # gradients of the fused path equal those of the full-logits path (LM head and embeddings)
    head = model.get_output_embeddings().weight
    g_fused = torch.autograd.grad(fused.sum(), head)[0]
    trainer.use_fused = False
    g_full = torch.autograd.grad(trainer._sequence_logprobs(model, *args).sum(), head)[0]
    torch.testing.assert_close(g_fused, g_full, rtol=1e-4, atol=1e-5)


def test_gradient_filter_reaches_the_op_and_is_exact_at_tiny_eps(setup, tmp_path):
    """``logprob_grad_filter``: ε = 1e-30 gives the exact LM-head gradient; a large ε changes it (so the option
    reaches the op) while the log-probs themselves stay exact."""
    model = tiny_causal_lm("llama", len(setup["tok"]))
    batch = RDROTrainer(model, _config(tmp_path), setup["rows"], processing_class=setup["tok"]).data_collator(
        [setup["rows"][i] for i in range(6)]
    )
    args = (batch["input_ids"], batch["attention_mask"], batch["targets"])
    head = model.get_output_embeddings().weight
    results = {}
    for eps in (0.0, 1e-30, 0.2):
        trainer = RDROTrainer(model, _config(tmp_path, logprob_grad_filter=eps), setup["rows"], setup["tok"])
        logp = trainer._sequence_logprobs(model, *args)
        results[eps] = (logp.detach(), torch.autograd.grad((logp * torch.linspace(-1, 1, 6)).sum(), head)[0])
    torch.testing.assert_close(results[1e-30][1], results[0.0][1], rtol=1e-5, atol=1e-6)
    assert float((results[0.2][1] - results[0.0][1]).abs().max()) > 1e-4
    torch.testing.assert_close(results[0.2][0], results[0.0][0])
    with pytest.raises(ValueError, match="logprob_grad_filter must be a probability threshold"):
        _config(tmp_path, logprob_grad_filter=1.0)


@pytest.mark.parametrize("loss", ["rdro", "ddro", "kto", "bco", "dpo", "sft"])
def test_every_loss_runs_twenty_steps(setup, tmp_path, loss):
    model = tiny_causal_lm("qwen2", len(setup["tok"]))
    before = [p.detach().clone() for p in model.parameters()]
    rows = setup["pairs"] if loss == "dpo" else setup["rows"]
    bs = 4 if loss == "dpo" else 8  # DPO: pairs per device
    trainer = RDROTrainer(model, _config(tmp_path, loss=loss, per_device_train_batch_size=bs), rows, setup["tok"])
    trainer.train()
    losses = _losses(trainer)
    assert len(losses) == 20 and all(math.isfinite(v) for v in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    logged = trainer.state.log_history[0]
    assert "grad_norm" in logged
    if loss != "sft":
        assert {"logratio/preferred_mean", "logratio/nonpreferred_std", "rewards/accuracy"} <= set(logged)
        # at step 1 the policy equals the reference: t = 0 (cached reference log-probs are exact)
        assert abs(logged["logratio/preferred_mean"]) < 1e-4
    if loss == "kto":
        assert all("kl" in h for h in trainer.state.log_history if "loss" in h)


def test_fp16_with_half_precision_trainable_weights_is_refused(setup, tmp_path):
    """fp16 mixed precision uses a loss scaler, and torch's GradScaler cannot unscale fp16 gradients — on a GPU a
    float16 model trained in full with fp16=True would fail at the first step, after the reference pass. The trainer
    refuses it at construction; fp32 weights, and fp16 frozen weights with fp32 adapters, are accepted."""
    weight = torch.nn.Parameter(torch.ones(3, dtype=torch.float16))
    scaler, opt = torch.amp.GradScaler("cpu"), torch.optim.SGD([weight], lr=0.1)
    scaler.scale((2 * weight.float()).sum()).backward()
    with pytest.raises(ValueError, match="unscale FP16 gradients"):  # the failure the check prevents
        scaler.unscale_(opt)
    half = tiny_causal_lm("qwen2", len(setup["tok"])).to(torch.float16)
    with pytest.raises(ValueError, match="fp16=True .* float16 trainable parameters"):
        RDROTrainer(half, _config(tmp_path, fp16=True), setup["rows"], setup["tok"])
    RDROTrainer(half, _config(tmp_path), setup["rows"], setup["tok"])  # no loss scaler: accepted
    half.requires_grad_(False).lm_head.to(torch.float32).requires_grad_(True)  # frozen fp16 body, fp32 trainable part
    RDROTrainer(half, _config(tmp_path, fp16=True), setup["rows"], setup["tok"])


def test_logged_shares_near_and_beyond_the_bound(setup, tmp_path):
    """The log's shares of preferred rows with |t − log(1/α)| < 0.1 and with t > log(1/α) + 0.1, accumulated over
    two micro-batches, against a hand count."""
    trainer = RDROTrainer(tiny_causal_lm("qwen2", len(setup["tok"])), _config(tmp_path), setup["rows"], setup["tok"])
    bound = math.log(1 / trainer.alpha)
    t1, p1 = torch.tensor([bound, bound + 0.05, bound + 0.2, -1.0]), torch.tensor([True, True, True, False])
    t2, p2 = torch.tensor([bound + 1.0, 0.0, bound - 0.5]), torch.tensor([True, True, False])
    trainer._record_metrics(t1, p1, None)
    trainer._record_metrics(t2, p2, None)
    logs = {"loss": 0.0}
    trainer.log(logs)
    assert logs["logratio/preferred_near_log_inv_alpha"] == pytest.approx(2 / 5)  # bound, bound + 0.05
    assert logs["logratio/preferred_above_log_inv_alpha"] == pytest.approx(2 / 5)  # bound + 0.2, bound + 1
    assert logs["logratio/preferred_mean"] == pytest.approx((3 * bound + 0.25 + bound + 1.0) / 5)


def test_rdro_loss_falls(setup, tmp_path):
    model = tiny_causal_lm("llama", len(setup["tok"]))
    rows = setup["rows"].select(range(16))
    cfg = _config(tmp_path, per_device_train_batch_size=16, max_steps=15, learning_rate=1e-2)
    trainer = RDROTrainer(model, cfg, rows, setup["tok"])
    trainer.train()
    losses = _losses(trainer)
    alpha = trainer.alpha
    n_pos = sum(rows["label"])
    at_zero = (n_pos * (1 + alpha) + (16 - n_pos) * (1 - alpha)) * math.log(2) / 16  # closed form at t = 0
    assert losses[0] == pytest.approx(at_zero, rel=1e-5)
    assert losses[-1] < 0.6 * losses[0]
    assert trainer.state.log_history[-2]["rewards/accuracy"] > 0.9


def test_per_class_reduction_trains_with_one_class_micro_batches(setup, tmp_path):
    """Micro-batches of one row hold one class; per_class weights rows by the dataset's class balance."""
    model = tiny_causal_lm("llama", len(setup["tok"]))
    rows = setup["rows"].select(range(8))
    cfg = _config(tmp_path, reduction="per_class", per_device_train_batch_size=1, max_steps=4)
    trainer = RDROTrainer(model, cfg, rows, setup["tok"])
    trainer.train()
    losses = _losses(trainer)
    pi, alpha = trainer.dataset_preferred_fraction, trainer.alpha
    assert pi == pytest.approx(sum(rows["label"]) / 8)
    # step 1 (t = 0): the (shuffled) row's class gives (1 + α) log 2 / π+ or (1 − α) log 2 / (1 − π+)
    allowed = {(1 + alpha) * math.log(2) / pi, (1 - alpha) * math.log(2) / (1 - pi)}
    assert any(losses[0] == pytest.approx(v, rel=1e-5) for v in allowed), (losses[0], allowed)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)


def test_gradient_accumulation_matches_full_batch(setup, tmp_path):
    logs = []
    for bs, ga in ((8, 1), (4, 2)):
        model = tiny_causal_lm("qwen2", len(setup["tok"]))
        cfg = _config(tmp_path / f"ga{ga}", per_device_train_batch_size=bs, gradient_accumulation_steps=ga, max_steps=3)
        trainer = RDROTrainer(model, cfg, setup["rows"], setup["tok"])
        trainer.train()
        logs.append([h for h in trainer.state.log_history if "loss" in h])
    for a, b in zip(*logs):
        for key in ("loss", "grad_norm", "logratio/preferred_mean", "logratio/nonpreferred_std", "rewards/accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("loss", ["rdro", "bco"])
def test_resume_reproduces_loss_curve(setup, tmp_path, loss):
    def run(out, resume=None, max_steps=6):
        model = tiny_causal_lm("qwen2", len(setup["tok"]))
        cfg = _config(
            out, loss=loss, max_steps=max_steps, save_strategy="steps", save_steps=3, ref_cache_dir=str(tmp_path)
        )
        trainer = RDROTrainer(model, cfg, setup["rows"], setup["tok"])
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "a")
    first = run(tmp_path / "b", max_steps=6)
    ckpt = str(tmp_path / "b" / "out" / "checkpoint-3")
    if loss == "bco":
        assert os.path.isfile(os.path.join(ckpt, "bco_running_mean.json"))
    resumed = run(tmp_path / "c", resume=ckpt)
    assert _losses(first) == pytest.approx(_losses(full), rel=1e-6)
    assert len(_losses(resumed)) == 6  # the checkpoint's log history (steps 1-3) + steps 4-6 run after resuming
    assert _losses(resumed)[3:] == pytest.approx(_losses(full)[3:], rel=1e-5)
    if loss == "bco":
        assert resumed.bco_running_mean.mean == pytest.approx(full.bco_running_mean.mean, rel=1e-6)
        assert resumed.bco_running_mean.count == full.bco_running_mean.count


def test_reference_cache_is_reused_and_lora_reference_is_base(setup, tmp_path, monkeypatch):
    from rdro.llm.models import apply_lora

    model = apply_lora(tiny_causal_lm("qwen2", len(setup["tok"])), r=4, alpha=8)
    rows = setup["rows"].select(range(12))
    cfg = _config(tmp_path, max_steps=2, ref_cache_dir=str(tmp_path / "cache"))
    trainer = RDROTrainer(model, cfg, rows, setup["tok"])
    assert trainer.ref_model is None and trainer.is_lora
    torch.nn.init.normal_(model.base_model.model.model.layers[0].self_attn.q_proj.lora_B.default.weight)  # adapters on
    trainer.train()
    cached = torch.tensor(trainer.rows["ref_logprob"])
    with model.disable_adapter():
        base = torch.stack([_naive_sequence_logprobs(model, rows[i]) for i in range(12)])
    torch.testing.assert_close(cached, base.detach(), rtol=1e-5, atol=1e-4)
    assert len(os.listdir(tmp_path / "cache")) == 1
    # a second trainer with the same reference and data loads the cache instead of recomputing
    again = RDROTrainer(model, cfg, rows, setup["tok"])
    monkeypatch.setattr(RDROTrainer, "_reference_logprobs", lambda *a, **k: pytest.fail("recomputed the cache"))
    again._attach_reference_logprobs()
    torch.testing.assert_close(torch.tensor(again.rows["ref_logprob"]), cached)


def test_on_the_fly_reference_equals_cached(setup, tmp_path):
    rows = setup["rows"].select(range(8))
    t = {}
    for pre in (True, False):
        model = tiny_causal_lm("qwen2", len(setup["tok"]))
        trainer = RDROTrainer(
            model, _config(tmp_path / str(pre), max_steps=2, precompute_ref_logprobs=pre), rows, setup["tok"]
        )
        assert (trainer.ref_model is None) == pre
        trainer.train()
        t[pre] = [h["logratio/preferred_mean"] for h in trainer.state.log_history if "loss" in h]
    assert t[True] == pytest.approx(t[False], abs=1e-5)


@pytest.mark.parametrize("grad_filter", [0.0, 2.0**-12])
def test_bf16_gradient_checkpointing_runs(setup, tmp_path, grad_filter):
    model = tiny_causal_lm("llama", len(setup["tok"]))
    cfg = _config(tmp_path, max_steps=2, bf16=True, gradient_checkpointing=True, logprob_grad_filter=grad_filter)
    trainer = RDROTrainer(model, cfg, setup["rows"], setup["tok"])
    trainer.train()
    assert all(math.isfinite(v) for v in _losses(trainer))
    assert abs(trainer.state.log_history[0]["logratio/preferred_mean"]) < 0.05  # reference cached under bf16 too


def test_fused_head_runs_at_the_forward_autocast_precision(setup, tmp_path, monkeypatch):
    """Accelerate's mixed precision wraps model.forward in autocast, but the fused LM-head op runs after the forward
    returns: it must get the same autocast (bf16 inputs, the fast kernels), not the fp32 hidden states and weight.
    (On an H200 the fp32 fallback made rdro's trainer 0.58× TRL's tokens/s; with the autocast 1.81×.)"""
    import rdro.llm.kernels as kernels
    from rdro.llm.models import sequence_logprobs_fused

    model = tiny_causal_lm("llama", len(setup["tok"]))
    trainer = RDROTrainer(model, _config(tmp_path), setup["rows"], processing_class=setup["tok"])
    batch = trainer.data_collator([setup["rows"][i] for i in range(4)])
    args = (batch["input_ids"], batch["attention_mask"], batch["targets"])
    exact = sequence_logprobs_fused(model, *args)  # no autocast anywhere: fp32 throughout
    seen = []
    original = kernels.sequence_logprobs

    def spy(hidden, weight, *a, **kw):
        seen.append((torch.is_autocast_enabled("cpu"), hidden.dtype, weight.dtype))
        return original(hidden, weight, *a, **kw)

    monkeypatch.setattr(kernels, "sequence_logprobs", spy)
    forward = model.forward
    monkeypatch.setattr(model, "forward", torch.autocast("cpu", dtype=torch.bfloat16)(forward))  # as accelerate does
    mixed = sequence_logprobs_fused(model, *args)
    assert seen == [(True, torch.float32, torch.float32)]  # the op casts to bf16 itself under the autocast it sees
    assert mixed.dtype == torch.float32
    assert not torch.equal(mixed, exact)  # bf16 matmuls: close to, not equal to, the fp32 values
    torch.testing.assert_close(mixed, exact, rtol=2e-2, atol=0.5)


def test_sharded_lm_head_falls_back_to_full_logits_with_a_log_line(setup, tmp_path, monkeypatch, caplog):
    """Under FSDP / DeepSpeed ZeRO-3 the fused op cannot see the whole LM head: the trainer says so once and uses the
    full-logits path, whose values equal the fused ones."""
    import logging

    original = RDROTrainer.create_accelerator_and_postprocess

    def as_if_fsdp(self):
        original(self)
        self.is_fsdp_enabled = True  # what accelerate's FSDP plugin sets (it needs a GPU, so it is faked here)

    model = tiny_causal_lm("qwen2", len(setup["tok"]))
    fused = RDROTrainer(model, _config(tmp_path), setup["rows"], processing_class=setup["tok"])
    monkeypatch.setattr(RDROTrainer, "create_accelerator_and_postprocess", as_if_fsdp)
    with caplog.at_level(logging.WARNING, logger="rdro.llm.trainer"):
        sharded = RDROTrainer(model, _config(tmp_path), setup["rows"], processing_class=setup["tok"])
    assert fused.use_fused and not sharded.use_fused
    assert any("sharded LM head" in r.getMessage() and "full logits" in r.getMessage() for r in caplog.records)
    batch = fused.data_collator([setup["rows"][i] for i in range(4)])
    args = (batch["input_ids"], batch["attention_mask"], batch["targets"])
    torch.testing.assert_close(sharded._sequence_logprobs(model, *args), fused._sequence_logprobs(model, *args),
                               rtol=1e-5, atol=1e-4)  # fmt: skip
    # a head partitioned by a wrapper accelerate does not flag (here: DeepSpeed's marker) is caught at the first call
    caplog.clear()
    model.get_output_embeddings().weight.ds_id = 3
    with caplog.at_level(logging.WARNING, logger="rdro.llm.trainer"):
        fused._sequence_logprobs(model, *args)
    assert not fused.use_fused and any("sharded in this process" in r.getMessage() for r in caplog.records)
    del model.get_output_embeddings().weight.ds_id


def test_lm_head_is_sharded_detects_partitioned_weights():
    from rdro.llm.models import lm_head_is_sharded

    model = tiny_causal_lm("llama", 50)
    assert not lm_head_is_sharded(model)
    head = model.get_output_embeddings()
    head.weight.ds_id = 7  # DeepSpeed ZeRO-3 marks its partitioned parameters
    assert lm_head_is_sharded(model)
    del head.weight.ds_id
    whole = head.weight
    head.weight = torch.nn.Parameter(whole.detach().reshape(-1)[: whole.numel() // 2])  # an FSDP-1 flat shard
    assert lm_head_is_sharded(model)
    head.weight = torch.nn.Parameter(whole.detach()[:25])  # rows of the vocabulary only
    assert lm_head_is_sharded(model)


def test_config_and_trainer_errors(setup, tmp_path):
    with pytest.raises(ValueError, match="loss must be one of"):
        _config(tmp_path, loss="ppo")
    with pytest.raises(ValueError, match="alpha must lie strictly inside"):
        _config(tmp_path, alpha=1.5)
    with pytest.raises(ValueError, match="reduction"):
        _config(tmp_path, reduction="mean")
    # each loss's own default reduction: RDRO pools (the authors' code), DDRO's loss is per class (method.md §3)
    assert _config(tmp_path, loss="rdro").reduction == "pooled"
    assert _config(tmp_path, loss="ddro").reduction == "per_class"
    assert _config(tmp_path, loss="ddro", reduction="pooled").reduction == "pooled"
    model = tiny_causal_lm("qwen2", len(setup["tok"]))
    with pytest.raises(ValueError, match="lacks"):
        RDROTrainer(model, _config(tmp_path), setup["rows"].remove_columns("completion_start"), setup["tok"])
    with pytest.raises(ValueError, match="DPO needs paired data"):
        RDROTrainer(model, _config(tmp_path, loss="dpo"), setup["rows"], setup["tok"])
    one_class = setup["rows"].filter(lambda r: r["label"])
    with pytest.raises(ValueError, match="only preferred rows"):
        RDROTrainer(model, _config(tmp_path), one_class, setup["tok"])


# --------------------------------------------------------------------------- CLI and DDP


def _save_tiny(tmp_path, setup, model_type="qwen2"):
    path = tmp_path / model_type
    tiny_causal_lm(model_type, len(setup["tok"])).save_pretrained(path)
    setup["tok"].save_pretrained(path)
    return str(path)


def _recipe(tmp_path, model_dir, **kw):
    import yaml

    recipe = dict(
        model_name_or_path=model_dir,
        dataset=example_dataset_path(),
        output_dir=str(tmp_path / "run"),
        max_length=MAX_LEN,
        max_prompt_length=MAX_PROMPT,
        per_device_train_batch_size=4,
        max_steps=4,
        learning_rate=1e-3,
        use_cpu=True,
        save_steps=2,
        disable_tqdm=True,
    )
    recipe.update(kw)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_cli_trains_and_saves(setup, tmp_path):
    from rdro.llm.train import main

    recipe = _recipe(tmp_path, _save_tiny(tmp_path, setup, "llama"))
    assert main(["--config", recipe, "--max_steps", "2", "--use_lora", "--lora_r", "4"]) == 0
    run = tmp_path / "run"
    assert (run / "final" / "adapter_config.json").is_file() and (run / "checkpoint-2").is_dir()
    assert (run / "run_config.json").is_file()


def test_cli_final_model_is_never_half_written(setup, tmp_path, monkeypatch):
    """`rdro train` writes output_dir/final beside it and renames it once complete: a save cut short (here the
    tokenizer's) leaves no `final` folder; the next run replaces the leftover and an older `final`."""
    from rdro.llm.train import main

    recipe = _recipe(tmp_path, _save_tiny(tmp_path, setup, "llama"), save_strategy="no")
    import rdro.llm.models as models

    def tokenizer_that_cannot_be_saved(*args):  # the tokenizer is saved after the weights
        tok = load_tokenizer(*args)
        tok.save_pretrained = lambda *a, **k: 1 / 0
        return tok

    load_tokenizer = models.load_tokenizer
    monkeypatch.setattr(models, "load_tokenizer", tokenizer_that_cannot_be_saved)
    with pytest.raises(ZeroDivisionError):
        main(["--config", recipe, "--max_steps", "1"])
    run = tmp_path / "run"
    assert not (run / "final").exists() and (run / "final.partial" / "model.safetensors").is_file()
    monkeypatch.undo()
    (run / "final").mkdir()
    (run / "final" / "stale.txt").write_text("from an older run")
    assert main(["--config", recipe, "--max_steps", "1"]) == 0
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("final")) == ["final"]
    assert (run / "final" / "model.safetensors").is_file() and (run / "final" / "tokenizer.json").is_file()
    assert not (run / "final" / "stale.txt").exists()


def test_cli_errors(setup, tmp_path, capsys):
    from rdro.llm.train import main, parse_overrides

    assert parse_overrides(["--a", "1e-5", "--b", "--c=x"]) == {"a": 1e-5, "b": True, "c": "x"}
    recipe = _recipe(tmp_path, _save_tiny(tmp_path, setup))
    assert main(["--config", recipe, "--learning_rat", "1"]) == 2
    assert "unknown recipe key(s) ['learning_rat']" in capsys.readouterr().err
    assert main(["--config", recipe, "--model_name_or_path", str(tmp_path / "nope")]) == 2
    assert "is not a local folder" in capsys.readouterr().err


def _train_on_two_processes(recipe: str) -> None:
    """`rdro train` under `accelerate launch` with the shipped DDP config and 2 processes (`use_cpu: true` in the
    recipe makes them CPU processes, gloo)."""
    config = os.path.join(os.path.dirname(__file__), "..", "llm", "accelerate_configs", "multi_gpu_ddp.yaml")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, "--num_processes", "2"]
    cmd += ["-m", "rdro.cli", "train", "--config", recipe]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_ddp_two_processes_gloo(setup, tmp_path):
    """2-process DDP on CPU through `accelerate launch` with KTO (the loss with the most cross-process work: a placed
    reference model computed on the fly, the KL estimate averaged over processes)."""
    recipe = _recipe(tmp_path, _save_tiny(tmp_path, setup), max_steps=3, save_steps=3, loss="kto")
    _train_on_two_processes(recipe)
    state = json.loads((tmp_path / "run" / "checkpoint-3" / "trainer_state.json").read_text())
    # 3 steps × 2 processes × 4 rows of the 320-row dataset: twice the epoch progress of one process
    assert state["log_history"][-1]["epoch"] == pytest.approx(3 * 2 * 4 / 320)
    assert all(math.isfinite(h["loss"]) and "kl" in h for h in state["log_history"] if "loss" in h)
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


# --------------------------------------------------------------------------- review fixes


def test_kto_short_last_batch_keeps_the_previous_reference_point(setup, tmp_path, caplog):
    """5 rows in batches of 2: the epoch's last batch holds one row, which has no mismatched pair; its z0 is the
    previous step's estimate, said once in the log (it used to raise in the collator)."""
    import logging

    rows = setup["rows"].select(range(5))
    cfg = _config(tmp_path, loss="kto", per_device_train_batch_size=2, max_steps=-1, num_train_epochs=1)
    trainer = RDROTrainer(tiny_causal_lm("qwen2", len(setup["tok"])), cfg, rows, setup["tok"])
    with caplog.at_level(logging.WARNING, logger="rdro.llm.trainer"):
        trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 3 and all(math.isfinite(h["loss"]) and "kl" in h for h in logged)
    assert logged[2]["kl"] == logged[1]["kl"]
    assert sum("no mismatched pair" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ValueError, match="per_device_train_batch_size ≥ 2"):
        _config(tmp_path, loss="kto", per_device_train_batch_size=1)


def test_sft_gradient_does_not_depend_on_the_micro_batch_split(setup, tmp_path):
    """SFT's token mean is normalised by the preferred completion tokens of the whole effective batch, so the gradient
    of one optimiser step over the same 8 rows is the same for every (batch size, accumulation steps) split."""
    from transformers import TrainerCallback

    class KeepGrads(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

    rows = setup["rows"].select(range(8))
    assert len(set(n - s for n, s in zip(map(len, rows["input_ids"]), rows["completion_start"]))) > 1  # lengths vary
    grads, losses = [], []
    for bs, ga in ((8, 1), (4, 2), (2, 4), (1, 8)):
        keep = KeepGrads()
        cfg = _config(tmp_path / f"sft{bs}", loss="sft", per_device_train_batch_size=bs, gradient_accumulation_steps=ga,
                      max_steps=1)  # fmt: skip
        trainer = RDROTrainer(tiny_causal_lm("qwen2", len(setup["tok"])), cfg, rows, setup["tok"], callbacks=[keep])
        trainer.train()
        grads.append(keep.grads)
        losses.append(_losses(trainer)[0])
    for other in grads[1:]:
        assert other.keys() == grads[0].keys()
        for name in grads[0]:
            torch.testing.assert_close(other[name], grads[0][name], rtol=1e-5, atol=1e-7, msg=name)
    assert losses[1:] == pytest.approx([losses[0]] * 3, rel=1e-6)


def test_reference_cache_key_follows_the_weights_in_memory(setup, tmp_path, monkeypatch):
    """A model loaded from a local folder and then changed in memory gets a new cache key (the key fingerprints the
    weights, not the folder's files); the same weights loaded again hit the cache."""
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "model"
    tiny_causal_lm("qwen2", len(setup["tok"])).save_pretrained(folder)
    rows = setup["rows"].select(range(8))
    cfg = _config(tmp_path, max_steps=1, ref_cache_dir=str(tmp_path / "cache"))

    def trainer(perturb=False):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        if perturb:
            with torch.no_grad():
                model.model.layers[1].mlp.down_proj.weight[3, 5] += 1e-3  # one value
        return RDROTrainer(model, cfg, rows, setup["tok"])

    first = trainer()
    first._attach_reference_logprobs()
    same, changed = trainer(), trainer(perturb=True)
    assert same._reference_identity() == first._reference_identity()
    assert changed._reference_identity() != first._reference_identity()
    calls = []
    original = RDROTrainer._reference_logprobs
    monkeypatch.setattr(RDROTrainer, "_reference_logprobs", lambda *a, **k: calls.append(1) or original(*a, **k))
    same._attach_reference_logprobs()
    assert calls == []  # loaded from the cache
    changed._attach_reference_logprobs()
    assert calls and len(os.listdir(tmp_path / "cache")) == 2  # recomputed, under a new key


def test_kto_has_no_precompute_pass_and_identity_unwraps_engines(setup, tmp_path, monkeypatch):
    """KTO computes the reference on the fly: no precompute pass. The cache identity unwraps ``.module`` before reading
    ``.config`` (a DeepSpeed engine's ``config`` is its dict)."""
    rows = setup["rows"].select(range(8))
    trainer = RDROTrainer(tiny_causal_lm("qwen2", len(setup["tok"])), _config(tmp_path, loss="kto", max_steps=1), rows,
                          setup["tok"])  # fmt: skip
    assert trainer.reference_on_the_fly and trainer._reference_ready
    monkeypatch.setattr(RDROTrainer, "_attach_reference_logprobs", lambda self: pytest.fail("ran the precompute pass"))
    trainer.train()

    class EngineStandIn(torch.nn.Module):  # what DeepSpeed's engine looks like to us: .module and a dict .config
        def __init__(self, module):
            super().__init__()
            self.module, self.config = module, {"zero_optimization": {"stage": 3}}

    plain = trainer._reference_identity()
    trainer.ref_model = EngineStandIn(trainer.ref_model)
    assert trainer._reference_identity() == plain


def test_bco_resume_restores_the_running_mean_whatever_the_backend(setup, tmp_path, monkeypatch):
    """δ is restored by RDROTrainer.train itself (also resume_from_checkpoint=True), not by _load_from_checkpoint,
    which Trainer.train skips under DeepSpeed / FSDP (stood in for here by a no-op on the class)."""
    import transformers

    rows = setup["rows"].select(range(16))
    cfg = _config(tmp_path, loss="bco", max_steps=3, save_strategy="steps", save_steps=3, ref_cache_dir=str(tmp_path))
    first = RDROTrainer(tiny_causal_lm("qwen2", len(setup["tok"])), cfg, rows, setup["tok"])
    first.train()
    saved = json.loads((tmp_path / "out" / "checkpoint-3" / "bco_running_mean.json").read_text())
    # what Trainer.train does under DeepSpeed / FSDP: no _load_from_checkpoint (not even an override of it)
    monkeypatch.setattr(RDROTrainer, "_load_from_checkpoint", lambda self, *a, **k: None, raising=False)

    class AtTrainBegin(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.state = resumed.bco_running_mean.state_dict()

    at_begin = AtTrainBegin()
    resumed = RDROTrainer(tiny_causal_lm("qwen2", len(setup["tok"])), cfg, rows, setup["tok"], callbacks=[at_begin])
    assert resumed.bco_running_mean.count == 0
    resumed.train(resume_from_checkpoint=True)  # the last checkpoint in output_dir: checkpoint-3
    assert at_begin.state == saved and saved["count"] == 24
    assert saved["mean"] == pytest.approx(first.bco_running_mean.mean, rel=1e-12)
    os.remove(tmp_path / "out" / "checkpoint-3" / "bco_running_mean.json")
    again = RDROTrainer(tiny_causal_lm("qwen2", len(setup["tok"])), cfg, rows, setup["tok"])
    with pytest.raises(ValueError, match="running reward mean δ"):
        again.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-3"))
    empty = RDROTrainer(tiny_causal_lm("qwen2", len(setup["tok"])), _config(tmp_path / "none", loss="bco"), rows,
                        setup["tok"])  # fmt: skip
    with pytest.raises(ValueError, match="no complete checkpoint-N folder"):
        empty.train(resume_from_checkpoint=True)


def test_precomputed_reference_model_is_freed_after_the_pass(setup, tmp_path):
    import gc
    import weakref

    ref = tiny_causal_lm("qwen2", len(setup["tok"]), seed=1)
    trainer = RDROTrainer(tiny_causal_lm("qwen2", len(setup["tok"])), _config(tmp_path, max_steps=1),
                          setup["rows"].select(range(8)), setup["tok"], ref_model=ref)  # fmt: skip
    alive = weakref.ref(ref)
    del ref
    trainer._attach_reference_logprobs()
    gc.collect()
    assert trainer.ref_model is None and alive() is None  # not kept by the trainer nor by accelerator._models


def test_cli_reference_gets_the_gguf_file_and_is_not_kept(setup, tmp_path, monkeypatch):
    """`rdro train` under a sharded launch loads the reference from the policy's checkpoint, GGUF file included (an
    explicit ref_model_name_or_path: without it), and does not keep its own handle on the reference model."""
    import gc
    import weakref

    import rdro.llm.data as data
    import rdro.llm.models as models
    import rdro.llm.trainer as trainer_module
    from rdro.llm.train import build_config, run

    calls, seen = [], {}
    monkeypatch.setattr(models, "load_tokenizer", lambda path, gguf=None: setup["tok"])
    monkeypatch.setattr(models, "load_causal_lm", lambda path, gguf=None, dtype=None: calls.append((path, gguf))
                        or torch.nn.Linear(1, 1))  # fmt: skip
    monkeypatch.setattr(data, "load_preference_dataset", lambda *a: None)
    monkeypatch.setattr(data, "to_unpaired", lambda ds: ds)
    monkeypatch.setattr(data, "tokenize_dataset", lambda *a: [])

    class TrainerStandIn:
        alpha = 0.5
        accelerator = type("AcceleratorStandIn", (), {"wait_for_everyone": staticmethod(lambda: None)})

        def __init__(self, model, args, rows, processing_class=None, ref_model=None):
            seen["ref"] = weakref.ref(ref_model) if ref_model is not None else None

        def is_world_process_zero(self):
            return False

        def train(self, resume_from_checkpoint=None):
            gc.collect()
            seen["alive_in_train"] = seen["ref"] is not None and seen["ref"]() is not None

        def save_model(self, folder):
            pass

    monkeypatch.setattr(trainer_module, "RDROTrainer", TrainerStandIn)
    base = {"model_name_or_path": "/models/dir", "gguf_file": "m.Q4.gguf", "dataset": "x", "use_cpu": True,
            "output_dir": str(tmp_path / "o")}  # fmt: skip
    args = build_config(None, base)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    run(args)
    assert calls == [("/models/dir", "m.Q4.gguf"), ("/models/dir", "m.Q4.gguf")]
    assert seen["ref"] is not None and seen["alive_in_train"] is False  # only the trainer (here: nobody) holds it
    calls.clear()
    run(build_config(None, dict(base, ref_model_name_or_path="/models/ref")))
    assert calls == [("/models/dir", "m.Q4.gguf"), ("/models/ref", None)]


def test_lora_on_lm_head_uses_the_full_logits(setup, tmp_path, caplog):
    """The fused op reads the head's weight; a LoRA layer on lm_head would have its adapter skipped, so the trainer
    computes log-probs from the full logits there, and says so."""
    import logging

    from rdro.llm.models import apply_lora

    model = apply_lora(tiny_causal_lm("qwen2", len(setup["tok"])), r=4, alpha=8, target_modules="q_proj,lm_head")
    torch.nn.init.normal_(model.base_model.model.lm_head.lora_B.default.weight)
    with caplog.at_level(logging.WARNING, logger="rdro.llm.trainer"):
        trainer = RDROTrainer(model, _config(tmp_path), setup["rows"], setup["tok"])
    assert not trainer.use_fused and any("not a plain nn.Linear" in r.getMessage() for r in caplog.records)
    batch = trainer.data_collator([setup["rows"][i] for i in range(4)])
    ids = (batch["input_ids"], batch["attention_mask"], batch["targets"])
    naive = torch.stack([_naive_sequence_logprobs(model, setup["rows"][i]) for i in range(4)])
    torch.testing.assert_close(trainer._sequence_logprobs(model, *ids), naive, rtol=1e-5, atol=1e-4)


def test_lora_reference_on_the_fly_runs_without_dropout(setup, tmp_path):
    """The LoRA reference (adapters disabled) runs in eval mode: no dropout, the same values twice, the policy's
    train mode restored."""
    from rdro.llm.models import apply_lora

    base = tiny_causal_lm("qwen2", len(setup["tok"]))
    for layer in base.model.layers:
        layer.self_attn.attention_dropout = 0.5
    model = apply_lora(base, r=4, alpha=8)
    trainer = RDROTrainer(model, _config(tmp_path, precompute_ref_logprobs=False), setup["rows"], setup["tok"])
    batch = trainer.data_collator([setup["rows"][i] for i in range(4)])
    ids = (batch["input_ids"], batch["attention_mask"], batch["targets"])
    model.train()
    first, second = trainer._reference_logprobs(model, *ids), trainer._reference_logprobs(model, *ids)
    assert model.training
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    model.eval()
    with model.disable_adapter():
        torch.testing.assert_close(first, trainer._sequence_logprobs(model, *ids), rtol=1e-6, atol=1e-5)


def test_config_validates_model_dtype_and_lora_target_modules(tmp_path):
    cfg = _config(tmp_path, lora_target_modules="q_proj")
    assert cfg.lora_target_modules == ["q_proj"]
    assert _config(tmp_path, lora_target_modules=" q_proj, v_proj ").lora_target_modules == ["q_proj", "v_proj"]
    assert _config(tmp_path, lora_target_modules=("o_proj",)).lora_target_modules == ["o_proj"]
    for bad in (5, ["q_proj", 3], "", " , "):
        with pytest.raises(ValueError, match="lora_target_modules"):
            _config(tmp_path, lora_target_modules=bad)
    assert _config(tmp_path, model_dtype="bfloat16").model_dtype == "bfloat16"
    with pytest.raises(ValueError, match=r"model_dtype must be one of \['auto', 'bfloat16', 'float16', 'float32'\]"):
        _config(tmp_path, model_dtype="bf16")


def test_ddp_reference_pass_with_uneven_rows_per_process(setup, tmp_path):
    """The precompute pass over 9 rows on 2 processes in batches of 4: process 0 has 5 rows (2 batches), process 1 has
    4 (1 batch, plus one padding batch so that both run the same number of forwards — collective under ZeRO-3 / FSDP);
    the gathered cache holds each row's log π_ref exactly once, equal to a one-process computation."""
    lines = open(example_dataset_path()).read().splitlines()[:9]
    data = tmp_path / "nine.jsonl"
    data.write_text("\n".join(lines) + "\n")
    model_dir = _save_tiny(tmp_path, setup)
    recipe = _recipe(tmp_path, model_dir, dataset=str(data), max_steps=1, save_steps=1, loss="rdro")
    _train_on_two_processes(recipe)
    (cache,) = (tmp_path / "run" / "ref_logprobs").iterdir()
    values = torch.load(cache)["values"]
    from rdro.llm.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(model_dir)  # as `rdro train` loads it (transformers 5 rebuilds it for the qwen2 config)
    rows = tokenize_dataset(to_unpaired(load_preference_dataset(str(data))), tok, MAX_LEN, MAX_PROMPT)
    model = load_causal_lm(model_dir)
    with torch.no_grad():
        naive = torch.stack([_naive_sequence_logprobs(model, rows[i]) for i in range(9)])
    torch.testing.assert_close(values, naive, rtol=1e-5, atol=1e-4)


def test_reference_pass_runs_as_many_forwards_on_every_process(setup, tmp_path, monkeypatch):
    """Process 1 of 2 with 5 rows in batches of 2 holds rows 1 and 3 (one batch) while process 0 holds three rows (two
    batches): it runs a second, padding forward (under ZeRO-3 / FSDP each forward is collective) and drops its value."""
    trainer = RDROTrainer(tiny_causal_lm("qwen2", len(setup["tok"])), _config(tmp_path, per_device_train_batch_size=2),
                          setup["rows"].select(range(5)), setup["tok"])  # fmt: skip
    monkeypatch.setattr(RDROConfig, "world_size", property(lambda self: 2))
    monkeypatch.setattr(RDROConfig, "process_index", property(lambda self: 1))
    monkeypatch.setattr(
        torch.distributed, "all_gather_object", lambda out, obj: out.__setitem__(slice(None), [obj] * 2)
    )
    forwards = []
    original = RDROTrainer._reference_logprobs
    monkeypatch.setattr(RDROTrainer, "_reference_logprobs", lambda self, m, ids, *a: forwards.append(ids.shape[0])
                        or original(self, m, ids, *a))  # fmt: skip
    trainer._attach_reference_logprobs()
    assert forwards == [2, 1]  # rows 1 and 3, then the padding row
    with torch.no_grad():
        naive = torch.stack([_naive_sequence_logprobs(trainer.model, setup["rows"][i]) for i in (1, 3)])
    values = torch.tensor(trainer.rows["ref_logprob"])
    torch.testing.assert_close(values[[1, 3]], naive, rtol=1e-5, atol=1e-4)
    assert values[[0, 2, 4]].tolist() == [0.0, 0.0, 0.0]  # the other process's rows (not gathered in this stand-in)


def test_cli_values_of_the_wrong_type_are_errors_naming_the_key(tmp_path):
    """`--fp16 ture` used to switch fp16 on (a non-empty string is true), `--max_length abc` failed with int()'s
    message and `--learning_rate abc` was accepted: each value is checked against its field's type."""
    from rdro.llm.train import build_config, parse_overrides

    base = ["--model_name_or_path", "/m", "--dataset", "d", "--output_dir", "/o", "--use_cpu", "true"]
    for extra, message in (
        (["--fp16", "ture"], "fp16 must be a boolean (true/false), got 'ture'"),
        (["--precompute_ref_logprobs", "nope"], "precompute_ref_logprobs must be a boolean"),
        (["--max_length", "abc"], "max_length must be an integer, got 'abc'"),
        (["--max_length", "100.5"], "max_length must be an integer, got 100.5"),
        (["--learning_rate", "abc"], "learning_rate must be a number, got 'abc'"),
        (["--lr_scheduler_type", "1"], "lr_scheduler_type must be a string, got 1"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            build_config(None, parse_overrides(base + extra))
    cfg = build_config(None, parse_overrides(base + ["--max_steps", "1e3", "--alpha", "0.3", "--beta", "1"]))
    assert cfg.max_steps == 1000 and isinstance(cfg.max_steps, int) and cfg.alpha == 0.3 and cfg.beta == 1
    # YAML 1.1 reads no / yes as booleans: `--save_strategy no` (and a recipe's quoted "no") used to become False,
    # "False is not a valid SaveStrategy"; boolean fields still read them as booleans
    cfg = build_config(None, parse_overrides(base + ["--save_strategy", "no", "--use_lora", "yes", "--fp16", "off"]))
    assert cfg.save_strategy == "no" and cfg.use_lora is True and cfg.fp16 is False
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text('save_strategy: "no"\nlearning_rate: 1e-5\n')
    cfg = build_config(str(recipe), parse_overrides(base))
    assert cfg.save_strategy == "no" and cfg.learning_rate == 1e-5
    recipe.write_text("save_strategy: no\n")
    with pytest.raises(ValueError, match="save_strategy must be a string, got False .* quote it"):
        build_config(str(recipe), parse_overrides(base))
    assert build_config(
        None, parse_overrides(base + ["--lora_target_modules", "q_proj,v_proj"])
    ).lora_target_modules == [
        "q_proj",
        "v_proj",
    ]


def test_config_rejects_settings_that_would_fail_later(tmp_path, monkeypatch):
    """remove_unused_columns=True used to end in a KeyError in the collator; report_to a logger that is not installed
    in a RuntimeError from transformers (not caught by `rdro train`); a bad logprob_chunk_size in the op's error."""
    import transformers.integrations

    with pytest.raises(ValueError, match="remove_unused_columns must be False"):
        _config(tmp_path, remove_unused_columns=True)
    monkeypatch.setattr(transformers.integrations, "is_wandb_available", lambda: False)
    with pytest.raises(ValueError, match=r"report_to='wandb' needs the wandb package: pip install 'rdro\[wandb\]'"):
        _config(tmp_path, report_to="wandb")
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="logprob_chunk_size must be a positive int or None"):
            _config(tmp_path, logprob_chunk_size=bad)


def test_resume_skips_an_incomplete_checkpoint(setup, tmp_path, caplog):
    """A job killed while saving checkpoint-4 leaves it without trainer_state.json (the Trainer writes it last):
    resume_from_checkpoint=True takes checkpoint-2 instead (it used to fail on the incomplete folder), and an explicit
    incomplete folder is an error before the reference pass."""
    import logging

    rows = setup["rows"].select(range(32))

    def trainer(out, max_steps=4):
        cfg = _config(out, max_steps=max_steps, save_strategy="steps", save_steps=2, ref_cache_dir=str(tmp_path))
        return RDROTrainer(tiny_causal_lm("qwen2", len(setup["tok"])), cfg, rows, setup["tok"])

    full = trainer(tmp_path / "a")
    full.train()
    os.remove(tmp_path / "a" / "out" / "checkpoint-4" / "trainer_state.json")
    resumed = trainer(tmp_path / "a")
    with caplog.at_level(logging.WARNING, logger="rdro.llm.trainer"):
        resumed.train(resume_from_checkpoint=True)
    assert any("skipping" in r.getMessage() and "checkpoint-4" in r.getMessage() for r in caplog.records)
    assert _losses(resumed) == pytest.approx(_losses(full), rel=1e-5)  # steps 1-2 from checkpoint-2, 3-4 rerun
    os.remove(tmp_path / "a" / "out" / "checkpoint-4" / "trainer_state.json")  # (the resumed run saved it again)
    again = trainer(tmp_path / "b")
    again._attach_reference_logprobs = lambda: pytest.fail("ran the reference pass before checking the checkpoint")
    for folder in (tmp_path / "a" / "out" / "checkpoint-9", tmp_path / "a" / "out" / "checkpoint-4"):
        with pytest.raises(ValueError, match="is not a complete checkpoint folder"):
            again.train(resume_from_checkpoint=str(folder))


def test_bco_state_is_in_the_checkpoint_before_its_trainer_state(setup, tmp_path, monkeypatch):
    """BCO's δ file is written before trainer_state.json, the Trainer's last write (and before it deletes older
    checkpoints): a checkpoint with a trainer state is complete, δ included. (It used to be written after both.)"""
    from transformers.trainer_callback import TrainerState

    seen = []
    original = TrainerState.save_to_json

    def save_to_json(self, path):
        seen.append(os.path.isfile(os.path.join(os.path.dirname(path), "bco_running_mean.json")))
        return original(self, path)

    monkeypatch.setattr(TrainerState, "save_to_json", save_to_json)
    cfg = _config(tmp_path, loss="bco", max_steps=4, save_strategy="steps", save_steps=2, save_total_limit=1)
    RDROTrainer(tiny_causal_lm("qwen2", len(setup["tok"])), cfg, setup["rows"].select(range(16)), setup["tok"]).train()
    assert seen == [True, True]
    assert sorted(os.listdir(tmp_path / "out")) == ["checkpoint-4", "ref_logprobs"]


def test_reference_pass_progress_bar_follows_disable_tqdm(setup, tmp_path, capsys):
    rows = setup["rows"].select(range(8))
    for disable in (True, False):
        cfg = _config(tmp_path / str(disable), disable_tqdm=disable)
        RDROTrainer(tiny_causal_lm("qwen2", len(setup["tok"])), cfg, rows, setup["tok"])._attach_reference_logprobs()
        assert ("reference log-probs (once)" in capsys.readouterr().err) is not disable
