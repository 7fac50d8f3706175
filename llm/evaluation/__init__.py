"""rdro.llm.evaluation — AlpacaEval 2 (length-controlled) and BIG-Bench Hard evaluation of aligned models.

Installed as ``rdro.llm.evaluation`` (the folder ``llm/evaluation/`` is mapped there by setuptools
``package-dir``). Needs the ``llm`` and ``eval`` extras: ``pip install 'rdro[llm,eval]'``. The evaluation is
done by the field's standard tools, never re-implemented here: ``alpaca_eval`` judges and fits the
length-controlled GLM, ``lm-eval`` runs BBH; this package generates the outputs, configures those tools for
local/offline use and gathers their numbers into the paper's table.

``rdro eval <step>``:

    generate     batched, resumable generation for the AlpacaEval instructions (alpaca_eval's format)
    alpaca-eval  AlpacaEval 2 LC win rate and win rate with a chosen judge  (module ``alpaca``)
    bbh          BIG-Bench Hard exact match through lm-eval                  (module ``bbh``)
    table        gather results files into the paper's Markdown + CSV table  (module ``table``)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _add_labels(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("table coordinates saved with the results")
    group.add_argument(
        "--base-model", required=True, help="base model label, a table column (e.g. Llama-3.1-8B-Instruct)"
    )
    group.add_argument("--method", required=True, help="alignment method, a table row (e.g. RDRO, KTO, DDRO)")
    group.add_argument("--train-data", required=True, help="training data label, a table column (e.g. UF-G, MIX-14K)")


def build_parser() -> argparse.ArgumentParser:
    from rdro.llm.evaluation.alpaca import LC_BOOTSTRAP_RESAMPLES

    parser = argparse.ArgumentParser(prog="rdro eval", description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)

    gen = steps.add_parser("generate", help="generate model outputs for the AlpacaEval instructions (resumable)")
    gen.add_argument(
        "--model",
        required=True,
        help="local model folder (Hugging Face layout), a .gguf file, or smollm2-135m-instruct",
    )
    gen.add_argument("--gguf-file", default=None, help="GGUF file name inside --model, loaded by transformers")
    gen.add_argument(
        "--prompts", default="tatsu-lab/alpaca_eval", help="local .json/.jsonl with 'instruction', or the hub id"
    )
    gen.add_argument("--out", required=True, help="output JSON (alpaca_eval format); progress in <out>.partial.json")
    gen.add_argument("--generator", default=None, help="name stored in each output (default: the model folder name)")
    gen.add_argument("--max-new-tokens", type=int, default=2048)
    gen.add_argument("--batch-size", type=int, default=8)
    decoding = gen.add_mutually_exclusive_group()
    decoding.add_argument("--greedy", action="store_true", help="greedy decoding (the default)")
    decoding.add_argument("--temperature", type=float, default=None, help="sample with this temperature (> 0)")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (with --temperature)")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--limit", type=int, default=None, help="only the first K instructions (smoke runs)")
    gen.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    gen.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")

    ae = steps.add_parser("alpaca-eval", help="AlpacaEval 2 LC win rate with the alpaca_eval package")
    ae.add_argument("--outputs", required=True, help="outputs JSON written by `rdro eval generate`")
    ae.add_argument("--out-dir", required=True, help="folder for annotations, GLM weights and alpaca_eval_results.json")
    ae.add_argument("--annotator", default="standard", choices=["standard", "openai-compatible", "hf-local"])
    ae.add_argument(
        "--judge-model", default=None, help="judge model name (openai-compatible) or local folder (hf-local)"
    )
    ae.add_argument("--judge-gguf-file", default=None, help="GGUF file inside the hf-local judge folder")
    ae.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    ae.add_argument("--reference", default=None, help="reference outputs (alpaca_eval_gpt4_baseline.json)")
    ae.add_argument("--alpaca-eval-data", default=None, help="local copy of the hub dataset tatsu-lab/alpaca_eval")
    ae.add_argument(
        "--glm",
        default="length_controlled_v1",
        choices=["length_controlled_v1", "length_controlled_noreg", "length_controlled_minimal"],
        help="the package's length-controlled GLM (v1 is AlpacaEval 2's)",
    )
    ae.add_argument("--seed", type=int, default=0, help="annotator seed (output order randomisation)")
    ae.add_argument(
        "--lc-bootstrap",
        type=int,
        default=LC_BOOTSTRAP_RESAMPLES,
        help="bootstrap resamples (GLM refits) for the LC win rate's standard error; 0: none",
    )
    _add_labels(ae)

    bbh = steps.add_parser("bbh", help="BIG-Bench Hard through lm-eval")
    bbh.add_argument("--model", required=True, help="local model folder (Hugging Face layout)")
    bbh.add_argument("--out-dir", required=True, help="folder for bbh_results.json")
    bbh.add_argument(
        "--task", default="bbh_cot_fewshot", help="bbh_cot_fewshot | bbh_fewshot | bbh_cot_zeroshot | bbh_zeroshot"
    )
    bbh.add_argument("--bbh-data", default=None, help="local BBH copy: <subtask>.jsonl/.json files or a hub snapshot")
    bbh.add_argument("--include-path", default=None, help="extra folder of lm-eval task YAML files")
    bbh.add_argument("--limit", type=int, default=None, help="examples per subtask (smoke runs; not comparable)")
    bbh.add_argument("--batch-size", type=int, default=1)
    bbh.add_argument("--max-gen-toks", type=int, default=None, help="cap on generated tokens (default: the task's)")
    bbh.add_argument("--apply-chat-template", action="store_true", help="wrap prompts in the model's chat template")
    bbh.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    bbh.add_argument("--device", default=None)
    bbh.add_argument("--seed", type=int, default=1234)
    bbh.add_argument("--save-samples", action="store_true", help="also save per-example records (bbh_samples.json)")
    _add_labels(bbh)

    table = steps.add_parser("table", help="gather results into the paper's table (Markdown + CSV)")
    table.add_argument("--results", required=True, help="folder searched recursively for results JSON files")
    table.add_argument("--out", required=True, help="Markdown file; the CSV is written beside it (.csv)")
    table.add_argument(
        "--methods", nargs="+", default=None, help="row order (default: SFT, DPO, BCO, KTO, DDRO, RDRO, ...)"
    )
    return parser


def _generate(args: argparse.Namespace) -> int:
    from rdro.llm.evaluation.generation import ChatGenerator, GenerationSettings, generate_outputs, load_instructions

    if args.temperature is not None and args.temperature <= 0:
        raise ValueError(f"--temperature={args.temperature}: expected > 0 (use --greedy for greedy decoding)")
    model = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    settings = GenerationSettings(
        model=model,
        generator=args.generator or Path(model).name,
        max_new_tokens=args.max_new_tokens,
        temperature=0.0 if args.temperature is None else args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        gguf_file=args.gguf_file,
        dtype=args.dtype,
        batch_size=args.batch_size,
    )
    instructions = load_instructions(args.prompts, limit=args.limit)
    generator = ChatGenerator(args.model, gguf_file=args.gguf_file, dtype=args.dtype, device=args.device)
    records = generate_outputs(generator, instructions, args.out, settings)
    print(f"wrote {len(records)} outputs of {settings.generator!r} to {args.out}")
    return 0


def _alpaca_eval(args: argparse.Namespace) -> int:
    from rdro.llm.evaluation.alpaca import AnnotatorChoice, run_alpaca_eval

    choice = AnnotatorChoice(
        args.annotator, model=args.judge_model, base_url=args.base_url, gguf_file=args.judge_gguf_file
    )
    payload = run_alpaca_eval(
        args.outputs,
        args.out_dir,
        model=args.base_model,
        method=args.method,
        dataset=args.train_data,
        annotator=choice,
        reference=args.reference,
        alpaca_eval_data=args.alpaca_eval_data,
        glm_name=args.glm,
        seed=args.seed,
        lc_bootstrap=args.lc_bootstrap,
    )
    print(json.dumps(payload["rows"], indent=2))
    if payload["details"]["note"]:
        print(payload["details"]["note"])
    return 0


def _bbh(args: argparse.Namespace) -> int:
    from rdro.llm.evaluation.bbh import run_bbh

    payload = run_bbh(
        args.model,
        args.out_dir,
        model=args.base_model,
        method=args.method,
        dataset=args.train_data,
        task=args.task,
        bbh_data=args.bbh_data,
        include_path=args.include_path,
        limit=args.limit,
        batch_size=args.batch_size,
        max_gen_toks=args.max_gen_toks,
        apply_chat_template=args.apply_chat_template,
        dtype=args.dtype,
        device=args.device,
        seed=args.seed,
        save_samples=args.save_samples,
    )
    print(json.dumps(payload["rows"], indent=2))
    return 0


def _table(args: argparse.Namespace) -> int:
    from rdro.llm.evaluation.table import write_table

    markdown, csv_path = write_table(args.results, args.out, methods=args.methods)
    print(markdown.read_text(encoding="utf-8"))
    print(f"wrote {markdown} and {csv_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rdro eval``: parse ``argv`` and run one step. Bad input, missing files or keys and results
    lm-eval returns in an unexpected shape are reported on stderr with exit status 2."""
    from rdro.llm.evaluation.alpaca import MissingAPIKeyError
    from rdro.llm.evaluation.bbh import UnexpectedResultError

    args = build_parser().parse_args(argv)
    run = {"generate": _generate, "alpaca-eval": _alpaca_eval, "bbh": _bbh, "table": _table}[args.step]
    try:
        return run(args)
    except (ValueError, FileNotFoundError, MissingAPIKeyError, UnexpectedResultError) as exc:
        print(f"rdro eval {args.step}: {exc}", file=sys.stderr)
        return 2
