"""The claims the figures test, numbered as in shared/method.md §4 (statements, no numbers).

The verdicts are never stored here: each figure's ``checks`` carry the measured statistic,
its threshold and PASS/FAIL, computed by the experiments (rdro.simulations.experiments,
rdro.llm.known_preference) or by the figure's own computation (F2).
"""

from __future__ import annotations

import re

__all__ = ["CLAIMS", "claim_statement", "claim_numbers_in"]

CLAIMS: dict[int, str] = {
    1: (
        "Boundedness: r_α ≤ 1/α for all p+, p−; sup g → ∞ as the supports separate while sup r_α stays 1/α. "
        "RDRO's loss gradient in t stays ≤ 1 in magnitude; DDRO's [reconstructed loss] grows without bound as "
        "e^t → 1/μ."
    ),
    2: (
        "Consistency: with data from known distributions the RDRO estimate converges to log r_α "
        "(π_θ to p+ when π_ref = q_α) at the parametric rate n^(-1/2) (log-log slope ≈ −0.5); "
        "the per-class form targets r_α for any class balance, the pooled form only at π+ = ½."
    ),
    3: (
        "Tighter convergence bounds [reconstructed form]: the measured excess risk stays under the "
        "uniform-deviation bound, and the DDRO/RDRO bound ratio grows with the ordinary-ratio bound R."
    ),
    4: (
        "Relative versus plain estimators: relative density-ratio estimators (RuLSIF, relative logistic) "
        "have lower error and variance than plain ones (uLSIF, KLIEP, logistic) at the same n, "
        "increasingly so as overlap shrinks."
    ),
    5: (
        "Misspecification: when preferences are not Bradley–Terry, DPO/KTO optima differ from p+ while "
        "RDRO and DDRO [reconstructed loss] recover it; the gap persists as n grows. (Tested in E5 for DPO against "
        "a Bradley–Terry control; the unpaired rows of RDRO, DDRO and KTO have the same law under either rule, and "
        "KTO, whose loss has no finite minimiser there, is reported after a fixed number of steps.)"
    ),
    6: (
        "Training dynamics: on a real (small) LM, DDRO's [reconstructed loss] log-ratios and gradient norms "
        "spike or diverge while RDRO's preferred log-ratios saturate near log(1/α); stabilised DDRO may show smaller "
        "gradient norms than RDRO."
    ),
}


def claim_statement(number: int) -> str:
    """The statement of claim ``number`` (1–6, shared/method.md §4)."""
    if number not in CLAIMS:
        raise ValueError(f"claim number must be one of {sorted(CLAIMS)}, got {number!r}")
    return CLAIMS[number]


def claim_numbers_in(value) -> list[int]:
    """The §4 claim numbers named by a check's ``claim`` field: ``2`` → [2]; ``"2: consistency"``,
    ``"claim 3"`` → [3]; ``"2, 5"`` / ``"claims 2 and 5"`` → [2, 5]; text naming no number → []."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return [value] if value in CLAIMS else []
    m = re.match(r"^\s*(?:claims?\s*)?(\d(?:\s*(?:,|&|/|\+|and)\s*\d)*)(?!\d)", str(value), flags=re.IGNORECASE)
    if not m:
        return []
    return [int(x) for x in re.findall(r"\d", m.group(1)) if int(x) in CLAIMS]
