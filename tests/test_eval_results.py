"""rdro.llm.evaluation without models: the AlpacaEval LC metric (through the alpaca_eval package), results
files, the paper table, and the errors for missing keys, data and files."""

import importlib.util
import json

import numpy as np
import pytest
from scipy.special import expit

from rdro.llm.evaluation import main
from rdro.llm.evaluation.records import load_result_rows, make_row, save_results
from rdro.llm.evaluation.table import render_csv, render_markdown, write_table


def needs_alpaca_eval():
    """Skip without the ``eval`` extra. (Not pytest.importorskip: alpaca_eval imports pkg_resources, gone from
    setuptools >= 81, and rdro's import_alpaca_eval supplies it first.)"""
    if importlib.util.find_spec("alpaca_eval") is None:
        pytest.skip("needs the optional package alpaca_eval: pip install 'rdro[eval]'")
    from rdro.llm.evaluation.alpaca import import_alpaca_eval

    return import_alpaca_eval()


def _write_glm_hub_files(folder, n):
    """A SYNTHETIC stand-in for the hub file df_gamed.csv (same columns as the real one: the package's two
    length-gamed baselines' annotations with per-instruction difficulty). Only the GLM variants that use it
    (length_controlled_v1) depend on its numbers; the tests below that check values use GLMs that do not."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "model": ["gamed_verbose"] * n + ["gamed_concise"] * n,
            "index": list(range(n)) * 2,
            "preference": [0.7] * n + [0.3] * n,
            "std_delta_len": [-1.0] * n + [1.0] * n,
            "instruction_difficulty": list(np.linspace(-0.5, 0.5, n)) * 2,
            "not_gamed_baseline": [False] * (2 * n),
        }
    )
    frame.to_csv(folder / "df_gamed.csv", index=False)
    return folder


def _annotations(lengths_ref, lengths_model, preferences):
    """Annotations in alpaca_eval's annotations.json format (output_1 = reference, output_2 = model,
    preference in [1, 2]: 1 = reference better, 2 = model better)."""
    return [
        {
            "instruction": f"instruction {i}",
            "output_1": "r" * int(a),
            "generator_1": "reference_model",
            "dataset": "synthetic",
            "output_2": "m" * int(b),
            "generator_2": "policy",
            "annotator": "synthetic_judge",
            "preference": 1.0 + float(p),
        }
        for i, (a, b, p) in enumerate(zip(lengths_ref, lengths_model, preferences))
    ]


@pytest.mark.parametrize(
    "intercept, length_slope",
    [
        (0.3, -1.5),  # judge favours longer answers; the policy writes longer ones -> WR inflated, LC = σ(0.3)
        (0.85, 0.0),  # preferences independent of length -> LC = WR = σ(0.85)
        (-0.4, 1.0),  # judge favours shorter answers; policy longer -> WR deflated, LC = σ(-0.4)
    ],
)
@pytest.mark.parametrize("glm_name", ["length_controlled_minimal", "length_controlled_noreg"])
def test_lc_winrate_recovers_the_length_free_preference(tmp_path, intercept, length_slope, glm_name):
    """Preferences generated exactly from the GLM's own form, p = σ(w0 + ψ·tanh(Δ/sd)) with Δ = len(ref) −
    len(model), must give the package's LC win rate 100·σ(w0) (the prediction at Δ = 0), while the raw win rate
    is 100·mean(p). Reference values are closed forms; the metric is alpaca_eval's own function."""
    needs_alpaca_eval()
    from rdro.llm.evaluation.alpaca import length_controlled_winrate

    rng = np.random.default_rng(0)
    n = 300
    ref = rng.integers(200, 400, n)
    model = ref + rng.integers(-50, 250, n)  # mostly longer than the reference
    delta = ref - model
    z = delta / np.std(delta, ddof=1)  # the package standardises with pandas' std (ddof=1)
    p = expit(intercept + length_slope * np.tanh(z))
    hub = _write_glm_hub_files(tmp_path / "hub", n)
    metrics = length_controlled_winrate(_annotations(ref, model, p), hub, glm_name=glm_name, lc_bootstrap=0)
    assert metrics["n_total"] == n
    assert metrics["win_rate"] == pytest.approx(100 * p.mean(), abs=1e-9)
    assert metrics["length_controlled_winrate"] == pytest.approx(100 * expit(intercept), abs=0.5)
    if length_slope < 0:
        assert metrics["win_rate"] > metrics["length_controlled_winrate"] + 5
    elif length_slope > 0:
        assert metrics["win_rate"] < metrics["length_controlled_winrate"] - 5


