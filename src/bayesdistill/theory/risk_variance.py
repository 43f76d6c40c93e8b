"""Experiment 4: variance of the empirical risk (Menon et al., ICML 2021; REFERENCE.md §3).

For a fixed predictor f with loss vector ℓ(f(x)) = −log softmax(f(x)), the risk is
R(f) = E_x[p*(x)ᵀℓ(f(x))]. Over many draws of a training set of size N we compare

- the one-hot empirical risk      R̂  = (1/N) Σ ℓ_{y_n}(f(x_n)),
- the Bayes-distilled risk        R̂* = (1/N) Σ p*(x_n)ᵀ ℓ(f(x_n)),
- teacher-distilled risks         R̃  = (1/N) Σ p^t(x_n)ᵀ ℓ(f(x_n))

for Dirichlet-noisy BCPs, a deterministic network teacher and a Laplace teacher. R̂ and R̂*
are unbiased and Var[R̂*] ≤ Var[R̂] (law of total variance); a Dirichlet(a·p*) teacher is
unbiased with Var = Var[R̂*] + (Var[R̂] − Var[R̂*])/(a + 1) (its covariance is that of a
one-hot label divided by a + 1); a network teacher trades bias for variance.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from bayesdistill.data.arrays import ArrayData
from bayesdistill.metrics import ece
from bayesdistill.models import create_model
from bayesdistill.seeding import generator
from bayesdistill.teachers import fit_laplace
from bayesdistill.theory.common import dirichlet, mixture_problem, one_hot
from bayesdistill.theory.context import ExperimentContext
from bayesdistill.theory.report import (
    Claim,
    ExperimentResult,
    above_zero,
    paired_less,
    pm,
)
from bayesdistill.train import TrainSettings, fit

Z_UNBIASED = 3.5
"""|mean − R| / SE below which an estimator counts as unbiased."""


def exact_variances(px: Tensor, pyx: Tensor, loss: Tensor, n: int) -> tuple[float, float, float]:
    """Exact (R, Var[R̂], Var[R̂*]) on a finite input space, for training sets of size n.

    ``px`` ``(M,)`` input probabilities, ``pyx`` ``(M, K)`` p*(y|x), ``loss`` ``(M, K)``
    ℓ_k(f(x)). With iid samples Var of a mean is the per-sample variance over n.
    """
    per_x = (pyx * loss).sum(1)  # p*(x)ᵀℓ(x)
    risk = float((px * per_x).sum())
    var_onehot = float((px[:, None] * pyx * loss.square()).sum() - risk**2) / n
    var_bayes = float((px * per_x.square()).sum() - risk**2) / n
    return risk, var_onehot, var_bayes


def run(
    ctx: ExperimentContext,
    *,
    num_classes: int = 5,
    dim: int = 10,
    mean_values: tuple[float, ...] = (4.0, 5.0, 6.0),
    variance: float = 2.5,
    train_size: int = 100,
    draws: int = 4000,
    predictor_error: float = 0.5,
    concentrations: tuple[float, ...] = (5.0, 0.5),
    teacher_samples: int = 1000,
    teacher_epochs: int = 30,
    population_samples: int = 400_000,
) -> ExperimentResult:
    """Mean, variance and MSE of one-hot, Bayes-distilled and teacher-distilled empirical risks."""

    def one_seed(seed: int) -> dict[str, object]:
        problem = mixture_problem(seed, num_classes, dim, mean_values, variance)
        theta_star = problem.theta_star()
        u = torch.randn(problem.shape, generator=generator(seed, 9), dtype=torch.float64)
        theta_f = theta_star + predictor_error * theta_star.norm() * u / u.norm()

        # network teachers trained on their own sample (inputs: standardised, no bias column)
        f_t, y_t, _ = problem.sample(teacher_samples, generator(seed, 10))
        train = ArrayData(f_t[:, :-1].float(), y_t, num_classes)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = create_model("mlp", (dim,), num_classes, hidden=(64,))
        fit(
            net,
            train,
            loss_fn=lambda z, q, y: torch.nn.functional.cross_entropy(z, y),
            settings=TrainSettings(
                epochs=teacher_epochs, batch_size=32, lr=0.05, weight_decay=5e-4
            ),
            seed=seed,
            progress=False,
        )
        laplace = fit_laplace(net, train, prior_precision="marglik", seed=seed)

        def teachers(f: Tensor, p: Tensor, gen: torch.Generator) -> dict[str, Tensor]:
            x = f[:, :-1].float()
            with torch.no_grad():
                det = torch.softmax(net.eval()(x), 1).double()
            out = {"bayes": p, "deterministic": det, "laplace": laplace.predict_proba(x).double()}
            for a in concentrations:
                out[f"dirichlet_a{a:g}"] = dirichlet(p, a, gen)
            return out

        # the true risk of f and the teachers' quality, on a large sample
        f_pop, _, p_pop = problem.sample(population_samples, generator(seed, 11))
        loss_pop = -torch.log_softmax(problem.logits(theta_f, f_pop), -1)
        risk = float((p_pop * loss_pop).sum(1).mean())
        risk_se = float((p_pop * loss_pop).sum(1).std() / population_samples**0.5)
        pop_teachers = teachers(f_pop, p_pop, generator(seed, 12))
        y_pop = torch.multinomial(p_pop, 1, generator=generator(seed, 13))[:, 0]
        quality = {
            k: {"l2_bcp": float((v - p_pop).norm(dim=1).mean()), "ece": ece(v.float(), y_pop)}
            for k, v in pop_teachers.items()
        }

        # many training sets of size N
        gen = generator(seed, 14)
        f, y, p = problem.sample(draws * train_size, gen)
        loss = -torch.log_softmax(problem.logits(theta_f, f), -1)
        estimates = {"onehot": (one_hot(y, num_classes) * loss).sum(1)}
        estimates.update({k: (v * loss).sum(1) for k, v in teachers(f, p, gen).items()})
        means = {k: v.reshape(draws, train_size).mean(1) for k, v in estimates.items()}
        return {
            "risk": risk,
            "risk_se": risk_se,
            "quality": quality,
            "estimators": {
                k: {
                    "mean": float(v.mean()),
                    "var": float(v.var()),
                    "mse": float((v - risk).square().mean()),
                }
                for k, v in means.items()
            },
        }

    per_seed = [ctx.step(f"seed{s}", lambda s=s: one_seed(s)) for s in ctx.seeds]
    names = list(per_seed[0]["estimators"])
    stat = {
        k: {m: np.array([r["estimators"][k][m] for r in per_seed]) for m in ("mean", "var", "mse")}
        for k in names
    }
    risk = np.array([r["risk"] for r in per_seed])
    records = [
        {"seed": seed, "estimator": k, **r["estimators"][k], "risk": r["risk"]}
        for seed, r in zip(ctx.seeds, per_seed, strict=True)
        for k in names
    ]
    ctx.write_metrics(records)

    def z(k: str) -> np.ndarray:
        se = np.sqrt(stat[k]["var"] / draws + np.array([r["risk_se"] for r in per_seed]) ** 2)
        return (stat[k]["mean"] - risk) / se

    var_rel_se = np.sqrt(2.0 / (draws - 1))
    ratio = stat["bayes"]["var"] / stat["onehot"]["var"]
    dir_claims = []
    for a in concentrations:
        k = f"dirichlet_a{a:g}"
        predicted = stat["bayes"]["var"] + (stat["onehot"]["var"] - stat["bayes"]["var"]) / (a + 1)
        rel = stat[k]["var"] / predicted - 1
        dir_claims.append((a, predicted, rel))
    bias2 = {k: (stat[k]["mean"] - risk) ** 2 for k in names}
    quality = {
        k: np.array([r["quality"][k]["l2_bcp"] for r in per_seed])
        for k in ("deterministic", "laplace")
    }
    eces = {
        k: np.array([r["quality"][k]["ece"] for r in per_seed])
        for k in ("deterministic", "laplace")
    }
    var_check = paired_less(
        ("Var[R̂*]", stat["bayes"]["var"]), ("Var[R̂]", stat["onehot"]["var"]), log=True
    )
    teacher_var = [
        paired_less((f"Var[{k}]", stat[k]["var"]), ("Var[R̂]", stat["onehot"]["var"]), log=True)
        for k in ("deterministic", "laplace")
    ]
    closer = paired_less(
        ("‖p_laplace − p*‖", quality["laplace"]),
        ("‖p_det − p*‖", quality["deterministic"]),
        log=True,
    )
    mse_laplace = paired_less(
        ("MSE laplace", stat["laplace"]["mse"]), ("MSE det", stat["deterministic"]["mse"]), log=True
    )
    # Laplace closer with the smaller MSE, or the deterministic teacher closer with the smaller
    mse_follows = (closer.held and mse_laplace.held) or (
        above_zero(closer.differences) and above_zero(mse_laplace.differences)
    )
    how = (
        "Per-seed paired log ratio, mean [95 % t interval] (each seed is its own mixture and "
        "predictor, so variances differ by a factor between seeds)"
    )
    claims = [
        Claim(
            "The one-hot and the Bayes-distilled empirical risks are unbiased",
            f"|mean − R|/SE < {Z_UNBIASED}",
            f"z one-hot {pm(z('onehot'), 2)}, z Bayes {pm(z('bayes'), 2)}",
            bool(
                np.all(np.abs(z("onehot")) < Z_UNBIASED) and np.all(np.abs(z("bayes")) < Z_UNBIASED)
            ),
        ),
        Claim(
            "Var[R̂*] ≤ Var[R̂] (law of total variance)",
            "ratio < 1 (paired interval of the log ratio below 0)",
            f"Var[R̂*]/Var[R̂] = {pm(ratio, 3)}; {var_check.measured}",
            var_check.held,
            how + "; held when the interval lies below 0.",
        ),
        *[
            Claim(
                f"Dirichlet a={a:g} teacher: unbiased, Var = Var[R̂*] + (Var[R̂] − Var[R̂*])/(a+1)",
                f"Var = {pm(pred * train_size, 3)}/N",
                f"Var = {pm(stat[f'dirichlet_a{a:g}']['var'] * train_size, 3)}/N (relative difference {pm(rel, 2)}); z = {pm(z(f'dirichlet_a{a:g}'), 2)}",
                bool(
                    np.all(np.abs(rel) < 4 * var_rel_se)
                    and np.all(np.abs(z(f"dirichlet_a{a:g}")) < Z_UNBIASED)
                ),
                f"agreement: |relative difference| < 4·sqrt(2/(draws−1)) = {4 * var_rel_se:.3f}.",
            )
            for a, pred, rel in dir_claims
        ],
        Claim(
            "Network teachers lower the variance of the empirical risk below one-hot labels",
            "Var[R̃] < Var[R̂] for the deterministic and the Laplace teacher",
            f"N·Var: one-hot {pm(stat['onehot']['var'] * train_size, 3)}, deterministic {pm(stat['deterministic']['var'] * train_size, 3)}, Laplace {pm(stat['laplace']['var'] * train_size, 3)}; "
            + "; ".join(c.measured for c in teacher_var),
            all(c.held for c in teacher_var),
            how + "; held when both intervals lie below 0.",
        ),
        Claim(
            "... at the price of a bias: the teacher closer to p* has the smaller MSE",
            "argmin MSE = argmin E‖p^t − p*‖ (deterministic vs Laplace): one teacher closer "
            "(interval) and its MSE smaller (interval)",
            f"{closer.measured}; {mse_laplace.measured}",
            mse_follows,
            how + "; held when the distance's interval excludes 0 and the MSE's interval "
            "excludes 0 on the same side. "
            f"E‖p^t − p*‖: deterministic {pm(quality['deterministic'])}, Laplace {pm(quality['laplace'])}; ECE deterministic {pm(eces['deterministic'])}, Laplace {pm(eces['laplace'])}. "
            "The bias is E[(p^t − p*)ᵀℓ(f(x))]: teacher errors are weighted by the predictor's losses, so mass a teacher moves "
            "onto classes where f is bad (as an under-confident teacher does) costs more than its mean distance to p* suggests. "
            "Distance to p* alone does not order the MSE; which teacher wins depends on f.",
        ),
    ]
    label = {
        "onehot": "one-hot R̂",
        "bayes": "Bayes R̂*",
        "deterministic": "deterministic net",
        "laplace": "Laplace net",
    }
    table = ["| estimator | mean − R | N·Var | N·MSE | bias² / MSE |", "|---|---|---|---|---|"]
    for k in names:
        table.append(
            f"| {label.get(k, k.replace('_', ' '))} | {pm(stat[k]['mean'] - risk, 2)} | {pm(stat[k]['var'] * train_size, 3)} | "
            f"{pm(stat[k]['mse'] * train_size, 3)} | {pm(bias2[k] / stat[k]['mse'], 2)} |"
        )

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    xs = np.arange(len(names))
    var_part = np.array([(stat[k]["var"] * train_size).mean() for k in names])
    bias_part = np.array([(bias2[k] * train_size).mean() for k in names])
    ax.bar(xs, var_part, label="N·variance")
    ax.bar(xs, bias_part, bottom=var_part, label="N·bias²")
    ax.set_xticks(
        xs, [label.get(k, k.replace("_", " ")) for k in names], rotation=25, ha="right", fontsize=8
    )
    ax.set(
        ylabel="N·MSE of the empirical risk",
        title=f"Empirical risk of a fixed predictor, N = {train_size}",
    )
    ax.legend(fontsize=8)
    figure = ctx.save_figure(fig, "risk_mse")
    return ExperimentResult(
        "Variance of the empirical risk (statistical view of distillation)",
        f"Gaussian mixture K={num_classes}, d={dim}; fixed linear predictor θ* + {predictor_error}‖θ*‖u; "
        f"{draws} training sets of N={train_size}; network teachers: MLP-64 trained on {teacher_samples} "
        f"other samples, Laplace (last layer, Kronecker, marginal likelihood) on it; {len(ctx.seeds)} seeds.",
        claims,
        ["\n".join(table)],
        [figure],
    )
