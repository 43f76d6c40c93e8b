"""Step objectives: runtime inputs reach the loss, weighted sums equal their terms by hand."""

from __future__ import annotations

import functools

import pytest
import torch

from bayesdistill.errors import ConfigError, UnknownNameError
from bayesdistill.losses import (
    FEATURE_LOSSES,
    LOSSES,
    dkd,
    gaussian_w2,
    kd,
    onehot_ce,
    self_distill,
    w2_empirical,
)
from bayesdistill.train import CachedTargets, TrainSettings, fit
from bayesdistill.train.objective import (
    LogitLoss,
    LossTerm,
    StepInputs,
    WeightedSum,
    check_term,
    check_terms,
)

from ..conftest import make_mlp


def _inputs(splits, rows: int = 24, epoch: float = 0.0, seed: int = 0) -> StepInputs:
    gen = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(splits.train), generator=gen)[:rows]
    probs = torch.softmax(torch.randn(rows, splits.num_classes, generator=gen), dim=1)
    return StepInputs(splits.train.x[index], splits.train.y[index], index, probs, epoch)


@pytest.mark.parametrize("epoch", [0.0, 0.3, 2.5, 40.0])
def test_logit_loss_hands_the_fractional_epoch_to_a_warming_up_loss(tiny_splits, epoch):
    model = make_mlp(tiny_splits)
    inputs = _inputs(tiny_splits, epoch=epoch)
    fn = functools.partial(dkd, warmup_epochs=4.0)
    loss, terms = LogitLoss(fn, runtime=("epoch",))(model, inputs)
    logits = model(inputs.x)
    expected = dkd(logits, inputs.teacher_probs, inputs.y, warmup_epochs=4.0, epoch=epoch)
    assert terms == {}
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # by hand: CE + min(epoch / 4, 1) · (α·TCKD + β·NCKD)
    from bayesdistill.losses import dkd_terms

    tckd, nckd = dkd_terms(logits, inputs.teacher_probs, inputs.y, temperature=4.0)
    ce = torch.nn.functional.cross_entropy(logits, inputs.y)
    by_hand = ce + min(epoch / 4.0, 1.0) * (1.0 * tckd + 8.0 * nckd)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_logit_loss_without_runtime_is_the_plain_call(tiny_splits):
    model = make_mlp(tiny_splits)
    inputs = _inputs(tiny_splits, epoch=0.5)
    loss, _ = LogitLoss(functools.partial(kd, alpha=0.3))(model, inputs)
    assert torch.equal(loss, kd(model(inputs.x), inputs.teacher_probs, inputs.y, alpha=0.3))


def test_a_runtime_input_the_loop_cannot_supply_is_refused():
    with pytest.raises(ConfigError, match=r"runtime inputs \['step'\].*supplies: epoch"):
        LogitLoss(onehot_ce, runtime=("step",))


def test_weighted_sum_is_the_weighted_sum_of_the_terms_called_directly(tiny_splits):
    model = make_mlp(tiny_splits)
    gen = torch.Generator().manual_seed(5)
    teacher_features = torch.randn(len(tiny_splits.train), 16, generator=gen)
    inputs = _inputs(tiny_splits, epoch=0.75)
    terms = [
        LossTerm("kd", 1.0, {"alpha": 0.9, "temperature": 2}),
        LossTerm("dkd", 0.5, {"warmup_epochs": 3.0}),
        LossTerm("self_distill", 0.25, {"ramp_epochs": 1.0}, label="sd"),
        LossTerm("w2_empirical", 1e-2),
        LossTerm("gaussian_w2", 0.3, {"covariance": "full"}),
    ]
    objective = WeightedSum(terms, CachedTargets(teacher_features))
    total, values = objective(model, inputs)

    logits, features = model.forward_with_features(inputs.x)
    p, y, t = inputs.teacher_probs, inputs.y, teacher_features[inputs.index]
    by_hand = {
        "kd": kd(logits, p, y, alpha=0.9, temperature=2.0),
        "dkd": dkd(logits, p, y, warmup_epochs=3.0, epoch=0.75),
        "sd": self_distill(logits, p, y, ramp_epochs=1.0, epoch=0.75),
        "w2_empirical": w2_empirical(features, t, y),
        "gaussian_w2": gaussian_w2(features, t, y, covariance="full"),
    }
    assert list(values) == list(by_hand)
    for key, value in by_hand.items():
        assert values[key].item() == pytest.approx(value.item(), rel=1e-5), key
        assert not values[key].requires_grad
    weights = {"kd": 1.0, "dkd": 0.5, "sd": 0.25, "w2_empirical": 1e-2, "gaussian_w2": 0.3}
    expected = sum(weights[k] * v for k, v in by_hand.items())
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    total.backward()  # differentiable through both kinds of term
    assert all(p.grad is not None for p in model.parameters())


