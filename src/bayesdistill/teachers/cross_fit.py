"""Cross-fitted (out-of-fold) teachers: each training example's target comes from a teacher
that never saw it.

A student learns from its teacher's predictions *on the student's training points*. A
teacher trained on those points has fitted them, so there its predictions sit near the
one-hot labels and far from the Bayes class probabilities p*(y|x), much further than its
predictions on fresh points (Menon et al., ICML 2021, bound the distilled risk's error by
the teacher's bias and variance *at the training points*). Cross-fitting removes this,
as out-of-fold predictions do in stacking (Wolpert 1992) and in double machine learning
(Chernozhukov et al. 2018):

1. split the teacher's training set into K stratified, seeded folds (`stratified_folds`);
2. build the teacher kind K times, teacher k from a `TeacherContext` whose training split
   leaves fold k out; a kind built from a trained network gets a network of its own, trained
   without fold k from the teacher network's initial weights with its settings
   (`CrossFitPlan`);
3. give training example i the prediction of the teacher that did not see it:
   ``p_oof(i) = p_{fold(i)}(x_i)``, the out-of-fold table ``(N, C)``.

Everywhere else (validation, test, any input) the teacher answers with the mean of the K
teachers' probabilities (`CrossFitPredictor`). The cost is K teacher builds, each with its own
network training for the kinds that need one (K + 1 with ``predictor="full"``).

Example:
    >>> teacher = cross_fit("laplace", context, folds=5)  # doctest: +SKIP
    >>> targets = teacher.training_targets(context.splits.train)  # (N, C), out of fold
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bayesdistill.data.labelled import LabelledData
from bayesdistill.errors import ConfigError, DataError
from bayesdistill.models import Classifier, ModelSpec, build_from_spec
from bayesdistill.seeding import derive_seed, generator, seeded
from bayesdistill.teachers.base import SavableTeacher, Teacher
from bayesdistill.teachers.context import TEACHERS, TeacherContext, kinds_tagged, learns_from_data
from bayesdistill.teachers.files import teacher_from_payload
from bayesdistill.train.accel import DEFAULT_ACCELERATION, Acceleration
from bayesdistill.train.protocol import OUT_OF_FOLD
from bayesdistill.train.settings import TrainSettings
from bayesdistill.train.targets import predict_in_batches
from bayesdistill.train.targets import target_source as target_source  # re-exported
from bayesdistill.train.targets import training_targets as training_targets  # re-exported

log = logging.getLogger("bayesdistill")

CROSS_FIT_STREAM = 23
"""Seed stream of cross-fitting: folds use ``(seed, 23)``, fold k's teacher ``(seed, 23, k)``."""
MIN_FOLDS = 2
ROW_SUM_TOLERANCE = 1e-3
"""How far from 1 a row of a given out-of-fold table may sum (float32 predictions)."""

TeacherBuilder = Callable[..., Teacher]
"""``builder(context, **options) -> Teacher``, as registered in `TEACHERS`."""


class CrossFitPredictor(str, Enum):
    """What a cross-fitted teacher answers outside its own training set (validation, test)."""

    MEAN = "mean"
    """The mean of the K fold teachers' probabilities, (1/K) Σ_k p_k(x). The default: it
    costs no extra fit, and it is made of the same K teachers whose out-of-fold predictions
    the student learns from, so the teacher reported on test data is the one that produced
    the targets (each fold teacher saw (K − 1)/K of the data). Being a K-member ensemble it
    is a little smoother than any single fold teacher."""
    FULL = "full"
    """The teacher kind built once more on the whole training set: the teacher one would
    use without cross-fitting, at the price of a (K + 1)-th fit."""


