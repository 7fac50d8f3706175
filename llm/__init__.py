"""rdro.llm — data, models, fused log-prob kernels and the trainer for LLM alignment.

Installed as ``rdro.llm`` (the top-level folder ``llm/`` is mapped there by setuptools ``package-dir``,
so there is no top-level module named ``llm``). Needs the ``llm`` extra: ``pip install 'rdro[llm]'``.

Modules: :mod:`rdro.llm.data` (preference datasets: loading, pair conversion, tokenisation, batching),
:mod:`rdro.llm.models` (Qwen2 / Llama loading from folders or GGUF, LoRA, per-sequence log-probs),
:mod:`rdro.llm.trainer` (``RDROConfig``, ``RDROTrainer``), :mod:`rdro.llm.train` (``rdro train``),
:mod:`rdro.llm.make_example_data` (the shipped ``data/*.jsonl``), :mod:`rdro.llm.bench_trainer`
(CPU speed benchmark against TRL's KTOTrainer), :mod:`rdro.llm.kernels` (the fused log-prob op).
Recipes: ``recipes/*.yaml``; launcher configs: ``accelerate_configs/``.
"""
