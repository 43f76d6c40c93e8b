"""Configs: defaults, YAML + overrides, and errors that say what is allowed."""

from __future__ import annotations

import pytest

from bayesdistill.config import dump_config, load_config
from bayesdistill.errors import ConfigError


def test_defaults_validate_and_round_trip(tmp_path):
    config = load_config(None)
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(config))
    assert dump_config(load_config(path)) == dump_config(config)


def test_yaml_overrides_merge_onto_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("student:\n  train: {epochs: 7}\nseeds: [4]\n")
    config = load_config(path, ["student.train.lr=0.2", "teachers.3.prior_precision=marglik"])
    assert config.student.train.epochs == 7 and config.student.train.lr == 0.2
    assert config.student.train.batch_size == 64  # default kept
    assert config.seeds == [4]
    assert config.teachers[3].name == "laplace"
    assert config.teachers[3].options["prior_precision"].value == "marglik"


def test_changing_a_component_name_drops_its_old_options():
    config = load_config(None, ["teacher.model.name=mlp", "teacher.model.hidden=[8]"])
    assert config.teacher.model.name == "mlp" and config.teacher.model.options == {"hidden": (8,)}
    config = load_config({"teacher": {"model": {"name": "mlp"}}})
    assert config.teacher.model.options == {}


def test_string_shorthand_for_components():
    config = load_config(
        None, ["student.losses=[soft_ce, kd]", "data=synthetic", "data.num_samples=90"]
    )
    assert [loss.name for loss in config.student.losses] == ["soft_ce", "kd"]
    assert config.data.name == "synthetic" and config.data.options == {"num_samples": 90}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "student.trian.lr=1",
            r"unknown key 'student.trian'; allowed keys here: model, train, losses, subset, augment, teacher_cache, cache_views, cache_top_k. Did you mean 'train'\?",
        ),
        ("seed=1", r"unknown key 'seed'.*Did you mean 'seeds'\?"),
        (
            "student.train.epoch=3",
            r"unknown key 'student.train.epoch'.*epochs.*Did you mean 'epochs'\?",
        ),
        ("student.train.lr=abc", r"student.train.lr: Input should be a valid number.*given 'abc'"),
        (
            "student.losses.0.name=kdd",
            r"unknown loss 'kdd'; valid loss names: .*kd.*Did you mean 'kd'\?",
        ),
        (
            "student.losses.0.alpah=0.1",
            r"loss 'kd' has no option 'alpah'; its options are: alpha: float in \[0, 1\] = 0.5.*"
            r"Did you mean 'alpha'\?",
        ),
        (
            "teachers.3.prior_precision=margin",
            r"teacher 'laplace': option 'prior_precision'.*given 'margin'.*\{'marglik', 'gridsearch'\} \| float",
        ),
        (
            "teachers=[none, bogus]",
            r"unknown teacher 'bogus'; valid teacher names: deterministic, .*exact_bcp, .*ivon",
        ),
        ("data.name=npz", r"dataset 'npz': option 'path' is required"),
        ("teacher.train.epochs=0", r"epochs must be >= 1, got 0"),
        ("student.subset.per_class=3", None),
        ("teachers=[none, laplace, laplace]", r"distinct labels; \['laplace'\]"),
        ("device=tpu", r"device must be 'auto', 'cpu'"),
        ("teachers.9.name=x", r"'teachers' is a list of 5; '9' is not an index"),
        ("student.train.lr", r"must look like key.sub=value"),
    ],
)
def test_bad_configs_say_what_is_allowed(override, message):
    if message is None:
        load_config(None, [override])
        return
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(listy)


