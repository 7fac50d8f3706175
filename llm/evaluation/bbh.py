"""BIG-Bench Hard accuracy through lm-evaluation-harness (``lm_eval.simple_evaluate``, ``hf`` model, local path).

BBH is 27 subtasks; the score is lm-eval's group aggregate, the exact-match accuracy pooled over all examples

    acc = Σ_k n_k · acc_k / Σ_k n_k        (``weight_by_size: true``)

with lm-eval's pooled standard error. The variant is part of every result:

    bbh_cot_fewshot    3-shot chain-of-thought exemplars, answer read after "the answer is"  (the usual BBH number)
    bbh_fewshot        3-shot, answer only
    bbh_cot_zeroshot   0-shot, "Let's think step by step"
    bbh_zeroshot       0-shot, answer only

A task with several answer filters (the zero-shot subtasks report ``strict-match`` and ``flexible-extract``) is
scored with the first of PREFERRED_FILTERS it has: the filter the BBH groups aggregate over (the leaderboard's);
the result names the filter used.

The data come from the hub (lm-eval's ``dataset_path``) or from a local copy given as ``bbh_data``: either a
folder of per-subtask files ``<subtask>.jsonl`` / ``<subtask>.json`` (rows with ``input`` and ``target``; the
BIG-Bench-Hard repository's ``{"examples": [...]}`` files work as they are), or a local snapshot of the hub
dataset lm-eval names.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any

from rdro.extras import import_optional
from rdro.llm.evaluation.records import make_row, save_results, write_json_atomic

BBH_VARIANTS = {
    "bbh_cot_fewshot": "3-shot chain-of-thought",
    "bbh_fewshot": "3-shot answer-only",
    "bbh_cot_zeroshot": "0-shot chain-of-thought",
    "bbh_zeroshot": "0-shot answer-only",
}
#: answer filters in order of preference when a task reports several: those of the BBH groups' aggregates
PREFERRED_FILTERS = ("flexible-extract", "get-answer")


class UnexpectedResultError(RuntimeError):
    """lm-eval returned a result this module cannot read unambiguously."""


def pick_exact_match_key(result: dict[str, Any], task: str) -> str:
    """The ``exact_match,<filter>`` entry of one lm-eval result: the only one, else the first of PREFERRED_FILTERS;
    UnexpectedResultError when neither decides."""
    keys = sorted(k for k in result if k.startswith("exact_match,"))
    if len(keys) == 1:
        return keys[0]
    for name in PREFERRED_FILTERS:
        if f"exact_match,{name}" in keys:
            return f"exact_match,{name}"
    raise UnexpectedResultError(
        f"lm-eval returned {len(keys)} exact_match entries for task {task!r} ({keys}) and none of the filters "
        f"{list(PREFERRED_FILTERS)}; cannot tell which one to report"
    )


def import_lm_eval():
    """Import ``lm_eval`` or say which extra installs it."""
    return import_optional("lm_eval", "BBH")


def task_manager(*include_paths: str | os.PathLike):
    """An lm-eval TaskManager indexing only lm-eval's BBH configs plus ``include_paths`` (indexing all of
    lm-eval's thousands of task files takes tens of seconds and is not needed here)."""
    lm_eval = import_lm_eval()
    from lm_eval.tasks import TaskManager

    paths = [Path(lm_eval.__file__).parent / "tasks" / "bbh"]
    for include_path in include_paths:
        if not Path(include_path).is_dir():
            raise FileNotFoundError(f"include_path={str(include_path)!r}: not a directory of lm-eval task YAML files")
        paths.append(Path(include_path))
    return TaskManager(include_path=[str(p) for p in paths], include_defaults=False)


def local_data_overrides(subtask_config: dict[str, Any], bbh_data: str | os.PathLike) -> dict[str, Any]:
    """lm-eval config overrides that make one subtask read its test split from the local copy ``bbh_data``."""
    folder = Path(bbh_data)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"bbh_data={str(bbh_data)!r}: not a directory. Give a folder of per-subtask <subtask>.jsonl/.json files "
            "(rows with 'input' and 'target') or a local snapshot of the hub dataset lm-eval uses "
            f"({subtask_config.get('dataset_path')!r}, e.g. `huggingface-cli download "
            f"{subtask_config.get('dataset_path')} --repo-type dataset --local-dir DIR`)."
        )
    name = subtask_config.get("dataset_name")
    split = subtask_config.get("test_split", "test")
    for suffix in (".jsonl", ".json"):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            kwargs: dict[str, Any] = {"data_files": {split: str(path.resolve())}}
            if suffix == ".json" and isinstance(json.loads(path.read_text(encoding="utf-8")), dict):
                kwargs["field"] = "examples"  # the BIG-Bench-Hard repository's layout
            return {"dataset_path": "json", "dataset_name": None, "dataset_kwargs": kwargs}
    if any(folder.glob("*.jsonl")) or any(folder.glob("*.json")):
        raise FileNotFoundError(f"bbh_data={str(bbh_data)!r} has no {name}.jsonl or {name}.json for subtask {name!r}")
    return {"dataset_path": str(folder.resolve())}


