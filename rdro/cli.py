"""The ``rdro`` command line: one entry point, one module per subcommand.

Each subcommand lives in the part of the package it belongs to and is imported
only when called (so ``rdro verify`` never imports transformers). A subcommand
module exposes ``main(argv: list[str]) -> int`` and parses its own options.
"""

from __future__ import annotations

import importlib
import sys

from rdro.extras import EXTRA_OF_MODULE

# name -> (module implementing it, one-line description, extra it needs or None)
SUBCOMMANDS: dict[str, tuple[str, str, str | None]] = {
    "verify": ("rdro.simulations.verify", "run the known-truth experiments E1-E6 and print claim / PASS-FAIL", None),
    "figures": ("rdro.paper_figures.cli", "regenerate every paper figure and the report", None),
    "train": ("rdro.llm.train", "align a causal LM with RDRO / DDRO / KTO / BCO / DPO / SFT", "llm"),
    "bench": ("rdro.llm.kernels.bench", "benchmark the fused log-prob kernels against the alternatives", None),
    "benchmark": ("rdro.llm.known_preference", "known-preference LLM benchmark (RDRO reaches p+?)", "llm"),
    "eval": ("rdro.llm.evaluation", "AlpacaEval 2 LC / BIG-Bench Hard evaluation of aligned models", "eval"),
}


def _usage() -> str:
    lines = ["usage: rdro <command> [options]", "", "commands:"]
    for name, (_, desc, _) in SUBCOMMANDS.items():
        lines.append(f"  {name:<10} {desc}")
    lines += ["", "`rdro <command> --help` shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from rdro import __version__

        print(f"rdro {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"rdro: unknown command {name!r}; expected one of: {', '.join(SUBCOMMANDS)}\n", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    module_name, _, extra = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            print(f"rdro: the command {name!r} is not available in this version of rdro yet.", file=sys.stderr)
            return 2
        if missing in EXTRA_OF_MODULE:
            needed = EXTRA_OF_MODULE[missing]
            print(
                f"rdro {name}: needs the optional package {missing!r}; install it with "
                f"`pip install 'rdro[{needed}]'` (or `pip install -e '.[{needed}]'` from a checkout).",
                file=sys.stderr,
            )
            return 2
        raise
    return int(module.main(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