def check_folds(folds: object, num_examples: int | None = None) -> int:
    """``folds`` as an int K with 2 ≤ K (≤ ``num_examples``); `ConfigError` otherwise."""
    if isinstance(folds, bool) or not isinstance(folds, int):
        raise ConfigError(
            f"cross-fitting needs an integer number of folds K >= {MIN_FOLDS}, got "
            f"{folds!r} ({type(folds).__name__})"
        )
    if folds < MIN_FOLDS:
        raise ConfigError(
            f"cross-fitting needs K >= {MIN_FOLDS} folds (each example's target comes from a "
            f"teacher trained on the other K − 1 folds), got K = {folds}; leave cross_fit out "
            "(or null) for a teacher trained on all the data"
        )
    if num_examples is not None and folds > num_examples:
        raise ConfigError(
            f"cannot split {num_examples} training examples into K = {folds} folds; "
            f"use K <= {num_examples}"
        )
    return folds


def stratified_folds(labels: Tensor, folds: int, seed: int | torch.Generator) -> Tensor:
    """Fold of each example ``(N,)`` int64 in ``[0, K)``: stratified, from ``seed``.

    Each class's examples are shuffled (``generator(seed, CROSS_FIT_STREAM)``, or the given
    generator) and dealt to the folds in turn; the next class continues where the previous
    one stopped. So every class has ⌊n_c/K⌋ or ⌈n_c/K⌉ examples in each fold, and fold sizes
    differ by at most one. The same (labels, K, seed) always gives the same folds.
    """
    labels = labels.detach().cpu().long().reshape(-1)
    k = check_folds(folds, len(labels))
    gen = seed if isinstance(seed, torch.Generator) else generator(seed, CROSS_FIT_STREAM)
    fold_of = torch.empty(len(labels), dtype=torch.long, device="cpu")
    start = 0
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=gen, device=gen.device).cpu()]
        fold_of[members] = (start + torch.arange(len(members), device="cpu")) % k
        start = (start + len(members)) % k
    return fold_of


def _fresh_network_factory(context: TeacherContext) -> Callable[[], Classifier]:
    """Builds a fresh network for a fold: ``context.init_network`` (the teacher network's own
    initial weights) or, without it, a new initialisation of the trained network's spec."""
    if context.init_network is not None:
        return context.init_network

    def from_spec() -> Classifier:
        spec = getattr(context.network, "spec", None)
        if not isinstance(spec, ModelSpec):
            raise ConfigError(
                "cross-fitting trains one network per fold and needs context.init_network, or "
                "a trained network made by bayesdistill.models.create_model to copy the "
                "architecture from"
            )
        device = next(context.network.parameters()).device  # type: ignore[union-attr]
        with seeded(derive_seed(context.seed, CROSS_FIT_STREAM)):
            return build_from_spec(spec).to(device)

    return from_spec


def fold_context(context: TeacherContext, fold_of: Tensor, fold: int) -> TeacherContext:
    """The context of fold ``fold``'s teacher: training split without that fold, own seed.

    Its ``network`` is None and ``train_network`` trains one on first use (once for this
    context and every copy of it, on the fold's training split, from the teacher network's
    initial weights, with the teacher network's settings and augmentation, logged under
    ``context.run_dir/fold_<k>/network``); kinds that need no trained network (IVON, MSE:
    they train from ``init_network``) never pay for it.
    """
    keep = torch.nonzero(fold_of != fold).flatten()
    train = context.splits.train.subset(keep)
    seed = derive_seed(context.seed, CROSS_FIT_STREAM, fold)
    run_dir = None if context.run_dir is None else context.run_dir / f"fold_{fold}"
    init_network = _fresh_network_factory(context)
    settings = context.train_settings or TrainSettings()
    folds = int(fold_of.max()) + 1

    trained: list[Classifier] = []

    def train_network() -> Classifier:
        if trained:  # copies of this context (one per teacher kind) share the network
            return trained[0]
        trained.append(
            context.fit_network(
                init_network(),
                train,
                settings=settings,
                seed=seed,
                run_dir=None if run_dir is None else run_dir / "network",
                description=f"cross-fit network {fold + 1}/{folds}",
            )
        )
        return trained[0]

    return replace(
        context.in_run_dir(run_dir),
        splits=context.splits.with_train(train),  # type: ignore[arg-type]
        seed=seed,
        network=None,
        init_network=init_network,
        train_network=train_network,
    )