def test_yaml_tags_are_not_executed(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("seeds: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)


def test_shipped_configs_resolve_outside_the_repository(tmp_path, monkeypatch):
    from bayesdistill.config.loading import resolve_config_path

    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    path = resolve_config_path("configs/kd2m/resnet34_resnet18_svhn.yaml")
    assert path.is_file() and path.parts[-3:] == ("configs", "kd2m", "resnet34_resnet18_svhn.yaml")
    assert load_config("configs/kd2m/resnet34_resnet18_svhn.yaml").data.name == "svhn"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "quickstart.yaml").write_text("seeds: [7]\n")
    assert load_config("configs/quickstart.yaml").seeds == [7]  # a local file wins
    with pytest.raises(FileNotFoundError, match="bayesdistill list configs"):
        load_config("configs/nope.yaml")


def test_listing_names_theory_experiments_and_shipped_configs():
    from bayesdistill.cli.listing import render_registries

    theory = render_registries("theory")
    assert "gradient_noise" in theory and "self_distillation" in theory
    configs = render_registries("configs").splitlines()
    assert "  configs/cifar100/resnet50_wrn_16_2.yaml" in configs
    assert "  configs/zoo_mnist1d.yaml" in configs
    with pytest.raises(ConfigError, match="Did you mean 'configs'"):
        render_registries("config")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("teacher.train.lr=.inf", "lr must be a finite number, got inf"),
        ("teacher.train.lr=.nan", "lr must be a finite number, got nan"),
        ("student.train.momentum=.nan", "momentum must be a finite number"),
        ("student.train.weight_decay=.inf", "weight_decay must be a finite number"),
        ("student.train.grad_clip_norm=.inf", "grad_clip_norm must be a finite number"),
        ("student.train.gamma=0", "gamma must be positive"),
        ("student.losses.0.temperature=.inf", "loss 'kd': option 'temperature' must be finite"),
        ("student.losses.0.alpha=.nan", "loss 'kd': option 'alpha' is NaN"),
        ("teachers.3.prior_precision=-.inf", "option 'prior_precision' must be finite"),
        ("data.val_fraction=.nan", "data.val_fraction"),
        ("data.test_fraction=.nan", "data.test_fraction"),
    ],
)
def test_non_finite_numbers_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_infinity_is_allowed_where_it_is_the_default():
    """w2_joint's beta = inf means "labels must match" (its default)."""
    config = load_config(
        None,
        [
            "student.losses=[{label: ce_w2, terms: [{name: onehot_ce}, "
            "{name: w2_joint, weight: 0.001, beta: .inf}]}]"
        ],
    )
    assert config.student.losses[0].terms[1].options["beta"] == float("inf")
    with pytest.raises(ConfigError, match="'w2_joint': option 'beta' is NaN"):
        load_config(
            None,
            [
                "student.losses=[{label: ce_w2, terms: [{name: onehot_ce}, "
                "{name: w2_joint, weight: 0.001, beta: .nan}]}]"
            ],
        )


def test_test_fraction_applies_only_to_datasets_without_a_test_split(tmp_path):
    import numpy as np

    from bayesdistill.runner import load_data

    assert load_config(None).data.test_fraction is None  # the default: 0.2 where it applies
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 3)).astype(np.float32), np.arange(100) % 2
    np.savez(tmp_path / "own.npz", x=x[:80], y=y[:80], x_test=x[80:], y_test=y[80:])
    np.savez(tmp_path / "pool.npz", x=x, y=y)
    own = {"name": "npz", "path": str(tmp_path / "own.npz")}
    assert len(load_data(load_config({"data": own}).data).test) == 20
    with pytest.raises(ConfigError, match=r"test_fraction=0.3 does not apply.*\(20 examples\)"):
        load_data(load_config({"data": {**own, "test_fraction": 0.3}}).data)
    pool = {"name": "npz", "path": str(tmp_path / "pool.npz")}
    assert len(load_data(load_config({"data": pool}).data).test) == 20  # 0.2 of 100
    assert len(load_data(load_config({"data": {**pool, "test_fraction": 0.3}}).data).test) == 30


def test_train_settings_refuse_non_finite_numbers_from_python():
    from bayesdistill.train import TrainSettings

    with pytest.raises(ConfigError, match="lr must be a finite number, got inf"):
        TrainSettings(lr=float("inf"))
    with pytest.raises(ConfigError, match="warmup_epochs must be a finite number"):
        TrainSettings(warmup_epochs=float("nan"))
