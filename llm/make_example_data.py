"""Generate the small preference datasets shipped in ``llm/data/`` (used by the tests and the CPU example).

Known labelling rule: each prompt asks for one arithmetic result (a + b, a − b or a × b with small
integers); a completion is **preferred** exactly when the number it states is the correct result,
non-preferred when it states a wrong one (off by a small non-zero amount). So p+ is the distribution
of correct answers and p− of wrong ones, and the preferred fraction of the unpaired file is set to
≈ 0.4 (like UF-G's 0.39) so that α = "auto" differs from ½.

Files (conversational format, one JSON object per line):
  - ``arithmetic_preferences.jsonl``: unpaired rows (prompt, completion, label);
  - ``arithmetic_pairs.jsonl``: paired rows (prompt, chosen, rejected).

Run ``python -m rdro.llm.make_example_data [--out DIR] [--seed 0]``; the output is deterministic
given the seed (recorded in ``README.md`` beside the files).
"""

from __future__ import annotations

import argparse
import json
import os
import random

from rdro.results import atomic_write_text

N_UNPAIRED = 320
N_PAIRS = 64
PREFERRED_SHARE = 0.4
DEFAULT_SEED = 0

_OPS = {"+": ("plus", lambda a, b: a + b), "-": ("minus", lambda a, b: a - b), "*": ("times", lambda a, b: a * b)}
_QUESTIONS = ("What is {a} {w} {b}?", "Compute {a} {w} {b}.", "Please tell me {a} {w} {b}.", "How much is {a} {w} {b}?")
_ANSWERS = ("{a} {w} {b} is {r}.", "The answer is {r}.", "It is {r}.", "{r}")


def _question(rng: random.Random):
    op = rng.choice(sorted(_OPS))
    word, fn = _OPS[op]
    a, b = (rng.randint(2, 12), rng.randint(2, 12)) if op == "*" else (rng.randint(1, 60), rng.randint(1, 40))
    prompt = [{"role": "user", "content": rng.choice(_QUESTIONS).format(a=a, w=word, b=b)}]
    return prompt, a, b, word, fn(a, b)


def _answer(rng: random.Random, a: int, b: int, word: str, result: int) -> list[dict]:
    text = rng.choice(_ANSWERS).format(a=a, w=word, b=b, r=result)
    return [{"role": "assistant", "content": text}]


def _wrong(rng: random.Random, result: int) -> int:
    return result + rng.choice([-1, 1]) * rng.randint(1, 5)


def make_unpaired(seed: int = DEFAULT_SEED, n: int = N_UNPAIRED, preferred_share: float = PREFERRED_SHARE):
    """Unpaired rows: a preferred (correct) answer with probability ``preferred_share``, else a wrong one."""
    rng = random.Random(seed)
    n_pos = round(n * preferred_share)
    labels = [True] * n_pos + [False] * (n - n_pos)
    rng.shuffle(labels)
    rows = []
    for label in labels:
        prompt, a, b, word, result = _question(rng)
        stated = result if label else _wrong(rng, result)
        rows.append({"prompt": prompt, "completion": _answer(rng, a, b, word, stated), "label": label})
    return rows


def make_pairs(seed: int = DEFAULT_SEED, n: int = N_PAIRS):
    """Paired rows: the chosen answer states the correct result, the rejected one a wrong result."""
    rng = random.Random(seed + 1)
    rows = []
    for _ in range(n):
        prompt, a, b, word, result = _question(rng)
        rows.append(
            {
                "prompt": prompt,
                "chosen": _answer(rng, a, b, word, result),
                "rejected": _answer(rng, a, b, word, _wrong(rng, result)),
            }
        )
    return rows


def _write_jsonl(rows, path: str) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_example_data(out_dir: str, seed: int = DEFAULT_SEED) -> list[str]:
    """Write both files and a README (with the seed) into ``out_dir``; returns the file paths."""
    os.makedirs(out_dir, exist_ok=True)
    unpaired, pairs = make_unpaired(seed), make_pairs(seed)
    paths = [os.path.join(out_dir, "arithmetic_preferences.jsonl"), os.path.join(out_dir, "arithmetic_pairs.jsonl")]
    _write_jsonl(unpaired, paths[0])
    _write_jsonl(pairs, paths[1])
    n_pos = sum(r["label"] for r in unpaired)
    readme = (
        "# Example preference data (generated)\n\n"
        f"Made by `python -m rdro.llm.make_example_data --seed {seed}` (llm/make_example_data.py in the repository).\n\n"
        "Labelling rule: the user asks for one arithmetic result; a completion is preferred exactly when\n"
        "the number it states is correct (non-preferred answers are off by 1-5).\n\n"
        f"- `arithmetic_preferences.jsonl`: {len(unpaired)} unpaired conversational rows "
        f"(prompt, completion, label), {n_pos} preferred (fraction {n_pos / len(unpaired):.3f}).\n"
        f"- `arithmetic_pairs.jsonl`: {len(pairs)} paired rows (prompt, chosen, rejected).\n"
    )
    atomic_write_text(os.path.join(out_dir, "README.md"), readme)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args(argv)
    for p in write_example_data(args.out, args.seed):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
