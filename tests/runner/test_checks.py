"""`teacher_input_shapes`: the input shapes of every network inside a teacher, found by
walking its children, for every composite kind."""

from __future__ import annotations

from bayesdistill.runner.checks import teacher_input_shapes
from bayesdistill.teachers import EnsembleTeacher, TemperedTeacher

from ..teachers.test_composite import ProtocolOnly, cross_fitted, plain


def test_a_network_teacher_has_its_networks_input_shape():
    assert teacher_input_shapes(plain(input_shape=(4,))) == {(4,)}


def test_a_teacher_without_a_network_has_no_shape():
    assert teacher_input_shapes(ProtocolOnly()) == set()


def test_a_tempered_teacher_has_its_bases_shape():
    assert teacher_input_shapes(TemperedTeacher(plain(input_shape=(5,)), 2.0)) == {(5,)}


def test_a_cross_fitted_teacher_has_every_fold_teachers_shape():
    teacher = cross_fitted(
        [plain(1, (4,)), TemperedTeacher(plain(2, (5,)), 2.0)], full=plain(3, (6,))
    )
    assert teacher_input_shapes(teacher) == {(4,), (5,), (6,)}


def test_an_ensemble_has_every_members_shape():
    ensemble = EnsembleTeacher([plain(1, (4,)), TemperedTeacher(plain(2, (7,)), 2.0)])
    assert teacher_input_shapes(TemperedTeacher(ensemble, 1.5)) == {(4,), (7,)}
