"""The theory lab: check the convergence theory of distillation where p* is known exactly.

Experiments (each a registered function ``run(ctx, **options) -> ExperimentResult``, each a
config under ``configs/theory/``): the paper's synthetic study, the gradient noise at the
optimum, SGD convergence and step size, the variance of the empirical risk, partial variance
reduction by self-distillation, teacher quality vs student stability on MNIST-1D, and the
targets a student gets on its own training points (in-sample, cross-fitted, held-out).
Run them with ``bayesdistill theory CONFIG --out DIR`` or ``bayesdistill theory all``.
"""

from bayesdistill.theory.linear_softmax import LinearSoftmaxProblem
from bayesdistill.theory.report import Claim, ExperimentResult
from bayesdistill.theory.runner import (
    EXPERIMENTS,
    TheoryConfig,
    load_theory_config,
    run_all,
    run_theory,
    shipped_theory_configs,
)

__all__ = [
    "EXPERIMENTS",
    "Claim",
    "ExperimentResult",
    "LinearSoftmaxProblem",
    "TheoryConfig",
    "load_theory_config",
    "run_all",
    "run_theory",
    "shipped_theory_configs",
]
