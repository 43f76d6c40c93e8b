"""Loading trained weights from files: containers, our own files, other zoos' layouts, errors.

The other zoos' layouts are written here from reading mdistiller's CIFAR model code
(megvii-research/mdistiller, mdistiller/models/cifar/{resnet,resnetv2,wrn,vgg,mobilenetv2,
ShuffleNetv1,ShuffleNetv2}.py; RepDistiller's models are the same): each function lists the
``(key, shape)`` pairs of that code's ``state_dict()`` in registration order. A test first
checks that these shapes are ours in the same order (the evidence that the layouts map), then
writes our tensors under their names, as their teacher files hold them (``{"model": sd,
...}``), and checks that the loaded network computes bit-identical outputs.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import Tensor

from bayesdistill.errors import CheckpointError
from bayesdistill.models import (
    KeyMapping,
    create_model,
    load_teacher_checkpoint,
    load_weights,
)
from bayesdistill.models.checkpoints import (
    check_teacher_checkpoint,
    guess_architecture,
    unwrap_state_dict,
)
from bayesdistill.runner.common import save_network

Layout = list[tuple[str, tuple[int, ...]]]
NUM_CLASSES = 100
IMAGE = (3, 32, 32)

# ---- their layouts: (key, shape) in registration order ------------------------------------


def _bn(prefix: str, channels: int) -> Layout:
    stats = ("weight", "bias", "running_mean", "running_var")
    return [(f"{prefix}.{s}", (channels,)) for s in stats] + [(f"{prefix}.num_batches_tracked", ())]


def _conv(prefix: str, out: int, inp: int, k: int, groups: int = 1) -> Layout:
    return [(f"{prefix}.weight", (out, inp // groups, k, k))]


def _linear(prefix: str, out: int, inp: int) -> Layout:
    return [(f"{prefix}.weight", (out, inp)), (f"{prefix}.bias", (out,))]


def cifar_resnet_layout(depth: int, widths: tuple[int, int, int, int]) -> Layout:
    """mdistiller resnet.py: conv1/bn1, layer{1,2,3}.{b}.conv1/bn1/conv2/bn2[/downsample.0/.1], fc."""
    keys = _conv("conv1", widths[0], 3, 3) + _bn("bn1", widths[0])
    inp, blocks = widths[0], (depth - 2) // 6
    for stage, (planes, stride) in enumerate(zip(widths[1:], (1, 2, 2), strict=True), 1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            keys += _conv(f"{p}.conv1", planes, inp, 3) + _bn(f"{p}.bn1", planes)
            keys += _conv(f"{p}.conv2", planes, planes, 3) + _bn(f"{p}.bn2", planes)
            if b == 0 and (stride != 1 or inp != planes):
                keys += _conv(f"{p}.downsample.0", planes, inp, 1) + _bn(
                    f"{p}.downsample.1", planes
                )
            inp = planes
    return keys + _linear("fc", NUM_CLASSES, widths[3])


def resnetv2_layout(blocks: tuple[int, ...], bottleneck: bool) -> Layout:
    """mdistiller resnetv2.py (ResNet18/50): conv1/bn1, layer{1..4}.{b}.conv*/bn*[/shortcut], linear."""
    keys = _conv("conv1", 64, 3, 3) + _bn("bn1", 64)
    inp = 64
    for stage, (planes, count, stride) in enumerate(
        zip((64, 128, 256, 512), blocks, (1, 2, 2, 2), strict=True), 1
    ):
        for b in range(count):
            p, s = f"layer{stage}.{b}", stride if b == 0 else 1
            if bottleneck:
                out = 4 * planes
                keys += _conv(f"{p}.conv1", planes, inp, 1) + _bn(f"{p}.bn1", planes)
                keys += _conv(f"{p}.conv2", planes, planes, 3) + _bn(f"{p}.bn2", planes)
                keys += _conv(f"{p}.conv3", out, planes, 1) + _bn(f"{p}.bn3", out)
            else:
                out = planes
                keys += _conv(f"{p}.conv1", planes, inp, 3) + _bn(f"{p}.bn1", planes)
                keys += _conv(f"{p}.conv2", planes, planes, 3) + _bn(f"{p}.bn2", planes)
            if s != 1 or inp != out:
                keys += _conv(f"{p}.shortcut.0", out, inp, 1) + _bn(f"{p}.shortcut.1", out)
            inp = out
    return keys + _linear("linear", NUM_CLASSES, inp)


def wrn_layout(depth: int, widen: int) -> Layout:
    """mdistiller wrn.py: conv1, block{1,2,3}.layer.{b}.bn1/conv1/bn2/conv2[/convShortcut], bn1, fc."""
    keys = _conv("conv1", 16, 3, 3)
    inp, blocks = 16, (depth - 4) // 6
    for stage, width in enumerate((16 * widen, 32 * widen, 64 * widen), 1):
        for b in range(blocks):
            p, in_b = f"block{stage}.layer.{b}", inp if b == 0 else width
            keys += _bn(f"{p}.bn1", in_b) + _conv(f"{p}.conv1", width, in_b, 3)
            keys += _bn(f"{p}.bn2", width) + _conv(f"{p}.conv2", width, width, 3)
            if in_b != width:
                keys += _conv(f"{p}.convShortcut", width, in_b, 1)
        inp = width
    return keys + _bn("bn1", inp) + _linear("fc", NUM_CLASSES, inp)


VGG_STAGES = {
    8: ((64,), (128,), (256,), (512,), (512,)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
}
"""Conv widths per stage of mdistiller's cfg "S" (VGG-8) and "B" (VGG-13)."""


