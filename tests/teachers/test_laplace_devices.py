"""Laplace teachers whatever the device and memory format, and errors that name what helps.

laplace-torch 0.3 builds the identity of its dense GGN without a device (on the CPU, so every
``hessian_structure='full'`` fit of a CUDA network failed) and flattens weights with
``view(-1)`` (which refuses the channels-last weights ``runtime.channels_last`` leaves). The
CPU cannot run CUDA, so the device test runs the backend under the meta device as torch's
default: an identity made without a device would then be a meta tensor.
"""

from __future__ import annotations

import copy
import importlib.metadata
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from bayesdistill.data import ArrayData, RawDataset, make_splits
from bayesdistill.errors import ConfigError
from bayesdistill.models import create_model
from bayesdistill.seeding import seeded
from bayesdistill.teachers import TeacherContext, fit_laplace
from bayesdistill.teachers.cross_fit import CrossFitPlan
from bayesdistill.teachers.laplace import LaplaceTeacher
from bayesdistill.train import RunOptions, TrainSettings
from bayesdistill.train.accel import Acceleration

IMAGE_SHAPE = (3, 16, 16)
NUM_CLASSES = 10
CHANNELS_LAST_CASES = [  # (a fixed prior where marglik's 100 steps are slow on the CPU)
    ("last_layer", "kron", "marglik"),
    ("last_layer", "full", 1.0),
    ("last_layer", "diag", "marglik"),
    ("all", "diag", 1.0),
]
SUBSETS = ["last_layer", "all"]
ALL_STRUCTURES = ["kron", "diag", "full"]


def laplace_torch():
    with warnings.catch_warnings():  # its import warns about torch.jit deprecations
        warnings.simplefilter("ignore")
        import laplace
        import laplace.curvature

    return laplace


def images(num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num, *IMAGE_SHAPE, generator=gen)
    return x, torch.randint(0, NUM_CLASSES, (num,), generator=gen)


def channels_last_resnet() -> torch.nn.Module:
    """A registry ResNet in the format training with ``runtime.channels_last`` leaves it."""
    with seeded(0):
        network = create_model("resnet8", IMAGE_SHAPE, NUM_CLASSES).eval()
    network.to(memory_format=torch.channels_last)
    assert not all(p.is_contiguous() for p in network.parameters())
    return network


def is_channels_last(network: torch.nn.Module) -> bool:
    """Every conv weight in channels-last format (and some not contiguous: a 1x1 kernel is both)."""
    weights = [p for p in network.parameters() if p.ndim == 4]
    return all(p.is_contiguous(memory_format=torch.channels_last) for p in weights) and any(
        not p.is_contiguous() for p in weights
    )


@pytest.fixture(scope="module")
def image_data():
    x, y = images(16, seed=1)  # few: Jacobians of all weights of a ResNet are slow on the CPU
    return ArrayData(x, y, NUM_CLASSES), images(8, seed=2)[0]


@pytest.mark.parametrize(("subset", "structure", "prior"), CHANNELS_LAST_CASES)
def test_channels_last_network_predicts_as_its_contiguous_copy(
    image_data, subset, structure, prior
):
    train, x = image_data
    network = channels_last_resnet()
    contiguous = copy.deepcopy(network).to(memory_format=torch.contiguous_format)
    options = {
        "subset_of_weights": subset,
        "hessian_structure": structure,
        "prior_precision": prior,
    }
    teacher = fit_laplace(network, train, **options)
    reference = fit_laplace(contiguous, train, **options)
    expected = reference.predict_proba(x)
    x_channels_last = x.contiguous(memory_format=torch.channels_last)
    assert teacher.prior_precision == pytest.approx(reference.prior_precision)
    assert torch.allclose(teacher.predict_proba(x), expected, atol=1e-6)
    assert torch.allclose(teacher.predict_proba(x_channels_last), expected, atol=1e-6)
    assert torch.allclose(reference.predict_proba(x_channels_last), expected, atol=1e-6)