def test_lc_winrate_standard_glm_runs_on_a_real_format_annotations_file(tmp_path):
    """The default length_controlled_v1 GLM (regularised towards the gamed baselines of df_gamed.csv) on an
    annotations.json file: the numbers stay percentages and, for length-inflated wins, LC < WR."""
    needs_alpaca_eval()
    from rdro.llm.evaluation.alpaca import length_controlled_winrate

    rng = np.random.default_rng(1)
    n = 200
    ref = rng.integers(200, 400, n)
    model = ref + rng.integers(0, 300, n)
    z = (ref - model) / np.std(ref - model, ddof=1)
    p = expit(-2.0 * np.tanh(z))
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_annotations(ref, model, p)))
    metrics = length_controlled_winrate(
        path, alpaca_eval_data=_write_glm_hub_files(tmp_path / "hub", n), lc_bootstrap=20
    )
    assert 0 < metrics["length_controlled_winrate"] < metrics["win_rate"] < 100
    assert metrics["lc_standard_error"] > 0


def test_lc_winrate_without_local_hub_files_says_how_to_provide_them(tmp_path, monkeypatch):
    needs_alpaca_eval()
    import huggingface_hub.constants

    from rdro.llm.evaluation.alpaca import length_controlled_winrate

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    annotations = _annotations([300] * 20, [320] * 20, [0.6] * 20)
    with pytest.raises(FileNotFoundError, match=r"df_gamed\.csv.*--alpaca-eval-data"):
        length_controlled_winrate(annotations, alpaca_eval_data=None)
    with pytest.raises(
        FileNotFoundError, match=r"has no df_gamed\.csv.*huggingface-cli download tatsu-lab/alpaca_eval"
    ):
        length_controlled_winrate(annotations, alpaca_eval_data=tmp_path)


def test_missing_api_key_names_the_variable(tmp_path, monkeypatch):
    needs_alpaca_eval()
    from rdro.llm.evaluation.alpaca import AnnotatorChoice, MissingAPIKeyError, prepare_annotator

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match=r"OPENAI_API_KEY is not set.*set OPENAI_API_KEY.*hf-local"):
        prepare_annotator(AnnotatorChoice("standard"), tmp_path)
    endpoint = AnnotatorChoice("openai-compatible", model="my-judge", base_url="http://localhost:8000/v1")
    with pytest.raises(MissingAPIKeyError, match=r"OPENAI_API_KEY.*http://localhost:8000/v1.*EMPTY"):
        prepare_annotator(endpoint, tmp_path)


def test_annotator_configs_reuse_the_standard_judge(tmp_path, monkeypatch):
    """The endpoint judge keeps the standard prompt, log-prob parser and weighting; only model and URL change,
    and no key is written to disk."""
    needs_alpaca_eval()
    import yaml

    from rdro.llm.evaluation.alpaca import STANDARD_ANNOTATOR, AnnotatorChoice, prepare_annotator

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-test-value")
    assert prepare_annotator(AnnotatorChoice("standard"), tmp_path) == (STANDARD_ANNOTATOR, {})
    choice = AnnotatorChoice("openai-compatible", model="my-judge", base_url="http://localhost:8000/v1")
    path, extra = prepare_annotator(choice, tmp_path)
    assert extra == {}
    text = open(path).read()
    assert "sk-secret-test-value" not in text
    config = yaml.safe_load(text)[choice.name]
    assert config["fn_completion_parser"] == "logprob_parser"
    assert config["completion_parser_kwargs"] == {
        "numerator_token": "m",
        "denominator_tokens": ["m", "M"],
        "is_binarize": False,
    }
    assert config["completions_kwargs"]["model_name"] == "my-judge"
    assert config["completions_kwargs"]["client_kwargs"] == {"base_url": "http://localhost:8000/v1"}
    assert config["prompt_template"].endswith("alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt")
    assert not choice.comparable_to_leaderboard and AnnotatorChoice("standard").comparable_to_leaderboard


def test_annotator_choice_rejects_incomplete_options():
    needs_alpaca_eval()
    from rdro.llm.evaluation.alpaca import AnnotatorChoice

    with pytest.raises(ValueError, match="annotator='gpt5'"):
        AnnotatorChoice("gpt5")
    with pytest.raises(ValueError, match="--base-url"):
        AnnotatorChoice("openai-compatible", model="judge")
    with pytest.raises(ValueError, match="local model folder"):
        AnnotatorChoice("hf-local", model="/no/such/folder")