def vgg_layout(depth: int, batch_norm: bool = True) -> Layout:
    """mdistiller vgg.py: block{0..4}.{i} conv (weight, bias) [+ BN], classifier."""
    keys: Layout = []
    inp = 3
    for stage, widths in enumerate(VGG_STAGES[depth]):
        index = 0
        for width in widths:
            p = f"block{stage}.{index}"
            keys += [*_conv(p, width, inp, 3), (f"{p}.bias", (width,))]
            if batch_norm:
                keys += _bn(f"block{stage}.{index + 1}", width)
            index += 3 if batch_norm else 2
            inp = width
    return keys + _linear("classifier", NUM_CLASSES, 512)


def mobile_half_layout() -> Layout:
    """mdistiller mobilenetv2.py (mobile_half): conv1.{0,1}, blocks.{s}.{b}.conv.{0,1,3,4,6,7}, conv2, classifier.0."""
    stages = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1))
    keys = _conv("conv1.0", 16, 3, 3) + _bn("conv1.1", 16)
    inp = 16
    for s, (t, c, n) in enumerate(stages):
        out = c // 2
        for b in range(n):
            p, hidden = f"blocks.{s}.{b}.conv", inp * t
            keys += _conv(f"{p}.0", hidden, inp, 1) + _bn(f"{p}.1", hidden)
            keys += _conv(f"{p}.3", hidden, hidden, 3, groups=hidden) + _bn(f"{p}.4", hidden)
            keys += _conv(f"{p}.6", out, hidden, 1) + _bn(f"{p}.7", out)
            inp = out
    keys += _conv("conv2.0", 1280, inp, 1) + _bn("conv2.1", 1280)
    return keys + _linear("classifier.0", NUM_CLASSES, 1280)


def shufflev1_layout() -> Layout:
    """mdistiller ShuffleNetv1.py (g = 3): conv1/bn1, layer{1,2,3}.{b}.conv1..3/bn1..3, linear."""
    keys = _conv("conv1", 24, 3, 1) + _bn("bn1", 24)
    inp = 24
    for stage, (width, count) in enumerate(zip((240, 480, 960), (4, 8, 4), strict=True), 1):
        for b in range(count):
            p = f"layer{stage}.{b}"
            out = width - (inp if b == 0 else 0)
            mid, groups = out // 4, 1 if inp == 24 else 3
            keys += _conv(f"{p}.conv1", mid, inp, 1, groups) + _bn(f"{p}.bn1", mid)
            keys += _conv(f"{p}.conv2", mid, mid, 3, groups=mid) + _bn(f"{p}.bn2", mid)
            keys += _conv(f"{p}.conv3", out, mid, 1, groups=3) + _bn(f"{p}.bn3", out)
            inp = width
    return keys + _linear("linear", NUM_CLASSES, 960)


