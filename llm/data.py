"""Preference data for the LLM trainer: loading, validation, pair conversion, tokenisation, batching.

Formats (the TRL conventions, shared/method.md §1):

- **unpaired**: columns ``prompt``, ``completion``, ``label`` (bool; True = preferred, a sample of p+;
  False = non-preferred, a sample of p−);
- **paired**: columns ``prompt``, ``chosen``, ``rejected``; each pair becomes one preferred and one
  non-preferred unpaired row that share a ``pair_id`` (DPO trains on the pairs themselves).

``prompt`` / ``completion`` are either plain strings or conversations (lists of ``{"role", "content"}``
messages); conversations go through the tokenizer's chat template.

Tokenisation of one row (the recipe's rule): the prompt tokens are the tokenised prompt (with the
generation prompt for conversations), the completion tokens what the full text adds after them.
The prompt is truncated **from the left** to ``max_prompt_length`` (a leading BOS token kept), then the
completion is truncated (from the right) to fit ``max_length``. Prompt tokens and padding are masked out of the sequence
log-prob, so log π(y|x) = Σ_{t ∈ completion} log π(y_t | x, y_<t).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from rdro.losses import preferred_fraction
from rdro.ratios import check_fraction

__all__ = [
    "HUB_DATASETS",
    "load_preference_dataset",
    "to_unpaired",
    "validate_unpaired",
    "resolve_alpha",
    "tokenize_row",
    "tokenize_dataset",
    "tokenized_digest",
    "PairedRows",
    "PreferenceCollator",
    "example_dataset_path",
]

#: Short names of the paper's datasets (shared/method.md §5) → hub ids.
HUB_DATASETS = {
    "UF-G": "trl-lib/ultrafeedback-gpt-3.5-turbo-helpfulness",
    "MIX-14K": "trl-lib/kto-mix-14k",
}

UNPAIRED_COLUMNS = ("prompt", "completion", "label")
PAIRED_COLUMNS = ("prompt", "chosen", "rejected")
_LOCAL_FILE_TYPES = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_LOCAL_PATH_SUFFIXES = (*_LOCAL_FILE_TYPES, ".csv")
#: split names in data file names (the hub's data/ layout) → the split they belong to
_SPLIT_ALIASES = {
    "train": "train",
    "test": "test",
    "validation": "validation",
    "valid": "validation",
    "dev": "validation",
}
_SPLIT_FILE_NAME = re.compile(r"^(train|test|validation|valid|dev)(?=[-._ 0-9])", re.IGNORECASE)


def example_dataset_path(paired: bool = False) -> str:
    """Path of the preference dataset shipped with rdro (``llm/data/``, made by ``rdro.llm.make_example_data``)."""
    name = "arithmetic_pairs.jsonl" if paired else "arithmetic_preferences.jsonl"
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", name)


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------


def _split_of(filename: str) -> str | None:
    """The split a data file belongs to by its name (the hub's ``data/`` layout): ``train*``, ``test*``,
    ``validation*`` / ``valid*`` / ``dev*`` followed by a separator (``-._ `` or a digit) or the extension;
    None for any other name."""
    match = _SPLIT_FILE_NAME.match(filename)
    return _SPLIT_ALIASES[match.group(1).lower()] if match else None


def _load_data_folder(datasets, source: str, path: str, split: str):
    """Load the ``split`` files of a folder of json/jsonl/parquet files. Files named by split (``train.jsonl``,
    ``test-00000-of-00001.parquet``, ...) are grouped by it; a folder whose files carry no split name is one
    ``train`` split."""
    files = sorted(f for f in os.listdir(path) if os.path.splitext(f)[1].lower() in _LOCAL_FILE_TYPES)
    if not files:
        raise ValueError(f"dataset folder {source!r} holds no save_to_disk dataset and no json/jsonl/parquet files")
    by_split: dict[str, list[str]] = {}
    for f in files:
        by_split.setdefault(_split_of(f) or "", []).append(f)
    unnamed = by_split.pop("", [])
    if unnamed and by_split:
        raise ValueError(
            f"dataset folder {source!r} mixes files named by split ({sorted(by_split)}) with files of no split "
            f"{unnamed[:5]}; name every file train*/test*/validation* or move the others out"
        )
    by_split = by_split or {"train": unnamed}
    wanted = _SPLIT_ALIASES.get(split.lower(), split)
    if wanted not in by_split:
        raise ValueError(
            f"dataset folder {source!r} has no split={split!r}; splits found: {sorted(by_split)} "
            "(files named train*, test*, validation*/valid*/dev*; a folder of unnamed files is split 'train')"
        )
    chosen = by_split[wanted]
    kinds = {_LOCAL_FILE_TYPES[os.path.splitext(f)[1].lower()] for f in chosen}
    if len(kinds) != 1:
        raise ValueError(f"dataset folder {source!r}: split {wanted!r} mixes json and parquet files {chosen[:5]}")
    return datasets.load_dataset(kinds.pop(), data_files=[os.path.join(path, f) for f in chosen], split="train")


def _looks_local(source: str, path: str) -> bool:
    """A source that cannot be a hub id: a data-file extension, a path prefix, or an existing parent folder."""
    parent = os.path.dirname(path)
    return (
        source.startswith((".", "/", "~"))
        or os.path.splitext(path)[1].lower() in _LOCAL_PATH_SUFFIXES
        or (bool(parent) and os.path.isdir(parent))
    )


def load_preference_dataset(source: str, split: str = "train"):
    """Load a preference dataset (``datasets.Dataset``) from a local file/folder or a hub id.

    ``source``: a ``.json`` / ``.jsonl`` / ``.parquet`` file, a folder written by
    ``Dataset.save_to_disk`` (or ``DatasetDict.save_to_disk``; ``split`` picks the split), a folder
    of such files (files named ``train*`` / ``test*`` / ``validation*``, ``valid*``, ``dev*`` are grouped into
    those splits and ``split`` picks one; a folder of files without split names is the ``train`` split), one of
    the short names in :data:`HUB_DATASETS` (``"UF-G"``, ``"MIX-14K"``) or a hub id. A missing source with a
    data-file extension or an existing parent folder is a mistyped local path, not a hub id. Hub ids need a
    reachable hub; offline, the error says how to provide a local copy.
    """
    import datasets

    if not isinstance(source, str) or not source:
        raise ValueError(f"dataset must be a non-empty path or hub id, got {source!r}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty split name such as 'train', got {split!r}")
    path = os.path.expanduser(source)
    if os.path.isfile(path):
        ext = os.path.splitext(path)[1].lower()
        if ext not in _LOCAL_FILE_TYPES:
            raise ValueError(
                f"dataset file {source!r} has extension {ext!r}; expected one of {sorted(_LOCAL_FILE_TYPES)}"
            )
        return datasets.load_dataset(_LOCAL_FILE_TYPES[ext], data_files=path, split="train")
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "dataset_info.json")) or os.path.exists(
            os.path.join(path, "dataset_dict.json")
        ):
            loaded = datasets.load_from_disk(path)
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise ValueError(f"dataset folder {source!r} has splits {list(loaded)}, not split={split!r}")
                loaded = loaded[split]
            return loaded
        return _load_data_folder(datasets, source, path, split)
    if _looks_local(source, path):
        raise ValueError(
            f"dataset {source!r}: no such file or folder ({os.path.abspath(path)}); check the path (a local "
            f"{'/'.join(sorted(_LOCAL_FILE_TYPES))} file or a folder of them), or give a hub id 'owner/name'"
        )
    hub_id = HUB_DATASETS.get(source, source)
    if hub_id.count("/") != 1:
        raise ValueError(f"dataset {source!r} is neither an existing file/folder nor a hub id of the form 'owner/name'")
    try:
        return datasets.load_dataset(hub_id, split=split)
    except Exception as exc:  # offline, unknown id, no permission
        raise ValueError(
            f"could not load dataset {hub_id!r} (split {split!r}) from the Hugging Face hub: {exc}.\n"
            f"To train offline, make a local copy on a machine with internet access, e.g.\n"
            f"  python -c \"import datasets; datasets.load_dataset('{hub_id}').save_to_disk('{hub_id.split('/')[-1]}')\"\n"
            f"copy the folder here and pass --dataset /path/to/{hub_id.split('/')[-1]} "
            "(json/jsonl/parquet files with the same columns work too)."
        ) from exc


# ---------------------------------------------------------------------------
# validation and pair conversion
# ---------------------------------------------------------------------------


def _is_conversation(value) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)


def _check_text(value, column: str, row: int) -> None:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"row {row}: column {column!r} is an empty string; every {column} needs text")
        return
    if _is_conversation(value):
        if not value or not any(str(m["content"]).strip() for m in value):
            raise ValueError(f"row {row}: column {column!r} is an empty conversation; every {column} needs text")
        return
    raise ValueError(
        f"row {row}: column {column!r} must be a string or a list of {{'role', 'content'}} messages, "
        f"got {type(value).__name__}: {str(value)[:80]!r}"
    )


def _missing_columns_error(columns: Sequence[str]) -> ValueError:
    return ValueError(
        f"dataset has columns {list(columns)}; expected the unpaired format {list(UNPAIRED_COLUMNS)} "
        f"or the paired format {list(PAIRED_COLUMNS)}"
    )


def validate_unpaired(dataset) -> None:
    """Check an unpaired dataset: the three columns, a boolean ``label``, non-empty prompts and
    completions of one kind (both text or both conversations), and both classes present
    (α = preferred fraction must lie in (0, 1))."""
    missing = [c for c in UNPAIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"dataset is missing column(s) {missing}; " + str(_missing_columns_error(dataset.column_names))
        )
    labels = dataset["label"]
    for i, lab in enumerate(labels):
        if not isinstance(lab, bool):
            raise ValueError(
                f"row {i}: column 'label' must be a boolean (True = preferred, False = non-preferred), "
                f"got {type(lab).__name__} {lab!r}"
            )
    for i, (p, c) in enumerate(zip(dataset["prompt"], dataset["completion"])):
        _check_text(p, "prompt", i)
        _check_text(c, "completion", i)
        if isinstance(p, str) != isinstance(c, str):
            raise ValueError(
                f"row {i}: prompt and completion must both be strings or both be conversations, "
                f"got {type(p).__name__} and {type(c).__name__}"
            )
    preferred_fraction(labels)  # raises on a dataset with one class only


def to_unpaired(dataset):
    """Return the dataset in the unpaired format, with a ``pair_id`` column.

    Paired rows (``prompt``, ``chosen``, ``rejected``) → two rows each:
    (prompt, chosen, True, pair_id=i) followed by (prompt, rejected, False, pair_id=i).
    Unpaired datasets get ``pair_id = -1``. The result is validated (:func:`validate_unpaired`).
    """
    import datasets

    cols = dataset.column_names
    if all(c in cols for c in PAIRED_COLUMNS):
        rows = []
        for i, ex in enumerate(dataset):
            for key, label in (("chosen", True), ("rejected", False)):
                rows.append({"prompt": ex["prompt"], "completion": ex[key], "label": label, "pair_id": i})
        out = datasets.Dataset.from_list(rows)
    elif all(c in cols for c in UNPAIRED_COLUMNS):
        out = dataset.select_columns(list(UNPAIRED_COLUMNS))
        out = out.add_column("pair_id", [-1] * len(out))
    else:
        missing = [c for c in UNPAIRED_COLUMNS if c not in cols]
        raise ValueError(f"dataset is missing column(s) {missing}; " + str(_missing_columns_error(cols)))
    validate_unpaired(out)
    return out


def resolve_alpha(alpha, labels) -> float:
    """α for RDRO: a number in (0, 1) as given, or ``"auto"`` = the dataset's preferred fraction
    n+ / (n+ + n−) (the paper's choice; 0.39 for UF-G, 0.5 for MIX-14K)."""
    if alpha == "auto":
        return preferred_fraction(list(labels))
    return check_fraction(alpha, "alpha")


# ---------------------------------------------------------------------------
# tokenisation
# ---------------------------------------------------------------------------


def _ids(encoded) -> list[int]:
    if isinstance(encoded, dict) or hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return list(encoded)


def tokenize_row(tokenizer, prompt, completion, max_length: int, max_prompt_length: int, row: int = 0):
    """Token ids of one row: ``(prompt_ids, completion_ids)`` after truncation.

    Conversations: prompt = chat template of the prompt with the generation prompt, full = chat
    template of prompt + completion; the prompt tokens are their longest common prefix and the
    completion tokens the rest of the full sequence (a template whose prompt rendering is not a prefix of the full
    rendering, but for its last token, is an error). Text: the same with plain tokenisation of
    ``prompt`` and ``prompt + completion``, plus an EOS token closing the completion when the
    tokenizer has one. Then the prompt keeps its last ``max_prompt_length`` tokens (a leading BOS token is kept
    in front of them, within the ``max_prompt_length``: Llama models expect it first) and the
    completion its first ``max_length − len(prompt)`` tokens; a completion left with no token
    is an error.
    """
    if _is_conversation(prompt):
        p = _ids(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True))
        f = _ids(tokenizer.apply_chat_template(list(prompt) + list(completion), tokenize=True, return_dict=True))
    else:
        p = _ids(tokenizer(prompt))
        f = _ids(tokenizer(prompt + completion))
        eos = tokenizer.eos_token_id
        if eos is not None and (not f or f[-1] != eos):
            f = f + [eos]
    n = 0
    while n < min(len(p), len(f)) and p[n] == f[n]:
        n += 1
    if _is_conversation(prompt) and n < len(p) - 1:
        # one token of slack: the tokenizer may merge the generation prompt's last token with the completion's first
        raise ValueError(
            f"row {row}: the chat template renders the prompt (with the generation prompt) as {len(p)} tokens, but only "
            f"the first {n} begin its rendering of prompt + completion, so the row does not split into prompt and "
            "completion tokens (the template renders earlier turns differently when an assistant reply follows); "
            "use a template whose prompt rendering is a prefix of the full conversation's"
        )
    prompt_ids, completion_ids = f[:n], f[n:]
    if not completion_ids:
        raise ValueError(f"row {row}: the completion adds no tokens after the prompt (empty completion?)")
    bos = getattr(tokenizer, "bos_token_id", None)
    if len(prompt_ids) > max_prompt_length >= 2 and bos is not None and prompt_ids[0] == bos:
        prompt_ids = prompt_ids[:1] + prompt_ids[1 - max_prompt_length :]  # the model's start token stays first
    else:
        prompt_ids = prompt_ids[-max_prompt_length:]
    completion_ids = completion_ids[: max(0, max_length - len(prompt_ids))]
    if not completion_ids:
        raise ValueError(
            f"row {row}: truncated to no completion tokens (prompt {len(prompt_ids)} tokens after "
            f"max_prompt_length={max_prompt_length}, max_length={max_length}); raise max_length or lower "
            "max_prompt_length"
        )
    return prompt_ids, completion_ids


def tokenize_dataset(dataset, tokenizer, max_length: int = 1024, max_prompt_length: int = 512):
    """Tokenise an unpaired dataset (see :func:`to_unpaired`) into a ``datasets.Dataset`` with
    columns ``input_ids`` (prompt + completion), ``completion_start`` (= number of prompt tokens),
    ``label``, ``pair_id`` and ``row_id``."""
    if int(max_length) < 2:
        raise ValueError(f"max_length must be an integer ≥ 2, got {max_length!r}")
    if int(max_prompt_length) < 1:
        raise ValueError(f"max_prompt_length must be an integer ≥ 1, got {max_prompt_length!r}")
    import datasets

    if "pair_id" not in dataset.column_names:
        dataset = to_unpaired(dataset)
    columns = {"input_ids": [], "completion_start": [], "label": [], "pair_id": [], "row_id": []}
    for i, ex in enumerate(dataset):
        p, c = tokenize_row(tokenizer, ex["prompt"], ex["completion"], max_length, max_prompt_length, row=i)
        columns["input_ids"].append(p + c)
        columns["completion_start"].append(len(p))
        columns["label"].append(bool(ex["label"]))
        columns["pair_id"].append(int(ex["pair_id"]))
        columns["row_id"].append(i)
    return datasets.Dataset.from_dict(columns)


def tokenized_digest(tokenized) -> str:
    """SHA-256 of a tokenised dataset's ids, completion starts and labels (the data part of the
    reference log-prob cache key)."""
    h = hashlib.sha256()
    for ids, start, lab in zip(tokenized["input_ids"], tokenized["completion_start"], tokenized["label"]):
        h.update(json.dumps([ids, start, lab], separators=(",", ":")).encode())
    return h.hexdigest()


class PairedRows(torch.utils.data.Dataset):
    """A pair view of a tokenised dataset made from paired data: item i is ``[chosen_row, rejected_row]``.

    Used for DPO, which trains on pairs; rows without a partner raise an error.
    """

    def __init__(self, rows):
        groups: dict[int, dict[bool, int]] = {}
        for idx, (pid, lab) in enumerate(zip(rows["pair_id"], rows["label"])):
            if pid < 0:
                raise ValueError("DPO needs paired data (prompt, chosen, rejected); this dataset is unpaired")
            groups.setdefault(pid, {})[bool(lab)] = idx
        incomplete = [pid for pid, g in groups.items() if len(g) != 2]
        if incomplete:
            raise ValueError(f"pairs {incomplete[:5]} lack a chosen or a rejected row")
        self.rows = rows
        self.pairs = [(g[True], g[False]) for _, g in sorted(groups.items())]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i):
        c, r = self.pairs[i]
        return [self.rows[c], self.rows[r]]


