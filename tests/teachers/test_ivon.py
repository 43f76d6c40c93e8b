"""IVON teachers: the posterior read off the optimiser, the predictive, resume."""

from __future__ import annotations

import pytest
import torch
from ivon import IVON
from torch.func import functional_call

from bayesdistill.teachers import IVONTeacher, ivon_posterior_std, ivon_step, train_ivon
from bayesdistill.train import RunOptions, TrainSettings

from ..conftest import interrupt_after, make_mlp


def test_posterior_std_is_read_from_the_optimizer(tiny_splits):
    net = make_mlp(tiny_splits)
    opt = IVON(net.parameters(), lr=0.1, ess=200.0, hess_init=0.3, weight_decay=1e-3)
    x, y = tiny_splits.train.x[:32], tiny_splits.train.y[:32]
    for _ in range(3):
        ivon_step(net, opt, lambda: torch.nn.functional.cross_entropy(net(x), y))
    std = ivon_posterior_std(opt, net)
    hess = opt.param_groups[0]["hess"]
    flat = torch.cat([std[n].flatten() for n, _ in net.named_parameters()])
    assert torch.allclose(flat, 1.0 / (200.0 * (hess + 1e-3)).sqrt())
    assert not torch.allclose(hess, torch.full_like(hess, 0.3))  # the Hessian did move


def test_predictive_is_the_average_over_the_sampled_weights(tiny_splits):
    net = make_mlp(tiny_splits)
    std = {n: torch.full_like(p, 0.2) for n, p in net.named_parameters()}
    teacher = IVONTeacher(net, std, num_samples=4, seed=1)
    x = tiny_splits.test.x
    manual = torch.stack(
        [
            torch.softmax(functional_call(net, teacher.sample_parameters(s), (x,)), 1)
            for s in range(4)
        ]
    ).mean(0)
    assert torch.allclose(teacher.predict_proba(x), manual.detach(), atol=1e-6)
    # samples differ from each other and from the mean
    a, b = teacher.sample_parameters(0), teacher.sample_parameters(1)
    name = next(iter(a))
    assert not torch.allclose(a[name], b[name])
    assert (a[name] - dict(net.named_parameters())[name]).std().item() == pytest.approx(
        0.2, rel=0.3
    )


def test_ivon_training_resumes_to_the_same_weights(tiny_splits, tmp_path):
    settings = TrainSettings(epochs=4, batch_size=32, lr=0.2)

    def run(folder, resume=False, epochs=4):
        from dataclasses import replace

        return train_ivon(
            make_mlp(tiny_splits),
            tiny_splits.train,
            settings=replace(settings, epochs=epochs),
            seed=0,
            run=RunOptions(run_dir=folder, resume=resume, progress=False),
        )

    full, _ = run(tmp_path / "full")
    # an interrupted run: the checkpoint of epoch 2 of a 4-epoch run, then resume
    partial = tmp_path / "partial"
    interrupt_after(2, lambda: run(partial))
    resumed, result = run(partial, resume=True)
    assert result.resumed_from_epoch == 2
    for (name, p), (_, q) in zip(
        full.network.named_parameters(), resumed.network.named_parameters(), strict=True
    ):
        assert torch.equal(p, q), name
    for name in full.posterior_std:
        assert torch.equal(full.posterior_std[name], resumed.posterior_std[name])


def test_weight_sets_are_drawn_once_and_reused(tiny_splits):
    network = make_mlp(tiny_splits)
    std = {n: torch.full_like(p, 0.2) for n, p in network.named_parameters()}
    teacher = IVONTeacher(network, std, num_samples=3, seed=4)
    calls = []
    original = teacher.sample_parameters
    teacher.sample_parameters = lambda s: calls.append(s) or original(s)
    first = teacher.predict_proba(tiny_splits.test.x)
    second = teacher.predict_proba(tiny_splits.test.x)
    assert calls == [0, 1, 2]  # drawn on the first call only
    assert torch.equal(first, second)
    expected = sum(
        torch.softmax(torch.func.functional_call(network, original(s), (tiny_splits.test.x,)), 1)
        for s in range(3)
    )
    torch.testing.assert_close(first, expected / 3, rtol=0, atol=1e-6)
