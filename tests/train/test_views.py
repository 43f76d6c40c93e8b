"""The augmentation-aware teacher cache: stored views are rebuilt exactly, their stored
probabilities are the teacher's (within float16 precision), the teacher is asked only
while the cache is built, and bad options are refused before any work."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from bayesdistill.data import AUGMENTATIONS, ArrayData, ondisk_data, save_arrays
from bayesdistill.data.augment import Compose, GaussianNoise, RandomShift
from bayesdistill.errors import ConfigError
from bayesdistill.models import create_model
from bayesdistill.seeding import seeded
from bayesdistill.teachers import DeterministicTeacher, IVONTeacher, MCDropoutTeacher
from bayesdistill.teachers.base import Teacher
from bayesdistill.train import TrainSettings, distill
from bayesdistill.train.views import ViewCache, ViewTargets, build_view_cache

FP16_RTOL = 2.0**-10
"""Two float16 rounding steps: storing (≤ 2⁻¹¹ relative) plus batch-order noise."""
FP16_ATOL = 2.0**-24
"""The spacing of float16 subnormals: absolute error of probabilities below 2⁻¹⁴."""
RENORM_RTOL = 2.0**-9
"""Rows are renormalised when read: the stored row's sum is 1 within 2⁻¹¹."""

SIGNALS = (48, 24)  # N, L
IMAGES = (32, 3, 8, 8)  # N, C, H, W
NUM_CLASSES = 7


def signals(n: int = SIGNALS[0], length: int = SIGNALS[1], seed: int = 0) -> ArrayData:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, length, generator=gen)
    return ArrayData(x, torch.arange(n) % NUM_CLASSES, NUM_CLASSES)


def images(seed: int = 0) -> ArrayData:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*IMAGES, generator=gen)
    return ArrayData(x, torch.arange(IMAGES[0]) % NUM_CLASSES, NUM_CLASSES)


def network(name: str, data: ArrayData, **options) -> torch.nn.Module:
    with seeded(5):
        return create_model(name, data.input_shape, NUM_CLASSES, **options)


def ivon(data: ArrayData) -> Teacher:
    net = network("cnn1d", data, channels=(8, 8))
    std = {name: torch.full_like(p, 0.1) for name, p in net.named_parameters()}
    return IVONTeacher(net, std, num_samples=4, seed=2)


CASES: dict[str, tuple[Callable[[ArrayData], Teacher], Callable[[], ArrayData], str, dict]] = {
    "mlp/shift": (
        lambda d: DeterministicTeacher(network("mlp", d, hidden=(32,))),
        signals,
        "shift",
        {"max_shift": 4},
    ),
    "cnn1d/shift": (
        lambda d: DeterministicTeacher(network("cnn1d", d, channels=(8, 8))),
        signals,
        "shift",
        {"max_shift": 4},
    ),
    "ivon S=4/shift": (ivon, signals, "shift", {"max_shift": 4}),
    "mc_dropout S=4/shift": (
        lambda d: MCDropoutTeacher(network("mlp", d, hidden=(32,), dropout=0.3), num_samples=4),
        signals,
        "shift",
        {"max_shift": 4},
    ),
    "resnet8/cifar": (
        lambda d: DeterministicTeacher(network("resnet8", d)),
        images,
        "cifar",
        {"padding": 2},
    ),
    "mlp/random_crop": (
        lambda d: DeterministicTeacher(network("mlp", d, hidden=(32,))),
        images,
        "random_crop",
        {"padding": 2},
    ),
    "mlp/hflip": (
        lambda d: DeterministicTeacher(network("mlp", d, hidden=(32,))),
        images,
        "hflip",
        {},
    ),
}


def case(name: str):
    make_teacher, make_data, aug_name, options = CASES[name]
    data = make_data()
    return make_teacher(data), data, AUGMENTATIONS.build(aug_name, **options)


def rebuilt(augment, data: ArrayData, cache: ViewCache, view: int) -> Tensor:
    """View ``view`` of every example, rebuilt from its stored parameters."""
    return augment.apply(data.x, cache.params[:, view].long())


