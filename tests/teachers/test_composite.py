"""Composite teachers name the teachers they are made of: ``children()``, ``unwrap()`` and
`walk`, for every composite kind (tempered, cross-fitted, ensemble) and a plain teacher."""

from __future__ import annotations

import pytest
import torch

from bayesdistill.models import create_model
from bayesdistill.seeding import seeded
from bayesdistill.teachers import (
    CrossFittedTeacher,
    DeterministicTeacher,
    EnsembleTeacher,
    TemperedTeacher,
    walk,
)

NUM_CLASSES = 3


def plain(seed: int = 0, input_shape: tuple[int, ...] = (4,)) -> DeterministicTeacher:
    """A deterministic teacher of a small untrained MLP."""
    with seeded(seed):
        return DeterministicTeacher(create_model("mlp", input_shape, NUM_CLASSES, hidden=(8,)))


def cross_fitted(members, full=None) -> CrossFittedTeacher:
    """K = len(members) fold teachers over 2K training examples, uniform out-of-fold rows."""
    k = len(members)
    fold_of = torch.arange(2 * k) % k
    oof = torch.full((2 * k, NUM_CLASSES), 1 / NUM_CLASSES)
    return CrossFittedTeacher(members, fold_of, oof, torch.arange(2 * k) % NUM_CLASSES, full=full)


class ProtocolOnly:
    """A teacher that only implements the `Teacher` protocol (no children, no unwrap)."""

    num_classes = NUM_CLASSES

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((len(x), NUM_CLASSES), 1 / NUM_CLASSES)


def test_a_plain_teacher_has_no_children_and_answers_for_itself():
    teacher = plain()
    assert teacher.children() == ()
    assert teacher.unwrap() is teacher
    assert list(walk(teacher)) == [teacher]


def test_a_tempered_teacher_is_made_of_its_base_and_answers_for_it():
    base = plain()
    tempered = TemperedTeacher(base, 2.0)
    twice = TemperedTeacher(tempered, 3.0)
    assert tempered.children() == (base,)
    assert tempered.unwrap() is base
    assert twice.unwrap() is base  # through every tempering
    assert list(walk(twice)) == [twice, tempered, base]


@pytest.mark.parametrize("with_full", [False, True])
def test_a_cross_fitted_teacher_is_made_of_its_fold_teachers(with_full):
    members = [plain(1), plain(2), plain(3)]
    full = plain(4) if with_full else None
    teacher = cross_fitted(members, full)
    assert teacher.children() == (*members, *([full] if with_full else []))
    assert teacher.unwrap() is teacher  # the mean of K teachers is no single one of them
    assert list(walk(teacher)) == [teacher, *teacher.children()]


def test_an_ensemble_is_made_of_its_members():
    members = [plain(1), TemperedTeacher(plain(2), 2.0)]
    ensemble = EnsembleTeacher(members)
    assert ensemble.children() == tuple(members)
    assert ensemble.unwrap() is ensemble
    assert list(walk(ensemble)) == [ensemble, members[0], members[1], members[1].base]


def test_walk_goes_through_every_level_depth_first():
    inner = TemperedTeacher(plain(1), 2.0)
    other = plain(2)
    fold_teachers = cross_fitted([inner, other])
    outer = TemperedTeacher(fold_teachers, 1.5)
    assert list(walk(outer)) == [outer, fold_teachers, inner, inner.base, other]
    assert outer.unwrap() is fold_teachers


def test_a_teacher_with_only_the_protocol_is_a_leaf():
    leaf = ProtocolOnly()
    assert list(walk(leaf)) == [leaf]
    teacher = cross_fitted([leaf, plain(1)])
    assert list(walk(teacher)) == [teacher, leaf, teacher.members[1]]