def resolve_task(
    task: str, bbh_data: str | os.PathLike | None, include_path: str | os.PathLike | None, work_dir: str | os.PathLike
):
    """Return ``(task_manager, task_name)`` for lm-eval.

    Without ``bbh_data`` that is ``task`` itself. With it, a group ``<task>__local_data`` is written under
    ``work_dir/lm_eval_local_tasks/``: the registered group's config with every subtask's dataset redirected to
    the local copy through lm-eval's ``task: [{task: NAME, <overrides>}]`` syntax, and indexed with the rest.
    """
    import yaml

    includes = [include_path] if include_path is not None else []
    manager = task_manager(*includes)
    index = manager.task_index
    if task not in index:
        raise ValueError(
            f"task={task!r}: not an lm-eval task or group here; BBH variants are {list(BBH_VARIANTS)} "
            "(custom tasks: give their folder with include_path)"
        )
    if bbh_data is None:
        return manager, task
    config = dict(index[task].cfg)
    local_name = f"{task}__local_data"
    if isinstance(config.get("task"), list):
        children = [{"task": child, **local_data_overrides(index[child].cfg, bbh_data)} for child in config["task"]]
    else:
        children = [{"task": task, **local_data_overrides(config, bbh_data)}]
        config = {"aggregate_metric_list": [{"metric": "exact_match", "aggregation": "mean", "weight_by_size": True}]}
    folder = Path(work_dir) / "lm_eval_local_tasks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{task}.yaml").write_text(
        yaml.safe_dump({**config, "group": local_name, "task": children}, sort_keys=False)
    )
    return task_manager(*includes, folder), local_name


def run_bbh(
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    model: str,
    method: str,
    dataset: str,
    task: str = "bbh_cot_fewshot",
    bbh_data: str | os.PathLike | None = None,
    include_path: str | os.PathLike | None = None,
    limit: int | None = None,
    batch_size: int = 1,
    max_gen_toks: int | None = None,
    apply_chat_template: bool = False,
    dtype: str = "auto",
    device: str | None = None,
    seed: int = 1234,
    save_samples: bool = False,
) -> dict[str, Any]:
    """Evaluate the local checkpoint ``model_path`` on ``task`` with ``lm_eval.simple_evaluate`` and save the
    group's exact-match accuracy (percent, with stderr) to ``<out_dir>/bbh_results.json``.

    ``limit`` caps examples per subtask (then the number is not the full benchmark's: the result says so);
    ``max_gen_toks`` caps generation length; ``seed`` seeds lm-eval's python, numpy, torch and few-shot RNGs;
    ``save_samples`` also keeps lm-eval's per-example records (prompt, response, target, score) in
    ``<out_dir>/bbh_samples.json`` and in the returned payload under ``"samples"``.
    Only the full benchmark as published (a BBH variant from the hub without ``limit``, ``max_gen_toks`` or
    ``bbh_data``) is marked comparable to published BBH numbers; otherwise ``task_variant`` names what differs
    and ``details["note"]`` says why. Returns the saved payload.
    """
    lm_eval = import_lm_eval()
    import torch

    if not Path(model_path).is_dir():
        raise FileNotFoundError(f"model={str(model_path)!r}: expected a local folder with a Hugging Face checkpoint")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit={limit!r}: expected an integer >= 1 or None")
    manager, name = resolve_task(task, bbh_data, include_path, out_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    output = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model_path), "dtype": dtype},
        tasks=[name],
        batch_size=batch_size,
        device=device,
        limit=limit,
        task_manager=manager,
        apply_chat_template=apply_chat_template,
        gen_kwargs={"max_gen_toks": max_gen_toks} if max_gen_toks else None,
        log_samples=save_samples,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    group = output["results"][name]
    key = pick_exact_match_key(group, task)
    answer_filter = key.split(",", 1)[1]
    stderr = group.get(key.replace("exact_match,", "exact_match_stderr,"))
    n = int(sum(v["effective"] for name, v in output["n-samples"].items()))
    changes = [
        change
        for given, change in (
            (limit is not None, f"limit={limit}/subtask"),
            (max_gen_toks is not None, f"max_gen_toks={max_gen_toks}"),
            (bbh_data is not None, "local data"),
        )
        if given
    ]
    variant = f"{task} ({', '.join(changes)})" if changes else task
    comparable = task in BBH_VARIANTS and not changes
    row = make_row(
        model=model,
        method=method,
        dataset=dataset,
        metric="bbh_exact_match",
        value=100.0 * float(group[key]),
        stderr=None if stderr in (None, "N/A") else 100.0 * float(stderr),
        n=n,
        annotator=f"exact_match[{answer_filter}]",
        comparable_to_leaderboard=comparable,
        task_variant=variant,
        seed=seed,
    )
    details = {
        "model_path": str(model_path),
        "task": task,
        "variant_description": BBH_VARIANTS.get(task, "custom lm-eval task"),
        "data": str(bbh_data) if bbh_data is not None else "hub",
        "limit": limit,
        "apply_chat_template": apply_chat_template,
        "max_gen_toks": max_gen_toks,
        "filter": answer_filter,
        "note": None
        if comparable
        else "NOT comparable to published BBH numbers: "
        + ", ".join(changes if task in BBH_VARIANTS else [f"custom task {task!r}", *changes]),
        "lm_eval_version": importlib.metadata.version("lm_eval"),
        "subtasks": {name: dict(r) for name, r in output["results"].items()},
        "n_samples": output["n-samples"],
    }
    save_results(Path(out_dir) / "bbh_results.json", [row], details)
    payload = {"rows": [row], "details": details}
    if save_samples:
        samples = {name: [_plain_sample(s) for s in rows] for name, rows in output["samples"].items()}
        write_json_atomic(Path(out_dir) / "bbh_samples.json", samples)
        payload["samples"] = samples
    return payload


def _plain_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of one lm-eval sample record."""
    keys = ("doc_id", "doc", "target", "filtered_resps", "exact_match")
    return {k: sample[k] for k in keys if k in sample}