def test_the_callers_network_keeps_its_format_and_weights(image_data):
    train, _ = image_data
    network = channels_last_resnet()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    fit_laplace(network, train, hessian_structure="diag", prior_precision=1.0)
    assert is_channels_last(network)
    after = network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_reloaded_channels_last_teacher_predicts_the_same(image_data):
    train, x = image_data
    teacher = fit_laplace(channels_last_resnet(), train, prior_precision=1.0)
    reloaded = LaplaceTeacher.from_payload(teacher.payload(), device="cpu")
    assert teacher.to("cpu") is teacher
    x_channels_last = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(reloaded.predict_proba(x), teacher.predict_proba(x), atol=1e-6)
    assert torch.allclose(
        reloaded.predict_proba(x_channels_last), teacher.predict_proba(x), atol=1e-6
    )


def test_cross_fitted_laplace_of_channels_last_fold_networks():
    x, y = images(60, seed=3)
    splits = make_splits(
        RawDataset("images", x, y, NUM_CLASSES),
        val_fraction=0.1,
        test_fraction=0.1,
        standardize="none",
    )
    context = TeacherContext(
        splits=splits,
        seed=0,
        init_network=lambda: create_model("resnet8", IMAGE_SHAPE, NUM_CLASSES),
        train_settings=TrainSettings(epochs=1, batch_size=16, lr=0.01),
        run=RunOptions(progress=False, accel=Acceleration(channels_last=True)),
    )
    plan = CrossFitPlan.make(context, folds=2)
    teacher = plan.build("laplace", prior_precision=1.0)
    # the fold networks are left channels-last by their training: the case this is about
    assert all(is_channels_last(c.network) for c in plan.contexts)
    probs = teacher.predict_proba(splits.test.x)
    assert torch.isfinite(probs).all()
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-5)


def _plain_laplace(network, splits, subset, structure):
    """laplace-torch with its default backend, as `fit_laplace` calls it (marglik, scalar)."""
    la = laplace_torch().Laplace(
        copy.deepcopy(network),
        "classification",
        subset_of_weights=subset,
        hessian_structure=structure,
        **({"last_layer_name": "head"} if subset == "last_layer" else {}),
    )
    assert la._backend_cls is laplace_torch().curvature.CurvlinopsGGN
    train = DataLoader(TensorDataset(splits.train.x, splits.train.y), batch_size=256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        la.fit(train)
        la.optimize_prior_precision(
            method="marglik",
            pred_type="glm",
            link_approx="probit",
            n_samples=100,
            prior_structure="scalar",
        )
    return la


def _curvature(la):
    return la.H_facs.kfacs if hasattr(la, "H_facs") else [[la.H]]


@pytest.mark.parametrize("structure", ALL_STRUCTURES)
@pytest.mark.parametrize("subset", SUBSETS)
def test_the_backend_gives_laplace_torchs_numbers_on_the_cpu(
    trained_mlp, tiny_splits, subset, structure
):
    """Bit for bit: the backend changes only where laplace-torch's dense GGN is built."""
    teacher = fit_laplace(
        trained_mlp,
        tiny_splits.train,
        subset_of_weights=subset,
        hessian_structure=structure,
        prior_precision="marglik",
    )
    reference = _plain_laplace(trained_mlp, tiny_splits, subset, structure)
    ours = teacher.laplace
    for mine, theirs in zip(_curvature(ours), _curvature(reference), strict=True):
        assert all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))
    assert torch.equal(ours.prior_precision, reference.prior_precision)
    x = tiny_splits.test.x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(ours(x, pred_type="glm"), reference(x, pred_type="glm"))


