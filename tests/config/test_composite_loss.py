"""Student losses in configs: the single form and weighted sums of named terms."""

from __future__ import annotations

import pytest

from bayesdistill.config import dump_config, load_config
from bayesdistill.errors import ConfigError
from bayesdistill.losses import FEATURE_LOSSES, LOSSES
from bayesdistill.train.objective import LossTerm

KD_W2 = {
    "label": "kd_w2",
    "terms": [
        {"name": "kd", "weight": 1.0, "alpha": 0.9},
        {"name": "w2_empirical", "weight": 1.0e-4},
    ],
}


def _load(*losses):
    return load_config({"student": {"losses": list(losses)}})


def test_composite_loss_parses_into_terms():
    loss = _load(KD_W2).student.losses[0]
    assert loss.is_composite and loss.key == "kd_w2" and loss.name is None
    assert loss.spec() == [
        LossTerm("kd", 1.0, {"alpha": 0.9}),
        LossTerm("w2_empirical", 1.0e-4, {}),
    ]
    assert loss.options == {}


def test_single_form_is_unchanged():
    loss = _load({"name": "kd", "label": "kd_T4", "temperature": 4}).student.losses[0]
    assert not loss.is_composite and loss.spec() == "kd" and loss.key == "kd_T4"
    assert loss.options == {"temperature": 4.0}


def test_composite_round_trips_and_dumps_only_its_form(tmp_path):
    config = _load(KD_W2, "soft_ce")
    text = dump_config(config)
    assert "terms: null" not in text
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert dump_config(load_config(path)) == text


def test_default_label_joins_the_term_labels_and_strings_are_shorthand():
    loss = load_config(
        None, ["student.losses=[{terms: [onehot_ce, {name: mmd, weight: 0.1, label: m}]}]"]
    ).student.losses[0]
    assert loss.key == "onehot_ce+m"
    assert [t.key for t in loss.terms] == ["onehot_ce", "m"]


def test_options_are_coerced_per_term():
    loss = _load(
        {"label": "x", "terms": [{"name": "kd", "temperature": 2}, {"name": "gaussian_kl"}]}
    ).student.losses[0]
    assert loss.spec()[0].options == {"temperature": 2.0}


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        (
            {"label": "x", "terms": [{"name": "kd", "alpah": 0.9}, {"name": "w2_empirical"}]},
            r"student\.losses\.0\.terms\.0: loss 'kd' has no option 'alpah'; its options are: "
            r"alpha: float in \[0, 1\] = 0.5, temperature: float in \(0, inf\) = 4.0\. "
            r"Did you mean 'alpha'\?",
        ),
        (
            {"label": "x", "terms": ["kd", {"name": "w2_empirical", "solvr": "emd"}]},
            r"student\.losses\.0\.terms\.1: feature loss 'w2_empirical' has no option 'solvr'; "
            r"its options are: solver: \{'emd', 'emd2'\} = 'emd'",
        ),
        (
            {"label": "x", "terms": ["kd", {"name": "w2_emprical"}]},
            r"student\.losses\.0\.terms\.1: unknown loss 'w2_emprical'; valid loss names: "
            r"dist, .*kd.*; valid feature loss names: gaussian_kl, .*w2_empirical.*"
            r"Did you mean 'w2_empirical'\?",
        ),
        ({"label": "x", "terms": ["mmd", "gaussian_w2"]}, r"feature distances only"),
        ({"name": "w2_empirical"}, r"feature distances only.*terms: \[\{name: onehot_ce\}"),
        ({"label": "x", "terms": ["kd", "kd"]}, r"distinct labels; \['kd'\]"),
        ({"label": "x", "terms": ["kd"], "alpha": 0.3}, r"move \['alpha'\] into the terms"),
        ({"name": "kd", "terms": ["kd"]}, r"either `name` \('kd'\) or `terms`"),
        ({"label": "x"}, r"a loss needs a `name`"),
        ({"label": "x", "terms": []}, r"at least 1 item"),
        (
            {"label": "x", "terms": [{"name": "kd", "weight": -1}]},
            r"terms\.0\.weight: Input should be greater than or equal to 0",
        ),
        ({"label": "x", "terms": [{"name": "kd", "weight": "a"}]}, r"terms\.0\.weight"),
        ({"label": "x", "terms": [{"weight": 1.0}]}, r"terms\.0\.name"),
    ],
)
def test_bad_losses_say_what_is_allowed(loss, message):
    with pytest.raises(ConfigError, match=message):
        _load(loss)


def test_composite_labels_must_differ_from_other_losses():
    with pytest.raises(ConfigError, match=r"distinct labels; \['kd'\]"):
        _load("kd", {"label": "kd", "terms": ["onehot_ce", "kd"]})


def test_no_loss_has_an_option_named_like_a_reserved_key():
    reserved = {"name", "label", "weight", "terms"}
    for registry in (LOSSES, FEATURE_LOSSES):
        for name in registry:
            options = {o.name for o in registry.entry(name).options}
            assert not options & reserved, (name, options & reserved)


def test_listing_shows_feature_losses():
    from bayesdistill.cli.listing import render_registries

    text = render_registries()
    assert "\nfeature_losses:\n" in text
    for name in FEATURE_LOSSES:
        assert f"  {name} " in text
    assert "w2_empirical" in render_registries("feature_losses")