@pytest.mark.parametrize("name", list(CASES))
def test_stored_probabilities_are_the_teachers_on_rebuilt_views(name):
    teacher, data, augment = case(name)
    cache = build_view_cache(teacher, data, augment, views=3, seed=4)
    n = len(data)
    assert cache.values.dtype == torch.float16 and cache.values.shape == (n, 3, NUM_CLASSES)
    assert cache.indices is None and cache.params.shape == (n, 3, augment.num_params)
    # the three views are different augmentations, not one view stored three times
    assert not torch.equal(cache.params[:, 0], cache.params[:, 1])
    for v in range(3):
        view = rebuilt(augment, data, cache, v)
        assert not torch.equal(view, data.x)
        expected = teacher.predict_proba(view)
        torch.testing.assert_close(
            cache.values[:, v].float(), expected, rtol=FP16_RTOL, atol=FP16_ATOL
        )
        read = cache.probs(torch.arange(n), torch.full((n,), v))
        torch.testing.assert_close(read, expected, rtol=RENORM_RTOL, atol=FP16_ATOL)
        torch.testing.assert_close(read.sum(1), torch.ones(n), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["cnn1d/shift", "ivon S=4/shift", "resnet8/cifar"])
@pytest.mark.parametrize("top_k", [1, 3])
def test_top_k_views_keep_the_largest_and_spread_the_rest(name, top_k):
    teacher, data, augment = case(name)
    cache = build_view_cache(teacher, data, augment, views=2, seed=1, top_k=top_k)
    n, rest_classes = len(data), NUM_CLASSES - top_k
    assert cache.top_k == top_k and cache.values.shape == (n, 2, top_k)
    for v in range(2):
        expected = teacher.predict_proba(rebuilt(augment, data, cache, v))
        top = expected.topk(top_k, dim=1)
        stored = cache.indices[:, v].long()
        assert torch.equal(stored.sort(1).values, top.indices.sort(1).values)
        read = cache.probs(torch.arange(n), torch.full((n,), v))
        kept = read.gather(1, top.indices)
        torch.testing.assert_close(kept, top.values, rtol=RENORM_RTOL, atol=FP16_ATOL)
        others = torch.ones_like(read, dtype=torch.bool).scatter_(1, top.indices, False)
        spread = ((1.0 - top.values.sum(1)) / rest_classes)[:, None].expand(n, rest_classes)
        torch.testing.assert_close(
            read[others].view(n, rest_classes), spread, rtol=0, atol=2.0**-10 / rest_classes
        )
        torch.testing.assert_close(read.sum(1), torch.ones(n), rtol=0, atol=1e-6)


def test_top_k_of_all_classes_stores_every_class():
    teacher, data, augment = case("cnn1d/shift")
    cache = build_view_cache(teacher, data, augment, views=2, top_k=NUM_CLASSES)
    full = build_view_cache(teacher, data, augment, views=2)
    assert cache.indices is None and torch.equal(cache.values, full.values)


def test_the_same_seed_stores_the_same_views():
    teacher, data, augment = case("cnn1d/shift")
    a = build_view_cache(teacher, data, augment, views=3, seed=7)
    b = build_view_cache(teacher, data, augment, views=3, seed=7)
    c = build_view_cache(teacher, data, augment, views=3, seed=8)
    assert torch.equal(a.params, b.params) and torch.equal(a.values, b.values)
    assert not torch.equal(a.params, c.params)


@pytest.mark.parametrize("name", ["ivon S=4/shift", "resnet8/cifar"])
def test_draw_returns_rebuilt_views_with_the_teachers_probabilities(name):
    teacher, data, augment = case(name)
    views = 4
    cache = build_view_cache(teacher, data, augment, views=views, seed=2)
    targets = ViewTargets(cache, augment, torch.device("cpu"))
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:20]
    x = data.x[index]
    drawn_views, probs = targets.draw(x, index, torch.Generator().manual_seed(11))
    assert drawn_views.shape == x.shape and probs.shape == (20, NUM_CLASSES)
    # each drawn input is one of its example's stored views, rebuilt exactly ...
    chosen = []
    for b, i in enumerate(index.tolist()):
        matches = [
            v
            for v in range(views)
            if torch.equal(
                drawn_views[b], augment.apply(x[b : b + 1], cache.params[i, v][None].long())[0]
            )
        ]
        assert matches, f"row {b} is none of example {i}'s stored views"
        chosen.append(matches[0])
    # ... and comes with the teacher's probabilities for it (looked up by example id)
    torch.testing.assert_close(
        probs, teacher.predict_proba(drawn_views), rtol=RENORM_RTOL, atol=FP16_ATOL
    )
    torch.testing.assert_close(probs, cache.probs(index, torch.tensor(chosen)), rtol=0, atol=0)
    # the generator picks the views: another generator state picks others
    other, _ = targets.draw(x, index, torch.Generator().manual_seed(12))
    assert not torch.equal(other, drawn_views)


class CountingTeacher:
    """Any teacher, with its calls and the rows it was asked about counted."""

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher
        self.num_classes = teacher.num_classes
        self.calls = 0
        self.rows = 0

    def predict_proba(self, x: Tensor) -> Tensor:
        self.calls += 1
        self.rows += len(x)
        return self.teacher.predict_proba(x)