def test_missing_reference_outputs_say_how_to_provide_a_local_copy(tmp_path, monkeypatch):
    needs_alpaca_eval()
    import huggingface_hub.constants

    from rdro.llm.evaluation.alpaca import load_reference_outputs

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match=r"alpaca_eval_gpt4_baseline\.json.*--reference"):
        load_reference_outputs(None, None)
    with pytest.raises(FileNotFoundError, match=r"reference='.*nope\.json': no such file"):
        load_reference_outputs(tmp_path / "nope.json", None)
    with pytest.raises(FileNotFoundError, match="has no alpaca_eval_gpt4_baseline.json"):
        load_reference_outputs(None, tmp_path)


def test_outputs_must_answer_the_reference_prefix():
    needs_alpaca_eval()
    from rdro.llm.evaluation.alpaca import align_with_reference

    reference = [{"instruction": f"q{i}", "output": "r", "generator": "ref"} for i in range(4)]
    outputs = [{"instruction": "q1", "output": "b"}, {"instruction": "q0", "output": "a"}]
    ordered, head = align_with_reference(outputs, reference)
    assert [r["instruction"] for r in ordered] == ["q0", "q1"] and head == reference[:2]
    with pytest.raises(ValueError, match="not the first 2 of the reference"):
        align_with_reference([{"instruction": "q0", "output": "a"}, {"instruction": "q3", "output": "b"}], reference)


def _row(method, model, dataset, metric, value, stderr=1.0, comparable=True, variant="alpaca_eval_2"):
    return dict(
        model=model,
        method=method,
        dataset=dataset,
        metric=metric,
        value=value,
        stderr=stderr,
        n=805,
        annotator="weighted_alpaca_eval_gpt4_turbo" if comparable else "hf_local_judge",
        comparable_to_leaderboard=comparable,
        task_variant=variant,
        seed=0,
    )


def test_table_layout_rows_methods_columns_model_by_dataset(tmp_path):
    results = tmp_path / "results"
    save_results(
        results / "rdro" / "alpaca_eval_results.json",
        [
            _row("RDRO", "Llama", "UF-G", "alpaca_eval2_lc_winrate", 30.25),
            _row("RDRO", "Llama", "UF-G", "alpaca_eval2_winrate", 25.0),
        ],
    )
    save_results(
        results / "kto_ae.json",
        [_row("KTO", "Llama", "UF-G", "alpaca_eval2_lc_winrate", 20.0, comparable=False)],
    )
    save_results(
        results / "rdro_bbh.json",
        [_row("RDRO", "Llama", "UF-G", "bbh_exact_match", 61.5, 0.5, comparable=True, variant="bbh_cot_fewshot")],
    )
    (results / "outputs.json").write_text(json.dumps([{"instruction": "x", "output": "y"}]))  # not a results file
    md_path, csv_path = write_table(results, tmp_path / "table.md")
    markdown = md_path.read_text()
    lines = markdown.splitlines()
    assert lines[0] == "| Method | Llama · UF-G · LC WR | Llama · UF-G · WR | Llama · UF-G · BBH [bbh_cot_fewshot] |"
    assert lines[2] == "| KTO | 20.0 ± 1.0 † | — | — |"
    assert lines[3] == "| RDRO | 30.2 ± 1.0 | 25.0 ± 1.0 | 61.5 ± 0.5 |"
    assert "NOT comparable" in markdown and "hf_local_judge" in markdown
    csv_lines = csv_path.read_text().splitlines()
    assert csv_lines[0].split(",")[:3] == ["method", "Llama/UF-G/LC WR", "Llama/UF-G/LC WR/stderr"]
    assert csv_lines[2].split(",")[:5] == ["RDRO", "30.25", "1.0", "25.0", "1.0"]


def test_table_refuses_two_results_for_one_cell(tmp_path):
    save_results(tmp_path / "a.json", [_row("RDRO", "M", "D", "alpaca_eval2_winrate", 10.0)])
    save_results(tmp_path / "b.json", [_row("RDRO", "M", "D", "alpaca_eval2_winrate", 11.0)])
    with pytest.raises(ValueError, match=r"two results for method 'RDRO'.*a\.json.*b\.json"):
        render_markdown(load_result_rows(tmp_path))
    rows = load_result_rows(tmp_path)[:1]
    assert render_csv(rows).splitlines()[1] == "RDRO,10.0,1.0"