@dataclass
class PreferenceCollator:
    """Pads tokenised rows into a batch (right padding).

    Output: ``input_ids``, ``attention_mask`` [B, T]; ``targets`` [B, T] with targets[b, s] =
    input_ids[b, s + 1] where token s + 1 is a completion token and −100 elsewhere (so position s
    predicts token s + 1, and log π(y|x) = Σ_s log p(targets[b, s] | h[b, s])); ``preferred`` [B]
    bool; ``num_tokens`` [B]; ``ref_logprob`` [B] when the rows carry cached reference log-probs.
    Items that are lists (pairs from :class:`PairedRows`) are flattened, chosen before rejected.

    With ``mismatched=True`` (KTO) it also builds the mismatched batch: prompt of row i with the
    completion of row i − 1 (completions rotated by one within the batch), truncated to
    ``max_length``, as ``kl_input_ids``, ``kl_attention_mask``, ``kl_targets``. A batch of one row (the
    short last batch of an epoch) has no mismatched pair and gets no ``kl_*`` entries.
    """

    pad_token_id: int
    max_length: int = 1024
    mismatched: bool = False

    def _pad(self, prompts: list[list[int]], completions: list[list[int]], prefix: str = "") -> dict[str, Any]:
        lengths = [len(p) + len(c) for p, c in zip(prompts, completions)]
        B, T = len(lengths), max(lengths)
        ids = torch.full((B, T), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        targets = torch.full((B, T), -100, dtype=torch.long)
        for b, (p, c) in enumerate(zip(prompts, completions)):
            seq = torch.tensor(p + c, dtype=torch.long)
            ids[b, : len(seq)] = seq
            mask[b, : len(seq)] = 1
            targets[b, len(p) - 1 : len(seq) - 1] = seq[len(p) :]
        return {prefix + "input_ids": ids, prefix + "attention_mask": mask, prefix + "targets": targets}

    def __call__(self, items):
        rows = [r for item in items for r in (item if isinstance(item, list) else [item])]
        prompts = [list(r["input_ids"][: r["completion_start"]]) for r in rows]
        completions = [list(r["input_ids"][r["completion_start"] :]) for r in rows]
        if any(len(p) == 0 for p in prompts):
            # position s predicts s+1, so the first completion token needs at least one token before it
            raise ValueError("every row needs at least one prompt token (set max_prompt_length ≥ 1)")
        batch = self._pad(prompts, completions)
        batch["preferred"] = torch.tensor([bool(r["label"]) for r in rows], dtype=torch.bool)
        batch["num_tokens"] = torch.tensor([len(c) for c in completions], dtype=torch.long)
        if "ref_logprob" in rows[0]:
            batch["ref_logprob"] = torch.tensor([float(r["ref_logprob"]) for r in rows], dtype=torch.float32)
        if self.mismatched and len(rows) >= 2:  # one row has no other completion to pair its prompt with
            rotated = completions[-1:] + completions[:-1]
            kl_completions = [c[: max(1, self.max_length - len(p))] for p, c in zip(prompts, rotated)]
            batch.update(self._pad(prompts, kl_completions, prefix="kl_"))
        return batch
