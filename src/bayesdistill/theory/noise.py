"""Experiment 2: gradient noise at the optimum of the linear-softmax problem.

σ* = E‖∇ℓ(θ*; x, q)‖² is measured from per-sample gradients (`torch.func`) on fresh samples
and compared with the closed forms of `bayesdistill.theory.linear_softmax` for one-hot
labels, exact BCPs (zero), additive noise of variance ν (σ̃* = ν·E[Σ_k‖J_k‖²/p_k²]) and
Dirichlet noise (σ*/(a + 1)).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from bayesdistill.seeding import generator
from bayesdistill.theory.common import band, dirichlet, mixture_problem, one_hot
from bayesdistill.theory.context import ExperimentContext
from bayesdistill.theory.gradients import per_sample_gradients
from bayesdistill.theory.linear_softmax import LinearSoftmaxProblem
from bayesdistill.theory.report import Claim, ExperimentResult, paired_less, pm

AGREEMENT_Z = 3.5
"""|MC − closed form| / SE below which a Monte-Carlo σ* agrees with its closed form."""
EXACT_TOLERANCE = 1e-20
"""σ* for exact BCPs counts as zero below this (float64 round-off is ~1e-28)."""


def _loss(theta: Tensor, features: Tensor, target: Tensor) -> Tensor:
    logits = LinearSoftmaxProblem.logits(theta, features[None])
    return -(target * torch.log_softmax(logits, dim=-1)).sum()


def measure_noise(
    problem: LinearSoftmaxProblem,
    num_samples: int,
    closed_form_samples: int,
    noise_levels: tuple[float, ...],
    concentrations: tuple[float, ...],
    seed: int,
) -> dict[str, object]:
    """Monte-Carlo σ* (mean, SE) for each target and the closed forms, for one mixture."""
    theta = problem.theta_star()
    gen = generator(seed, 1)
    features, labels, bcp = problem.sample(num_samples, gen)
    cf_features, _, cf_bcp = problem.sample(closed_form_samples, generator(seed, 2))
    a, b = problem.noise_terms(cf_features, cf_bcp)
    closed_onehot, slope = float(a.mean()), float(b.mean())

    def mc(targets: Tensor) -> tuple[float, float]:
        return _mean_sq_norm(per_sample_gradients(_loss, theta, features, targets))

    exact_grads = per_sample_gradients(_loss, theta, features, bcp)
    out: dict[str, object] = {
        "closed_onehot": closed_onehot,
        "closed_slope": slope,
        "exact": _mean_sq_norm(exact_grads)[0],
        "exact_max_grad": float(exact_grads.abs().max()),
        "onehot": mc(one_hot(labels, problem.num_classes)),
        "additive": [
            mc(bcp + nu**0.5 * torch.randn(bcp.shape, generator=gen, dtype=torch.float64))
            for nu in noise_levels
        ],
        "dirichlet": [mc(dirichlet(bcp, c, gen)) for c in concentrations],
    }
    return out


def _mean_sq_norm(gradients: Tensor) -> tuple[float, float]:
    """Mean of ‖g‖² over samples and its standard error."""
    sq = gradients.square().sum((1, 2))
    return float(sq.mean()), float(sq.std() / len(sq) ** 0.5)


def run(
    ctx: ExperimentContext,
    *,
    num_classes: int = 5,
    dim: int = 30,
    mean_values: tuple[float, ...] = (4.0, 5.0, 6.0),
    variance: float = 2.5,
    num_samples: int = 20_000,
    closed_form_samples: int = 400_000,
    noise_levels: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
    concentrations: tuple[float, ...] = (5.0, 0.5),
) -> ExperimentResult:
    """Gradient noise at θ*: one-hot, exact-BCP, additive-noise and Dirichlet targets."""
    per_seed = [
        ctx.step(
            f"seed{seed}",
            lambda seed=seed: measure_noise(
                mixture_problem(seed, num_classes, dim, mean_values, variance),
                num_samples,
                closed_form_samples,
                noise_levels,
                concentrations,
                seed,
            ),
        )
        for seed in ctx.seeds
    ]
    records, z_scores = [], {"onehot": [], "additive": [], "dirichlet": []}
    for seed, r in zip(ctx.seeds, per_seed, strict=True):
        m, se = r["onehot"]
        z_scores["onehot"].append((m - r["closed_onehot"]) / se)
        records.append(
            {"seed": seed, "target": "onehot", "mc": m, "se": se, "closed": r["closed_onehot"]}
        )
        records.append(
            {
                "seed": seed,
                "target": "exact",
                "mc": r["exact"],
                "max_grad": r["exact_max_grad"],
                "closed": 0.0,
            }
        )
        for nu, (m, se) in zip(noise_levels, r["additive"], strict=True):
            closed = nu * r["closed_slope"]
            z_scores["additive"].append((m - closed) / se)
            records.append(
                {"seed": seed, "target": "additive", "nu": nu, "mc": m, "se": se, "closed": closed}
            )
        for c, (m, se) in zip(concentrations, r["dirichlet"], strict=True):
            closed = r["closed_onehot"] / (c + 1.0)
            z_scores["dirichlet"].append((m - closed) / se)
            records.append(
                {"seed": seed, "target": "dirichlet", "a": c, "mc": m, "se": se, "closed": closed}
            )
    ctx.write_metrics(records)

    nus = np.asarray(noise_levels)
    additive = np.array([[m for m, _ in r["additive"]] for r in per_seed])  # (seeds, ν)
    slopes = (additive @ nus) / (nus @ nus)  # least squares through the origin
    residual = additive - slopes[:, None] * nus
    spread = ((additive - additive.mean(1, keepdims=True)) ** 2).sum(1)
    r2 = 1.0 - (residual**2).sum(1) / spread
    closed_slopes = np.array([r["closed_slope"] for r in per_seed])
    onehot = np.array([r["onehot"][0] for r in per_seed])
    exact = np.array([r["exact"] for r in per_seed])
    max_grad = max(r["exact_max_grad"] for r in per_seed)
    crossing = onehot / slopes

    crossing_checks = [
        paired_less((f"σ̃*(ν={nu:g})", additive[:, j]), ("σ*", onehot), log=True, digits=2)
        for j, nu in enumerate(noise_levels)
        if nu < crossing.min()
    ] + [
        paired_less(("σ*", onehot), (f"σ̃*(ν={nu:g})", additive[:, j]), log=True, digits=2)
        for j, nu in enumerate(noise_levels)
        if nu > crossing.max()
    ]

    def max_z(key: str) -> float:
        return float(np.max(np.abs(z_scores[key])))

    claims = [
        Claim(
            "With exact BCPs every per-sample gradient vanishes at θ* (interpolation)",
            "σ* = 0",
            f"σ* = {pm(exact, 2)}; max |∂ℓ/∂θ| = {max_grad:.1e}",
            bool(exact.max() < EXACT_TOLERANCE),
            f"float64; zero means below {EXACT_TOLERANCE:g} (round-off level).",
        ),
        Claim(
            "One-hot labels: σ* = E_x[Σ_k ‖J_k‖²/p_k]",
            f"closed form {pm([r['closed_onehot'] for r in per_seed])}",
            f"Monte Carlo {pm(onehot)}; max |z| = {max_z('onehot'):.2f}",
            max_z("onehot") < AGREEMENT_Z,
            f"z = (MC − closed)/SE per seed, agreement when |z| < {AGREEMENT_Z}.",
        ),
        Claim(
            "Noisy BCPs (additive, variance ν): σ̃* = ν·E_x[Σ_k ‖J_k‖²/p_k²]",
            f"Monte Carlo = closed form at all {len(noise_levels)} ν",
            f"max |z| = {max_z('additive'):.2f} over {len(z_scores['additive'])} (seed, ν)",
            max_z("additive") < AGREEMENT_Z,
            "Noise added to p* without clipping or renormalising, as the theorem assumes.",
        ),
        Claim(
            "σ̃* is linear in ν",
            f"slope = E[Σ_k‖J_k‖²/p_k²] = {pm(closed_slopes)}, R² = 1",
            f"fitted slope {pm(slopes)}, R² ≥ {r2.min():.5f}",
            bool(r2.min() > 0.999 and np.all(np.abs(slopes / closed_slopes - 1) < 0.05)),
            "Least squares through the origin; slope within 5 % of the closed form.",
        ),
        Claim(
            "Dirichlet(a·p*) targets: σ̃* = σ*_one-hot/(a + 1) (derived: Cov = (diag p − ppᵀ)/(a+1), Σ_k J_k = 0)",
            "MC = closed form for a = " + ", ".join(f"{c:g}" for c in concentrations),
            f"max |z| = {max_z('dirichlet'):.2f}",
            max_z("dirichlet") < AGREEMENT_Z,
        ),
        Claim(
            "Distillation lowers the noise at θ* exactly when σ̃* < σ*",
            "additive noise helps below ν_c = σ*/slope: σ̃*(ν) < σ* for ν below every seed's "
            "ν_c, σ̃*(ν) > σ* above every seed's ν_c",
            f"ν_c = {pm(crossing)} (teacher noise std {pm(np.sqrt(crossing))}); "
            + ("; ".join(c.measured for c in crossing_checks) or "no ν of the grid to check"),
            bool(crossing_checks) and all(c.held for c in crossing_checks),
            "Per ν of the grid that lies on the same side of ν_c for every seed: per-seed "
            "paired log ratio ln(σ̃*(ν)/σ*_one-hot), mean [95 % t interval] (each seed is its "
            "own mixture, so noise levels differ by a factor between seeds); held when every "
            "interval excludes 0 on the predicted side.",
        ),
    ]

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    band(ax, nus, additive, "additive noise (Monte Carlo)", log=True)
    ax.plot(nus, nus * closed_slopes.mean(), "k--", lw=1, label="closed form ν·E[Σ‖J_k‖²/p_k²]")
    ax.axhline(onehot.mean(), color="C3", lw=1.2, label="one-hot labels")
    for c, m in zip(
        concentrations, np.array([[m for m, _ in r["dirichlet"]] for r in per_seed]).T, strict=True
    ):
        ax.axhline(m.mean(), color="C2", lw=1, ls=":", label=f"Dirichlet a={c:g}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="teacher noise variance ν",
        ylabel="σ* = E‖∇ℓ(θ*)‖²",
        title="Gradient noise at the optimum (exact BCPs: 0)",
    )
    ax.legend(fontsize=7)
    figure = ctx.save_figure(fig, "noise_vs_nu")

    table = ["| target | σ* (Monte Carlo) | closed form |", "|---|---|---|"]
    table.append(f"| one-hot | {pm(onehot)} | {pm([r['closed_onehot'] for r in per_seed])} |")
    table.append(f"| exact BCP | {pm(exact, 2)} | 0 |")
    for i, nu in enumerate(noise_levels):
        table.append(f"| additive ν={nu:g} | {pm(additive[:, i])} | {pm(nu * closed_slopes)} |")
    for j, c in enumerate(concentrations):
        dm = [r["dirichlet"][j][0] for r in per_seed]
        table.append(
            f"| Dirichlet a={c:g} | {pm(dm)} | {pm(np.array([r['closed_onehot'] for r in per_seed]) / (c + 1))} |"
        )
    return ExperimentResult(
        "Gradient noise at the optimum (linear softmax)",
        f"Gaussian mixture K={num_classes}, d={dim}, s²={variance}; θ* in closed form; "
        f"σ* from {num_samples} per-sample gradients (torch.func), closed forms from "
        f"{closed_form_samples} samples; {len(ctx.seeds)} seeds (mixtures).",
        claims,
        ["\n".join(table)],
        [figure],
    )
