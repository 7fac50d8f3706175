"""Batched, resumable generation of model outputs for the AlpacaEval instruction set.

For every instruction x the model's chat template turns the single user turn into a prompt, and the policy
π_θ(y | x) produces y (greedy: y_k = argmax π_θ(· | x, y_<k); sampled: temperature T and nucleus top-p). The
outputs are written in the format the ``alpaca_eval`` package reads, a JSON list of

    {"instruction": x, "output": y, "generator": NAME, "dataset": SUBSET}

Progress is saved after every batch to ``<out>.partial.json`` (temporary file + rename), so a killed run
continues where it stopped; the finished file is ``<out>`` plus a sidecar ``<out>.meta.json`` holding the
generation settings. A run refuses to continue from files written by another generator or with other settings
(dtype and batch size included: both change the outputs).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from rdro.llm.evaluation.records import write_json_atomic

ALPACA_EVAL_HUB_ID = "tatsu-lab/alpaca_eval"
ALPACA_EVAL_FILE = "alpaca_eval.json"
ALPACA_EVAL_URL = f"https://huggingface.co/datasets/{ALPACA_EVAL_HUB_ID}/resolve/main/{ALPACA_EVAL_FILE}"


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """What determines the outputs: model, generator name, decoding rule, seed, dtype and batch size.

    Greedy decoding when ``temperature == 0``; otherwise sampling from π_θ^{1/T} restricted to the top-p nucleus.
    Sampled outputs are seeded per batch with ``seed + batch_start`` so that an interrupted and resumed run
    reproduces an uninterrupted one. ``dtype`` (the weights' dtype, as given to :class:`ChatGenerator`) and
    ``batch_size`` (padding and the per-batch seeds) change the outputs too, so a run resumes only with the same.
    """

    model: str
    generator: str
    max_new_tokens: int = 2048
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 42
    gguf_file: str | None = None
    dtype: str = "auto"
    batch_size: int = 8

    def __post_init__(self):
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens!r}: expected an integer >= 1")
        if not (self.temperature >= 0.0):
            raise ValueError(f"temperature={self.temperature!r}: expected a number >= 0 (0 means greedy)")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p={self.top_p!r}: expected a number in (0, 1]")
        if not self.generator or not isinstance(self.generator, str):
            raise ValueError(f"generator={self.generator!r}: expected a non-empty name")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r}: expected an integer >= 1")
        if not self.dtype or not isinstance(self.dtype, str):
            raise ValueError(f"dtype={self.dtype!r}: expected a dtype name such as 'auto' or 'bfloat16'")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_instructions(source: str | os.PathLike, limit: int | None = None) -> list[dict[str, str]]:
    """Read the evaluation instructions: ``[{"instruction": x, "dataset": subset}, ...]`` in file order.

    ``source`` is a local ``.json`` (a list of objects) or ``.jsonl`` file whose rows have an ``instruction``
    field (``tatsu-lab/alpaca_eval``'s ``alpaca_eval.json`` has 805), or the hub id ``tatsu-lab/alpaca_eval``
    (downloaded when a hub is reachable). ``limit`` keeps the first ``limit`` instructions.
    """
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit={limit!r}: expected an integer >= 1 or None")
    path = Path(source)
    if not path.exists():
        if str(source) != ALPACA_EVAL_HUB_ID:
            raise FileNotFoundError(
                f"prompts={str(source)!r}: no such file. Give a local .json/.jsonl file with an 'instruction' field, "
                f"e.g. a copy of {ALPACA_EVAL_URL}, or the hub id {ALPACA_EVAL_HUB_ID!r} when a hub is reachable."
            )
        path = download_alpaca_eval_file(ALPACA_EVAL_FILE, what="the AlpacaEval instructions", option="--prompts")
    rows = _read_json_rows(path, argument="prompts")
    instructions, seen = [], set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("instruction"), str):
            raise ValueError(f"prompts={str(path)!r}: row {i} has no string field 'instruction' (got {row!r:.200})")
        if row["instruction"] in seen:
            raise ValueError(
                f"prompts={str(path)!r}: row {i} repeats an earlier instruction; instructions must be unique"
            )
        seen.add(row["instruction"])
        instructions.append({"instruction": row["instruction"], "dataset": str(row.get("dataset", path.stem))})
    if not instructions:
        raise ValueError(f"prompts={str(path)!r}: the file holds no instructions")
    return instructions[:limit] if limit is not None else instructions


def _read_json_rows(path: Path, argument: str) -> list:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = json.loads(text)
    if not isinstance(rows, list):
        raise ValueError(f"{argument}={str(path)!r}: expected a JSON list of objects, got {type(rows).__name__}")
    return rows


def download_alpaca_eval_file(filename: str, what: str, option: str) -> Path:
    """Fetch ``filename`` from the ``tatsu-lab/alpaca_eval`` hub dataset, or explain how to give a local copy."""
    url = f"https://huggingface.co/datasets/{ALPACA_EVAL_HUB_ID}/resolve/main/{filename}"
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=ALPACA_EVAL_HUB_ID, filename=filename, repo_type="dataset"))
    except Exception as exc:  # offline, no such file, proxy errors: all mean "no hub copy"
        raise FileNotFoundError(
            f"could not fetch {what} ({filename}) from the hub dataset {ALPACA_EVAL_HUB_ID!r} ({type(exc).__name__}: "
            f"{str(exc)[:200]}). No hub is reachable? Download {url} on a machine with internet (or "
            f"`huggingface-cli download {ALPACA_EVAL_HUB_ID} --repo-type dataset --local-dir DIR`) and pass the "
            f"local file with {option}."
        ) from exc


def partial_path(out: str | os.PathLike) -> Path:
    """Where an unfinished run keeps its progress: ``<out>.partial.json``."""
    return Path(str(out) + ".partial.json")


def meta_path(out: str | os.PathLike) -> Path:
    """Sidecar of a finished output file with its generation settings: ``<out>.meta.json``."""
    return Path(str(out) + ".meta.json")


def _check_same_settings(found: dict, settings: GenerationSettings, where: Path) -> None:
    expected = settings.as_dict()
    if found.get("generator") != settings.generator or found.get("model") != settings.model:
        raise ValueError(
            f"{where} holds outputs of generator {found.get('generator')!r} (model {found.get('model')!r}), not of "
            f"{settings.generator!r} (model {settings.model!r}); choose another --out or delete that file."
        )
    unrecorded = [k for k in expected if k not in found]
    if unrecorded:
        raise ValueError(
            f"{where} does not record the setting(s) {unrecorded} (written by an older rdro), so it cannot be checked "
            "against this run; delete or rename that file to generate afresh, or choose another --out."
        )
    differing = {k: (found.get(k), v) for k, v in expected.items() if found.get(k) != v}
    if differing:
        detail = ", ".join(f"{k}: file {a!r} vs now {b!r}" for k, (a, b) in differing.items())
        raise ValueError(
            f"{where} was generated with other settings ({detail}); rerun with the same settings to resume, "
            f"or choose another --out."
        )


def load_finished_outputs(out: str | os.PathLike, settings: GenerationSettings) -> list[dict[str, str]]:
    """Records already generated for ``settings`` at ``out`` (finished file or partial progress), else ``[]``.

    Raises ValueError when the file there comes from another generator/model or other generation settings.
    """
    out = Path(out)
    records: list[dict[str, str]] = []
    if out.exists():
        try:
            finished = json.loads(out.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"out={str(out)!r} exists but is not JSON ({exc}); choose another --out") from exc
        generators = {r.get("generator") for r in finished if isinstance(r, dict)}
        if generators - {settings.generator}:
            raise ValueError(
                f"out={str(out)!r} holds outputs of generator(s) {sorted(map(str, generators))}, not of "
                f"{settings.generator!r}; choose another --out or delete that file."
            )
        if not meta_path(out).exists():
            raise ValueError(
                f"out={str(out)!r} exists but has no {meta_path(out).name} with its generation settings, so it cannot "
                "be checked against this run; choose another --out or delete that file."
            )
        _check_same_settings(json.loads(meta_path(out).read_text(encoding="utf-8"))["settings"], settings, out)
        records = finished
    part = partial_path(out)
    if part.exists():
        progress = json.loads(part.read_text(encoding="utf-8"))
        _check_same_settings(progress["settings"], settings, part)
        done = {r["instruction"] for r in records}
        records = records + [r for r in progress["records"] if r["instruction"] not in done]
    return records


class ChatGenerator:
    """A causal LM and its tokenizer, generating replies to single-turn chats in left-padded batches.

    Loads through the trainer's loaders (``rdro.llm.models.load_causal_lm`` / ``load_tokenizer``): a local
    Hugging Face folder, a GGUF file in it (``gguf_file``) or a ``.gguf`` path. The prompt is
    ``tokenizer.apply_chat_template([{"role": "user", "content": x}], add_generation_prompt=True)``; the reply
    is the decoded new tokens with special tokens removed.
    """

    def __init__(self, model_path: str, gguf_file: str | None = None, dtype: str = "auto", device: str | None = None):
        import torch

        from rdro.llm.models import load_causal_lm, load_tokenizer

        self.tokenizer = load_tokenizer(str(model_path), gguf_file)
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"model={model_path!r}: its tokenizer has no chat template; an instruct model is needed")
        self.tokenizer.padding_side = "left"
        self.dtype = dtype
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_causal_lm(str(model_path), gguf_file, dtype).to(self.device)
        self.model.eval()

    def generate(self, instructions: list[str], settings: GenerationSettings, seed: int) -> list[str]:
        """Replies y to each instruction x, greedy or sampled (seeded with ``seed``) as ``settings`` say."""
        import torch

        texts = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": x}], tokenize=False, add_generation_prompt=True
            )
            for x in instructions
        ]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling = {} if settings.greedy else {"temperature": settings.temperature, "top_p": settings.top_p}
        torch.manual_seed(seed)
        with torch.no_grad():
            generated = self.model.generate(
                **batch,
                max_new_tokens=settings.max_new_tokens,
                do_sample=not settings.greedy,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def generate_outputs(
    generator: ChatGenerator,
    instructions: list[dict[str, str]],
    out: str | os.PathLike,
    settings: GenerationSettings,
    stop_after_batches: int | None = None,
) -> list[dict[str, str]]:
    """Generate the missing outputs for ``instructions`` and write ``out`` (AlpacaEval format) when all are done.

    ``generator`` must have been loaded with ``settings.dtype``. Batches are fixed slices
    ``instructions[b : b + batch_size]`` (``settings.batch_size``) of the instruction list; a batch whose
    instructions are all done already is skipped, and sampled batches use the seed ``settings.seed + b``.
    After every batch the records so far go to ``<out>.partial.json`` (temporary file + rename).
    ``stop_after_batches`` stops after that many newly generated batches, leaving the partial file, as a
    killed run would (for tests). Returns the records in instruction order, followed, once finished, by any
    earlier outputs at ``out`` for instructions outside this run (e.g. after a smaller ``--limit``).
    """
    from tqdm.auto import tqdm

    if generator.dtype != settings.dtype:
        raise ValueError(
            f"settings.dtype={settings.dtype!r} but the generator was loaded with dtype={generator.dtype!r}; "
            "give both the same dtype"
        )
    batch_size = settings.batch_size
    out = Path(out)
    done = {r["instruction"]: r for r in load_finished_outputs(out, settings)}
    wanted = {row["instruction"] for row in instructions}
    starts = [b for b in range(0, len(instructions), batch_size)]
    todo = [b for b in starts if any(r["instruction"] not in done for r in instructions[b : b + batch_size])]
    new_batches = 0
    for b in tqdm(todo, desc=f"generating ({settings.generator})", unit="batch"):
        if stop_after_batches is not None and new_batches >= stop_after_batches:
            return [done[r["instruction"]] for r in instructions if r["instruction"] in done]
        rows = [r for r in instructions[b : b + batch_size] if r["instruction"] not in done]
        replies = generator.generate([r["instruction"] for r in rows], settings, seed=settings.seed + b)
        for row, reply in zip(rows, replies):
            done[row["instruction"]] = {
                "instruction": row["instruction"],
                "output": reply,
                "generator": settings.generator,
                "dataset": row["dataset"],
            }
        new_batches += 1
        records = [done[r["instruction"]] for r in instructions if r["instruction"] in done]
        write_json_atomic(partial_path(out), {"settings": settings.as_dict(), "records": records})
    # keep earlier outputs for instructions outside this run (e.g. a later --limit smaller than a previous one)
    records = [done[r["instruction"]] for r in instructions] + [r for k, r in done.items() if k not in wanted]
    write_json_atomic(meta_path(out), {"settings": settings.as_dict(), "n_outputs": len(records)})
    write_json_atomic(out, records)
    if partial_path(out).exists():
        partial_path(out).unlink()
    return records
