"""Every registered loss validates its inputs; ``fn.unchecked`` is the same loss without checks.

Runs over every entry of `LOSSES` and `FEATURE_LOSSES`: each class of bad input raises the
bayesdistill error with a message naming the loss and the problem; valid inputs give exactly
the value (and gradient) of the unchecked implementation; the options the registries read
from the signatures are those listed in ``registry_options_before.json``, taken from the
losses before they were wrapped.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import torch

from bayesdistill.errors import ConfigError, DataError
from bayesdistill.losses import (
    FEATURE_LOSSES,
    LOSSES,
    PROB_SUM_TOLERANCE,
    check_labels,
    check_probabilities,
    kd,
    linear_warmup,
    needs_teacher,
    onehot_ce,
    runtime_inputs,
    soft_ce,
    unchecked,
)

BATCH = 6
MULTICLASS = 5
FEATURE_DIM = 3
OPTIONS_BEFORE = Path(__file__).with_name("registry_options_before.json")

RESPONSE = LOSSES.names()
FEATURE = FEATURE_LOSSES.names()


def _num_classes(name: str) -> int:
    return 2 if LOSSES.entry(name).tags.get("binary", False) else MULTICLASS


def _response_inputs(name: str, dtype: torch.dtype = torch.float64):
    """Valid ``(logits, teacher_probs, labels)`` for response loss ``name``."""
    num_classes = _num_classes(name)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(BATCH, num_classes, generator=gen, dtype=dtype)
    teacher = torch.softmax(2.0 * torch.randn(BATCH, num_classes, generator=gen), 1).to(dtype)
    labels = torch.arange(BATCH) % num_classes
    return logits, teacher if needs_teacher(name) else None, labels


def _feature_inputs(name: str):
    gen = torch.Generator().manual_seed(1)
    student = torch.randn(BATCH, FEATURE_DIM, generator=gen, dtype=torch.float64)
    teacher = torch.randn(BATCH, FEATURE_DIM, generator=gen, dtype=torch.float64)
    return student, teacher, torch.arange(BATCH) % 2


def _runtimes(name: str) -> list[dict[str, float]]:
    return [{}, {"epoch": 0.5}] if "epoch" in runtime_inputs(name) else [{}]


def _raw_name(name: str, registry=LOSSES) -> str:
    return registry.get(name).__name__  # self_distill_vr is self_distill under another name


# --- the wrapper keeps what the registries read --------------------------------------------


def test_registry_options_and_summaries_are_unchanged():
    before = json.loads(OPTIONS_BEFORE.read_text(encoding="utf-8"))
    now = {
        registry.kind: {
            name: {
                "summary": registry.entry(name).summary,
                "options": [
                    [o.name, str(o.annotation), repr(o.default)]
                    for o in registry.entry(name).options
                ],
                "described": [o.describe() for o in registry.entry(name).options],
            }
            for name in registry.names()
        }
        for registry in (LOSSES, FEATURE_LOSSES)
    }
    assert now == before


@pytest.mark.parametrize("name", RESPONSE)
def test_every_loss_is_registered_checked_and_tags_agree_with_its_checks(name):
    fn = LOSSES.get(name)
    assert fn.unchecked is not fn and callable(fn.unchecked)
    assert fn.__wrapped__ is fn.unchecked
    assert fn.checks.kind == "response"
    assert fn.checks.uses_teacher == needs_teacher(name)


@pytest.mark.parametrize("name", FEATURE)
def test_every_feature_loss_is_registered_checked_and_tags_agree(name):
    fn = FEATURE_LOSSES.get(name)
    assert fn.unchecked is not fn
    assert fn.checks.kind == "feature"
    assert fn.checks.uses_targets == FEATURE_LOSSES.entry(name).tags["uses_targets"]


# --- valid inputs: the same value as the unchecked implementation --------------------------


@pytest.mark.parametrize(
    ("name", "runtime"), [(n, r) for n in RESPONSE for r in _runtimes(n)], ids=str
)
def test_valid_inputs_give_exactly_the_unchecked_value_and_gradient(name, runtime):
    fn = LOSSES.get(name)
    logits, teacher, labels = _response_inputs(name)
    z1, z2 = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    checked_value = fn(z1, teacher, labels, **runtime)
    raw_value = fn.unchecked(z2, teacher, labels, **runtime)
    assert torch.equal(checked_value, raw_value)
    checked_value.backward()
    raw_value.backward()
    assert torch.equal(z1.grad, z2.grad)


@pytest.mark.parametrize("name", FEATURE)
def test_valid_features_give_exactly_the_unchecked_value(name):
    fn = FEATURE_LOSSES.get(name)
    student, teacher, labels = _feature_inputs(name)
    assert torch.equal(fn(student, teacher, labels), fn.unchecked(student, teacher, labels))


def test_inputs_given_by_keyword_are_checked_too():
    logits, teacher, labels = _response_inputs("kd")
    value = kd(student_logits=logits, teacher_probs=teacher, targets=labels, alpha=0.3)
    assert torch.equal(value, kd.unchecked(logits, teacher, labels, alpha=0.3))
    with pytest.raises(DataError, match=r"loss 'kd': labels must lie in \[0, 5\)"):
        kd(logits, teacher, targets=labels + MULTICLASS)


def test_unchecked_skips_the_checks():
    logits, teacher, labels = _response_inputs("kd")
    unnormalised = 2.0 * teacher
    with pytest.raises(DataError):
        kd(logits, unnormalised, labels)
    assert torch.isfinite(unchecked(kd)(logits, unnormalised, labels))


def test_unchecked_of_functions_and_partials():
    assert unchecked(kd) is kd.unchecked
    assert unchecked(kd.unchecked) is kd.unchecked

    def plain(logits, teacher, labels):
        return logits.sum()

    assert unchecked(plain) is plain
    bound = functools.partial(kd, alpha=0.2, temperature=2.0)
    raw = unchecked(bound)
    assert isinstance(raw, functools.partial)
    assert raw.func is kd.unchecked and raw.keywords == {"alpha": 0.2, "temperature": 2.0}
    plain_partial = functools.partial(plain)
    assert unchecked(plain_partial) is plain_partial


# --- bad inputs: every class, every loss -----------------------------------------------------


def _bad_logits(name: str):
    num_classes = _num_classes(name)
    return [
        (torch.zeros(BATCH), r"student logits must have shape \(B, C\).*got shape \(6,\)"),
        (torch.zeros(BATCH, num_classes, 1), r"must have shape \(B, C\).*\(6, \d, 1\)"),
        (torch.zeros(BATCH, num_classes, dtype=torch.long), "must be floating point.*int64"),
        ([[0.0] * num_classes] * BATCH, "student logits must be a torch.Tensor, got list"),
        (
            _poisoned(num_classes, 2, math.nan),
            r"must be finite, got \[nan.*in row 2 \(1 non-finite",
        ),
        (_poisoned(num_classes, 4, -math.inf), r"must be finite, got \[-inf.*in row 4"),
    ]


def _poisoned(num_classes: int, row: int, value: float) -> torch.Tensor:
    """Zero logits with one non-finite value in ``row`` (a NaN made every loss NaN)."""
    logits = torch.zeros(BATCH, num_classes, dtype=torch.float64)
    logits[row, 0] = value
    return logits


@pytest.mark.parametrize("name", RESPONSE)
def test_bad_logits_are_data_errors(name):
    fn = LOSSES.get(name)
    _, teacher, labels = _response_inputs(name)
    for logits, message in _bad_logits(name):
        with pytest.raises(DataError, match=rf"loss '{_raw_name(name)}': .*{message}"):
            fn(logits, teacher, labels)
    empty = torch.zeros(0, _num_classes(name), dtype=torch.float64)
    with pytest.raises(DataError, match="at least one example and one class"):
        fn(empty, None if teacher is None else teacher[:0], labels[:0])


def _bad_labels(num_classes: int):
    good = torch.arange(BATCH) % num_classes
    too_big, negative = good.clone(), good.clone()
    too_big[3] = num_classes
    negative[1] = -1
    return [
        (too_big, rf"labels must lie in \[0, {num_classes}\).*values from 0 to {num_classes}"),
        (negative, rf"labels must lie in \[0, {num_classes}\).*values from -1 to"),
        (good.int(), r"int64 class indices.*torch\.int32"),
        (good.double(), r"int64 class indices.*torch\.float64"),
        (torch.nn.functional.one_hot(good, num_classes), r"shape \(6,\).*\(6, \d\)"),
        (good[:-1], r"labels must have shape \(6,\).*got shape \(5,\)"),
        (None, "labels must be a torch.Tensor, got NoneType"),
    ]


@pytest.mark.parametrize("name", [n for n in RESPONSE if LOSSES.get(n).checks.uses_targets])
def test_bad_labels_are_data_errors(name):
    fn = LOSSES.get(name)
    logits, teacher, _ = _response_inputs(name)
    for labels, message in _bad_labels(_num_classes(name)):
        with pytest.raises(DataError, match=rf"loss '{_raw_name(name)}': .*{message}"):
            fn(logits, teacher, labels)


def test_a_loss_that_ignores_labels_does_not_check_them():
    logits, teacher, labels = _response_inputs("soft_ce")
    assert torch.equal(soft_ce(logits, teacher, None), soft_ce(logits, teacher, labels))


def _bad_teachers(teacher: torch.Tensor):
    nan, inf, negative = teacher.clone(), teacher.clone(), teacher.clone()
    nan[2, 1] = math.nan
    inf[4, 0] = math.inf
    negative[3] = 0.0
    negative[3, 0], negative[3, 1] = 1.5, -0.5  # row 3 still sums to 1
    over, under = teacher.clone(), teacher.clone()
    over[5] = over[5] * 1.01
    under[0] = under[0] * 0.5
    num_classes = teacher.shape[1]
    return [
        (nan, r"teacher probabilities must be finite, got NaN or inf \(first in row 2"),
        (inf, r"must be finite.*row 4"),
        (negative, r"must be non-negative.*row 3.*not logits or log-probabilities"),
        (over, r"every row of teacher probabilities must sum to 1 \(within 0\.001\), but row 5 "),
        (under, r"must sum to 1.*row 0 sums to 0\.5"),
        (teacher[:, :1], rf"must have the logits' shape \(6, {num_classes}\).*\(6, 1\)"),
        (teacher[:-1], rf"logits' shape \(6, {num_classes}\).*got shape \(5, {num_classes}\)"),
        (teacher.argmax(1), r"logits' shape.*got shape \(6,\)"),
        (teacher.round().long(), "must be floating point, got dtype torch.int64"),
        (teacher.log(), "must be non-negative"),
    ]


@pytest.mark.parametrize("name", [n for n in RESPONSE if needs_teacher(n)])
def test_bad_teacher_probabilities_are_data_errors(name):
    fn = LOSSES.get(name)
    logits, teacher, labels = _response_inputs(name)
    for bad, message in _bad_teachers(teacher):
        with pytest.raises(DataError, match=rf"loss '{_raw_name(name)}': .*{message}"):
            fn(logits, bad, labels)


@pytest.mark.parametrize("name", [n for n in RESPONSE if needs_teacher(n)])
def test_a_missing_teacher_is_still_a_config_error(name):
    logits, _, labels = _response_inputs(name)
    with pytest.raises(ConfigError, match="needs teacher probabilities"):
        LOSSES.get(name)(logits, None, labels)


def test_a_loss_without_teacher_ignores_the_teacher_argument():
    logits, _, labels = _response_inputs("onehot_ce")
    assert torch.equal(
        onehot_ce(logits, torch.full_like(logits, -1.0), labels),
        onehot_ce.unchecked(logits, None, labels),
    )


def test_row_sum_tolerance_is_the_named_constant():
    logits, teacher, labels = _response_inputs("kd")
    inside, outside = teacher.clone(), teacher.clone()
    inside[0] = inside[0] * (1.0 + 0.5 * PROB_SUM_TOLERANCE)
    outside[0] = outside[0] * (1.0 + 2.0 * PROB_SUM_TOLERANCE)
    kd(logits, inside, labels)
    with pytest.raises(DataError, match="must sum to 1"):
        kd(logits, outside, labels)


def test_low_precision_teachers_get_their_rounding_as_tolerance():
    # 1/3 rounds to 0.333984375 in bfloat16: the row sums to 1.00195, off by more than
    # PROB_SUM_TOLERANCE but by less than bfloat16's epsilon (0.0078)
    third = torch.full((1, 3), 1 / 3)
    assert abs(third.bfloat16().double().sum().item() - 1.0) > PROB_SUM_TOLERANCE
    check_probabilities(third.bfloat16(), "teacher")
    with pytest.raises(DataError, match=r"within 0\.001"):
        check_probabilities(third * (1 + 2 * PROB_SUM_TOLERANCE), "teacher")


def test_bad_epoch_is_a_data_error():
    with pytest.raises(DataError, match="epoch must be non-negative"):
        linear_warmup(math.nan, 10.0)
    logits, teacher, labels = _response_inputs("dkd")
    with pytest.raises(DataError, match=r"epoch must be non-negative.*-1\.0"):
        LOSSES.get("dkd")(logits, teacher, labels, epoch=-1.0)


# --- feature losses ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", FEATURE)
def test_bad_features_are_data_errors(name):
    fn = FEATURE_LOSSES.get(name)
    student, teacher, labels = _feature_inputs(name)
    inf = teacher.clone()
    inf[1, 2] = -math.inf
    where = rf"feature loss '{name}'"
    cases = [
        ((student, inf, labels), DataError, "teacher features contain NaN or inf"),
        ((student.long(), teacher, labels), DataError, "student features must be floating"),
        ((student, teacher.long(), labels), DataError, "teacher features must be floating"),
        ((student, None, labels), DataError, "teacher features must be a torch.Tensor"),
        ((student, teacher[:, :2], labels), ConfigError, r"D = 3 but teacher features D = 2"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=rf"{where}.*{message}"):
            fn(*args)


@pytest.mark.parametrize("name", FEATURE)
def test_feature_labels_are_checked_only_where_used(name):
    fn = FEATURE_LOSSES.get(name)
    student, teacher, labels = _feature_inputs(name)
    if fn.checks.uses_targets:
        with pytest.raises(DataError, match=rf"feature loss '{name}': labels must be int64"):
            fn(student, teacher, labels.int())
    else:
        assert torch.equal(fn(student, teacher, None), fn(student, teacher, labels))


# --- the validators a training loop calls once ------------------------------------------------


def test_check_probabilities_and_labels_on_a_whole_training_set():
    gen = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(1000, 10, generator=gen), 1)
    labels = torch.randint(0, 10, (1000,), generator=gen)
    check_probabilities(probs, "teacher predictions", shape=(1000, 10))
    check_labels(labels, "training data", batch=1000, num_classes=10)
    probs[700] = 0.0
    with pytest.raises(DataError, match=r"teacher predictions: .*row 700 sums to 0 "):
        check_probabilities(probs, "teacher predictions", shape=(1000, 10))
    with pytest.raises(DataError, match=r"training data: labels must lie in \[0, 9\)"):
        check_labels(labels, "training data", num_classes=9)


def test_inputs_on_another_device_than_the_logits_are_data_errors():
    logits, teacher, labels = _response_inputs("kd")
    with pytest.raises(DataError, match=r"loss 'kd': labels are on meta but the logits on cpu"):
        kd(logits, teacher, labels.to("meta"))
    with pytest.raises(DataError, match=r"teacher probabilities are on meta but the logits on cpu"):
        kd(logits, teacher.to("meta"), labels)
