"""bayesdistill: knowledge distillation from Bayesian teachers.

A teacher's soft predictions estimate the Bayes class probabilities (BCPs); the closer
they are, the lower the gradient noise of an SGD-trained student (Morad, Shlezinger &
Eldar, ICLR 2026). bayesdistill builds teachers that output predictive probabilities
(deterministic, temperature-scaled, Laplace, IVON, exact/noisy Bayes on synthetic data),
distils students from them with any registered loss, and measures what changed.
"""

__version__ = "0.1.0"