@dataclass
class CrossFitPlan:
    """The K folds of a teacher's training set, and one `TeacherContext` per fold.

    Building several teacher kinds from one plan shares each fold's network: a fold's
    context trains it on first use and keeps it (deterministic, temperature and Laplace
    teachers of one fold are then built from one network, as in a study).

    Attributes:
        context: the teacher's context on the whole training set.
        fold_of: ``(N,)`` fold of each training example.
        contexts: ``contexts[k]`` builds teacher k (training split without fold k).
    """

    context: TeacherContext
    fold_of: Tensor
    contexts: list[TeacherContext]

    @classmethod
    def make(cls, context: TeacherContext, folds: int, *, seed: int | None = None) -> CrossFitPlan:
        """Stratified folds of ``context.splits.train`` (seed: ``context.seed`` by default)."""
        fold_of = stratified_folds(
            context.splits.train.y, folds, context.seed if seed is None else seed
        )
        return cls(context, fold_of, [fold_context(context, fold_of, k) for k in range(folds)])

    @property
    def folds(self) -> int:
        return len(self.contexts)

    def in_run_dir(self, run_dir: Path | None) -> CrossFitPlan:
        """The same folds and fold networks, with fold k's teacher writing its own training
        (IVON, MFVI, ...) to ``run_dir/fold_<k>`` (one folder per teacher kind)."""
        contexts = [
            c.in_run_dir(None if run_dir is None else run_dir / f"fold_{k}")
            for k, c in enumerate(self.contexts)
        ]
        return CrossFitPlan(self.context.in_run_dir(run_dir), self.fold_of, contexts)

    def held_out_index(self, fold: int) -> Tensor:
        """Positions in the training set of fold ``fold`` (what teacher ``fold`` never sees)."""
        return torch.nonzero(self.fold_of == fold).flatten()

    def train_index(self, fold: int) -> Tensor:
        """Positions in the training set teacher ``fold`` is trained on (all other folds)."""
        return torch.nonzero(self.fold_of != fold).flatten()

    def build(
        self,
        kind: str | TeacherBuilder,
        *,
        predictor: CrossFitPredictor | str = CrossFitPredictor.MEAN,
        **options: Any,
    ) -> CrossFittedTeacher:
        """Build ``kind`` on every fold and assemble the cross-fitted teacher.

        ``kind`` is a registered teacher name (options validated by `TEACHERS`; a kind that
        learns nothing from the training set, such as ``exact_bcp``, is refused) or a
        builder ``(context, **options) -> Teacher``. Logs the cost: K teacher fits.
        """
        predictor = CrossFitPredictor(predictor)
        name, builder, options = _resolve(kind, options)
        train = self.context.splits.train
        fits = self.folds + (predictor is CrossFitPredictor.FULL)
        log.info(
            "cross-fitting teacher '%s': %d folds of %d examples, cost %d teacher fits",
            name,
            self.folds,
            len(train),
            fits,
        )
        tic = time.perf_counter()
        members: list[Teacher] = []
        oof = torch.full((len(train), train.num_classes), float("nan"))
        for fold, context in enumerate(self.contexts):
            teacher = builder(context, **options)
            held_out = self.held_out_index(fold)
            oof[held_out] = (
                predict_in_batches(teacher, train.subset(held_out), accel=context.accel)
                .float()
                .cpu()
            )
            members.append(teacher)
        full = builder(self.context, **options) if predictor is CrossFitPredictor.FULL else None
        seconds = time.perf_counter() - tic
        log.info("cross-fitted teacher '%s': %d fits in %.1f s", name, fits, seconds)
        return CrossFittedTeacher(
            members, self.fold_of, oof, train.y, full=full, base_kind=name, seconds=seconds
        )


def _resolve(
    kind: str | TeacherBuilder, options: Mapping[str, Any]
) -> tuple[str, TeacherBuilder, dict[str, Any]]:
    if not isinstance(kind, str):
        return getattr(kind, "__name__", type(kind).__name__), kind, dict(options)
    validated = TEACHERS.validate_options(kind, dict(options))  # unknown names list the valid
    if not learns_from_data(kind, validated):
        fitted = ", ".join(kinds_tagged("learns_from_data"))
        raise ConfigError(
            f"teacher '{kind}' learns nothing from the training set, so cross-fitting it "
            f"changes nothing; cross-fit a kind fitted to the training set ({fitted})"
        )
    return kind, TEACHERS.get(kind), validated


