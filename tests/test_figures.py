"""Tests of ``rdro figures``: the building blocks (fast), and one run of the whole ``--quick`` set.

The whole-set run (module fixture) builds every figure into a temporary folder once; the tests
then check that every expected PNG/PDF exists and is non-empty, that the report lists every claim
with a verdict and every check with PASS/FAIL, and that a second run reads the caches.
"""

from __future__ import annotations

import json
import re
import sys
import types

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from rdro.paper_figures import cli, report
from rdro.paper_figures.claims import CLAIMS, claim_statement
from rdro.paper_figures.figure_contract import FigureInfo, RunSettings, checks_from_result, make_check
from rdro.paper_figures.result_store import FigureCache, read_json, to_jsonable, write_json_atomic
from rdro.paper_figures.style import method_style, paper_style, save_figure

# --------------------------------------------------------------------------- building blocks


def test_parse_only_accepts_variants_in_canonical_order():
    assert cli.parse_only("F5,F3") == ["F3", "F5"]
    assert cli.parse_only("f10 f01") == ["F1", "F10"]
    assert cli.parse_only("3") == ["F3"]
    assert cli.parse_only(None) == list(cli.FIGURE_IDS)


@pytest.mark.parametrize("bad", ["F11", "G3", "F3,bogus", ",", "F0"])
def test_parse_only_rejects_unknown_names(bad):
    with pytest.raises(ValueError, match="--only: unknown figure name"):
        cli.parse_only(bad)


