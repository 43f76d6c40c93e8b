"""Metrics compute on the probabilities' device: the reliability bins of a batch held on an
accelerator are made there (the "meta" device stands in for CUDA)."""

from __future__ import annotations

import torch

from bayesdistill.metrics import accuracy, calibration_bins

META = torch.device("meta")


def test_calibration_bins_are_made_on_the_probabilities_device() -> None:
    probs = torch.softmax(torch.linspace(-3.0, 3.0, 40).view(10, 4), 1)
    labels = torch.arange(10) % 4
    count, conf, acc = calibration_bins(probs.to(META), labels.to(META), num_bins=5)
    assert count.device == conf.device == acc.device == META
    assert count.shape == conf.shape == acc.shape == (5,)
    cpu_count, _, cpu_acc = calibration_bins(probs, labels, num_bins=5)
    assert float(cpu_count.sum()) == 10.0
    assert float((cpu_count * cpu_acc).sum()) == 10.0 * accuracy(probs, labels)
