"""Deterministic and temperature-scaled teachers."""

from __future__ import annotations

import pytest
import torch

from bayesdistill.teachers import DeterministicTeacher, TemperatureTeacher, fit_temperature


def test_fit_temperature_recovers_a_known_temperature():
    gen = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(20_000, 5, generator=gen)
    true_t = 2.5
    labels = torch.multinomial(torch.softmax(logits / true_t, 1), 1, generator=gen).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)


def test_temperature_teacher_is_softmax_of_scaled_logits(trained_mlp, tiny_splits):
    x = tiny_splits.test.x
    logits = trained_mlp(x).detach()
    assert torch.allclose(
        DeterministicTeacher(trained_mlp).predict_proba(x), torch.softmax(logits, 1)
    )
    assert torch.allclose(
        TemperatureTeacher(trained_mlp, 2.0).predict_proba(x), torch.softmax(logits / 2.0, 1)
    )


def test_teacher_keeps_network_in_eval_mode(trained_mlp, tiny_splits):
    trained_mlp.train()
    DeterministicTeacher(trained_mlp).predict_proba(tiny_splits.test.x)
    assert not trained_mlp.training


def test_calibrating_a_deterministic_teacher_is_temperature_scaling(
    trained_mlp, tiny_splits, tmp_path
):
    from bayesdistill.teachers import TEACHERS, TeacherContext, calibrate, load_teacher

    context = TeacherContext(splits=tiny_splits, network=trained_mlp)
    scaled = TEACHERS.build("temperature", context)
    tempered = calibrate(DeterministicTeacher(trained_mlp), tiny_splits.val)
    assert tempered.temperature == pytest.approx(scaled.temperature, rel=1e-3)
    x = tiny_splits.test.x
    assert torch.allclose(tempered.predict_proba(x), scaled.predict_proba(x), atol=1e-4)
    tempered.save(tmp_path / "t.pt")
    reloaded = load_teacher(tmp_path / "t.pt")
    assert torch.allclose(reloaded.predict_proba(x), tempered.predict_proba(x), atol=1e-6)
    assert reloaded.describe()["base"]["kind"] == "deterministic"
