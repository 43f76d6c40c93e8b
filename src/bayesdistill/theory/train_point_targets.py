"""Experiment 7: the targets a student gets on its own training points (in-sample,
cross-fitted, held-out), where p* is known.

The theory asks for targets close to p*(y|x) *at the points the student trains on* (Morad et
al. 2026; Menon et al. 2021 bound the distilled risk's error by the teacher's bias and
variance there). A teacher that was trained on those points has fitted them, so its
test-set quality says little about the targets a student gets. On the Gaussian mixture of
REFERENCE.md §1 (p* exact) each seed draws a mixture and a sample, chooses the student's
training points S (a fraction of each class of the training split), and for each teacher
kind builds three teachers:

- **in-sample**: trained on the whole training split (S included), its predictions on S;
- **cross-fitted**: K folds of the training split, each example's target from the teacher
  trained without its fold (`bayesdistill.teachers.cross_fit`); on test points, the mean of
  the K teachers;
- **held-out**: trained on the training split without S (held-out distillation), its
  predictions on S.

Measured per (kind, source): the targets' distance to p* on S (mean ‖p_t − p*‖₂ and
KL(p* ‖ p_t)), the teacher's on the test split, and a student (one MLP initialisation and batch
order per seed, soft-label cross-entropy against the targets) by its test accuracy and
distance to p*. Students on one-hot labels and on exact p* are the references. Differences
are per-seed paired, with 95 % t intervals (`bayesdistill.theory.report.mean_ci`, `above_zero`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor

from bayesdistill.data import gaussian_mixture, make_splits, per_class_subset
from bayesdistill.data.splits import DataSplits
from bayesdistill.losses import onehot_ce, soft_ce
from bayesdistill.losses.response import PROB_FLOOR
from bayesdistill.models import Classifier, create_model
from bayesdistill.seeding import derive_seed, seeded
from bayesdistill.teachers import TEACHERS, CrossFitPlan, TeacherContext
from bayesdistill.theory.context import ExperimentContext
from bayesdistill.theory.report import Claim, ExperimentResult, above_zero, mean_ci, pm
from bayesdistill.train import CachedTargets, RunOptions, TrainSettings, fit, predict_in_batches

SOURCES = {"in_sample": "in-sample", "cross_fitted": "cross-fitted", "held_out": "held-out"}
REFERENCES = {"onehot": "one-hot labels", "exact": "exact p*"}
MOST = 0.5
"""Claim (b): cross-fitting closes "most" of the gap when it closes at least this fraction."""
KIND_OPTIONS: dict[str, dict[str, Any]] = {"laplace": {"prior_precision": "marglik"}}
"""Options of the teacher kinds. Laplace: prior precision by marginal likelihood, as the
paper's teachers."""
SUBSET_STREAM = 31
TEACHER_INIT_STREAM = 32
TEACHER_BATCH_STREAM = 33
STUDENT_INIT_STREAM = 34
STUDENT_BATCH_STREAM = 35


def distances(probs: Tensor, bcp: Tensor) -> dict[str, float]:
    """Mean ‖p − p*‖₂ and mean KL(p* ‖ p) (p clamped at 1e-12) over the rows."""
    p, q = probs.double().cpu(), bcp.double().cpu()
    kl = (q * (q.clamp_min(PROB_FLOOR).log() - p.clamp_min(PROB_FLOOR).log())).sum(1)
    return {"l2": float((p - q).norm(dim=1).mean()), "kl": float(kl.mean())}


