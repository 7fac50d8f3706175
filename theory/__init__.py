"""rdro.theory — convergence bounds and loss constants as code.

Installed as ``rdro.theory`` (the top-level folder ``theory/`` is mapped there by
setuptools ``package-dir``); import it as ``rdro.theory``, never as ``theory``.
"""

from rdro.theory.bounds import (
    bound_pair,
    bound_ratio,
    ddro_bound,
    excess_risk_bound,
    kernel_feature_bound,
    per_class_excess_risk_bound,
    rademacher_linear,
    rdro_bound,
    uniform_deviation_bound,
)
from rdro.theory.loss_constants import (
    LossConstants,
    ddro_class_constants,
    ddro_loss_constants,
    ddro_t_interval,
    rdro_class_constants,
    rdro_loss_constants,
)

__all__ = [
    "LossConstants",
    "bound_pair",
    "bound_ratio",
    "ddro_bound",
    "ddro_class_constants",
    "ddro_loss_constants",
    "ddro_t_interval",
    "excess_risk_bound",
    "kernel_feature_bound",
    "per_class_excess_risk_bound",
    "rademacher_linear",
    "rdro_bound",
    "rdro_class_constants",
    "rdro_loss_constants",
    "uniform_deviation_bound",
]