def test_result_rows_are_validated():
    with pytest.raises(ValueError, match=r"missing the field\(s\) \['seed'\]"):
        make_row(**{k: v for k, v in _row("R", "M", "D", "alpaca_eval2_winrate", 1.0).items() if k != "seed"})
    with pytest.raises(ValueError, match="value=140.0 .*percentage"):
        make_row(**_row("R", "M", "D", "alpaca_eval2_winrate", 140.0))
    with pytest.raises(ValueError, match="metric='accuracy'"):
        make_row(**_row("R", "M", "D", "accuracy", 1.0))
    with pytest.raises(ValueError, match="stderr=-1"):
        make_row(**_row("R", "M", "D", "alpaca_eval2_winrate", 1.0, stderr=-1))


def test_cli_table_and_clear_cli_errors(tmp_path, capsys):
    save_results(tmp_path / "r.json", [_row("RDRO", "M", "D", "alpaca_eval2_winrate", 12.5)])
    assert main(["table", "--results", str(tmp_path), "--out", str(tmp_path / "t.md")]) == 0
    assert (tmp_path / "t.csv").exists() and "12.5 ± 1.0" in (tmp_path / "t.md").read_text()
    assert main(["table", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "t.md")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert (
        main(["generate", "--model", str(tmp_path), "--prompts", str(tmp_path / "missing.json"), "--out", "o.json"])
        == 2
    )
    err = capsys.readouterr().err
    assert "missing.json" in err and "tatsu-lab/alpaca_eval" in err


def test_cli_alpaca_eval_without_api_key_exits_with_the_variable_to_set(tmp_path, capsys, monkeypatch):
    needs_alpaca_eval()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps([{"instruction": "q0", "output": "a", "generator": "g"}]))
    reference = tmp_path / "ref.json"
    reference.write_text(json.dumps([{"instruction": "q0", "output": "b", "generator": "ref"}]))
    argv = ["alpaca-eval", "--outputs", str(outputs), "--reference", str(reference), "--out-dir", str(tmp_path / "ae")]
    assert main(argv + ["--base-model", "M", "--method", "RDRO", "--train-data", "D"]) == 2
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err


def test_lc_standard_error_is_a_bootstrap_of_the_refitted_glm(tmp_path):
    """The package's lc_standard_error is the SEM of the GLM's predictions: exactly 0 for a GLM without
    instruction difficulty, whatever the data. The saved LC standard error is the bootstrap over instructions,
    checked against an independent refit: fractional logistic regression of p on [1, tanh(Δ/sd)] by Newton's
    method, LC = 100·σ(intercept), on the same resamples."""
    needs_alpaca_eval()
    from rdro.llm.evaluation.alpaca import length_controlled_winrate

    rng = np.random.default_rng(3)
    n, resamples, seed = 300, 30, 5
    ref = rng.integers(200, 400, n)
    model = ref + rng.integers(-50, 250, n)
    delta = ref - model
    p = expit(0.4 - 1.2 * np.tanh(delta / np.std(delta, ddof=1)) + rng.normal(0, 0.8, n))
    hub = _write_glm_hub_files(tmp_path / "hub", n)
    annotations = _annotations(ref, model, p)
    metrics = length_controlled_winrate(
        annotations, hub, glm_name="length_controlled_minimal", lc_bootstrap=resamples, seed=seed
    )
    assert metrics["lc_sem_of_glm_predictions"] == pytest.approx(0.0, abs=1e-9)  # the package's number

    def lc(idx):
        d = delta[idx]
        X = np.column_stack([np.ones(n), np.tanh(d / np.std(d, ddof=1))])
        w = np.zeros(2)
        for _ in range(30):
            mu = expit(X @ w)
            w += np.linalg.solve(X.T @ ((mu * (1 - mu))[:, None] * X), X.T @ (p[idx] - mu))
        return 100 * expit(w[0])

    draws = np.random.default_rng(seed)
    expected = np.std([lc(draws.integers(0, n, n)) for _ in range(resamples)], ddof=1)
    assert expected > 1.0
    assert metrics["lc_standard_error"] == pytest.approx(expected, rel=0.1)
    again = length_controlled_winrate(
        annotations, hub, glm_name="length_controlled_minimal", lc_bootstrap=resamples, seed=seed
    )
    assert again["lc_standard_error"] == metrics["lc_standard_error"]  # seeded
    assert (
        length_controlled_winrate(annotations, hub, glm_name="length_controlled_minimal", lc_bootstrap=0)[
            "lc_standard_error"
        ]
        is None
    )
    with pytest.raises(ValueError, match="lc_bootstrap=-1"):
        length_controlled_winrate(annotations, hub, glm_name="length_controlled_minimal", lc_bootstrap=-1)


