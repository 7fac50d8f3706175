"""rdro.llm.data: loading, pair conversion, tokenisation/truncation, batching, and the errors on bad input."""

from __future__ import annotations

import json

import pytest
import torch

datasets = pytest.importorskip("datasets")

from rdro.llm.data import (  # noqa: E402
    PairedRows,
    PreferenceCollator,
    example_dataset_path,
    load_preference_dataset,
    resolve_alpha,
    to_unpaired,
    tokenize_dataset,
    tokenize_row,
)
from rdro.llm.make_example_data import write_example_data  # noqa: E402
from rdro.llm.models import word_level_tokenizer  # noqa: E402

CONV_ROWS = [
    {
        "prompt": [{"role": "user", "content": "What is 2 plus 3?"}],
        "completion": [{"role": "assistant", "content": "It is 5."}],
        "label": True,
    },
    {
        "prompt": [{"role": "user", "content": "What is 4 minus 1?"}],
        "completion": [{"role": "assistant", "content": "It is 7."}],
        "label": False,
    },
]


@pytest.fixture(scope="module")
def tok():
    ds = load_preference_dataset(example_dataset_path())
    return word_level_tokenizer([m["content"] for col in ("prompt", "completion") for conv in ds[col] for m in conv])


def test_shipped_data_is_what_the_script_makes(tmp_path):
    write_example_data(str(tmp_path))
    for paired in (False, True):
        shipped = example_dataset_path(paired)
        assert open(shipped).read() == open(tmp_path / shipped.split("/")[-1]).read()
    ds = load_preference_dataset(example_dataset_path())
    assert len(ds) == 320 and resolve_alpha("auto", ds["label"]) == pytest.approx(0.4)
    # the labelling rule: the preferred completions state the right number
    for ex in ds.select(range(40)):
        q, a = ex["prompt"][0]["content"], ex["completion"][0]["content"]
        x, op, y = q.rstrip("?.").split()[-3:]
        truth = {"plus": int(x) + int(y), "minus": int(x) - int(y), "times": int(x) * int(y)}[op]
        assert (a.rstrip(".").split()[-1] == str(truth)) == ex["label"]


@pytest.mark.parametrize("kind", ["json", "jsonl", "parquet", "save_to_disk", "folder"])
def test_local_formats_load(tmp_path, kind):
    ds = datasets.Dataset.from_list(CONV_ROWS)
    if kind == "json":
        path = tmp_path / "d.json"
        path.write_text(json.dumps(CONV_ROWS))
    elif kind == "jsonl":
        path = tmp_path / "d.jsonl"
        ds.to_json(str(path))
    elif kind == "parquet":
        path = tmp_path / "d.parquet"
        ds.to_parquet(str(path))
    elif kind == "save_to_disk":
        path = tmp_path / "saved"
        datasets.DatasetDict({"train": ds}).save_to_disk(str(path))
    else:
        path = tmp_path / "folder"
        path.mkdir()
        ds.to_json(str(path / "part-0.jsonl"))
    loaded = to_unpaired(load_preference_dataset(str(path)))
    assert loaded["label"] == [True, False] and loaded["completion"][0][0]["content"] == "It is 5."


def test_hub_offline_error_says_how_to_copy(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # the env variables are read at import time
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="local copy") as err:
        load_preference_dataset("UF-G")
    assert "trl-lib/ultrafeedback-gpt-3.5-turbo-helpfulness" in str(err.value) and "save_to_disk" in str(err.value)
    with pytest.raises(ValueError, match="no such file"):
        load_preference_dataset("./missing.jsonl")


def _write_rows(path, tag, n):
    path.write_text(
        "".join(json.dumps({"prompt": f"{tag} q{i}", "completion": "a", "label": i % 2 == 0}) + "\n" for i in range(n))
    )


