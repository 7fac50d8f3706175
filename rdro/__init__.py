"""rdro — Relative Density Ratio Optimization (arXiv 2604.04410) made executable.

One import namespace. The top-level folders of the source tree install as
subpackages (setuptools ``package-dir`` mapping):

    rdro/            -> rdro                 core: losses, ratio definitions, estimators, CLI
    theory/          -> rdro.theory          convergence bounds as code
    simulations/     -> rdro.simulations     synthetic worlds, experiments, ``rdro verify``
    llm/             -> rdro.llm             data, models, log-prob kernels, trainer
    paper_figures/   -> rdro.paper_figures   one module per figure, the report

The core never imports transformers.
"""

from rdro.losses import (
    RewardRunningMean,
    bco_loss,
    ddro_loss,
    dpo_loss,
    kto_loss,
    kto_reference_point,
    preferred_fraction,
    rdro_loss,
    sft_loss,
)
from rdro.ratios import (
    ddro_ratio,
    log_relative_ratio,
    ordinary_from_relative,
    ordinary_ratio,
    relative_from_ordinary,
    relative_ratio,
)

__version__ = "0.1.0"

__all__ = [
    "RewardRunningMean",
    "bco_loss",
    "ddro_loss",
    "ddro_ratio",
    "dpo_loss",
    "kto_loss",
    "kto_reference_point",
    "log_relative_ratio",
    "ordinary_from_relative",
    "ordinary_ratio",
    "preferred_fraction",
    "rdro_loss",
    "relative_from_ordinary",
    "relative_ratio",
    "sft_loss",
]
