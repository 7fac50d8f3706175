"""AlpacaEval 2 length-controlled win rate through the ``alpaca_eval`` package itself.

The judge J compares, for each instruction x, the model's output y against the reference output y_ref (GPT-4
Turbo's, ``alpaca_eval_gpt4_baseline.json``) and gives a preference p(x) = P_J(y ≻ y_ref) ∈ [0, 1] (the
``weighted_*`` annotators read it off the judge's log-probabilities of the two answer tokens). Then

    win rate        WR = 100 · mean_x p(x)
    LC win rate     LC = 100 · mean_x σ(θ_m − θ_b + φ · difficulty(x))   (length term set to 0)

where the GLM  logit p(x) = θ_m − θ_b + ψ · tanh(Δlen(x) / sd) + φ · difficulty(x)  is fitted by the package
(``alpaca_eval.metrics.get_length_controlled_winrate``, the ``length_controlled_v1`` GLM of Dubois et al. 2024,
regularised towards the package's length-gamed baselines). Nothing here re-implements the judge prompt, the
parsing or the GLM: this module only chooses the annotator, supplies local copies of the package's hub files
(reference outputs, ``df_gamed.csv`` with instruction difficulties) and saves the results.

Standard errors: WR's is the package's (the standard error of the mean of p(x) over instructions). The package's
``lc_standard_error`` is the standard error of the mean of the GLM's *predictions*
σ(θ_m − θ_b + φ·difficulty(x)), which is 0 whenever the GLM does not model difficulty
(``length_controlled_minimal``) and ignores the uncertainty of the fitted θ; it is not the sampling error of LC.
The LC standard error saved here is a bootstrap over instructions instead: the package's GLM refitted (its public
``get_length_controlled_winrate``) on ``LC_BOOTSTRAP_RESAMPLES`` resamples of the annotations drawn with the run's
seed (about 0.1 s per refit for 805 instructions); the package's value is kept beside it in the details.

Annotators:

* ``standard``: the package's ``weighted_alpaca_eval_gpt4_turbo`` (needs ``OPENAI_API_KEY``). With all 805
  instructions this is the public leaderboard's protocol, the only one labelled comparable to it.
* ``openai-compatible``: the same prompt and log-prob parser sent to any OpenAI-compatible endpoint
  (``--base-url``, ``--judge-model``; key from ``OPENAI_API_KEY``). Not comparable to the leaderboard.
* ``hf-local``: the same prompt and parser, the log-probabilities of the two answer tokens coming from a local
  Hugging Face judge model (offline use). Not comparable to the leaderboard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import sys
import types
from pathlib import Path
from typing import Any

from rdro.extras import import_optional
from rdro.llm.evaluation.generation import ALPACA_EVAL_HUB_ID, download_alpaca_eval_file, meta_path
from rdro.llm.evaluation.records import make_row, save_results

STANDARD_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
REFERENCE_FILE = "alpaca_eval_gpt4_baseline.json"
GLM_HUB_FILES = ("df_gamed.csv", "instruction_difficulty.csv")
N_ALPACA_EVAL_INSTRUCTIONS = 805
REFERENCE_GENERATOR = "gpt4_1106_preview"  # the generator of AlpacaEval 2's default reference outputs
LC_BOOTSTRAP_RESAMPLES = 200
ANNOTATOR_KINDS = ("standard", "openai-compatible", "hf-local")
API_KEY_VARIABLE = "OPENAI_API_KEY"


class MissingAPIKeyError(RuntimeError):
    """An API-based judge was asked for but the environment variable with its key is not set."""


def import_alpaca_eval() -> types.ModuleType:
    """Import ``alpaca_eval``, first providing the two ``pkg_resources`` functions it calls when setuptools
    (>= 81) no longer ships ``pkg_resources``: ``parse_version`` (packaging's ``Version``) and
    ``get_distribution(name).version`` (``importlib.metadata.version``). An existing ``pkg_resources`` is left alone.
    """
    try:
        importlib.import_module("pkg_resources")
    except ModuleNotFoundError:
        from packaging.version import Version

        compat = types.ModuleType("pkg_resources")
        compat.__doc__ = "rdro's stand-in for the two pkg_resources functions alpaca_eval uses."
        compat.parse_version = Version
        compat.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
        sys.modules["pkg_resources"] = compat
    return import_optional("alpaca_eval", "AlpacaEval")


@contextlib.contextmanager
def alpaca_eval_hub_files(local_dir: str | os.PathLike | None):
    """Within the block, the package's GLM reads its hub files (``df_gamed.csv``, ``instruction_difficulty.csv``)
    from ``local_dir`` (a local copy of the hub dataset ``tatsu-lab/alpaca_eval``) instead of downloading them.

    With ``local_dir=None`` the package downloads as usual, and a failed download becomes a FileNotFoundError
    that says how to provide a local copy.
    """
    import_alpaca_eval()
    glm = importlib.import_module("alpaca_eval.metrics.glm_winrate")
    original = glm.hf_hub_download

    def resolve(repo_id: str, filename: str, **kwargs: Any) -> str:
        if local_dir is None:
            if repo_id != ALPACA_EVAL_HUB_ID:
                return original(repo_id=repo_id, filename=filename, **kwargs)
            return str(
                download_alpaca_eval_file(
                    filename, what="a file of the length-controlled GLM", option="--alpaca-eval-data DIR"
                )
            )
        path = Path(local_dir) / filename
        if not path.is_file():
            raise FileNotFoundError(
                f"alpaca_eval_data={str(local_dir)!r} has no {filename}, which the length-controlled GLM needs; it should "
                f"be a local copy of the hub dataset {ALPACA_EVAL_HUB_ID!r} (`huggingface-cli download "
                f"{ALPACA_EVAL_HUB_ID} --repo-type dataset --local-dir DIR` on a machine with internet)."
            )
        return str(path)

    glm.hf_hub_download = resolve
    try:
        yield
    finally:
        glm.hf_hub_download = original


def length_controlled_winrate(
    annotations: Any,
    alpaca_eval_data: str | os.PathLike | None = None,
    glm_name: str = "length_controlled_v1",
    save_weights_dir: str | os.PathLike | None = None,
    lc_bootstrap: int = LC_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, float]:
    """The package's metrics for pairwise annotations (``alpaca_eval.metrics.get_length_controlled_winrate``).

    ``annotations``: records (or a DataFrame, or a path to the package's ``annotations.json``) with ``preference``
    (1 = reference better, 2 = model better, in between for weighted judges), ``output_1`` (reference),
    ``output_2`` (model), ``generator_1``, ``generator_2``, ``annotator``, in instruction order. Returns the
    package's dict: ``win_rate`` = 100 · mean p, ``standard_error``, ``length_controlled_winrate`` (the GLM's
    prediction with the length term at 0, see the module docstring), ``n_total``, ..., with ``lc_standard_error``
    the bootstrap standard error of :func:`lc_bootstrap_standard_error` (``lc_bootstrap`` resamples, seeded with
    ``seed``; None when ``lc_bootstrap`` is 0) and the package's own value moved to ``lc_sem_of_glm_predictions``.
    """
    import pandas as pd

    alpaca_eval = import_alpaca_eval()
    if isinstance(annotations, (str, os.PathLike)):
        annotations = pd.read_json(annotations)
    frame = pd.DataFrame(annotations).reset_index(drop=True)
    missing = [c for c in ("preference", "output_1", "output_2", "generator_1", "generator_2") if c not in frame]
    if missing:
        raise ValueError(f"annotations lack the column(s) {missing} of alpaca_eval's annotations format")
    with alpaca_eval_hub_files(alpaca_eval_data):
        metrics = alpaca_eval.metrics.get_length_controlled_winrate(
            frame, glm_name=glm_name, save_weights_dir=save_weights_dir, is_add_glm_preference_inplace=False
        )
        return metrics | {
            "lc_standard_error": lc_bootstrap_standard_error(frame, glm_name, lc_bootstrap, seed),
            "lc_sem_of_glm_predictions": metrics["lc_standard_error"],
        }


def _check_lc_bootstrap(n_resamples: Any) -> None:
    if not isinstance(n_resamples, int) or n_resamples < 0:
        raise ValueError(f"lc_bootstrap={n_resamples!r}: expected an integer >= 0 (0 = no LC standard error)")


def lc_bootstrap_standard_error(annotations: Any, glm_name: str, n_resamples: int, seed: int) -> float | None:
    """Bootstrap standard error (percent) of the LC win rate over instructions: the package's GLM
    (``get_length_controlled_winrate``) refitted on ``n_resamples`` resamples of the annotations drawn with
    replacement (``numpy.random.default_rng(seed)``); each row keeps its instruction's position, so the GLM reads
    the right difficulty. Resamples the GLM cannot fit (e.g. all length differences equal) are dropped; None when
    there are no annotations, ``n_resamples`` < 2 or fewer than half of them fit. Call it inside
    :func:`alpaca_eval_hub_files`.
    """
    import numpy as np
    import pandas as pd

    _check_lc_bootstrap(n_resamples)
    if annotations is None or n_resamples < 2:
        return None
    glm = import_alpaca_eval().metrics.get_length_controlled_winrate
    frame = pd.DataFrame(annotations).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(n_resamples):
        sample = frame.iloc[rng.integers(0, len(frame), len(frame))]
        try:
            metrics = glm(
                sample,
                glm_name=glm_name,
                save_weights_dir=None,
                is_add_glm_preference_inplace=False,
                is_warn_extreme_changes=False,
            )
        except ValueError:  # a degenerate resample the GLM cannot fit
            continue
        estimates.append(metrics["length_controlled_winrate"])
    return float(np.std(estimates, ddof=1)) if len(estimates) >= max(2, n_resamples // 2) else None


@dataclasses.dataclass(frozen=True)
class AnnotatorChoice:
    """Which judge annotates: ``kind`` in ANNOTATOR_KINDS, ``model`` the judge model name (``openai-compatible``)
    or local folder (``hf-local``), ``base_url`` the endpoint (``openai-compatible``), ``gguf_file`` an optional
    GGUF file inside the ``hf-local`` folder."""

    kind: str = "standard"
    model: str | None = None
    base_url: str | None = None
    gguf_file: str | None = None

    def __post_init__(self):
        if self.kind not in ANNOTATOR_KINDS:
            raise ValueError(f"annotator={self.kind!r}: expected one of {list(ANNOTATOR_KINDS)}")
        if self.kind == "openai-compatible" and not (self.model and self.base_url):
            raise ValueError(
                f"annotator='openai-compatible' needs --base-url (got {self.base_url!r}) and --judge-model (got {self.model!r})"
            )
        if self.kind == "hf-local" and not (self.model and Path(self.model).is_dir()):
            raise ValueError(f"annotator='hf-local' needs --judge-model, a local model folder (got {self.model!r})")

    @property
    def comparable_to_leaderboard(self) -> bool:
        return self.kind == "standard"

    @property
    def name(self) -> str:
        """``weighted_alpaca_eval_gpt4_turbo`` for the standard judge, else ``<kind>_<model>_<hash>`` where the short
        hash identifies the judge fully (resolved folder and GGUF file, or model and endpoint): annotations cached
        under one name never come from another judge."""
        if self.kind == "standard":
            return STANDARD_ANNOTATOR
        if self.kind == "hf-local":
            label, identity = Path(self.model).name, [str(Path(self.model).resolve()), self.gguf_file]
        else:
            label, identity = self.model, [self.model, self.base_url]
        digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:10]
        return f"{self.kind.replace('-', '_')}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}_{digest}"


def _require_api_key(choice: AnnotatorChoice) -> None:
    if os.environ.get(API_KEY_VARIABLE):
        return
    if choice.kind == "standard":
        hint = (
            f"the standard AlpacaEval 2 annotator ({STANDARD_ANNOTATOR}, GPT-4 Turbo) calls the OpenAI API: set "
            f"{API_KEY_VARIABLE} to your OpenAI key, or judge offline with --annotator hf-local --judge-model PATH "
            "(results not comparable to the leaderboard)"
        )
    else:
        hint = (
            f"the OpenAI-compatible endpoint {choice.base_url} is called with the key in {API_KEY_VARIABLE}: set it "
            "(any placeholder such as EMPTY for a local server without authentication)"
        )
    raise MissingAPIKeyError(f"{API_KEY_VARIABLE} is not set: {hint}.")


def prepare_annotator(choice: AnnotatorChoice, work_dir: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """Return ``(annotators_config, extra PairwiseAnnotator kwargs)`` for ``alpaca_eval.evaluate``.

    The non-standard judges reuse the standard config (prompt template, ``logprob_parser`` with tokens m / M,
    weighted preference) and change only where the log-probabilities come from; their config is written to
    ``work_dir/annotator_configs/<name>/configs.yaml`` (no secrets in it: the key stays in the environment).
    """
    import yaml

    import_alpaca_eval()
    if choice.kind != "hf-local":
        _require_api_key(choice)
    if choice.kind == "standard":
        return STANDARD_ANNOTATOR, {}
    constants = importlib.import_module("alpaca_eval.constants")
    standard_dir = constants.EVALUATORS_CONFIG_DIR / STANDARD_ANNOTATOR
    config = yaml.safe_load((standard_dir / "configs.yaml").read_text())[STANDARD_ANNOTATOR]
    config["prompt_template"] = str(constants.EVALUATORS_CONFIG_DIR / config["prompt_template"])
    extra: dict[str, Any] = {}
    if choice.kind == "openai-compatible":
        config["completions_kwargs"].update(
            model_name=choice.model, requires_chatml=True, client_kwargs={"base_url": choice.base_url}
        )
    else:
        del config["fn_completions"]
        config["completions_kwargs"] = {"model_name": str(Path(choice.model).resolve()), "gguf_file": choice.gguf_file}
        extra["fn_completions"] = hf_judge_completions
    config_dir = Path(work_dir) / "annotator_configs" / choice.name
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configs.yaml").write_text(yaml.safe_dump({choice.name: config}, sort_keys=False))
    return str(config_dir / "configs.yaml"), extra


_JUDGES: dict[tuple[str, str | None], Any] = {}


def hf_judge_completions(
    prompts: list[str], model_name: str, gguf_file: str | None = None, **_: Any
) -> dict[str, list]:
    """``fn_completions`` for ``alpaca_eval`` backed by a local Hugging Face causal LM (the ``hf-local`` judge).

    Each ChatML prompt of the annotator template becomes the judge's own chat (``alpaca_eval.utils.prompt_to_chatml``
    then the judge's chat template); one forward pass gives log P_J(token | prompt) at the answer position, and the
    completion reports, OpenAI-style, the log-probabilities of the answer tokens ``m`` (first output better) and
    ``M`` (second better), which the package's ``logprob_parser`` turns into p = P(M) / (P(m) + P(M)).
    The judge loads with ``AutoModelForCausalLM`` directly, not the trainer's loader: any architecture may judge.
    """
    import time

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    utils = importlib.import_module("alpaca_eval.utils")
    key = (model_name, gguf_file)
    if key not in _JUDGES:
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        tokenizer = AutoTokenizer.from_pretrained(model_name, **kwargs)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"judge_model={model_name!r}: its tokenizer has no chat template")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForCausalLM.from_pretrained(model_name, dtype="auto", **kwargs).to(device).eval()
        token_ids = {}
        for token in ("m", "M"):
            ids = tokenizer.encode(token, add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(
                    f"judge_model={model_name!r}: the answer token {token!r} is not a single token ({ids})"
                )
            token_ids[token] = ids[0]
        _JUDGES[key] = (tokenizer, model, token_ids)
    tokenizer, model, token_ids = _JUDGES[key]
    completions, texts, seconds = [], [], []
    for prompt in prompts:
        start = time.perf_counter()
        chat = tokenizer.apply_chat_template(utils.prompt_to_chatml(prompt), tokenize=False, add_generation_prompt=True)
        ids = tokenizer(chat, return_tensors="pt", add_special_tokens=False).to(model.device)
        with torch.no_grad():
            logprobs = torch.log_softmax(model(**ids).logits[0, -1].float(), dim=-1)
        top = [{"token": t, "logprob": float(logprobs[i])} for t, i in token_ids.items()]
        best = max(top, key=lambda entry: entry["logprob"])
        completions.append(
            {
                "text": best["token"],
                "logprobs": {"content": [{**best, "top_logprobs": top}]},
                "total_tokens": int(ids["input_ids"].shape[1]) + 1,
            }
        )
        texts.append(best["token"])
        seconds.append(time.perf_counter() - start)
    return {
        "completions": texts,
        "completions_all": completions,
        "price_per_example": [0.0] * len(texts),
        "time_per_example": seconds,
    }


def load_reference_outputs(
    reference: str | os.PathLike | None, alpaca_eval_data: str | os.PathLike | None
) -> list[dict]:
    """The reference outputs y_ref: ``reference`` if given, else ``<alpaca_eval_data>/alpaca_eval_gpt4_baseline.json``,
    else the hub file (with a clear error when no hub is reachable)."""
    if reference is not None:
        path = Path(reference)
        if not path.is_file():
            raise FileNotFoundError(
                f"reference={str(reference)!r}: no such file; it should be {REFERENCE_FILE} from the hub dataset "
                f"{ALPACA_EVAL_HUB_ID!r} (or another JSON list with 'instruction', 'output', 'generator')."
            )
    elif alpaca_eval_data is not None:
        path = Path(alpaca_eval_data) / REFERENCE_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"alpaca_eval_data={str(alpaca_eval_data)!r} has no {REFERENCE_FILE}; it should be a local copy of the "
                f"hub dataset {ALPACA_EVAL_HUB_ID!r}, or pass the reference outputs with --reference FILE."
            )
    else:
        path = download_alpaca_eval_file(
            REFERENCE_FILE, what="the AlpacaEval 2 reference outputs", option="--reference"
        )
    rows = json.loads(path.read_text(encoding="utf-8"))
    for i, row in enumerate(rows):
        if not all(k in row for k in ("instruction", "output", "generator")):
            raise ValueError(f"reference={str(path)!r}: row {i} lacks one of 'instruction', 'output', 'generator'")
    return rows


def align_with_reference(outputs: list[dict], reference: list[dict]) -> tuple[list[dict], list[dict]]:
    """Order the model outputs like the reference and keep the reference rows they answer.

    The GLM looks up each instruction's difficulty by its position in the full 805-instruction set, so the model
    outputs must answer exactly the first n reference instructions (what ``generate --limit n`` produces).
    """
    by_instruction = {row["instruction"]: row for row in outputs}
    if len(by_instruction) != len(outputs):
        raise ValueError("outputs: some instruction appears twice; each instruction needs exactly one output")
    head = reference[: len(outputs)]
    missing = [row["instruction"] for row in head if row["instruction"] not in by_instruction]
    if missing:
        raise ValueError(
            f"outputs answer {len(outputs)} instructions but not the first {len(outputs)} of the reference "
            f"(e.g. missing {missing[0][:80]!r}); generate from the same instruction file, in its order"
        )
    return [by_instruction[row["instruction"]] for row in head], head


def run_alpaca_eval(
    outputs: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    model: str,
    method: str,
    dataset: str,
    annotator: AnnotatorChoice,
    reference: str | os.PathLike | None = None,
    alpaca_eval_data: str | os.PathLike | None = None,
    glm_name: str = "length_controlled_v1",
    seed: int = 0,
    lc_bootstrap: int = LC_BOOTSTRAP_RESAMPLES,
) -> dict[str, Any]:
    """Judge ``outputs`` against the reference with ``alpaca_eval.evaluate`` and save LC WR and WR with their
    standard errors (LC's by bootstrap, ``lc_bootstrap`` resamples: see the module docstring) to
    ``<out_dir>/alpaca_eval_results.json``.

    The package's own annotation cache (``<out_dir>/annotations_cache_seed<seed>.json``; its entries carry the
    judge's name, which identifies the judge fully) makes an interrupted judging run resume without re-asking the
    judge; its ``annotations.json`` and ``leaderboard.csv`` land in ``out_dir``. Only the standard judge on all
    805 instructions against the default reference outputs (``gpt4_1106_preview``) with the standard GLM is
    labelled comparable to the public leaderboard. Returns the saved payload.
    """
    import pandas as pd

    alpaca_eval = import_alpaca_eval()
    _check_lc_bootstrap(lc_bootstrap)
    outputs = Path(outputs)
    if not outputs.is_file():
        raise FileNotFoundError(f"outputs={str(outputs)!r}: no such file (make it with `rdro eval generate`)")
    records = json.loads(outputs.read_text(encoding="utf-8"))
    generators = sorted({str(r.get("generator")) for r in records})
    if len(generators) != 1:
        raise ValueError(f"outputs={str(outputs)!r}: expected outputs of one generator, found {generators}")
    generation = json.loads(meta_path(outputs).read_text())["settings"] if meta_path(outputs).exists() else None
    model_rows, reference_rows = align_with_reference(records, load_reference_outputs(reference, alpaca_eval_data))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    annotators_config, extra = prepare_annotator(annotator, out_dir)
    with alpaca_eval_hub_files(alpaca_eval_data):
        leaderboard, annotations = alpaca_eval.evaluate(
            model_outputs=pd.DataFrame(model_rows),
            reference_outputs=pd.DataFrame(reference_rows),
            annotators_config=annotators_config,
            name=generators[0],
            output_path=out_dir,
            precomputed_leaderboard=None,
            is_cache_leaderboard=False,
            is_return_instead_of_print=True,
            fn_metric="get_length_controlled_winrate",
            metric_kwargs={"glm_name": glm_name, "save_weights_dir": out_dir / "glm_weights"},
            caching_path=out_dir / f"annotations_cache_seed{seed}.json",
            seed=seed,
            **extra,
        )
        metrics = leaderboard.loc[generators[0]]
        lc_stderr = lc_bootstrap_standard_error(annotations, glm_name, lc_bootstrap, seed)
    n = int(metrics["n_total"])
    reference_generators = sorted({str(r["generator"]) for r in reference_rows})
    reasons = [
        reason
        for standard, reason in (
            (annotator.comparable_to_leaderboard, f"judge {annotator.name}"),
            (n == N_ALPACA_EVAL_INSTRUCTIONS, f"{n} of {N_ALPACA_EVAL_INSTRUCTIONS} instructions"),
            (glm_name == "length_controlled_v1", f"GLM {glm_name}"),
            (reference_generators == [REFERENCE_GENERATOR], f"reference outputs of {reference_generators}"),
        )
        if not standard
    ]
    comparable = not reasons
    common = dict(
        model=model,
        method=method,
        dataset=dataset,
        n=n,
        annotator=annotator.name,
        comparable_to_leaderboard=comparable,
        task_variant="alpaca_eval_2",
        seed=seed,
    )
    rows = [
        make_row(
            metric="alpaca_eval2_lc_winrate",
            value=float(metrics["length_controlled_winrate"]),
            stderr=lc_stderr,
            **common,
        ),
        make_row(
            metric="alpaca_eval2_winrate",
            value=float(metrics["win_rate"]),
            stderr=float(metrics["standard_error"]),
            **common,
        ),
    ]
    details = {
        "outputs": str(outputs),
        "generator": generators[0],
        "generation_settings": generation,
        "annotator": dataclasses.asdict(annotator) | {"name": annotator.name, "config": annotators_config},
        "glm_name": glm_name,
        "lc_standard_error": {
            "method": "bootstrap over instructions, GLM refitted",
            "resamples": lc_bootstrap,
            "seed": seed,
            "alpaca_eval_sem_of_glm_predictions": float(metrics["lc_standard_error"]),
        },
        "reference_generator": reference_generators,
        "alpaca_eval_version": importlib.metadata.version("alpaca_eval"),
        "leaderboard_row": {k: (v.item() if hasattr(v, "item") else v) for k, v in metrics.items()},
        "note": None if comparable else f"NOT comparable to the public AlpacaEval 2 leaderboard: {'; '.join(reasons)}",
    }
    save_results(out_dir / "alpaca_eval_results.json", rows, details)
    return {"rows": rows, "details": details}