def _fake_alpaca_eval_run(tmp_path, monkeypatch, reference_generator, seed=0, n=805):
    """run_alpaca_eval with the standard judge and alpaca_eval.evaluate replaced by a stand-in (no API call) that
    records its keyword arguments."""
    import pandas as pd

    from rdro.llm.evaluation import alpaca

    ae = alpaca.import_alpaca_eval()
    monkeypatch.setenv("OPENAI_API_KEY", "dummy-not-used")
    outputs, reference = tmp_path / "outputs.json", tmp_path / f"ref_{reference_generator}.json"
    outputs.write_text(json.dumps([{"instruction": f"q{i}", "output": "x", "generator": "policy"} for i in range(n)]))
    reference.write_text(
        json.dumps([{"instruction": f"q{i}", "output": "y", "generator": reference_generator} for i in range(n)])
    )
    calls = []

    def fake_evaluate(**kwargs):
        calls.append(kwargs)
        metrics = {"win_rate": [60.0], "standard_error": [1.0], "length_controlled_winrate": [55.0]}
        return pd.DataFrame(metrics | {"lc_standard_error": [0.0], "n_total": [n]}, index=[kwargs["name"]]), None

    monkeypatch.setattr(ae, "evaluate", fake_evaluate)
    out = alpaca.run_alpaca_eval(
        outputs,
        tmp_path / "ae",
        model="M",
        method="RDRO",
        dataset="UF-G",
        reference=reference,
        seed=seed,
        annotator=alpaca.AnnotatorChoice("standard"),
    )
    return out, calls[0]


def test_only_the_alpaca_eval_2_reference_outputs_are_comparable_to_the_leaderboard(tmp_path, monkeypatch):
    needs_alpaca_eval()
    standard, _ = _fake_alpaca_eval_run(tmp_path, monkeypatch, "gpt4_1106_preview")
    assert all(r["comparable_to_leaderboard"] for r in standard["rows"]) and standard["details"]["note"] is None
    other, _ = _fake_alpaca_eval_run(tmp_path, monkeypatch, "text_davinci_003")
    assert not any(r["comparable_to_leaderboard"] for r in other["rows"])
    assert "NOT comparable" in other["details"]["note"] and "text_davinci_003" in other["details"]["note"]


def test_judge_names_and_annotation_caches_identify_judge_and_seed(tmp_path, monkeypatch):
    """alpaca_eval reuses cached annotations by annotator name: the name must tell apart judges with the same folder
    name, GGUF file or endpoint, and the cache file the seed (which randomises the order of the pair shown)."""
    needs_alpaca_eval()
    from rdro.llm.evaluation.alpaca import AnnotatorChoice

    for folder in ("a/judge", "b/judge"):
        (tmp_path / folder).mkdir(parents=True)
    local = [
        AnnotatorChoice("hf-local", model=str(tmp_path / "a" / "judge")),
        AnnotatorChoice("hf-local", model=str(tmp_path / "b" / "judge")),
        AnnotatorChoice("hf-local", model=str(tmp_path / "a" / "judge"), gguf_file="q4.gguf"),
    ]
    endpoints = [
        AnnotatorChoice("openai-compatible", model="judge", base_url=f"http://host{i}:8000/v1") for i in (1, 2)
    ]
    names = [c.name for c in local + endpoints]
    assert len(set(names)) == len(names)
    assert all(name.startswith(("hf_local_judge_", "openai_compatible_judge_")) for name in names)
    monkeypatch.chdir(tmp_path / "a")
    assert AnnotatorChoice("hf-local", model="judge").name == names[0]  # the same folder by another path
    _, seed0 = _fake_alpaca_eval_run(tmp_path, monkeypatch, "gpt4_1106_preview", seed=0, n=3)
    _, seed7 = _fake_alpaca_eval_run(tmp_path, monkeypatch, "gpt4_1106_preview", seed=7, n=3)
    assert seed0["caching_path"] != seed7["caching_path"] and seed0["seed"] == 0 and seed7["seed"] == 7


