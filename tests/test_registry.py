"""The generic registry: options from signatures, validation, suggestions."""

from __future__ import annotations

import math
from typing import Annotated

import pytest

from bayesdistill.errors import ConfigError, UnknownNameError
from bayesdistill.losses import LOSSES
from bayesdistill.registry import Range, Registry


def test_unknown_name_lists_valid_names_and_suggests():
    with pytest.raises(UnknownNameError) as info:
        LOSSES.get("kdd")
    message = str(info.value)
    assert "unknown loss 'kdd'" in message
    assert "kd, onehot_ce" in message
    assert "Did you mean 'kd'?" in message


def test_options_are_keyword_only_parameters_with_types():
    reg = Registry("thing")

    @reg.register("f")
    def f(x: int, *, scale: float = 2.0, mode: str = "a") -> float:
        """Scale a number."""
        return scale * x

    assert [o.name for o in reg.entry("f").options] == ["scale", "mode"]
    assert reg.entry("f").summary == "Scale a number."
    assert reg.build("f", 3, scale=3) == 9.0
    with pytest.raises(ConfigError, match="has no option 'scal'.*Did you mean 'scale'"):
        reg.validate_options("f", {"scal": 1})
    with pytest.raises(ConfigError, match="option 'scale'.*given 'big'"):
        reg.validate_options("f", {"scale": "big"})


def test_duplicate_registration_is_an_error():
    reg = Registry("thing")
    reg.register("a")(lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: None)


def test_runtime_inputs_are_not_options():
    reg = Registry("loss")

    @reg.register("warm", runtime=("epoch",))
    def warm(x: float, *, epoch: float = 0.0, beta: float = 8.0) -> float:
        return x * beta * epoch

    assert [o.name for o in reg.entry("warm").options] == ["beta"]
    with pytest.raises(ConfigError, match="no option 'epoch'"):
        reg.validate_options("warm", {"epoch": 1.0})


def test_runtime_inputs_must_be_keyword_only_parameters():
    reg = Registry("loss")
    with pytest.raises(ValueError, match="runtime inputs"):

        @reg.register("bad", runtime=("epoch",))
        def bad(x: float, *, beta: float = 1.0) -> float:
            return x


def test_every_objective_a_loss_names_is_known():
    """A loss tagged ``objective`` is built by the training layer into that objective once
    (`bayesdistill.train.distill.loss_objective`); the name must be one it knows."""
    from bayesdistill.train.distill import OBJECTIVES
    from bayesdistill.train.objective import own_objective

    named = {name: own_objective(name) for name in LOSSES.names()}
    assert named["self_distill_vr"] == "svrg" and named["self_distill"] is None
    assert {v for v in named.values() if v is not None} <= set(OBJECTIVES)


def test_a_loss_with_its_own_objective_is_no_weighted_sum_term():
    """Refused where a weighted sum is checked: by the config as by `distill`."""
    from bayesdistill.config.schema import LossConfig
    from bayesdistill.train.objective import check_combination

    with pytest.raises(ConfigError, match="cannot be a term of a weighted sum"):
        check_combination(["self_distill_vr", "kd"], ["self_distill_vr", "kd"])
    with pytest.raises(Exception, match="cannot be a term of a weighted sum"):
        LossConfig.model_validate({"terms": ["self_distill_vr", "kd"]})
    assert LossConfig.model_validate("self_distill_vr").name == "self_distill_vr"


# --- declared ranges of options --------------------------------------------------------------


def test_a_declared_range_is_checked_with_the_option():
    reg = Registry("scaler")

    @reg.register("scale")
    def scale(
        x: float,
        *,
        factor: Annotated[float, Range(0, 1)] = 0.5,
        power: Annotated[float, Range(0, low_open=True)] = 1.0,
        steps: Annotated[tuple[float, ...], Range(0)] = (1.0,),
    ) -> float:
        return x

    options = {o.name: o for o in reg.entry("scale").options}
    assert options["factor"].annotation is float and options["factor"].range == Range(0, 1)
    assert options["factor"].describe() == "factor: float in [0, 1] = 0.5"
    assert reg.validate_options("scale", {"factor": 1, "power": 1e-9}) == {
        "factor": 1.0,
        "power": 1e-9,
    }
    refused = [
        ({"factor": 1.5}, r"scaler 'scale': factor must lie in \[0, 1\], got 1.5"),
        ({"factor": float("nan")}, r"option 'factor' is NaN; it must lie in \[0, 1\]"),
        ({"power": 0}, r"power must lie in \(0, inf\) \(positive\), got 0.0"),
        (
            {"steps": [1.0, -2.0]},
            r"steps must lie in \[0, inf\) \(non-negative\), got \(1.0, -2.0\)",
        ),
    ]
    for given, message in refused:
        with pytest.raises(ConfigError, match=message):
            reg.validate_options("scale", given)


def test_every_loss_refuses_a_value_outside_each_declared_range():
    """Each declared range is enforced for configs (validate_options) and direct calls."""
    from bayesdistill.losses import FEATURE_LOSSES

    cases = 0
    for registry in (LOSSES, FEATURE_LOSSES):
        for name in registry.names():
            for option in registry.entry(name).options:
                if option.range is None:
                    continue
                outside = option.range.low - 1.0 if option.range.low > -math.inf else None
                outside = option.range.high + 1.0 if outside is None else outside
                with pytest.raises(ConfigError, match=rf"{option.name} must lie in"):
                    registry.validate_options(name, {option.name: outside})
                cases += 1
    assert cases >= 15  # kd, dkd, dist, wttm, self_distill(_vr), w2_joint, gaussian_kl