def test_weighted_sum_of_response_terms_needs_no_features(tiny_splits):
    class LogitsOnly(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

    model = LogitsOnly(make_mlp(tiny_splits))
    inputs = _inputs(tiny_splits)
    total, values = WeightedSum([LossTerm("onehot_ce", 2.0), LossTerm("soft_ce", 0.5)])(
        model, inputs
    )
    logits = model(inputs.x)
    ce = torch.nn.functional.cross_entropy(logits, inputs.y)
    soft = torch.nn.functional.cross_entropy(logits, inputs.teacher_probs)
    assert total.item() == pytest.approx((2 * ce + 0.5 * soft).item(), rel=1e-6)
    assert set(values) == {"onehot_ce", "soft_ce"}


def test_feature_terms_need_teacher_features():
    with pytest.raises(ConfigError, match=r"need the teacher's penultimate features"):
        WeightedSum([LossTerm("onehot_ce"), LossTerm("mmd")])


def test_unknown_term_name_lists_both_registries():
    with pytest.raises(UnknownNameError) as info:
        check_terms([LossTerm("kd"), LossTerm("w2_emprical")])
    message = str(info.value)
    assert "loss term 1 ('w2_emprical')" in message
    assert all(name in message for name in LOSSES.names())
    assert all(name in message for name in FEATURE_LOSSES.names())
    assert "Did you mean 'w2_empirical'?" in message


def test_term_option_typo_names_the_term_and_its_options():
    with pytest.raises(
        ConfigError,
        match=r"loss term 0 \('kd'\): loss 'kd' has no option 'alpah'; its options are: "
        r"alpha: float in \[0, 1\] = 0.5, temperature: float in \(0, inf\) = 4.0. Did you mean "
        r"'alpha'\?",
    ):
        check_terms([LossTerm("kd", options={"alpah": 0.9}), LossTerm("w2_empirical")])
    with pytest.raises(ConfigError, match=r"feature loss 'mmd' has no option 'bandwith'"):
        check_terms([LossTerm("kd"), LossTerm("mmd", options={"bandwith": 1.0})])


def test_term_options_are_coerced_and_runtime_inputs_are_not_options():
    assert check_term(LossTerm("kd", 1, {"temperature": 2})).options == {"temperature": 2.0}
    with pytest.raises(ConfigError, match=r"has no option 'epoch'"):
        check_term(LossTerm("dkd", options={"epoch": 3.0}))


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        ([], r"at least one term"),
        ([LossTerm("w2_empirical"), LossTerm("mmd")], r"feature distances only.*onehot_ce"),
        ([LossTerm("kd"), LossTerm("kd", 2.0)], r"distinct labels; \['kd'\]"),
        ([LossTerm("kd", -1.0)], r"weight must be finite and ≥ 0"),
        ([LossTerm("kd", float("nan"))], r"weight must be finite and ≥ 0"),
    ],
)
def test_bad_combinations_are_refused(terms, message):
    with pytest.raises(ConfigError, match=message):
        check_terms(terms)


def test_fit_takes_exactly_one_of_loss_fn_and_objective(tiny_splits):
    settings = TrainSettings(epochs=1, batch_size=32)
    for kwargs in ({}, {"loss_fn": onehot_ce, "objective": LogitLoss(onehot_ce)}):
        with pytest.raises(TypeError, match="exactly one of loss_fn and objective"):
            fit(make_mlp(tiny_splits), tiny_splits.train, settings=settings, seed=0, **kwargs)


def test_fit_with_an_objective_equals_fit_with_its_loss(tiny_splits):
    settings = TrainSettings(epochs=2, batch_size=16)

    def run(**kwargs):
        return fit(
            make_mlp(tiny_splits),
            tiny_splits.train,
            settings=settings,
            seed=0,
            progress=False,
            **kwargs,
        ).model

    a = run(loss_fn=onehot_ce)
    b = run(objective=LogitLoss(onehot_ce))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