def run(
    ctx: ExperimentContext,
    *,
    num_classes: int = 5,
    dim: int = 30,
    mean_values: tuple[float, ...] = (4.0, 5.0, 6.0),
    variance: float = 2.5,
    num_samples: int = 5000,
    val_fraction: float = 0.1,
    test_fraction: float = 0.3,
    student_fraction: float = 0.25,
    folds: int = 5,
    kinds: tuple[str, ...] = ("deterministic", "temperature", "laplace", "ivon", "mfvi"),
    teacher_hidden: tuple[int, ...] = (128, 128),
    teacher_epochs: int = 60,
    teacher_lr: float = 0.05,
    student_hidden: tuple[int, ...] = (64,),
    student_epochs: int = 60,
    student_lr: float = 0.05,
    batch_size: int = 64,
    weight_decay: float = 5e-4,
) -> ExperimentResult:
    """In-sample vs cross-fitted vs held-out targets: distance to p* on S and on test points,
    and the students they give."""
    for kind in kinds:
        TEACHERS.entry(kind)  # unknown names list the valid ones
    teacher_settings = TrainSettings(
        epochs=teacher_epochs, batch_size=batch_size, lr=teacher_lr, weight_decay=weight_decay
    )
    student_settings = TrainSettings(
        epochs=student_epochs, batch_size=batch_size, lr=student_lr, weight_decay=weight_decay
    )

    def one_seed(seed: int) -> dict[str, Any]:
        raw = gaussian_mixture(
            num_classes=num_classes,
            dim=dim,
            mean_values=mean_values,
            variance=variance,
            num_samples=num_samples,
            seed=seed,
        )
        splits = make_splits(raw, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
        train, test = splits.train, splits.test
        if train.bcp is None or test.bcp is None:
            raise RuntimeError("the Gaussian mixture lost its exact Bayes probabilities")
        student_index = per_class_subset(
            train.y,
            fraction=student_fraction,
            seed=derive_seed(seed, SUBSET_STREAM),
            num_classes=num_classes,
        )
        rest = torch.ones(len(train), dtype=torch.bool)
        rest[student_index] = False
        student_data = train.subset(student_index)

        def init_teacher() -> Classifier:
            with seeded(derive_seed(seed, TEACHER_INIT_STREAM)):
                return create_model("mlp", (dim,), num_classes, hidden=teacher_hidden)

        def context_on(data: DataSplits) -> TeacherContext:
            context = TeacherContext(
                splits=data,
                seed=seed,
                init_network=init_teacher,
                train_settings=teacher_settings,
                run=RunOptions(progress=False),
            )
            context.train_network = lambda: (
                fit(  # type: ignore[assignment]
                    init_teacher(),
                    data.train,
                    loss_fn=onehot_ce,
                    settings=teacher_settings,
                    seed=derive_seed(seed, TEACHER_BATCH_STREAM),
                    progress=False,
                ).model
            )
            return context

        full = context_on(splits)
        held = context_on(splits.with_train(train.subset(torch.nonzero(rest).flatten())))
        plan = CrossFitPlan.make(full, folds)

        def student(targets: Tensor) -> dict[str, float]:
            with seeded(derive_seed(seed, STUDENT_INIT_STREAM)):
                network = create_model("mlp", (dim,), num_classes, hidden=student_hidden)
            model = fit(
                network,
                student_data,
                loss_fn=soft_ce,
                settings=student_settings,
                seed=derive_seed(seed, STUDENT_BATCH_STREAM),
                targets=CachedTargets(targets.float()),
                progress=False,
            ).model
            with torch.no_grad():
                probs = torch.softmax(model.eval()(test.x), 1)
            accuracy = float((probs.argmax(1) == test.y).float().mean())
            return {"accuracy": accuracy, **distances(probs, test.bcp)}

        out: dict[str, Any] = {"configs": {}, "references": {}, "seconds": {}}
        onehot = torch.nn.functional.one_hot(student_data.y, num_classes).float()
        out["references"]["onehot"] = {
            "target_train": distances(onehot, student_data.bcp),
            "student": student(onehot),
        }
        out["references"]["exact"] = {
            "target_train": distances(student_data.bcp, student_data.bcp),
            "student": student(student_data.bcp),
        }
        for kind in kinds:
            options = KIND_OPTIONS.get(kind, {})
            for source in SOURCES:
                tic = time.perf_counter()
                if source == "cross_fitted":
                    teacher = plan.build(kind, **options)
                    targets = teacher.out_of_fold(student_index)
                    fold_test = [
                        distances(predict_in_batches(m, test.x), test.bcp)["l2"]
                        for m in teacher.members
                    ]
                else:
                    teacher = TEACHERS.build(
                        kind, full if source == "in_sample" else held, **options
                    )
                    targets = predict_in_batches(teacher, student_data.x)
                    fold_test = []
                seconds = time.perf_counter() - tic
                test_probs = predict_in_batches(teacher, test.x)
                out["configs"][f"{kind}/{source}"] = {
                    "target_train": distances(targets, student_data.bcp),
                    "target_entropy": float(
                        -(targets * targets.clamp_min(PROB_FLOOR).log()).sum(1).mean()
                    ),
                    "teacher_test": {
                        **distances(test_probs, test.bcp),
                        "accuracy": float((test_probs.argmax(1) == test.y).float().mean()),
                    },
                    "fold_test_l2": float(np.mean(fold_test)) if fold_test else None,
                    "student": student(targets),
                    "seconds": seconds,
                }
        out["sizes"] = {"train": len(train), "student": len(student_index), "test": len(test)}
        return out

    per_seed = [ctx.step(f"seed{s}", lambda s=s: one_seed(s)) for s in ctx.seeds]
    setup = {
        "num_classes": num_classes,
        "dim": dim,
        "variance": variance,
        "num_samples": num_samples,
        "student_fraction": student_fraction,
        "teacher_hidden": teacher_hidden,
        "teacher_epochs": teacher_epochs,
        "student_hidden": student_hidden,
        "student_epochs": student_epochs,
    }
    return _report(ctx, per_seed, kinds, folds, setup)


def _report(
    ctx: ExperimentContext,
    per_seed: list[dict[str, Any]],
    kinds: Sequence[str],
    folds: int,
    options: dict[str, Any],
) -> ExperimentResult:
    configs = [f"{k}/{s}" for k in kinds for s in SOURCES]

    def arr(config: str, *path: str) -> np.ndarray:
        values = []
        for record in per_seed:
            value: Any = record["configs"][config]
            for key in path:
                value = value[key]
            values.append(value)
        return np.asarray(values, dtype=np.float64)

    def ref(name: str, *path: str) -> np.ndarray:
        values = []
        for record in per_seed:
            value: Any = record["references"][name]
            for key in path:
                value = value[key]
            values.append(value)
        return np.asarray(values, dtype=np.float64)

    ctx.write_metrics(
        [
            {
                "seed": seed,
                "config": config,
                "kind": config.split("/")[0],
                "source": config.split("/")[1],
                "target_train_l2": r["configs"][config]["target_train"]["l2"],
                "target_train_kl": r["configs"][config]["target_train"]["kl"],
                "target_entropy": r["configs"][config]["target_entropy"],
                "teacher_test_l2": r["configs"][config]["teacher_test"]["l2"],
                "teacher_test_kl": r["configs"][config]["teacher_test"]["kl"],
                "teacher_test_accuracy": r["configs"][config]["teacher_test"]["accuracy"],
                "fold_test_l2": r["configs"][config]["fold_test_l2"],
                "student_test_accuracy": r["configs"][config]["student"]["accuracy"],
                "student_test_l2": r["configs"][config]["student"]["l2"],
                "student_test_kl": r["configs"][config]["student"]["kl"],
                "seconds": r["configs"][config]["seconds"],
            }
            for seed, r in zip(ctx.seeds, per_seed, strict=True)
            for config in configs
        ]
        + [
            {
                "seed": seed,
                "config": name,
                "source": name,
                "target_train_l2": r["references"][name]["target_train"]["l2"],
                "target_train_kl": r["references"][name]["target_train"]["kl"],
                "student_test_accuracy": r["references"][name]["student"]["accuracy"],
                "student_test_l2": r["references"][name]["student"]["l2"],
                "student_test_kl": r["references"][name]["student"]["kl"],
            }
            for seed, r in zip(ctx.seeds, per_seed, strict=True)
            for name in REFERENCES
        ]
    )

    # (a) in-sample gap, (b) how much of it cross-fitting closes, (d) what students gain
    gap, closed, closed_frac, cf_gap, student_gain, held_gain = {}, {}, {}, {}, {}, {}
    for kind in kinds:
        tr_in = arr(f"{kind}/in_sample", "target_train", "l2")
        te_in = arr(f"{kind}/in_sample", "teacher_test", "l2")
        tr_cf = arr(f"{kind}/cross_fitted", "target_train", "l2")
        gap[kind] = tr_in - te_in
        closed[kind] = tr_in - tr_cf
        closed_frac[kind] = closed[kind] / gap[kind]
        cf_gap[kind] = tr_cf - arr(f"{kind}/cross_fitted", "fold_test_l2")
        student_in = arr(f"{kind}/in_sample", "student", "l2")
        student_gain[kind] = student_in - arr(f"{kind}/cross_fitted", "student", "l2")
        held_gain[kind] = student_in - arr(f"{kind}/held_out", "student", "l2")

    # (c) rank correlations over the (kind, source) configurations, per seed
    student_l2 = np.stack([arr(c, "student", "l2") for c in configs], 1)  # (seeds, configs)
    train_l2 = np.stack([arr(c, "target_train", "l2") for c in configs], 1)
    test_l2 = np.stack([arr(c, "teacher_test", "l2") for c in configs], 1)
    rho_train = np.array([spearmanr(a, b)[0] for a, b in zip(train_l2, student_l2, strict=True)])
    rho_test = np.array([spearmanr(a, b)[0] for a, b in zip(test_l2, student_l2, strict=True)])

    def per_kind(values: dict[str, np.ndarray]) -> str:
        return "; ".join(f"{k} {mean_ci(values[k])}" for k in kinds)

    claims = []
    for k in kinds:
        claims.append(
            Claim(
                f"{k}: in-sample targets are further from p* on the student's training points "
                "than on test points",
                "‖p_t − p*‖ on S − on test > 0 (paired 95 % interval above 0)",
                f"{mean_ci(gap[k])}; on S {pm(arr(f'{k}/in_sample', 'target_train', 'l2'))}, "
                f"on test {pm(arr(f'{k}/in_sample', 'teacher_test', 'l2'))}",
                above_zero(gap[k]),
                "Mean difference over seeds [95 % paired t interval]; ‖·‖ is the mean L2 "
                "distance over the points.",
            )
        )
    for k in kinds:
        has_gap = above_zero(gap[k])
        fraction = closed[k].mean() / gap[k].mean()
        claims.append(
            Claim(
                f"{k}: cross-fitting closes most of that gap",
                f"mean reduction / mean gap ≥ {MOST}, the reduction's interval above 0",
                (f"fraction closed {fraction:.2g}; " if has_gap else "no gap to close; ")
                + f"reduction {mean_ci(closed[k])}",
                bool(has_gap and fraction >= MOST and above_zero(closed[k])),
                "Reduction: in-sample minus cross-fitted ‖p_t − p*‖ on S; gap: the in-sample "
                "teacher's ‖p_t − p*‖ on S minus its own on test (claim a); fraction: ratio of "
                f"their means over seeds (per seed: {pm(closed_frac[k], 2)}). What remains, "
                "cross-fitted targets on S minus the fold teachers' mean test distance (each saw "
                f"(K − 1)/K of the data): {mean_ci(cf_gap[k])}."
                + ("" if has_gap else " Not held: there was no gap to close."),
            )
        )
    claims.append(
        Claim(
            "Students' distance to p* follows the targets' distance on the training points "
            "more closely than the teachers' test distance",
            "Spearman ρ(target ‖·‖ on S, student ‖·‖) > ρ(teacher ‖·‖ on test, student ‖·‖), "
            "paired interval above 0",
            f"ρ on S {pm(rho_train, 2)}, ρ on test {pm(rho_test, 2)}; difference "
            f"{mean_ci(rho_train - rho_test, 2)}",
            above_zero(rho_train - rho_test),
            f"Rank correlation over the {len(configs)} (kind, source) configurations of a seed; "
            "the teacher's test distance is that of the teacher object (cross-fitted: the mean "
            "of the K teachers).",
        )
    )
    for k in kinds:
        claims.append(
            Claim(
                f"{k}: cross-fitted targets give students closer to p* than in-sample targets",
                "student ‖p − p*‖ in-sample − cross-fitted > 0 (interval above 0)",
                mean_ci(student_gain[k]),
                above_zero(student_gain[k]),
                f"Held-out targets against in-sample: {mean_ci(held_gain[k])}.",
            )
        )

    header = (
        "| teacher kind | targets | ‖p_t − p*‖ on S | KL(p*‖p_t) on S | entropy on S | "
        "teacher ‖·‖ test | teacher KL test | teacher acc | student acc | student ‖p − p*‖ "
        "| student KL | build s |"
    )
    table = [header, "|" + "---|" * 12]
    for config in configs:
        kind, source = config.split("/")
        table.append(
            f"| {kind} | {SOURCES[source]} | {pm(arr(config, 'target_train', 'l2'), 3)} | "
            f"{pm(arr(config, 'target_train', 'kl'), 3)} | {pm(arr(config, 'target_entropy'), 3)} | "
            f"{pm(arr(config, 'teacher_test', 'l2'), 3)} | {pm(arr(config, 'teacher_test', 'kl'), 3)} | "
            f"{pm(arr(config, 'teacher_test', 'accuracy'), 3)} | {pm(arr(config, 'student', 'accuracy'), 3)} | "
            f"{pm(arr(config, 'student', 'l2'), 3)} | {pm(arr(config, 'student', 'kl'), 3)} | "
            f"{pm(arr(config, 'seconds'), 2)} |"
        )
    for name, label in REFERENCES.items():
        table.append(
            f"| — | {label} | {pm(ref(name, 'target_train', 'l2'), 3)} | "
            f"{pm(ref(name, 'target_train', 'kl'), 3)} | | | | | "
            f"{pm(ref(name, 'student', 'accuracy'), 3)} | {pm(ref(name, 'student', 'l2'), 3)} | "
            f"{pm(ref(name, 'student', 'kl'), 3)} | |"
        )
    differences = [
        "Paired differences over seeds, mean [95 % t interval]:",
        "",
        "| teacher kind | targets on S − on test (in-sample) | in-sample − cross-fitted on S "
        "| cross-fitted on S − fold teachers on test | student ‖·‖ in-sample − cross-fitted "
        "| student ‖·‖ in-sample − held-out |",
        "|---|---|---|---|---|---|",
        *[
            f"| {k} | {mean_ci(gap[k])} | {mean_ci(closed[k])} | {mean_ci(cf_gap[k])} | "
            f"{mean_ci(student_gain[k])} | {mean_ci(held_gain[k])} |"
            for k in kinds
        ],
    ]
    figure = _figure(ctx, configs, train_l2, test_l2, student_l2)
    sizes = per_seed[0]["sizes"]
    summary = (
        f"Gaussian mixture K={options['num_classes']}, d={options['dim']}, "
        f"s²={options['variance']}, N={options['num_samples']} per seed (its own mixture and "
        f"sample); teachers MLP {options['dim']}→"
        + "→".join(str(h) for h in options["teacher_hidden"])
        + f"→{options['num_classes']} ({options['teacher_epochs']} epochs) on {sizes['train']} "
        f"training points; the student's points S: {options['student_fraction']:g} of each class "
        f"({sizes['student']}); cross-fitting with K = {folds} folds (test predictions: mean of "
        f"the K teachers); held-out teachers on the {sizes['train'] - sizes['student']} other "
        f"points; students MLP {options['dim']}→"
        + "→".join(str(h) for h in options["student_hidden"])
        + f"→{options['num_classes']} ({options['student_epochs']} epochs, soft-label "
        f"cross-entropy); {sizes['test']} test points; {len(per_seed)} seeds."
    )
    return ExperimentResult(
        "Targets on the student's training points: in-sample, cross-fitted, held-out",
        summary,
        claims,
        ["\n".join(table), "\n".join(differences)],
        [figure],
    )


def _figure(
    ctx: ExperimentContext,
    configs: list[str],
    train_l2: np.ndarray,
    test_l2: np.ndarray,
    student_l2: np.ndarray,
) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    markers = {"in_sample": "o", "cross_fitted": "s", "held_out": "^"}
    kinds = list(dict.fromkeys(c.split("/")[0] for c in configs))
    for ax, x, name in (
        (axes[0], train_l2, "targets' ‖p_t − p*‖ on the student's points S"),
        (axes[1], test_l2, "teacher's ‖p_t − p*‖ on test points"),
    ):
        for j, config in enumerate(configs):
            kind, source = config.split("/")
            ax.scatter(
                x[:, j],
                student_l2[:, j],
                marker=markers[source],
                color=f"C{kinds.index(kind)}",
                label=f"{kind}, {SOURCES[source]}",
                s=22,
            )
        ax.set(xlabel=name)
    axes[0].set(ylabel="student's ‖p − p*‖ on test points")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return ctx.save_figure(fig, "targets_vs_students")
