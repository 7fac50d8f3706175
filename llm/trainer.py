"""The alignment trainer: ``RDROConfig`` and ``RDROTrainer`` (a transformers ``Trainer``).

One training step (:meth:`RDROTrainer.compute_loss`, read it top to bottom):

1. policy sequence log-probs log π_θ(y|x) (fused op on the final hidden states, no full logits);
2. reference log-probs log π_ref(y|x): cached (computed once over the dataset before training, the
   default) or computed on the fly with the frozen reference;
3. t = log π_θ(y|x) − log π_ref(y|x) per row;
4. the loss from :mod:`rdro.losses` — ``rdro`` | ``ddro`` | ``kto`` | ``bco`` | ``dpo`` | ``sft`` — one
   branch each; only KTO runs extra (mismatched-pair, no-grad) passes for its KL reference point z0.

Everything else (optimiser, schedule, gradient accumulation, mixed precision, gradient
checkpointing, DDP / FSDP / DeepSpeed through accelerate, checkpoints and resume, logging to
TensorBoard / W&B via ``report_to``, the progress bar) is the ``Trainer``'s.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from rdro.llm.data import PairedRows, PreferenceCollator, resolve_alpha, tokenized_digest
from rdro.llm.kernels import check_grad_filter
from rdro.llm.models import (
    adapters_disabled,
    lm_head_is_sharded,
    lm_head_supports_fused,
    lora_target_modules,
    resolve_model_dtype,
    sequence_logprobs_full_logits,
    sequence_logprobs_fused,
)
from rdro.losses import (
    DIVERGENCES,
    RewardRunningMean,
    bco_loss,
    ddro_loss,
    dpo_loss,
    kto_loss,
    kto_reference_point,
    preferred_fraction,
    rdro_loss,
    sft_loss,
)
from rdro.results import atomic_write_text

__all__ = ["LOSSES", "RDROConfig", "RDROTrainer"]

logger = logging.getLogger(__name__)

LOSSES = ("rdro", "ddro", "kto", "bco", "dpo", "sft")
_BCO_STATE_FILE = "bco_running_mean.json"
_NEAR_BOUND = 0.1  # "t within 0.1 of log(1/α)"
_FINGERPRINT_SAMPLES = 4096  # values sampled (strided) from each reference parameter for the cache key


def _is_complete_checkpoint(folder: str) -> bool:
    """Whether ``folder`` holds a checkpoint whose saving finished: the Trainer writes its readable
    ``trainer_state.json`` last."""
    try:
        with open(os.path.join(folder, TRAINER_STATE_NAME)) as f:
            json.load(f)
    except (OSError, ValueError):
        return False
    return True


def _last_complete_checkpoint(output_dir: str) -> str:
    """The ``checkpoint-N`` folder of ``output_dir`` with the largest N among the complete ones (a checkpoint whose
    saving was cut short, e.g. by a killed job, is skipped with a warning); ValueError when there is none."""
    pattern = re.compile(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)")
    names = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    steps = sorted((int(m.group(1)), name) for name in names if (m := pattern.fullmatch(name)))
    for _, name in reversed(steps):
        folder = os.path.join(output_dir, name)
        if _is_complete_checkpoint(folder):
            return folder
        logger.warning("skipping %s: an incomplete checkpoint (no readable %s)", folder, TRAINER_STATE_NAME)
    raise ValueError(f"resume_from_checkpoint=True: no complete checkpoint-N folder in output_dir {output_dir!r}")


@dataclass
class RDROConfig(TrainingArguments):
    """Training arguments for :class:`RDROTrainer` (all of ``TrainingArguments`` plus the method's).

    Method: ``loss`` ∈ {rdro, ddro, kto, bco, dpo, sft}; ``alpha`` (RDRO's α ∈ (0, 1) or "auto" = the
    dataset's preferred fraction), ``reduction`` (RDRO and DDRO: "pooled" = mean over rows, the RDRO authors' code; or
    "per_class" = sum of the class means, targets r_α for any balance; rows weighted by the dataset's class
    balance, so a micro-batch may hold one class; default None = "pooled" for RDRO and "per_class" for DDRO, whose
    loss is defined by class expectations (shared/method.md §3) and whose pooled minimiser is off from p+/p− by
    π+/(1 − π+) when the classes are unbalanced); ``mu`` (DDRO's mixture weight, "auto" = preferred fraction),
    ``divergence`` / ``stabilize`` / ``clip_margin`` (DDRO [reconstructed]; ``stabilize`` defaults to True here,
    the stabilised DDRO the paper compares against — the raw form gives NaN once e^t ≥ 1/μ); ``beta`` (KTO, BCO,
    DPO); ``desirable_weight`` / ``undesirable_weight`` (KTO λ_D, λ_U; KTO needs ``per_device_train_batch_size``
    ≥ 2 for its mismatched pairs). SFT's token-mean loss is normalised by the preferred completion tokens of the
    whole effective batch (all accumulation steps and processes), so it does not depend on the micro-batch split.
    Data: ``max_length``, ``max_prompt_length`` (prompt truncated from the left, then the completion
    to fit). Reference: ``precompute_ref_logprobs`` (cache log π_ref over the dataset once; False = on the fly;
    KTO always computes it on the fly, with its mismatched pairs), ``ref_cache_dir`` (the cache key fingerprints
    the reference weights in memory, the tokenised data and the lengths). ``fused_logprobs``: use
    ``rdro.llm.kernels.sequence_logprobs`` (False: full logits; also used for a sharded LM head or one that is not a
    plain ``nn.Linear``, e.g. LoRA on lm_head), ``logprob_chunk_size`` (tokens per chunk of its torch/CPU path;
    smaller = less memory), ``logprob_grad_filter`` (ε of its approximate backward, 0 = exact; see
    ``sequence_logprobs``).
    The model / dataset / LoRA fields are read by ``rdro train``: ``model_dtype`` ∈ {auto, float32, bfloat16,
    float16}; ``lora_target_modules`` a list of module names or a comma-separated string ("q_proj,v_proj").
    """

    loss: str = "rdro"
    alpha: float | str = "auto"
    reduction: str | None = None
    mu: float | str = "auto"
    divergence: str = "logistic"
    stabilize: bool = True
    clip_margin: float = 1e-2
    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    max_length: int = 1024
    max_prompt_length: int = 512
    precompute_ref_logprobs: bool = True
    ref_cache_dir: str | None = None
    fused_logprobs: bool = True
    logprob_chunk_size: int | None = None
    logprob_grad_filter: float = 0.0
    # read by `rdro train` (model and data)
    model_name_or_path: str | None = None
    gguf_file: str | None = None
    ref_model_name_or_path: str | None = None
    model_dtype: str = "float32"
    dataset: str | None = None
    dataset_split: str = "train"
    use_lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    # TrainingArguments defaults changed for this trainer
    remove_unused_columns: bool = False  # the collator needs every column
    logging_steps: float = 1
    report_to: str | list[str] = "none"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.reduction is None:  # each loss's own default
            self.reduction = "per_class" if self.loss == "ddro" else "pooled"
        if self.reduction not in ("pooled", "per_class"):
            raise ValueError(f"reduction must be 'pooled', 'per_class' or None, got {self.reduction!r}")
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {self.divergence!r}")
        for name in ("alpha", "mu"):
            value = getattr(self, name)
            if value != "auto":
                try:
                    v = float(value)
                except (TypeError, ValueError):
                    raise ValueError(f"{name} must be a number in (0, 1) or 'auto', got {value!r}") from None
                if not 0.0 < v < 1.0:
                    raise ValueError(f"{name} must lie strictly inside (0, 1), got {value!r}")
                setattr(self, name, v)
        for name in ("beta", "desirable_weight", "undesirable_weight", "clip_margin"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if int(self.max_length) < 2 or int(self.max_prompt_length) < 1:
            raise ValueError(
                f"need max_length ≥ 2 and max_prompt_length ≥ 1, got max_length={self.max_length!r}, "
                f"max_prompt_length={self.max_prompt_length!r}"
            )
        chunk = self.logprob_chunk_size
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"logprob_chunk_size must be a positive int or None, got {chunk!r}")
        check_grad_filter(self.logprob_grad_filter, "logprob_grad_filter")
        resolve_model_dtype(self.model_dtype, "model_dtype")
        self.lora_target_modules = lora_target_modules(self.lora_target_modules, "lora_target_modules")
        if self.loss == "kto" and int(self.per_device_train_batch_size) < 2:
            raise ValueError(
                "loss='kto' needs per_device_train_batch_size ≥ 2 (its reference point z0 comes from mismatched "
                f"prompt/completion pairs within a batch), got {self.per_device_train_batch_size!r}"
            )
        if self.remove_unused_columns:
            raise ValueError(
                "remove_unused_columns must be False for RDROTrainer: its collator reads the columns the model's "
                "forward does not take (completion_start, label, pair_id, ref_logprob)"
            )
        if self.activation_checkpointing_kwargs is None and self.gradient_checkpointing_kwargs is None:
            self.activation_checkpointing_kwargs = {"use_reentrant": False}
        super().__post_init__()
        from transformers.integrations import is_tensorboard_available, is_wandb_available

        extras = {"tensorboard": (is_tensorboard_available, "llm"), "wandb": (is_wandb_available, "wandb")}
        for name, (available, extra) in extras.items():
            if name in self.report_to and not available():
                raise ValueError(f"report_to={name!r} needs the {name} package: pip install 'rdro[{extra}]'")


class RDROTrainer(Trainer):
    """Align a causal LM with RDRO or a baseline on tokenised preference rows.

    ``train_dataset``: the output of :func:`rdro.llm.data.tokenize_dataset` (DPO: made from paired
    data). ``ref_model``: the frozen reference π_ref; leave it ``None`` to use (a) the base model with
    adapters disabled for a LoRA policy, or (b) the policy itself before training when the reference
    log-probs are precomputed, or (c) a frozen copy of the policy otherwise. Under FSDP / DeepSpeed
    pass it explicitly (loaded from the checkpoint) — the policy is placed and sharded only when training starts
    there (a LoRA policy's base then serves on the fly). A precomputed reference is freed after its one pass.
    """

    def __init__(self, model, args: RDROConfig, train_dataset, processing_class=None, ref_model=None, callbacks=None):
        if not isinstance(args, RDROConfig):
            raise TypeError(f"args must be an RDROConfig, got {type(args).__name__}")
        if processing_class is None or processing_class.pad_token_id is None:
            raise ValueError("processing_class must be the tokenizer, with a pad token")
        missing = {"input_ids", "completion_start", "label", "pair_id"} - set(train_dataset.column_names)
        if missing:
            raise ValueError(
                f"train_dataset lacks {sorted(missing)}: pass the output of rdro.llm.data.tokenize_dataset"
            )
        labels = train_dataset["label"]
        self.alpha = resolve_alpha(args.alpha, labels)  # RDRO's α (and the α of the near-bound metric)
        self.mu = resolve_alpha(args.mu, labels)  # DDRO's μ
        # the data's class balance: per-class reductions weight rows by it, so micro-batches may hold one class (the
        # pooled reduction has no class weights: None)
        per_class = args.reduction == "per_class"
        self.dataset_preferred_fraction = preferred_fraction(list(labels)) if per_class else None
        self.is_lora = hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
        self.needs_reference = args.loss != "sft"
        self.reference_on_the_fly = self.needs_reference and (not args.precompute_ref_logprobs or args.loss == "kto")
        if ref_model is None and self.needs_reference and not self.is_lora and self.reference_on_the_fly:
            ref_model = copy.deepcopy(model)
        if ref_model is not None:
            ref_model.eval().requires_grad_(False)
        self.ref_model = ref_model
        self.bco_running_mean = RewardRunningMean()
        self._kto_z0: torch.Tensor | None = None  # KTO's last reference point (for batches without a mismatched pair)
        self._kto_fallback_logged = False
        self._metric_sums: dict[str, torch.Tensor] = {}
        collator = PreferenceCollator(processing_class.pad_token_id, args.max_length, mismatched=args.loss == "kto")
        self.rows = train_dataset
        data = PairedRows(train_dataset) if args.loss == "dpo" else train_dataset
        super().__init__(
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=data,
            processing_class=processing_class,
            callbacks=callbacks,
        )
        # torch's GradScaler refuses fp16 gradients ("Attempting to unscale FP16 gradients"); DeepSpeed keeps fp32
        # master weights of its own and FSDP's ShardedGradScaler accepts fp16, so only the plain path is refused
        half = sorted(
            {n.split(".")[-1] for n, p in model.named_parameters() if p.requires_grad and p.dtype == torch.float16}
        )
        if args.fp16 and half and not (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            raise ValueError(
                "fp16=True (autocast with a loss scaler) needs fp32 trainable weights, but the model has float16 "
                f"trainable parameters ({', '.join(half[:4])}…): load it with model_dtype float32 (autocast still "
                "computes in fp16), train LoRA adapters (fp32), or use bf16 (DeepSpeed keeps fp32 master weights)"
            )
        # The losses but SFT are per-micro-batch means: the Trainer divides them by the accumulation steps. SFT's
        # token mean is normalised by the preferred completion tokens of the whole effective batch instead (counted
        # by _get_num_items_in_batch), so that it does not depend on how the batch is split into micro-batches.
        self.loss_is_scaled_for_ga = args.loss == "sft"
        self.model_accepts_loss_kwargs = False
        sharded = self.is_fsdp_enabled or (self.is_deepspeed_enabled and self._zero_stage() == 3)
        self.use_fused = args.fused_logprobs and not sharded
        if args.fused_logprobs and sharded:
            logger.warning("sharded LM head (FSDP / DeepSpeed ZeRO-3): computing log-probs from the full logits")
        elif self.use_fused and not lm_head_supports_fused(model):
            self.use_fused = False
            logger.warning(
                "the output layer is not a plain nn.Linear (e.g. LoRA on lm_head): computing log-probs from the full "
                "logits (the fused op would skip its adapter)"
            )
        else:
            logger.info(
                "log-probs: %s", "fused sequence_logprobs (no full logits)" if self.use_fused else "full logits"
            )
        weight = next(iter(model.parameters()), None)
        precompute_with_policy = self.needs_reference and not self.reference_on_the_fly and self.ref_model is None
        if precompute_with_policy and not self.place_model_on_device and weight is not None:
            # the precompute pass would run the policy itself on batches on args.device; DeepSpeed / FSDP place the
            # policy only when training starts (till then it stays where it was loaded, e.g. on the CPU)
            where, target = weight.device, torch.device(self.args.device)
            same_index = None in (where.index, target.index) or where.index == target.index
            elsewhere = where.type != target.type or not same_index
            if elsewhere and self.is_lora:
                self.reference_on_the_fly = True  # the base (adapters disabled) of the placed policy, at each step
                logger.warning(
                    "the LoRA policy is on %s until training starts (DeepSpeed / FSDP), the batches on %s: the "
                    "reference log-probs (adapters disabled) are computed on the fly, not precomputed",
                    where,
                    self.args.device,
                )
            elif elsewhere:
                raise ValueError(
                    f"the policy is on {where} until training starts (DeepSpeed / FSDP), the batches on "
                    f"{self.args.device}, so it cannot serve as the precomputed reference: pass ref_model (the "
                    "reference loaded from the checkpoint; `rdro train` does) or set precompute_ref_logprobs=False"
                )
        if self.ref_model is not None and self.reference_on_the_fly:
            self.ref_model = self._prepare_reference(self.ref_model)
        # only a reference that is not computed on the fly (by KTO always) needs the precompute pass
        self._reference_ready = not (self.needs_reference and not self.reference_on_the_fly)

    # ------------------------------------------------------------------ the training step

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """One micro-batch: log π_θ, log π_ref, t = log π_θ − log π_ref, then the chosen loss."""
        args, preferred = self.args, inputs["preferred"]
        policy_logprob = self._sequence_logprobs(
            model, inputs["input_ids"], inputs["attention_mask"], inputs["targets"]
        )
        if args.loss == "sft":
            loss = sft_loss(policy_logprob, preferred, inputs["num_tokens"])
            if num_items_in_batch is not None:
                # sft_loss is Σ_local NLL / local preferred tokens; rescale to Σ_local NLL / the effective batch's
                # preferred tokens (× the data-parallel processes, whose gradients are averaged)
                local = inputs["num_tokens"][preferred].sum().clamp(min=1).to(loss.dtype)
                total = torch.as_tensor(num_items_in_batch, device=loss.device).clamp(min=1).to(loss.dtype)
                loss = loss * local / total
                if self._sft_tokens_across_processes():
                    loss = loss * self.args.world_size
            return (loss, {}) if return_outputs else loss

        if "ref_logprob" in inputs:
            ref_logprob = inputs["ref_logprob"]
        else:
            ref_logprob = self._reference_logprobs(
                model, inputs["input_ids"], inputs["attention_mask"], inputs["targets"]
            )
        t = policy_logprob - ref_logprob.to(policy_logprob.dtype)

        kl = None
        if args.loss == "rdro":
            loss = rdro_loss(t, preferred, self.alpha, args.reduction, self.dataset_preferred_fraction)
        elif args.loss == "ddro":
            loss = ddro_loss(
                t,
                preferred,
                self.mu,
                args.divergence,
                args.stabilize,
                args.clip_margin,
                args.reduction,
                self.dataset_preferred_fraction,
            )
        elif args.loss == "kto":
            kl = self._kto_reference_point(model, inputs, t)
            loss = kto_loss(t, preferred, kl, args.beta, args.desirable_weight, args.undesirable_weight)
        elif args.loss == "bco":
            self._fold_other_processes_rewards(args.beta * t.detach())
            loss = bco_loss(t, preferred, self.bco_running_mean, beta=args.beta)
        elif args.loss == "dpo":  # rows come as (chosen, rejected) pairs
            loss = dpo_loss(t[0::2], t[1::2], beta=args.beta)
        else:  # unreachable: RDROConfig validates loss
            raise ValueError(f"unknown loss {args.loss!r}")

        self._record_metrics(t.detach(), preferred, kl)
        return (loss, {"logratio": t.detach()}) if return_outputs else loss

    def _kto_reference_point(self, model, inputs, t: torch.Tensor) -> torch.Tensor:
        """KTO's z0 = max(0, mean t over the mismatched pairs of every process's batch) (no gradient). A batch of one
        row has no mismatched pair (the collator makes none): it counts 0 rows in the mean; when no process has a
        pair, z0 stays the previous step's estimate (0 before any), said once in the log."""
        stats = torch.zeros(2, dtype=torch.float64, device=t.device)  # Σ t_mismatched, number of mismatched rows
        if "kl_input_ids" in inputs:
            kl_args = (inputs["kl_input_ids"], inputs["kl_attention_mask"], inputs["kl_targets"])
            with torch.no_grad():  # mismatched pairs (completions rotated in the batch): KL estimate, no gradient
                kl_t = self._sequence_logprobs(model, *kl_args) - self._reference_logprobs(model, *kl_args)
            stats = torch.stack([kl_t.double().sum(), stats.new_tensor(float(kl_t.numel()))])
        if self.args.world_size > 1:  # every process takes part, with or without a pair
            stats = self.accelerator.reduce(stats, "sum")
        if float(stats[1]) > 0:
            self._kto_z0 = kto_reference_point((stats[0] / stats[1]).to(t.dtype).reshape(1))
        else:
            if not self._kto_fallback_logged:
                self._kto_fallback_logged = True
                logger.warning(
                    "KTO: a batch of one row has no mismatched pair for the KL estimate; its z0 is the previous "
                    "estimate (0 before any). Said once."
                )
            if self._kto_z0 is None:
                self._kto_z0 = torch.zeros((), dtype=t.dtype, device=t.device)
        return self._kto_z0

    def _sft_tokens_across_processes(self) -> bool:
        """SFT counts its normalising tokens over all data-parallel processes (transformers'
        ``average_tokens_across_devices``, on by default) when there are several."""
        return bool(self.args.average_tokens_across_devices) and self.args.world_size > 1

    def _get_num_items_in_batch(self, batch_samples, device):
        """SFT: the preferred completion tokens of the effective batch (all its micro-batches, and all processes
        with :meth:`_sft_tokens_across_processes`), the denominator of its token-mean loss. Other losses: none."""
        if self.args.loss != "sft" or not batch_samples:
            return super()._get_num_items_in_batch(batch_samples, device)
        count = sum(int(b["num_tokens"][b["preferred"]].sum()) for b in batch_samples)
        count = torch.tensor(count, dtype=torch.long, device=device)
        if self._sft_tokens_across_processes():
            count = self.accelerator.gather(count.reshape(1)).sum()
        return count

    # ------------------------------------------------------------------ log-probs

    def _sequence_logprobs(self, model, input_ids, attention_mask, targets) -> torch.Tensor:
        """log π(y|x) per row = Σ over completion positions of log p(target | prefix)."""
        if self.use_fused and lm_head_is_sharded(model):  # sharded by a wrapper that accelerate did not flag
            self.use_fused = False
            logger.warning("the LM-head weight is sharded in this process: computing log-probs from the full logits")
        if self.use_fused:
            return sequence_logprobs_fused(
                model, input_ids, attention_mask, targets, self.args.logprob_chunk_size,
                grad_filter=float(self.args.logprob_grad_filter),
            )  # fmt: skip
        return sequence_logprobs_full_logits(model, input_ids, attention_mask, targets)

    @torch.no_grad()
    def _reference_logprobs(self, model, input_ids, attention_mask, targets) -> torch.Tensor:
        """log π_ref(y|x): the frozen reference if there is one, else the LoRA policy's base weights
        (adapters disabled), else ``model`` itself (the policy before training, in the precompute pass)."""
        with self.accelerator.autocast():
            if self.ref_model is not None:
                return self._sequence_logprobs(self.ref_model, input_ids, attention_mask, targets)
            if self.is_lora:
                was_training = model.training
                model.eval()  # π_ref without the adapters' dropout
                try:
                    with adapters_disabled(model):
                        return self._sequence_logprobs(model, input_ids, attention_mask, targets)
                finally:
                    model.train(was_training)
            return self._sequence_logprobs(model, input_ids, attention_mask, targets)

    def _zero_stage(self) -> int:
        plugin = self.accelerator.state.deepspeed_plugin
        return int(plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0)) if plugin else 0

    def _prepare_reference(self, ref_model):
        """Place the frozen reference: a DeepSpeed inference engine under DeepSpeed (ZeRO-3 partitions
        it like the policy), FSDP-wrapped under FSDP, else moved to the device."""
        if self.is_deepspeed_enabled:
            import deepspeed

            config = copy.deepcopy(self.accelerator.state.deepspeed_plugin.deepspeed_config)
            for key in ("optimizer", "scheduler"):
                config.pop(key, None)
            if self._zero_stage() != 3:
                config["zero_optimization"] = {"stage": 0}
            # fill the "auto" values accelerate would fill for a trained model (sizes from the hidden size)
            hidden = getattr(getattr(ref_model, "config", None), "hidden_size", 4096)
            zero = config.setdefault("zero_optimization", {})
            sizes = {
                "reduce_bucket_size": hidden * hidden,
                "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
                "stage3_param_persistence_threshold": 10 * hidden,
            }
            for key, value in sizes.items():
                if zero.get(key) == "auto":
                    zero[key] = value
            for key, flag in (("fp16", self.args.fp16), ("bf16", self.args.bf16)):
                if isinstance(config.get(key), dict) and config[key].get("enabled") == "auto":
                    config[key]["enabled"] = bool(flag)
            config.pop("gradient_clipping", None)
            config["train_micro_batch_size_per_gpu"] = self.args.per_device_train_batch_size
            config["gradient_accumulation_steps"] = self.args.gradient_accumulation_steps
            config["train_batch_size"] = (
                self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
            )
            engine, *_ = deepspeed.initialize(model=ref_model, config=config)
            return engine.eval()
        return self.accelerator.prepare_model(ref_model, evaluation_mode=True)

    # ------------------------------------------------------------------ reference log-prob cache

    def train(self, resume_from_checkpoint=None, **kwargs):
        """Compute (or load) the cached reference log-probs — before any checkpoint is loaded into the
        policy — restore BCO's running mean δ when resuming (``resume_from_checkpoint``: a checkpoint folder, or
        True = the last one in ``output_dir``; here, whatever the backend: ``Trainer.train`` loads checkpoints through
        ``_load_from_checkpoint`` only without DeepSpeed / FSDP), then run ``Trainer.train``."""
        if resume_from_checkpoint is False:
            resume_from_checkpoint = None
        if resume_from_checkpoint is True:
            resume_from_checkpoint = _last_complete_checkpoint(self.args.output_dir)
        elif resume_from_checkpoint is not None and not _is_complete_checkpoint(resume_from_checkpoint):
            raise ValueError(
                f"resume_from_checkpoint={resume_from_checkpoint!r} is not a complete checkpoint folder (no readable "
                f"{TRAINER_STATE_NAME}, which the Trainer writes last: a missing folder or a save that was cut short)"
            )
        if not self._reference_ready:
            self._attach_reference_logprobs()
        if resume_from_checkpoint is not None and self.args.loss == "bco":
            self._load_bco_state(resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _reference_identity(self) -> str:
        """What the cached values depend on besides the data: the reference model's class and configuration,
        LoRA-base or not, the autocast precision, and a fingerprint of the reference weights in memory
        (:meth:`_reference_fingerprint`)."""
        source = self.ref_model if self.ref_model is not None else self.model
        while isinstance(getattr(source, "module", None), torch.nn.Module):  # DDP / FSDP / DeepSpeed engine
            source = source.module
        cfg = getattr(source, "config", None)
        cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else {}  # (a DeepSpeed engine's config is its dict: unwrapped)
        arch = {k: v for k, v in cfg.items() if not k.endswith("token_id")}
        parts = [type(source).__name__, json.dumps(arch, sort_keys=True, default=str), f"lora_base={self.is_lora}"]
        parts.append(f"mixed_precision={self.accelerator.mixed_precision}")
        parts.append(self._reference_fingerprint(source))
        return "\n".join(parts)

    def _reference_fingerprint(self, source) -> str:
        """SHA-256 over the reference weights this process holds: per parameter (by name; a LoRA policy's adapters and
        trained copies skipped, its reference is the base) the name, shape and dtype, the float64 sum of all its
        values and a strided sample of at most 4096 of them. One pass over the weights, on their device (a DeepSpeed
        ZeRO-3 parameter contributes its local partition, an FSDP DTensor its local shard; with several processes the
        fingerprints of all of them are hashed together, so every process gets the same key)."""
        h = hashlib.sha256()
        with torch.no_grad():
            for name, param in sorted(source.named_parameters(), key=lambda item: item[0]):
                if self.is_lora and ("lora_" in name or "modules_to_save" in name):
                    continue
                data = param.ds_tensor if hasattr(param, "ds_tensor") else param
                if hasattr(data, "to_local"):
                    data = data.to_local()
                h.update(f"{name}:{tuple(param.shape)}:{param.dtype}".encode())
                if data.is_meta or data.numel() == 0:
                    continue
                flat = data.detach().reshape(-1)
                sample = flat[:: max(1, flat.numel() // _FINGERPRINT_SAMPLES)]
                h.update(sample.to("cpu", torch.float64).numpy().tobytes())
                h.update(torch.sum(flat, dtype=torch.float64).cpu().numpy().tobytes())
        digest = h.hexdigest()
        if self.args.world_size > 1:
            everyone = [None] * self.args.world_size
            torch.distributed.all_gather_object(everyone, digest)
            digest = hashlib.sha256("".join(everyone).encode()).hexdigest()
        return digest

    def _attach_reference_logprobs(self) -> None:
        """Add a ``ref_logprob`` column (log π_ref(y|x) per row) to the training rows, from the cache
        file when its key (reference identity + tokenised data + max lengths) matches, else by one
        no-grad pass over the dataset (sharded over processes, with a progress bar)."""
        from tqdm.auto import tqdm

        args, rows = self.args, self.rows
        key_text = "\n".join(
            [self._reference_identity(), tokenized_digest(rows), f"{args.max_length}/{args.max_prompt_length}"]
        )
        key = hashlib.sha256(key_text.encode()).hexdigest()[:20]
        cache_dir = args.ref_cache_dir or os.path.join(args.output_dir, "ref_logprobs")
        path = os.path.join(cache_dir, f"ref_logprobs-{key}.pt")
        values = None
        if os.path.isfile(path):
            saved = torch.load(path, map_location="cpu")
            if saved.get("key") == key and saved["values"].numel() == len(rows):
                values = saved["values"]
                logger.info("reference log-probs loaded from %s", path)
        if self.args.world_size > 1:  # every process must take the same branch (the pass below is collective)
            hits = self.accelerator.reduce(torch.tensor(float(values is not None), device=self.args.device), "sum")
            values = values if int(hits.item()) == self.args.world_size else None
        if values is None:
            rank, world = self.args.process_index, self.args.world_size
            mine = list(range(rank, len(rows), world))
            collate = PreferenceCollator(self.processing_class.pad_token_id, args.max_length)
            batch_size = args.per_device_train_batch_size
            chunks = [mine[j : j + batch_size] for j in range(0, len(mine), batch_size)]
            # every process runs the same number of forwards (under ZeRO-3 / FSDP each one is collective): the
            # processes with fewer rows run the first row once more per missing batch, and drop its values
            n_real = len(chunks)
            rows_per_process = -(-len(rows) // world)
            chunks += [[0]] * (-(-rows_per_process // batch_size) - n_real)
            if self.ref_model is not None and not self.reference_on_the_fly:
                self.ref_model = self._prepare_reference(self.ref_model)
            reference = self.ref_model if self.ref_model is not None else self.model
            was_training = reference.training
            reference.eval()  # no dropout in π_ref
            out = []
            hide = args.disable_tqdm or not self.is_world_process_zero()
            for chunk in tqdm(chunks, desc="reference log-probs (once)", disable=hide):
                batch = {k: v.to(self.args.device) for k, v in collate([rows[i] for i in chunk]).items()}
                ids = (batch["input_ids"], batch["attention_mask"], batch["targets"])
                out.append(self._reference_logprobs(self.model, *ids).float().cpu())
            reference.train(was_training)
            del reference
            local = torch.cat(out[:n_real]) if n_real else torch.zeros(0)
            values = torch.zeros(len(rows))
            if world > 1:
                gathered = [None] * world
                torch.distributed.all_gather_object(gathered, (mine, local))
                for idx, vals in gathered:
                    values[idx] = vals
            else:
                values[mine] = local
            if self.is_world_process_zero():
                os.makedirs(cache_dir, exist_ok=True)
                tmp = path + f".tmp{os.getpid()}"
                torch.save({"key": key, "key_text": key_text, "seed": args.seed, "values": values}, tmp)
                os.replace(tmp, path)
        if self.ref_model is not None and not self.reference_on_the_fly:
            self._release_reference()  # not needed any more: free its memory
        rows = rows.remove_columns([c for c in ("ref_logprob",) if c in rows.column_names])
        self.rows = rows.add_column("ref_logprob", values.tolist())
        self.train_dataset = PairedRows(self.rows) if args.loss == "dpo" else self.rows
        self._reference_ready = True

    def _release_reference(self) -> None:
        """Drop the reference model after the precompute pass: out of ``accelerator._models`` (where
        ``prepare_model`` put it), a DeepSpeed engine destroyed, then collected so its memory is free for training."""
        reference, self.ref_model = self.ref_model, None
        self.accelerator._models[:] = [m for m in self.accelerator._models if m is not reference]
        if self.is_deepspeed_enabled and hasattr(reference, "destroy"):
            try:
                reference.destroy()
            except Exception as exc:  # freeing is best effort: training can go on
                logger.warning("could not destroy the reference's DeepSpeed engine: %s", exc)
        del reference
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ metrics

    def _fold_other_processes_rewards(self, rewards: torch.Tensor) -> None:
        """BCO under data parallelism: fold the other processes' rewards into δ first, so that every
        process's running mean covers the global batch (bco_loss then folds in the local rewards)."""
        if self.args.world_size <= 1:
            return
        stats = torch.stack(
            [rewards.double().sum(), torch.tensor(float(rewards.numel()), device=rewards.device).double()]
        )
        total = self.accelerator.reduce(stats.clone(), "sum")
        others_sum, others_n = float(total[0] - stats[0]), int(round(float(total[1] - stats[1])))
        if others_n > 0:
            self.bco_running_mean.update(torch.full((others_n,), others_sum / others_n, dtype=torch.float64))

    def _record_metrics(self, t: torch.Tensor, preferred: torch.Tensor, kl) -> None:
        """Accumulate sums (so means/stds are exact over all micro-batches, accumulation steps and
        processes between two logs): per class n, Σt, Σt²; preferred rows with |t − log(1/α)| < 0.1 and with
        t > log(1/α) + 0.1 (beyond RDRO's target bound);
        reward accuracy (DPO: t_chosen > t_rejected; else sign(t) agrees with the label); KTO's z0."""
        t = t.double()
        pos, neg = preferred, ~preferred
        bound = math.log(1.0 / self.alpha)
        if self.args.loss == "dpo":
            correct, judged = (t[0::2] > t[1::2]).sum(), t.numel() // 2
        else:
            correct, judged = ((t > 0) & pos).sum() + ((t < 0) & neg).sum(), t.numel()
        values = {
            "n_pos": pos.sum(),
            "n_neg": neg.sum(),
            "sum_t_pos": t[pos].sum(),
            "sum_t_neg": t[neg].sum(),
            "sumsq_t_pos": (t[pos] ** 2).sum(),
            "sumsq_t_neg": (t[neg] ** 2).sum(),
            "near_bound": ((t[pos] - bound).abs() < _NEAR_BOUND).sum(),
            "above_bound": (t[pos] - bound > _NEAR_BOUND).sum(),
            "correct": correct,
            "judged": judged,
        }
        if kl is not None:
            values.update(kl_sum=kl.detach(), kl_n=1)
        for k, v in values.items():
            v = torch.as_tensor(v, device=t.device, dtype=torch.float64)
            self._metric_sums[k] = self._metric_sums.get(k, torch.zeros((), dtype=torch.float64, device=t.device)) + v

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Add the accumulated metrics (logratio/*, rewards/accuracy, kl) to the Trainer's log line."""
        if "loss" in logs and self._metric_sums:
            names = sorted(self._metric_sums)
            s = dict(
                zip(names, self.accelerator.reduce(torch.stack([self._metric_sums[k] for k in names]), "sum").tolist())
            )
            self._metric_sums = {}
            for cls in ("pos", "neg"):
                n = s[f"n_{cls}"]
                if n > 0:
                    mean = s[f"sum_t_{cls}"] / n
                    var = max(s[f"sumsq_t_{cls}"] / n - mean * mean, 0.0) * (n / (n - 1) if n > 1 else 0.0)
                    logs[f"logratio/{'preferred' if cls == 'pos' else 'nonpreferred'}_mean"] = mean
                    logs[f"logratio/{'preferred' if cls == 'pos' else 'nonpreferred'}_std"] = math.sqrt(var)
            if s["n_pos"] > 0:
                logs["logratio/preferred_near_log_inv_alpha"] = s["near_bound"] / s["n_pos"]
                logs["logratio/preferred_above_log_inv_alpha"] = s["above_bound"] / s["n_pos"]
            if s["judged"] > 0:
                logs["rewards/accuracy"] = s["correct"] / s["judged"]
            if s.get("kl_n", 0) > 0:
                logs["kl"] = s["kl_sum"] / s["kl_n"]
        super().log(logs, *args, **kwargs)

    # ------------------------------------------------------------------ BCO state in checkpoints

    def _save_checkpoint(self, model, trial):
        # δ is written first: the Trainer writes trainer_state.json last (the mark of a complete checkpoint), then
        # deletes older checkpoints (save_total_limit)
        if self.args.loss == "bco" and self.args.should_save:
            run_dir = self._get_output_dir(trial=trial)
            folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            atomic_write_text(os.path.join(folder, _BCO_STATE_FILE), json.dumps(self.bco_running_mean.state_dict()))
        super()._save_checkpoint(model, trial)

    def _load_bco_state(self, checkpoint: str) -> None:
        """Restore BCO's running reward mean δ from ``checkpoint`` (called by :meth:`train` when resuming)."""
        path = os.path.join(checkpoint, _BCO_STATE_FILE)
        if not os.path.isfile(path):
            raise ValueError(f"resuming a BCO run needs {path} (the running reward mean δ); it is missing")
        with open(path) as f:
            self.bco_running_mean.load_state_dict(json.load(f))