def shufflev2_layout() -> Layout:
    """mdistiller ShuffleNetv2.py (1x): conv1/bn1, layer{1,2,3}.0 (down) and .{b} units, conv2/bn2, linear."""
    keys = _conv("conv1", 24, 3, 1) + _bn("bn1", 24)
    inp = 24
    for stage, (width, units) in enumerate(zip((116, 232, 464), (3, 7, 3), strict=True), 1):
        p, mid = f"layer{stage}.0", width // 2
        keys += _conv(f"{p}.conv1", inp, inp, 3, groups=inp) + _bn(f"{p}.bn1", inp)
        keys += _conv(f"{p}.conv2", mid, inp, 1) + _bn(f"{p}.bn2", mid)
        keys += _conv(f"{p}.conv3", mid, inp, 1) + _bn(f"{p}.bn3", mid)
        keys += _conv(f"{p}.conv4", mid, mid, 3, groups=mid) + _bn(f"{p}.bn4", mid)
        keys += _conv(f"{p}.conv5", mid, mid, 1) + _bn(f"{p}.bn5", mid)
        for b in range(1, units + 1):
            p, half = f"layer{stage}.{b}", width // 2
            keys += _conv(f"{p}.conv1", half, half, 1) + _bn(f"{p}.bn1", half)
            keys += _conv(f"{p}.conv2", half, half, 3, groups=half) + _bn(f"{p}.bn2", half)
            keys += _conv(f"{p}.conv3", half, half, 1) + _bn(f"{p}.bn3", half)
        inp = width
    keys += _conv("conv2", 1024, inp, 1) + _bn("bn2", 1024)
    return keys + _linear("linear", NUM_CLASSES, 1024)


# their teacher names → (our model, options, their layout)
ZOO_LAYOUTS = {
    "resnet56": ("resnet56", {}, lambda: cifar_resnet_layout(56, (16, 16, 32, 64))),
    "resnet8x4": ("resnet8x4", {}, lambda: cifar_resnet_layout(8, (32, 64, 128, 256))),
    "resnet32x4": ("resnet32x4", {}, lambda: cifar_resnet_layout(32, (32, 64, 128, 256))),
    "ResNet18": ("resnet18", {}, lambda: resnetv2_layout((2, 2, 2, 2), bottleneck=False)),
    "ResNet50": ("resnet50", {}, lambda: resnetv2_layout((3, 4, 6, 3), bottleneck=True)),
    "wrn_40_2": ("wrn_40_2", {}, lambda: wrn_layout(40, 2)),
    "wrn_16_2": ("wrn_16_2", {}, lambda: wrn_layout(16, 2)),
    "vgg13_bn": ("vgg13", {}, lambda: vgg_layout(13)),
    "vgg8": ("vgg", {"depth": 8, "batch_norm": False}, lambda: vgg_layout(8, batch_norm=False)),
    "mobile_half": ("mobilenetv2", {}, mobile_half_layout),
    "ShuffleV1": ("shufflenetv1", {}, shufflev1_layout),
    "ShuffleV2": ("shufflenetv2", {}, shufflev2_layout),
}


# ---- helpers ----------------------------------------------------------------------------