@pytest.mark.parametrize("subset", SUBSETS)
def test_the_full_backend_builds_its_identity_on_the_parameters_device(
    trained_mlp, tiny_splits, subset
):
    """With the meta device as torch's default, an identity made without a device would
    be a meta tensor (laplace-torch 0.3's own backend then fails); the backend's is on the
    parameters' device, the CPU, and gives laplace-torch's GGN."""
    teacher = fit_laplace(
        trained_mlp,
        tiny_splits.train,
        subset_of_weights=subset,
        hessian_structure="full",
        prior_precision=1.0,
    )
    la = teacher.laplace
    x, y = tiny_splits.train.x, tiny_splits.train.y
    plain = laplace_torch().curvature.CurvlinopsGGN(
        la.model, "classification", last_layer=subset == "last_layer"
    )
    loss, ggn = plain.full(x, y, N=len(x))
    with torch.device("meta"):
        meta_loss, meta_ggn = la.backend.full(x, y, N=len(x))
    assert meta_ggn.device.type == "cpu" and meta_loss.device.type == "cpu"
    assert torch.equal(meta_ggn, ggn) and torch.equal(meta_loss, loss)


def _raise(error: Exception):
    def raising(*args, **kwargs):
        raise error

    return raising


def _suggested(message: str) -> set[str]:
    """The settings a message suggests (after its "Try")."""
    if "Try " not in message:
        return set()
    hint = message.split("Try ", 1)[1]
    options = ("subset_of_weights='last_layer'", "hessian_structure='diag'")
    return {option for option in options if option in hint}


@pytest.fixture
def failing_backend(monkeypatch):
    """Make every curvature of laplace-torch's default backend raise ``error``."""

    def fail_with(error: Exception) -> None:
        curvature = laplace_torch().curvature
        monkeypatch.setattr(curvature.CurvlinopsInterface, "kron", _raise(error))
        monkeypatch.setattr(curvature.CurvlinopsInterface, "full", _raise(error))
        monkeypatch.setattr(curvature.GGNInterface, "diag", _raise(error))

    return fail_with


@pytest.mark.parametrize(
    ("subset", "structure", "expected"),
    [
        ("all", "kron", {"subset_of_weights='last_layer'", "hessian_structure='diag'"}),
        ("all", "full", {"subset_of_weights='last_layer'", "hessian_structure='diag'"}),
        ("all", "diag", {"subset_of_weights='last_layer'"}),
        ("last_layer", "kron", {"hessian_structure='diag'"}),
        ("last_layer", "full", {"hessian_structure='diag'"}),
        ("last_layer", "diag", set()),
    ],
)
def test_a_layer_error_suggests_only_settings_not_given(
    trained_mlp, tiny_splits, failing_backend, subset, structure, expected
):
    failing_backend(NotImplementedError("Unequal padding not supported in unfold."))
    with pytest.raises(ConfigError) as caught:
        fit_laplace(
            trained_mlp,
            tiny_splits.train,
            subset_of_weights=subset,
            hessian_structure=structure,
            prior_precision=1.0,
        )
    message = str(caught.value)
    assert "Unequal padding not supported in unfold" in message
    assert _suggested(message) == expected
    if not expected:
        assert "Try" not in message


def test_a_failure_inside_laplace_torch_suggests_no_settings(
    trained_mlp, tiny_splits, failing_backend
):
    error = "Expected all tensors to be on the same device, but found cuda:0 and cpu!"
    failing_backend(RuntimeError(error))
    with pytest.raises(ConfigError) as caught:
        fit_laplace(
            trained_mlp,
            tiny_splits.train,
            subset_of_weights="last_layer",
            hessian_structure="diag",
            prior_precision=1.0,
        )
    message = str(caught.value)
    assert "Try" not in message
    # the settings given are named once, as what was given, not as a suggestion
    assert message.count("last_layer") == 1 and message.count("diag") == 1
    version = importlib.metadata.version("laplace-torch")
    assert f"inside laplace-torch {version}" in message
    assert f"RuntimeError: {error}" in message
