"""Contract tests over every CIFAR zoo entry: shapes, features → head, inputs, options, errors."""

from __future__ import annotations

import pytest
import torch

from bayesdistill.errors import ConfigError
from bayesdistill.models import MODELS, ModelSpec, build_from_spec, create_model
from bayesdistill.models.cifar import ZOO
from bayesdistill.models.cifar._common import channel_shuffle
from bayesdistill.seeding import seeded

NAMED = [
    "resnet8",
    "resnet14",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet8x4",
    "resnet32x4",
    "resnet18",
    "resnet34",
    "resnet50",
    "wrn_16_2",
    "wrn_40_1",
    "wrn_40_2",
    "vgg8",
    "vgg13",
    "mobilenetv2",
    "shufflenetv1",
    "shufflenetv2",
]
GENERIC = ["cifar_resnet", "resnet", "wrn", "vgg"]

FEATURE_DIM = {
    **dict.fromkeys(["resnet8", "resnet14", "resnet20", "resnet32"], 64),
    **dict.fromkeys(["resnet44", "resnet56", "resnet110", "wrn_40_1"], 64),
    **dict.fromkeys(["resnet8x4", "resnet32x4"], 256),
    **dict.fromkeys(["resnet18", "resnet34", "vgg8", "vgg13"], 512),
    "resnet50": 2048,
    "wrn_16_2": 128,
    "wrn_40_2": 128,
    "mobilenetv2": 1280,
    "shufflenetv1": 960,
    "shufflenetv2": 1024,
}
"""Penultimate widths of RepDistiller's networks (the input of their linear classifier)."""

SMALL_PER_FAMILY = [
    "resnet8",
    "resnet18",
    "wrn_16_2",
    "vgg8",
    "mobilenetv2",
    "shufflenetv1",
    "shufflenetv2",
]


def images(channels: int = 3, size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0))


def test_every_zoo_name_is_registered():
    assert set(ZOO) == set(NAMED) | set(GENERIC)
    assert set(ZOO) <= set(MODELS.names())
    for name in ZOO:
        assert MODELS.entry(name).summary, f"{name} has no summary line"


@pytest.mark.parametrize("name", NAMED)
def test_logits_and_features_have_the_right_shapes(name, cifar100_model):
    model = cifar100_model(name)
    x = images()
    with torch.no_grad():
        features, logits = model.features(x), model(x)
        assert features.shape == (2, FEATURE_DIM[name])
        assert logits.shape == (2, 100)
        torch.testing.assert_close(model.head(features), logits)
    assert model.head.in_features == FEATURE_DIM[name]
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", SMALL_PER_FAMILY)
def test_one_channel_28x28_inputs_train(name):
    with seeded(0):
        model = create_model(name, (1, 28, 28), 10)
    model.train()
    logits = model(images(channels=1, size=28))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_zero_padding_shortcut_trains():
    model = create_model("cifar_resnet", (3, 32, 32), 10, depth=8, shortcut="zero_pad")
    model(images()).sum().backward()
    assert model.head.weight.grad is not None


@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("shape", [(784,), (28, 28), (3, 32, 32, 1)])
def test_non_image_input_shape_is_a_config_error(name, shape):
    with pytest.raises(ConfigError, match=r"\(channels, height, width\)"):
        create_model(name, shape, 10)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_offers_dropout_before_the_head(name):
    assert "dropout" in {option.name for option in MODELS.entry(name).options}


def test_dropout_acts_on_the_features_in_train_mode_only():
    with seeded(0):
        model = create_model("resnet8", (3, 32, 32), 10, dropout=0.5)
    x = images()
    model.train()
    with torch.no_grad():
        first, second = model.features(x), model.features(x)
    assert not torch.equal(first, second)
    assert (first == 0).any()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), model.features(x))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("cifar_resnet", {"depth": 21}, "6n \\+ 2"),
        ("cifar_resnet", {"widths": (16, 16, 0, 64)}, "positive"),
        ("wrn", {"depth": 15}, "6n \\+ 4"),
        ("wrn", {"widen_factor": 0}, "widen_factor"),
        ("resnet", {"depth": 20}, "depth"),
        ("vgg", {"depth": 10}, "depth"),
        ("shufflenetv2", {"width_mult": 0.75}, "width_mult"),
        ("resnet8", {"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_options_are_config_errors(name, options, message):
    with pytest.raises(ConfigError, match=message):
        create_model(name, (3, 32, 32), 10, **options)


def test_vgg_rejects_images_smaller_than_its_pooling():
    with pytest.raises(ConfigError, match="at least 8x8"):
        create_model("vgg8", (3, 4, 4), 10)


def test_spec_round_trip_rebuilds_the_same_network():
    with seeded(1):
        model = create_model("cifar_resnet", (3, 32, 32), 10, depth=8, widths=(8, 8, 16, 32))
    spec = ModelSpec.from_state(model.spec.state())  # tuples become lists and back
    rebuilt = build_from_spec(spec)
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


def test_seeded_construction_is_reproducible():
    with seeded(3):
        a = create_model("shufflenetv2", (3, 32, 32), 10)
    with seeded(3):
        b = create_model("shufflenetv2", (3, 32, 32), 10)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 3).flatten().tolist() == [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
    assert channel_shuffle(x, 2).flatten().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