def cross_fit(
    kind: str | TeacherBuilder,
    context: TeacherContext,
    *,
    folds: int = 5,
    seed: int | None = None,
    predictor: CrossFitPredictor | str = CrossFitPredictor.MEAN,
    **options: Any,
) -> CrossFittedTeacher:
    """Cross-fit teacher ``kind`` with K = ``folds`` stratified folds of
    ``context.splits.train`` (see the module docstring and `CrossFitPlan`)."""
    return CrossFitPlan.make(context, folds, seed=seed).build(kind, predictor=predictor, **options)


class CrossFittedTeacher(SavableTeacher, wrapper=True):
    """K teachers, each trained without one fold, and their out-of-fold training targets.

    On its training set (identified by size and labels, see `fitted_on`) the teacher's
    targets are the out-of-fold table: example i gets ``p_{fold(i)}(x_i)`` from the teacher
    that did not see it (`training_targets`, `out_of_fold`). On any input, `predict_proba`
    gives the mean of the K teachers' probabilities ``(B, C)``, or the full-data teacher's
    when one was built (`CrossFitPredictor`). A study's cache of training-set predictions
    (``teachers/<label>/train_probs.pt``) holds the out-of-fold table.

    Attributes:
        members: the K fold teachers (teacher k never saw the examples with fold k).
        fold_of: ``(N,)`` int64 fold of each training example.
        oof_probs: ``(N, C)`` out-of-fold probabilities, rows summing to one.
        train_labels: ``(N,)`` labels of the training set (identify it in `fitted_on`).
        full: the teacher built on all the data, or None (then the mean answers).
        base_kind: the cross-fitted teacher kind.
    """

    kind = "cross_fitted"

    def __init__(
        self,
        members: Sequence[Teacher],
        fold_of: Tensor,
        oof_probs: Tensor,
        train_labels: Tensor,
        *,
        full: Teacher | None = None,
        base_kind: str = "",
        seconds: float = float("nan"),
    ) -> None:
        k = len(members)
        check_folds(k)
        classes = {m.num_classes for m in [*members, *([full] if full is not None else [])]}
        if len(classes) != 1:
            raise ConfigError(f"fold teachers predict different class counts {sorted(classes)}")
        n = len(fold_of)
        num_classes = classes.pop()
        if oof_probs.shape != (n, num_classes) or train_labels.shape != (n,):
            raise DataError(
                f"out-of-fold table {tuple(oof_probs.shape)} and labels "
                f"{tuple(train_labels.shape)} must be ({n}, {num_classes}) and ({n},) for "
                f"{n} training examples"
            )
        present = torch.unique(fold_of.cpu()).tolist()
        if present != list(range(k)):
            raise DataError(f"{k} fold teachers need folds 0..{k - 1}, got folds {present}")
        worst = float((oof_probs.sum(1) - 1).abs().max()) if n else 0.0
        if not torch.isfinite(oof_probs).all() or worst > ROW_SUM_TOLERANCE:
            raise DataError(f"out-of-fold rows must be probabilities (largest |Σ − 1| {worst:.2e})")
        self.members = list(members)
        self.fold_of = fold_of.detach().cpu().long()
        self.oof_probs = oof_probs.detach().float()
        self.train_labels = train_labels.detach().cpu().long()
        self.full = full
        self.base_kind = base_kind
        self.seconds = float(seconds)
        self.num_classes = num_classes

    @property
    def folds(self) -> int:
        return len(self.members)

    def children(self) -> tuple[Teacher, ...]:
        """The K fold teachers, then the full-data teacher if one was built."""
        return (*self.members, *([self.full] if self.full is not None else []))

    @property
    def predictor(self) -> CrossFitPredictor:
        return CrossFitPredictor.MEAN if self.full is None else CrossFitPredictor.FULL

    @property
    def device(self) -> torch.device:
        first = self.members[0]
        return first.device if isinstance(first, SavableTeacher) else self.oof_probs.device

    def to(self, device: torch.device | str) -> CrossFittedTeacher:
        self.members = [m.to(device) if isinstance(m, SavableTeacher) else m for m in self.members]
        if isinstance(self.full, SavableTeacher):
            self.full = self.full.to(device)
        self.oof_probs = self.oof_probs.to(device)
        return self

    def _predict(self, x: Tensor) -> Tensor:
        if self.full is not None:
            return self.full.predict_proba(x).to(x.device, torch.float32)
        total = torch.zeros(len(x), self.num_classes, device=x.device)
        for member in self.members:
            total += member.predict_proba(x).to(x.device, torch.float32)
        return total / len(self.members)

    def training_targets(
        self, data: LabelledData, *, accel: Acceleration = DEFAULT_ACCELERATION
    ) -> Tensor:
        """The out-of-fold table ``(N, C)`` on ``data`` when it is the training set the folds
        were made of (`fitted_on`), the teacher's predictions otherwise (on the teacher's
        device)."""
        if self.fitted_on(data):
            return self.out_of_fold().to(self.device)
        return super().training_targets(data, accel=accel)

    def target_source(self, data: LabelledData) -> str:
        return OUT_OF_FOLD if self.fitted_on(data) else super().target_source(data)

    def fitted_on(self, data: LabelledData) -> bool:
        """Whether ``data`` is the training set the folds were made of (same size, same
        labels in the same order): then its targets are the out-of-fold table."""
        return len(data) == len(self.train_labels) and torch.equal(
            data.y.detach().cpu().long(), self.train_labels
        )

    def out_of_fold(self, index: Tensor | None = None) -> Tensor:
        """Out-of-fold probabilities ``(B, C)`` of the training examples at ``index``
        (positions in the training set; all N when None)."""
        if index is None:
            return self.oof_probs
        return self.oof_probs[index.to(self.oof_probs.device)]

    def payload(self) -> dict[str, Any]:
        teachers = [*self.members, *([self.full] if self.full is not None else [])]
        not_savable = [type(t).__name__ for t in teachers if not isinstance(t, SavableTeacher)]
        if not_savable:
            raise TypeError(
                f"only cross-fitted bayesdistill teachers can be saved; teachers of type "
                f"{', '.join(not_savable)} are not SavableTeacher"
            )
        return {
            "base_kind": self.base_kind,
            "members": [_entry(m) for m in self.members],  # type: ignore[arg-type]
            "full": None if self.full is None else _entry(self.full),  # type: ignore[arg-type]
            "fold_of": self.fold_of,
            "oof_probs": self.oof_probs.cpu(),
            "train_labels": self.train_labels,
            "seconds": self.seconds,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CrossFittedTeacher:
        full = payload.get("full")
        return cls(
            [_from_entry(m, f"fold teacher {i}") for i, m in enumerate(payload["members"])],
            payload["fold_of"],
            payload["oof_probs"],
            payload["train_labels"],
            full=None if full is None else _from_entry(full, "full-data teacher"),
            base_kind=payload.get("base_kind", ""),
            seconds=payload.get("seconds", float("nan")),
        )

    def describe(self) -> dict[str, Any]:
        members = [
            m.describe() if isinstance(m, SavableTeacher) else {"kind": type(m).__name__}
            for m in self.members
        ]
        return {
            "kind": self.kind,
            "base_kind": self.base_kind,
            "folds": self.folds,
            "predictor": self.predictor.value,
            "training_targets": OUT_OF_FOLD,
            "fits": self.folds + (self.full is not None),
            "seconds": self.seconds,
            "members": members,
        }


def _entry(teacher: SavableTeacher) -> dict[str, Any]:
    return {"kind": teacher.kind, "payload": teacher.payload()}


def _from_entry(entry: dict[str, Any], what: str) -> SavableTeacher:
    return teacher_from_payload(entry["kind"], entry["payload"], f"cross-fitted teacher: {what}")