def trained_like(name: str, options: dict | None = None, num_classes: int = NUM_CLASSES):
    """A zoo model with non-trivial weights and BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = create_model(name, IMAGE, num_classes, **(options or {}))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=gen) + 0.5)
            elif key.endswith("running_mean") or key.endswith("bias"):
                value.copy_(0.1 * torch.randn(value.shape, generator=gen))
            elif key.endswith("num_batches_tracked"):
                value.fill_(1234)
    return model.eval()


def their_file(model, layout: Layout) -> dict[str, Tensor]:
    """``model``'s tensors under ``layout``'s names (which must pair up one to one)."""
    ours = list(model.state_dict().values())
    assert len(layout) == len(ours)
    return {key: value.clone() for (key, _), value in zip(layout, ours, strict=True)}


def outputs(model, seed: int = 2) -> Tensor:
    x = torch.randn(2, *IMAGE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


# ---- the zoo layouts ----------------------------------------------------------------------


@pytest.mark.parametrize("theirs", sorted(ZOO_LAYOUTS))
def test_their_teacher_layout_loads_bit_identically(theirs, tmp_path, caplog):
    name, options, layout_fn = ZOO_LAYOUTS[theirs]
    source = trained_like(name, options)
    layout = layout_fn()
    ours = [(k, tuple(v.shape)) for k, v in source.state_dict().items()]
    # the evidence that the layouts map: the same shapes in the same order, other names
    assert [shape for _, shape in layout] == [shape for _, shape in ours]
    assert {k for k, _ in layout}.isdisjoint(k for k, _ in ours)
    path = tmp_path / "ckpt_epoch_240.pth"
    optimizer_state = {"state": {}, "param_groups": [{"lr": 0.05, "params": [0, 1]}]}
    payload = {"epoch": 240, "model": their_file(source, layout), "optimizer": optimizer_state}
    torch.save({**payload, "accuracy": torch.tensor(75.0)}, path)

    with caplog.at_level(logging.INFO, logger="bayesdistill"):
        loaded = load_teacher_checkpoint(path, name, IMAGE, NUM_CLASSES, options)
    assert not loaded.training and loaded.spec.name == name
    assert torch.equal(outputs(loaded), outputs(source))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert "by position" in caplog.text and "under 'model'" in caplog.text


def test_checkpoint_without_batchnorm_counters_loads(tmp_path):
    """Checkpoints written before PyTorch 0.4.1 have no num_batches_tracked."""
    source = trained_like("resnet8x4")
    old = {
        k: v
        for k, v in their_file(source, cifar_resnet_layout(8, (32, 64, 128, 256))).items()
        if not k.endswith("num_batches_tracked")
    }
    torch.save({"model": old}, tmp_path / "old.pth")
    target = create_model("resnet8x4", IMAGE, NUM_CLASSES)
    match = load_weights(target, tmp_path / "old.pth")
    batchnorms = sum(1 for k in source.state_dict() if k.endswith("num_batches_tracked"))
    assert match.mapping is KeyMapping.POSITIONAL and match.counters_kept == batchnorms
    assert torch.equal(outputs(target), outputs(source))


def test_counters_follow_their_layer(tmp_path):
    source = trained_like("wrn_16_2")
    torch.save(their_file(source, wrn_layout(16, 2)), tmp_path / "wrn.pth")
    target = create_model("wrn_16_2", IMAGE, NUM_CLASSES)
    assert load_weights(target, tmp_path / "wrn.pth").counters_kept == 0
    counters = [v for k, v in target.state_dict().items() if k.endswith("num_batches_tracked")]
    assert counters and all(int(c) == 1234 for c in counters)


def test_a_layout_in_another_order_is_refused(tmp_path):
    """Same tensors, but two layers of different shapes registered the other way round."""
    source = trained_like("resnet8")
    items = list(their_file(source, cifar_resnet_layout(8, (16, 16, 32, 64))).items())
    first_block = [i for i, (k, _) in enumerate(items) if k.startswith("layer2.0.")]
    conv1, shortcut = first_block[0], first_block[-6]  # layer2.0.conv1 and downsample.0
    items[conv1], items[shortcut] = items[shortcut], items[conv1]
    torch.save(dict(items), tmp_path / "swapped.pth")
    target = create_model("resnet8", IMAGE, NUM_CLASSES)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError, match="first mismatch by position"):
        load_weights(target, tmp_path / "swapped.pth")
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


# ---- containers and our own files -----------------------------------------------------------


@pytest.mark.parametrize("container", [None, "model", "state_dict", "model_state_dict", "net"])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_containers_and_wrapper_prefixes(container, prefix, tmp_path):
    source = trained_like("resnet8")
    state = {prefix + k: v for k, v in source.state_dict().items()}
    torch.save(state if container is None else {container: state, "epoch": 3}, tmp_path / "c.pt")
    target = create_model("resnet8", IMAGE, NUM_CLASSES)
    match = load_weights(target, tmp_path / "c.pt")
    assert match.mapping is KeyMapping.EXACT and match.container == container
    assert match.stripped_prefix == (prefix or None)
    assert torch.equal(outputs(target), outputs(source))


def test_nested_container_and_compiled_prefix():
    sd = {"_orig_mod.head.weight": torch.zeros(2, 3)}
    state, where = unwrap_state_dict({"model": {"state_dict": sd}})
    assert where == "model.state_dict" and state == sd


def test_our_saved_network_round_trips(tmp_path):
    source = trained_like("wrn_16_2")
    save_network(tmp_path / "network.pt", source)
    loaded = load_teacher_checkpoint(tmp_path / "network.pt", "wrn_16_2", IMAGE, NUM_CLASSES, {})
    assert torch.equal(outputs(loaded), outputs(source))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_plain_state_dict_round_trips(tmp_path):
    source = trained_like("resnet8", {"dropout": 0.2})
    torch.save(source.state_dict(), tmp_path / "sd.pt")
    target = create_model("resnet8", IMAGE, NUM_CLASSES, dropout=0.2)
    assert load_weights(target, tmp_path / "sd.pt").mapping is KeyMapping.EXACT
    assert torch.equal(outputs(target), outputs(source))


# ---- errors -----------------------------------------------------------------------------------


def _target():
    return create_model("resnet8", IMAGE, NUM_CLASSES)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_weights(_target(), tmp_path / "nope.pt")


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"not a torch file at all", "truncated, corrupt or not a PyTorch file")],
    ids=["empty", "corrupt"],
)
def test_unreadable_files_are_checkpoint_errors(content, message, tmp_path):
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_weights(_target(), tmp_path / "bad.pt")


def test_pickled_module_is_refused_with_the_fix(tmp_path):
    torch.save(_target(), tmp_path / "whole.pt")
    fix = r"GLOBAL bayesdistill\.models\.cifar\.resnet\.CifarResNet\), e\.g\. a whole model.*torch\.save\(model\.state_dict\(\), path\)"
    with pytest.raises(CheckpointError, match=fix):
        load_weights(_target(), tmp_path / "whole.pt")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (torch.zeros(3), "holds a Tensor, not a state dict"),
        ({"epoch": 3, "best_acc": 70.0}, "holds no state dict: a dict with 'epoch', 'best_acc'"),
        ({}, "holds no state dict"),
    ],
    ids=["tensor", "no-state-dict", "empty-dict"],
)
def test_files_without_a_state_dict(payload, message, tmp_path):
    torch.save(payload, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=message):
        load_weights(_target(), tmp_path / "x.pt")


def test_wrong_class_count_names_the_shape_and_the_architecture(tmp_path):
    save_network(tmp_path / "network.pt", trained_like("resnet8"))
    target = create_model("resnet8", IMAGE, 10)
    with pytest.raises(CheckpointError) as info:
        load_weights(target, tmp_path / "network.pt")
    text = str(info.value)
    assert "into 'resnet8' for 10 classes" in text
    assert (
        "first shape mismatch: 'head.weight' is (100, 64) in the file, (10, 64) in the model"
        in text
    )
    assert "seems to hold a 'resnet8' for 100 classes and 3 input channels" in text
    assert "bayesdistill network 'resnet8'" in text


def test_another_architecture_names_missing_and_unexpected_keys(tmp_path):
    source = trained_like("wrn_16_2")
    torch.save({"model": their_file(source, wrn_layout(16, 2))}, tmp_path / "wrn.pth")
    target = create_model("resnet8", IMAGE, NUM_CLASSES)
    with pytest.raises(CheckpointError) as info:
        load_weights(target, tmp_path / "wrn.pth")
    text = str(info.value)
    n_ours = len(target.state_dict())
    n_theirs = len(wrn_layout(16, 2))
    assert f"missing keys ({n_ours}): 'body.0.0.weight', " in text
    assert f"unexpected keys ({n_theirs}): 'conv1.weight', 'block1.layer.0.bn1.weight'" in text
    assert "first mismatch by position: tensor #5 is 'block1.layer.0.conv1.weight'" in text
    assert "seems to hold a 'wrn_16_2' for 100 classes" in text


def test_a_deeper_network_of_the_same_family_is_refused(tmp_path):
    source = trained_like("resnet8x4")
    torch.save(
        {"model": their_file(source, cifar_resnet_layout(8, (32, 64, 128, 256)))},
        tmp_path / "t.pth",
    )
    with pytest.raises(CheckpointError, match="seems to hold a 'resnet8x4'"):
        load_teacher_checkpoint(tmp_path / "t.pth", "resnet32x4", IMAGE, NUM_CLASSES)


def test_check_before_a_run_loads_nothing(tmp_path):
    source = trained_like("resnet8x4")
    layout = cifar_resnet_layout(8, (32, 64, 128, 256))
    torch.save({"model": their_file(source, layout)}, tmp_path / "t.pth")
    match = check_teacher_checkpoint(tmp_path / "t.pth", "resnet8x4", IMAGE, NUM_CLASSES)
    assert match.mapping is KeyMapping.POSITIONAL and match.container == "model"
    with pytest.raises(CheckpointError, match="into 'resnet8x4' for 10 classes"):
        check_teacher_checkpoint(tmp_path / "t.pth", "resnet8x4", IMAGE, 10)


def test_guess_covers_generic_variants():
    plain_vgg8 = trained_like("vgg", {"depth": 8, "batch_norm": False})
    guess = guess_architecture(their_file(plain_vgg8, vgg_layout(8, batch_norm=False)))
    assert guess is not None and "'vgg' {'depth': 8, 'batch_norm': False}" in guess
    assert guess_architecture({"w": torch.zeros(3)}) is None


def test_exported_from_the_models_package():
    import bayesdistill.models as models

    assert {"load_weights", "load_teacher_checkpoint", "KeyMapping"} <= set(models.__all__)


@pytest.fixture(autouse=True)
def _cpu_threads():
    """Two shared cores: keep each test's forward passes on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