def test_folder_of_split_files_loads_the_requested_split(tmp_path):
    """Files named by split (the hub's data/ layout) are grouped by it: split='train' never sees test rows."""
    _write_rows(tmp_path / "train.jsonl", "TRAIN", 6)
    _write_rows(tmp_path / "test-00000-of-00001.jsonl", "TEST", 4)
    _write_rows(tmp_path / "dev.jsonl", "DEV", 2)
    for split, tag, n in (("train", "TRAIN", 6), ("test", "TEST", 4), ("validation", "DEV", 2), ("dev", "DEV", 2)):
        ds = load_preference_dataset(str(tmp_path), split=split)
        assert len(ds) == n and {p.split()[0] for p in ds["prompt"]} == {tag}
    (tmp_path / "dev.jsonl").unlink()
    with pytest.raises(ValueError, match=r"no split='validation'; splits found: \['test', 'train'\]"):
        load_preference_dataset(str(tmp_path), split="validation")
    _write_rows(tmp_path / "extra.jsonl", "X", 2)
    with pytest.raises(
        ValueError,
        match=r"mixes files named by split \(\[.test., .train.\]\) with files of no split \[.extra\.jsonl.\]",
    ):
        load_preference_dataset(str(tmp_path))
    unsplit = tmp_path / "unsplit"
    unsplit.mkdir()
    _write_rows(unsplit / "part-0.jsonl", "A", 2)
    _write_rows(unsplit / "part-1.jsonl", "B", 2)
    assert len(load_preference_dataset(str(unsplit))) == 4  # one unsplit file set is the train split
    with pytest.raises(ValueError, match=r"no split='test'; splits found: \['train'\]"):
        load_preference_dataset(str(unsplit), split="test")


def test_mistyped_local_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    def no_hub(*args, **kwargs):
        raise AssertionError("the hub must not be asked")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for source in ("data/train_typo.jsonl", "data/prefs", "prefs.parquet", "prefs.csv"):
        with pytest.raises(ValueError, match=rf"dataset '{source}': no such file or folder"):
            load_preference_dataset(source)


def test_paired_to_unpaired_keeps_pair_id():
    paired = datasets.Dataset.from_list(
        [{"prompt": "p0", "chosen": "good", "rejected": "bad"}, {"prompt": "p1", "chosen": "g", "rejected": "b"}]
    )
    rows = to_unpaired(paired)
    assert rows["prompt"] == ["p0", "p0", "p1", "p1"]
    assert rows["completion"] == ["good", "bad", "g", "b"]
    assert rows["label"] == [True, False, True, False] and rows["pair_id"] == [0, 0, 1, 1]


def test_conversational_tokenisation_masks_the_prompt(tok):
    rows = tokenize_dataset(datasets.Dataset.from_list(CONV_ROWS), tok, 64, 32)
    text = tok.decode(rows[0]["input_ids"])
    prompt_text = tok.decode(rows[0]["input_ids"][: rows[0]["completion_start"]])
    assert text.startswith(prompt_text) and prompt_text.endswith("<|assistant|>")
    assert tok.decode(rows[0]["input_ids"][rows[0]["completion_start"] :]) == "It is 5 . <|end|>"
    batch = PreferenceCollator(tok.pad_token_id, 64)([rows[0], rows[1]])
    ids, targets, start = batch["input_ids"], batch["targets"], rows[0]["completion_start"]
    n = len(rows[0]["input_ids"])
    # position s predicts token s + 1; only completion tokens are targets
    assert torch.equal(targets[0, start - 1 : n - 1], ids[0, start:n])
    assert bool((targets[0, : start - 1] == -100).all()) and bool((targets[0, n - 1 :] == -100).all())
    assert batch["num_tokens"].tolist() == [n - start, len(rows[1]["input_ids"]) - rows[1]["completion_start"]]
    assert batch["preferred"].tolist() == [True, False]


def test_plain_text_gets_eos_and_truncation_rule(tok):
    p, c = tokenize_row(tok, "What is 2 plus 3 ?", " It is 5 .", max_length=64, max_prompt_length=32)
    assert tok.decode(c) == "It is 5 . <|end|>" and len(p) == 6
    # prompt truncated from the left to max_prompt_length, then the completion to fit max_length
    p, c = tokenize_row(tok, "What is 2 plus 3 ?", " It is 5 .", max_length=7, max_prompt_length=4)
    assert tok.decode(p) == "2 plus 3 ?" and tok.decode(c) == "It is 5"


def test_prompt_truncation_keeps_the_bos_token():
    """A tokenizer that starts every text with a BOS token (Llama): the left-truncated prompt keeps it first, within
    max_prompt_length (it used to be cut off with the rest of the prompt's start)."""
    from tokenizers.processors import TemplateProcessing

    bos_tok = word_level_tokenizer(["What is 2 plus 3 ? It is 5 ."])
    bos_tok.bos_token = "<|system|>"  # a special token of the word-level tokenizer, standing in for <s>
    bos = bos_tok.bos_token_id
    bos_tok._tokenizer.post_processor = TemplateProcessing(single="<|system|> $A", special_tokens=[("<|system|>", bos)])
    p, c = tokenize_row(bos_tok, "What is 2 plus 3 ?", " It is 5 .", max_length=7, max_prompt_length=4)
    assert p == [bos] + bos_tok("plus 3 ?", add_special_tokens=False)["input_ids"]
    assert bos_tok.decode(c) == "It is 5"
    p, _ = tokenize_row(bos_tok, "What is 2 plus 3 ?", " It is 5 .", max_length=64, max_prompt_length=32)
    assert p[0] == bos and len(p) == 7  # no truncation: unchanged
    p, _ = tokenize_row(bos_tok, "What is 2 plus 3 ?", " It is 5 .", max_length=64, max_prompt_length=1)
    assert bos_tok.decode(p) == "?"  # one prompt token: the last one