def test_cli_bad_only_exits_2_with_a_clear_message(tmp_path, capsys):
    rc = cli.main(["--only", "F3,F99", "--out", str(tmp_path), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "F99" in err and "F1, F2" in err
    assert not (tmp_path / "REPORT.md").exists()


def test_cli_bad_jobs_and_kernel_file(tmp_path, capsys):
    assert cli.main(["--jobs", "0", "--out", str(tmp_path)]) == 2
    assert "--jobs" in capsys.readouterr().err
    assert cli.main(["--kernel-results", str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_claims_statements_are_complete():
    assert sorted(CLAIMS) == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="claim number"):
        claim_statement(7)


def test_claim_numbers_parsing():
    assert report.claim_numbers({"claim": 2}, (1,)) == [2]
    assert report.claim_numbers({"claim": "2", "claims": [4]}, (1,)) == [4]  # an explicit list wins
    assert report.claim_numbers({"claim": "claim 3: bounds"}, (1,)) == [3]
    assert report.claim_numbers({"claim": "2, 5"}, (1,)) == [2, 5]
    assert report.claim_numbers({"claim": "consistency"}, (2,)) == [2]  # falls back to the figure's claims
    assert report.claim_numbers({"claim": None}, (4, 5)) == [4, 5]


def test_claim_verdicts_counts_checks():
    recs = [
        {"figure": "F1", "claims": [1], "checks": [make_check(1, "s", 0.5, "≤ 1", True, "x")]},
        {
            "figure": "F3",
            "claims": [2],
            "checks": [make_check(2, "a", 1, 2, True, "E2"), make_check(2, "b", 1, 2, False, "E2")],
        },
    ]
    rows = {r["claim"]: r for r in report.claim_verdicts(recs)}
    assert rows[1]["verdict"] == "HOLDS" and rows[1]["figures"] == ["F1"]
    assert rows[2]["verdict"].startswith("FAILS (1 of 2")
    assert rows[4]["verdict"] == "NOT TESTED"


def test_checks_from_result_keeps_verdicts():
    result = types.SimpleNamespace(
        name="E9",
        checks=[
            {
                "claim": "2: rate",
                "statistic": "slope",
                "value": np.float64(-0.49),
                "comparison": "<=",
                "threshold": -0.35,
                "passed": np.bool_(True),
            },
            {"claim": "6: α", "statistic": "kl", "value": 0.2, "comparison": ">=", "threshold": 1e-3, "passed": False},
        ],
    )
    first, second = checks_from_result(result)
    assert first == {
        "claim": "2: rate",
        "claims": [2],
        "statistic": "slope",
        "value": -0.49,
        "comparison": "<=",
        "threshold": -0.35,
        "passed": True,
        "source": "E9",
    }
    assert second["passed"] is False and second["claims"] == [6]
    assert report.format_threshold(first) == "≤ -0.35"
    json.dumps(first)
    # an experiment whose numbering differs from method.md §4 can be re-counted, and checks can be split
    (only,) = checks_from_result(result, "E9", claims=[2], where=lambda c: c["statistic"] == "kl")
    assert only["claims"] == [2] and only["claim"] == "6: α"
    assert report.claim_numbers(only, (5,)) == [2]


def test_to_jsonable_and_atomic_json(tmp_path):
    obj = {"a": np.arange(3), "b": (np.float32(1.5), float("nan")), "c": torch.tensor(2.0), "d": tmp_path}
    path = write_json_atomic(tmp_path / "x" / "r.json", obj)
    assert read_json(path) == {"a": [0, 1, 2], "b": [1.5, None], "c": 2.0, "d": str(tmp_path)}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary left behind
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        read_json(tmp_path / "bad.json")


def test_figure_cache_key_mismatch_recomputes(tmp_path):
    cache = FigureCache(tmp_path)
    cache.save("F2", True, {"v": 1}, {"data": 1})
    assert cache.load("F2", True, {"v": 1}) == {"data": 1}
    assert cache.load("F2", True, {"v": 2}) is None
    assert cache.load("F2", False, {"v": 1}) is None


def test_figure_cache_key_follows_the_source(monkeypatch):
    """A code change anywhere behind the figures (core, theory, simulations, llm, figure modules) changes every
    figure's cache key, so a stale figure result is never reused; every module of the digest exists."""
    from rdro.simulations import experiments

    files = experiments._source_files(cli._FIGURE_SOURCES)
    folders = {p.parent.name for p in files}
    assert {"rdro", "theory", "simulations", "llm", "kernels", "paper_figures"} <= folders
    settings = RunSettings(quick=True)
    info = FigureInfo("F2", "F02", "t", "c", (1,))
    key = cli._figure_cache_key("F2", info, settings)
    assert key["source"] == experiments.source_digest(cli._FIGURE_SOURCES)
    monkeypatch.setattr(experiments, "source_digest", lambda modules=None: "changed")
    assert cli._figure_cache_key("F2", info, settings) != key


def test_method_style_is_consistent_and_has_fallback():
    assert method_style("RDRO-pooled") == method_style("rdro_pooled")
    assert method_style("ddro_stabilised")["label"] == "DDRO (stabilised)"
    fallback = method_style("something new", index=1)
    assert fallback["label"] == "something new" and fallback["color"]


def test_save_figure_writes_png_and_pdf(tmp_path):
    import matplotlib.pyplot as plt

    with paper_style():
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        paths = save_figure(fig, tmp_path, "demo")
        plt.close(fig)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match="stem"):
        save_figure(None, tmp_path, "demo.png")


def test_f02_gradients_match_the_closed_forms():
    """F2 is pure computation: check its curves against the closed forms of method.md §2."""
    from rdro.paper_figures import f02_gradients as f2

    res = f2.compute(RunSettings(quick=True))
    d, a = res["data"], res["data"]["alpha"]
    t = np.asarray(d["t_wide"])
    s = 1 / (1 + np.exp(-t))
    np.testing.assert_allclose(d["curves_a"]["rdro_preferred"], (1 + a) * s - 1, atol=1e-8)
    np.testing.assert_allclose(d["curves_a"]["rdro_nonpreferred"], (1 - a) * s, atol=1e-8)
    b = d["kto_beta"]  # KTO preferred: d/dt σ(−β t) = −β σ(βt)(1 − σ(βt))
    sb = 1 / (1 + np.exp(-b * t))
    np.testing.assert_allclose(d["curves_a"]["kto_preferred"], -b * sb * (1 - sb), atol=1e-10)
    # raw DDRO, logistic f, non-preferred row: ℓ = softplus(log g), g = (1 − μ) e^t / (1 − μ e^t)
    tb = np.asarray(d["t_below"])
    mu = d["mu"]
    g = (1 - mu) * np.exp(tb) / (1 - mu * np.exp(tb))
    dlogg = 1 + mu * np.exp(tb) / (1 - mu * np.exp(tb))
    np.testing.assert_allclose(d["curves_b"]["ddro_raw_nonpreferred"], g / (1 + g) * dlogg, rtol=1e-6)
    assert all(c["passed"] for c in res["checks"]), res["checks"]
    slopes = d["slopes"]  # max |dℓ/dt| ~ ε^(−1), ε^(−2), ε^(−3) for logistic, KLIEP, LSIF
    assert slopes["ddro_raw_logistic"] == pytest.approx(-1, abs=0.05)
    assert slopes["ddro_raw_kliep"] == pytest.approx(-2, abs=0.05)
    assert slopes["ddro_raw_lsif"] == pytest.approx(-3, abs=0.05)
    with paper_style():
        fig = f2.draw(res)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert all(ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() for ax in fig.axes)


def test_f09_averages_training_seeds_step_by_step():
    """F9's seed statistics: every seed's values and their mean over the first run and its replicates, per
    evaluation step, cut to the steps every seed reached."""
    from rdro.paper_figures import f09_known_preference as f09

    metrics = [m for m, _, _ in f09.METRICS] + [e for e, _ in f09.EXACT.values()]
    rng = np.random.default_rng(0)
    values = rng.random((3, 3, len(metrics)))  # seeds × steps × metrics
    runs = [[{"step": 8 * k, "train_seed": s, **dict(zip(metrics, values[s, k]))} for k in range(3)] for s in range(3)]
    runs[2] = runs[2][:2]  # the third seed reached only two evaluations
    entry = {"step": [0, 8, 16]}
    f09._add_seed_statistics(entry, runs[0], runs[1] + runs[2])
    assert entry["train_seeds"] == 3 and entry["step"] == [0, 8]
    for j, metric in enumerate(metrics):
        np.testing.assert_allclose(entry[f"{metric}_seed_mean"], values[:, :2, j].mean(axis=0))
        np.testing.assert_allclose(entry[f"{metric}_seed_values"], values[:, :2, j])
    single = {"step": [0]}
    f09._add_seed_statistics(single, runs[0], [])
    assert set(single) == {"step"}


def test_a_crashing_figure_gives_exit_1_and_is_listed(tmp_path, monkeypatch, capsys):
    def broken_compute(settings):
        raise RuntimeError("deliberate failure for the test")

    fake = types.ModuleType("rdro_test_fake_figure")
    fake.INFO = FigureInfo("F2", "F02_fake", "fake figure", "caption", (1,))
    fake.compute = broken_compute
    fake.draw = None
    monkeypatch.setitem(sys.modules, "rdro_test_fake_figure", fake)
    monkeypatch.setitem(cli.FIGURE_MODULES, "F2", "rdro_test_fake_figure")
    rc = cli.main(["--only", "F2", "--out", str(tmp_path), "--no-progress"])
    assert rc == 1
    assert "F2" in capsys.readouterr().err
    md = (tmp_path / "REPORT.md").read_text()
    assert "## Errors" in md and "deliberate failure for the test" in md
    assert "deliberate failure for the test" in (tmp_path / "REPORT.html").read_text()


def test_second_run_reads_the_figure_cache_and_force_recomputes(tmp_path):
    from rdro.cli import main as rdro_main

    args = ["--only", "F2", "--out", str(tmp_path), "--no-progress"]
    assert rdro_main(["figures", *args]) == 0  # through the `rdro` dispatcher
    assert (tmp_path / "figures" / "F02_gradients.png").stat().st_size > 10_000
    assert (tmp_path / "figures" / "F02_gradients.pdf").stat().st_size > 5_000
    first = read_json(tmp_path / "figures_results.json")
    assert cli.main(args) == 0
    second = read_json(tmp_path / "figures_results.json")
    assert "results read from cache (computed in" in (tmp_path / "REPORT.md").read_text()
    assert cli.main(args + ["--force"]) == 0
    forced = read_json(tmp_path / "figures_results.json")

    def f2(saved):
        return next(r for r in saved["figures"] if r["figure"] == "F2")

    assert not f2(first)["timing"]["from_cache"] and f2(second)["timing"]["from_cache"]
    assert not f2(forced)["timing"]["from_cache"]
    assert f2(second)["checks"] == f2(first)["checks"]
    assert f2(second)["meta"]["computed"] == f2(first)["meta"]["computed"]  # when and how long the cached compute took
    # a later run of other figures keeps F2's cached verdicts in the report, marked as not rebuilt
    assert cli.main(["--only", "F10", "--out", str(tmp_path), "--no-progress"]) == 0
    later = read_json(tmp_path / "figures_results.json")
    assert f2(later)["status"] == "not selected" and f2(later)["checks"] == f2(first)["checks"]
    assert "not selected in this run (checks from cached results)" in (tmp_path / "REPORT.md").read_text()


# --------------------------------------------------------------------------- the whole --quick set
# Every figure for real, with the experiments' and the LLM benchmark's quick configurations
# (≈ 50 s wall on 2 idle cores, then a second run from the caches). This is the bar for
# `rdro figures --quick`, so it runs in the default suite.


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures_quick")
    rc_first = cli.main(["--quick", "--out", str(out), "--no-progress", "--jobs", "2"])
    first = read_json(out / "figures_results.json")
    rc_second = cli.main(["--quick", "--out", str(out), "--no-progress", "--jobs", "2"])
    second = read_json(out / "figures_results.json")
    return {"out": out, "rc": (rc_first, rc_second), "first": first, "second": second}


def test_quick_run_builds_every_figure(quick_run):
    out, first = quick_run["out"], quick_run["first"]
    errors = {r["figure"]: r.get("error", "")[-600:] for r in first["figures"] if r["status"] == "error"}
    assert not errors, errors
    assert quick_run["rc"] == (0, 0)
    statuses = {r["figure"]: r["status"] for r in first["figures"]}
    for fid in cli.FIGURE_IDS:
        # F10 is drawn only from a saved GPU results file; without one it is omitted with a note
        expected = ("ok", "omitted") if fid == "F10" else ("ok",)
        assert statuses[fid] in expected, (fid, statuses[fid])
    for rec in first["figures"]:
        if rec["status"] != "ok":
            assert rec["figure"] == "F10" and rec.get("omitted")
            continue
        for kind in ("png", "pdf"):
            path = out / rec["images"][kind]
            assert path.is_file() and path.stat().st_size > 5_000, path
        assert rec["checks"], f"{rec['figure']} reported no checks"


def test_quick_report_lists_every_claim_and_check(quick_run):
    out, first = quick_run["out"], quick_run["first"]
    md = (out / "REPORT.md").read_text()
    page = (out / "REPORT.html").read_text()
    for row in first["claims"]:
        assert re.search(rf"^\| {row['claim']} \|.*\| \*\*(HOLDS|FAILS|NOT TESTED)", md, flags=re.M), row["claim"]
        if row["claim"] in (1, 2, 3, 4, 5, 6):
            assert row["total"] > 0, f"claim {row['claim']} has no check in the quick run"
    for rec in first["figures"]:
        assert f"### {rec['figure']} — " in md
        for check in rec["checks"]:
            assert report._md_escape(check["statistic"]) in md
        if rec["status"] == "ok":
            assert rec["images"]["png"] in md
    n_checks = sum(len(r["checks"]) for r in first["figures"])
    assert md.count("| **PASS** |") + md.count("| **FAIL** |") == n_checks
    assert page.count("data:image/png;base64,") == sum(r["status"] == "ok" for r in first["figures"])
    meta = first["run"]
    assert meta["mode"] == "quick" and meta["wall_time_s"] > 0 and meta["versions"]["torch"]


def test_second_quick_run_reads_the_caches(quick_run):
    first, second = quick_run["first"], quick_run["second"]
    built = [r for r in second["figures"] if r["status"] == "ok"]
    assert built and all(r["timing"]["from_cache"] for r in built if r["figure"] != "F10")
    compute_first = sum(r["timing"]["compute_s"] for r in first["figures"] if r["status"] == "ok")
    compute_second = sum(r["timing"]["compute_s"] for r in built)
    assert compute_second < 0.2 * compute_first
    same = {r["figure"]: r["checks"] for r in first["figures"]}
    assert all(r["checks"] == same[r["figure"]] for r in second["figures"])
    assert to_jsonable(second["claims"]) == to_jsonable(first["claims"])


# --------------------------------------------------------------------------- F10 (GPU results file)


def _bench_file(path, peak_gib):
    """A results file in the layout `rdro bench logprobs` writes (llm/kernels/bench.py), numbers made up for the test."""
    cases = []
    for shape, (h, v) in {"qwen2.5-0.5b": (896, 151936), "llama3-8b": (4096, 128256)}.items():
        floor = 8 * 32768 * h * v / 989.4e12 * 1e3
        methods = {
            "rdro": {"ms": 1.2 * floor, "peak_gib": peak_gib, "loss": 0.7},
            "naive": {"ms": 3.0 * floor, "peak_gib": None if peak_gib is None else 20.0, "loss": 0.7},
            "liger": {"ms": 1.6 * floor, "peak_gib": None if peak_gib is None else 1.0, "loss": 0.7},
            "cce": {"ms": None, "peak_gib": None, "error": "not installed (cut_cross_entropy)"},
        }
        cases.append(
            {
                "shape": shape,
                "hidden": h,
                "vocab": v,
                "tokens": 32768,
                "n_seq": 16,
                "seq_len": 2048,
                "floor_ms": floor,
                "methods": methods,
            }
        )
    device = "TEST-GPU" if peak_gib is not None else "x86_64"
    write_json_atomic(path, {"meta": {"device": device, "dtype": "bfloat16", "peak_tflops": 989.4}, "cases": cases})
    return path


def test_f10_draws_a_gpu_results_file_and_checks_the_goals(tmp_path):
    from rdro.paper_figures import f10_kernels as f10

    gpu = _bench_file(tmp_path / "gpu.json", peak_gib=0.4)
    res = f10.compute(RunSettings(kernel_results=gpu))
    assert "omitted" not in res and res["data"]["meta"]["device"] == "TEST-GPU"
    checks = {c["statistic"]: c for c in res["checks"]}
    llama = checks["llama3-8b, N = 32768: rdro time / matmul floor"]
    assert llama["value"] == pytest.approx(1.2) and llama["passed"]
    speed = checks["llama3-8b, N = 32768: Liger time / rdro time"]
    assert speed["value"] == pytest.approx(1.6 / 1.2) and speed["passed"]
    assert checks["qwen2.5-0.5b, N = 32768: rdro peak memory (GiB)"]["passed"]  # 0.4 ≤ 0.5
    assert not any("cut-cross-entropy" in k for k in checks)  # cce absent from the file: no check invented
    assert all(report.claim_numbers(c, f10.INFO.claims) == [] for c in res["checks"])  # not a §4 claim
    with paper_style():
        fig = f10.draw(res)
    assert "TEST-GPU" in fig._suptitle.get_text()


def test_f10_is_omitted_without_a_gpu_file(tmp_path, monkeypatch):
    from rdro.paper_figures import f10_kernels as f10

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(f10, "DOCUMENTED_FILE", tmp_path / "absent.json")
    cpu = _bench_file(tmp_path / "cpu.json", peak_gib=None)
    res = f10.compute(RunSettings(kernel_results=cpu))
    assert "cpu.json" in res["omitted"] and "CPU run" in res["omitted"]
    rc = cli.main(["--only", "F10", "--kernel-results", str(cpu), "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 0
    md = (tmp_path / "out" / "REPORT.md").read_text()
    assert "omitted: no GPU results file" in md
    assert not (tmp_path / "out" / "figures" / "F10_kernels.png").exists()


def test_f10_goal_checks_cover_the_exact_op_and_its_filtered_backward():
    from rdro.paper_figures.f10_kernels import _goal_checks

    methods = {
        "rdro": dict(ms=300.0, peak_gib=1.3),
        "rdro-filtered": dict(ms=200.0, peak_gib=1.31),
        "liger": dict(ms=260.0, peak_gib=3.5),
    }
    case = dict(shape="qwen2.5-7b", tokens=32768, floor_ms=178.0, methods=methods)
    checks = {c["statistic"]: c for c in _goal_checks([case], "test")}
    at = "qwen2.5-7b, N = 32768"
    assert not checks[f"{at}: rdro time / matmul floor"]["passed"]  # 1.69
    assert checks[f"{at}: rdro-filtered time / matmul floor"]["passed"]  # 1.12
    assert checks[f"{at}: Liger time / rdro-filtered time"]["passed"]  # 1.30
    assert not checks[f"{at}: rdro-filtered peak memory (GiB)"]["passed"]  # 1.31 > 1.3
    assert len(checks) == 6


def test_f10_reads_only_gpu_results_on_the_anchor_inputs():
    from rdro.paper_figures.f10_kernels import DOCUMENTED_FILE, is_gpu_results

    payload = read_json(DOCUMENTED_FILE)
    assert is_gpu_results(payload) == (True, "")
    lm = dict(payload, meta=dict(payload["meta"], inputs="lm"))
    ok, why = is_gpu_results(lm)
    assert not ok and "--inputs lm" in why
    cpu = dict(payload, cases=[dict(c, methods={m: dict(r, peak_gib=None) for m, r in c["methods"].items()})
                               for c in payload["cases"]])  # fmt: skip
    assert not is_gpu_results(cpu)[0]