def test_a_corrupt_results_file_is_an_error_naming_it(tmp_path, capsys):
    save_results(tmp_path / "rdro.json", [_row("RDRO", "M", "D", "alpaca_eval2_winrate", 12.5)])
    save_results(tmp_path / "kto.json", [_row("KTO", "M", "D", "alpaca_eval2_winrate", 10.0)])
    text = (tmp_path / "kto.json").read_text()
    (tmp_path / "kto.json").write_text(text[: len(text) // 2])  # a truncated copy
    with pytest.raises(ValueError, match=r"results file '.*kto\.json' cannot be read \(JSONDecodeError"):
        load_result_rows(tmp_path)
    assert main(["table", "--results", str(tmp_path), "--out", str(tmp_path / "t.md")]) == 2
    assert "kto.json" in capsys.readouterr().err and not (tmp_path / "t.md").exists()


def _fake_bbh(monkeypatch, results):
    """run_bbh with lm-eval's task lookup and simple_evaluate replaced: ``results`` is what lm-eval "returns" for
    the task; the stand-in records its keyword arguments."""
    lm_eval = pytest.importorskip("lm_eval")
    from rdro.llm.evaluation import bbh

    calls = []

    def fake_simple_evaluate(**kwargs):
        calls.append(kwargs)
        name = kwargs["tasks"][0]
        return {"results": {name: results}, "n-samples": {name: {"original": 6511, "effective": 6511}}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake_simple_evaluate)
    monkeypatch.setattr(bbh, "resolve_task", lambda task, *args: (None, task))
    return bbh, calls


def test_bbh_capped_generation_or_local_data_is_not_comparable(tmp_path, monkeypatch):
    bbh, calls = _fake_bbh(monkeypatch, {"exact_match,get-answer": 0.5, "exact_match_stderr,get-answer": 0.01})
    (tmp_path / "model").mkdir()
    labels = dict(model="M", method="RDRO", dataset="UF-G", task="bbh_cot_fewshot")
    (full,) = bbh.run_bbh(tmp_path / "model", tmp_path / "full", **labels)["rows"]
    assert full["comparable_to_leaderboard"] and full["task_variant"] == "bbh_cot_fewshot"
    capped = bbh.run_bbh(tmp_path / "model", tmp_path / "capped", max_gen_toks=8, **labels)
    assert calls[-1]["gen_kwargs"] == {"max_gen_toks": 8}
    assert not capped["rows"][0]["comparable_to_leaderboard"]
    assert capped["rows"][0]["task_variant"] == "bbh_cot_fewshot (max_gen_toks=8)"
    assert "NOT comparable" in capped["details"]["note"] and "max_gen_toks=8" in capped["details"]["note"]
    (tmp_path / "data").mkdir()
    (local,) = bbh.run_bbh(tmp_path / "model", tmp_path / "local", bbh_data=tmp_path / "data", **labels)["rows"]
    assert not local["comparable_to_leaderboard"] and local["task_variant"] == "bbh_cot_fewshot (local data)"


def test_bbh_filter_choice_and_cli_error_for_an_unreadable_lm_eval_result(tmp_path, monkeypatch, capsys):
    two = {"exact_match,strict-match": 0.25, "exact_match,flexible-extract": 0.5}
    bbh, _ = _fake_bbh(monkeypatch, two)
    assert bbh.pick_exact_match_key(two, "t") == "exact_match,flexible-extract"
    assert bbh.pick_exact_match_key({"exact_match,none": 0.1, "alias": "t"}, "t") == "exact_match,none"
    (tmp_path / "model").mkdir()
    _fake_bbh(monkeypatch, {"exact_match,strict-match": 0.25, "exact_match,my-filter": 0.5})
    argv = ["bbh", "--model", str(tmp_path / "model"), "--out-dir", str(tmp_path / "out"), "--task", "bbh_zeroshot"]
    assert main(argv + ["--base-model", "M", "--method", "RDRO", "--train-data", "D"]) == 2
    err = capsys.readouterr().err
    assert "rdro eval bbh: lm-eval returned 2 exact_match entries" in err and "my-filter" in err


def test_table_says_when_a_standard_error_is_not_available(tmp_path):
    rows = [_row("RDRO", "M", "D", "alpaca_eval2_lc_winrate", 30.0, stderr=None)]
    rows.append(_row("RDRO", "M", "D", "alpaca_eval2_winrate", 25.0))
    markdown = render_markdown(rows)
    assert "| RDRO | 30.0 | 25.0 ± 1.0 |" in markdown and "no standard error available" in markdown
    assert "no standard error available" not in render_markdown(rows[1:])