SETTINGS = TrainSettings(epochs=3, batch_size=16, lr=0.05)


def student(data: ArrayData) -> torch.nn.Module:
    with seeded(9):
        return create_model("cnn1d", data.input_shape, NUM_CLASSES, channels=(4, 4))


def run_distill(data, teacher, **options) -> torch.nn.Module:
    return distill(
        student(signals()),
        data,
        teacher,
        loss="kd",
        loss_options={"alpha": 0.5, "temperature": 4.0},
        settings=SETTINGS,
        seed=0,
        augment=RandomShift(max_shift=3),
        progress=False,
        **options,
    ).model


def test_view_cache_asks_the_teacher_only_while_building():
    data = signals()
    teacher = CountingTeacher(ivon(data))
    run_distill(data, teacher, teacher_cache="views", cache_views=5)
    assert teacher.calls == 5  # one inference batch (N ≤ 1024) per view, no training step
    assert teacher.rows == 5 * len(data)
    # the counter sees training-time calls when there are some
    per_batch = CountingTeacher(ivon(data))
    run_distill(data, per_batch, teacher_cache="none")
    assert per_batch.calls == SETTINGS.epochs * math.ceil(len(data) / SETTINGS.batch_size)
    assert per_batch.rows == SETTINGS.epochs * len(data)


def test_a_given_view_cache_is_used_without_asking_the_teacher():
    data = signals()
    teacher = CountingTeacher(ivon(data))
    cache = build_view_cache(teacher, data, RandomShift(max_shift=3), views=4, seed=0)
    asked = teacher.rows
    from_given = run_distill(data, teacher, view_cache=cache)
    assert teacher.rows == asked
    built = run_distill(data, CountingTeacher(ivon(data)), teacher_cache="views", cache_views=4)
    for p, q in zip(from_given.parameters(), built.parameters(), strict=True):
        assert torch.equal(p, q)


def test_views_from_disk_train_the_in_memory_student(tmp_path):
    data = signals()
    save_arrays(tmp_path, data.x, data.y)
    streamed = ondisk_data(tmp_path, num_classes=NUM_CLASSES)
    teacher = ivon(data)
    a = run_distill(data, teacher, teacher_cache="views", cache_views=3, cache_top_k=2)
    b = run_distill(streamed, teacher, teacher_cache="views", cache_views=3, cache_top_k=2)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"augment": None}, "trains without augmentation"),
        ({"augment": GaussianNoise(std=0.1)}, "'noise' is not one"),
        (
            {"augment": Compose([RandomShift(max_shift=2), GaussianNoise(std=0.1)])},
            "randomness can be stored",
        ),
        ({"cache_views": 0}, "cache_views must be >= 1, got 0"),
        ({"cache_views": -3}, "cache_views must be >= 1, got -3"),
        ({"cache_top_k": 0}, "cache_top_k must be >= 1"),
    ],
)
def test_bad_view_options_are_config_errors_before_any_teacher_call(options, match):
    data = signals()
    teacher = CountingTeacher(ivon(data))
    kwargs = {
        "loss": "kd",
        "settings": SETTINGS,
        "augment": RandomShift(max_shift=3),
        "teacher_cache": "views",
        "progress": False,
    } | options
    with pytest.raises(ConfigError, match=match):
        distill(student(data), data, teacher, **kwargs)
    assert teacher.calls == 0


@pytest.mark.parametrize(
    ("name", "options", "shape"),
    [
        ("shift", {"max_shift": 3}, (16, 20)),
        ("shift", {"max_shift": 5}, (16, 2, 20)),
        ("random_crop", {}, (16, 3, 8, 8)),
        ("random_crop", {"size": 6, "padding": 1}, (16, 3, 8, 8)),
        ("hflip", {}, (16, 3, 8, 8)),
        ("hflip", {"p": 0.2}, (16, 20)),
        ("cifar", {}, (16, 3, 8, 8)),
    ],
)
def test_a_parametric_augmentation_is_apply_of_sample(name, options, shape):
    augment = AUGMENTATIONS.build(name, **options)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    for seed in range(3):
        g_call, g_parts = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        called = augment(x, g_call)
        params = augment.sample(len(x), g_parts, tuple(x.shape[1:]))
        assert params.shape == (len(x), augment.num_params)
        assert torch.equal(called, augment.apply(x, params))
        # both consumed the same random numbers: the generators agree afterwards
        assert torch.equal(g_call.get_state(), g_parts.get_state())
        assert not torch.equal(called, x)
