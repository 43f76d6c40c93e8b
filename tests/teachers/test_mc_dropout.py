"""MC dropout: p = 0 is the deterministic teacher, masks are unbiased, BatchNorm stays in eval."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from bayesdistill.errors import ConfigError
from bayesdistill.models import create_model
from bayesdistill.seeding import generator, seeded
from bayesdistill.teachers import DeterministicTeacher, MCDropoutTeacher


def dropout_mlp(splits, p: float = 0.3):
    with seeded(0):
        return create_model("mlp", splits.input_shape, splits.num_classes, hidden=(16,), dropout=p)


class BatchNormDropoutNet(nn.Module):
    """Conv1d → BatchNorm → ReLU → channel dropout (Dropout1d) → linear head, on 1-D signals."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm1d(4)
        self.drop = nn.Dropout1d(0.5)
        self.head = nn.Linear(4 * 4, num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.relu(self.norm(self.conv(x.unsqueeze(1)))))
        return self.head(h.flatten(1))


def test_zero_rate_is_the_deterministic_teacher(tiny_splits):
    network = dropout_mlp(tiny_splits)
    x = tiny_splits.test.x
    mc = MCDropoutTeacher(network, num_samples=5, p=0.0)
    expected = DeterministicTeacher(network).predict_proba(x)
    assert torch.allclose(mc.predict_proba(x), expected, atol=1e-7)


def test_inverted_dropout_keeps_the_logits_unbiased(tiny_splits):
    # logits are linear in the dropout output, so their mean over masks is the mean logit
    network = dropout_mlp(tiny_splits, p=0.5)
    teacher = MCDropoutTeacher(network, num_samples=1)
    x = tiny_splits.test.x[:8]
    draws = []
    with torch.no_grad():
        for s in range(4000):
            with teacher._masks(generator(0, s)):
                draws.append(network(x))
    draws = torch.stack(draws)
    standard_error = draws.std(0) / len(draws) ** 0.5
    deterministic = network.eval()(x).detach()
    assert ((draws.mean(0) - deterministic).abs() <= 5 * standard_error + 1e-6).all()
    assert (draws.std(0) > 0).all()  # the masks did vary


def test_masks_are_shared_by_the_batch_and_change_with_the_sample(tiny_splits):
    teacher = MCDropoutTeacher(dropout_mlp(tiny_splits), num_samples=1)
    x = tiny_splits.test.x[:1].repeat(4, 1)
    with torch.no_grad(), teacher._masks(generator(0, 0)):
        first = teacher.network(x)
    with torch.no_grad(), teacher._masks(generator(0, 1)):
        second = teacher.network(x)
    assert torch.equal(first, first[:1].expand_as(first))  # one thinned network per sample
    assert not torch.equal(first, second)


def test_only_dropout_is_active_and_batchnorm_statistics_are_untouched():
    network = BatchNormDropoutNet()
    with torch.no_grad():
        network.norm.running_mean.fill_(0.5)
        network.norm.running_var.fill_(2.0)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    teacher = MCDropoutTeacher(network, num_samples=6, seed=3)
    x = torch.randn(10, 4)
    probs = teacher.predict_proba(x)
    assert not network.training and not network.norm.training
    for key, value in network.state_dict().items():
        assert torch.equal(value, before[key]), key
    # batch statistics would make an example's prediction depend on its batch
    assert torch.allclose(teacher.predict_proba(x[:3]), probs[:3], atol=1e-6)
    # with p = 0 the channel dropout is off and BatchNorm uses its running statistics
    eval_probs = torch.softmax(network.eval()(x), 1).detach()
    assert torch.allclose(MCDropoutTeacher(network, p=0.0).predict_proba(x), eval_probs)


def test_a_network_without_dropout_is_a_clear_error(trained_mlp):
    with pytest.raises(
        ConfigError, match="needs a network trained with dropout.*dropout=0.1"
    ) as info:
        MCDropoutTeacher(trained_mlp)
    # the override it suggests is a key the config accepts, and sets the dropout rate
    from bayesdistill.config import load_config
    from tests.runner.test_study import TINY

    override = re.search(r"(teacher\.model\.\S+=0\.1)", str(info.value)).group(1)
    assert override == "teacher.model.dropout=0.1"
    assert load_config(TINY, [override]).teacher.model.options["dropout"] == 0.1


def test_bad_options_are_reported(tiny_splits):
    network = dropout_mlp(tiny_splits)
    with pytest.raises(ConfigError, match="num_samples must be >= 1"):
        MCDropoutTeacher(network, num_samples=0)
    with pytest.raises(ConfigError, match=r"p must lie in \[0, 1\)"):
        MCDropoutTeacher(network, p=1.0)
    alpha = BatchNormDropoutNet()
    alpha.drop = nn.AlphaDropout(0.1)
    with pytest.raises(ConfigError, match="does not support AlphaDropout .layer 'drop'"):
        MCDropoutTeacher(alpha)  # type: ignore[arg-type]