def test_kto_mismatched_batch_rotates_completions(tok):
    rows = tokenize_dataset(datasets.Dataset.from_list(CONV_ROWS * 2), tok, 64, 32)
    batch = PreferenceCollator(tok.pad_token_id, 64, mismatched=True)([rows[i] for i in range(3)])
    for i in range(3):
        j = (i - 1) % 3
        start = rows[i]["completion_start"]
        comp = rows[j]["input_ids"][rows[j]["completion_start"] :]
        assert batch["kl_input_ids"][i, :start].tolist() == rows[i]["input_ids"][:start]
        assert batch["kl_input_ids"][i, start : start + len(comp)].tolist() == comp
        assert batch["kl_targets"][i, start - 1 : start - 1 + len(comp)].tolist() == comp


def test_paired_rows_for_dpo(tok):
    paired = datasets.Dataset.from_list([{"prompt": "What is 1 plus 1 ?", "chosen": " 2", "rejected": " 3"}] * 3)
    rows = tokenize_dataset(paired, tok, 32, 16)
    pairs = PairedRows(rows)
    assert len(pairs) == 3
    batch = PreferenceCollator(tok.pad_token_id, 32)([pairs[0], pairs[1]])
    assert batch["preferred"].tolist() == [True, False, True, False]


def _ds(**over):
    row = {"prompt": "What is 2 plus 3 ?", "completion": " 5", "label": True}
    other = {"prompt": "What is 2 plus 3 ?", "completion": " 6", "label": False}
    row.update(over)
    return datasets.Dataset.from_list([row, other])


def test_bad_input_errors(tok):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['label'\]"):
        to_unpaired(datasets.Dataset.from_list([{"prompt": "a", "completion": "b"}]))
    with pytest.raises(ValueError, match="'label' must be a boolean"):
        to_unpaired(
            datasets.Dataset.from_list(
                [{"prompt": "a", "completion": "b", "label": 1}, {"prompt": "a", "completion": "c", "label": 0}]
            )
        )
    with pytest.raises(ValueError, match="'label' must be a boolean"):
        to_unpaired(datasets.Dataset.from_list([{"prompt": "a", "completion": "b", "label": "yes"}]))
    with pytest.raises(ValueError, match="'completion' is an empty string"):
        to_unpaired(_ds(completion="  "))
    with pytest.raises(ValueError, match="empty conversation"):
        to_unpaired(
            datasets.Dataset.from_list(
                [
                    {
                        "prompt": [{"role": "user", "content": "hi"}],
                        "completion": [{"role": "assistant", "content": ""}],
                        "label": True,
                    }
                ]
            )
        )
    with pytest.raises(ValueError, match="only preferred rows"):
        to_unpaired(datasets.Dataset.from_list([{"prompt": "a", "completion": "b", "label": True}] * 3))
    with pytest.raises(ValueError, match="truncated to no completion tokens"):
        tokenize_dataset(to_unpaired(_ds()), tok, max_length=4, max_prompt_length=4)
    with pytest.raises(ValueError, match="alpha must lie strictly inside"):
        resolve_alpha(1.0, [True, False])
    with pytest.raises(ValueError, match="DPO needs paired data"):
        PairedRows(tokenize_dataset(to_unpaired(_ds()), tok, 32, 16))


def test_kto_one_row_batch_has_no_mismatched_pair(tok):
    rows = tokenize_dataset(datasets.Dataset.from_list(CONV_ROWS), tok, 64, 32)
    batch = PreferenceCollator(tok.pad_token_id, 64, mismatched=True)([rows[0]])
    assert batch["input_ids"].shape[0] == 1 and not any(k.startswith("kl_") for k in batch)


def test_chat_template_that_is_not_a_prefix_is_an_error(tok):
    """A template that renders the prompt differently once a reply follows gives no prompt/completion split."""
    import copy

    odd = copy.deepcopy(tok)
    odd.chat_template = "{% if messages[-1]['role'] == 'assistant' %}<|system|> <|end|> {% endif %}" + tok.chat_template
    with pytest.raises(ValueError, match="row 0: the chat template renders the prompt"):
        tokenize_dataset(datasets.Dataset.from_list(CONV_ROWS), odd, 64, 32)
