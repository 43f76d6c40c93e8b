"""`feature_network`: the network whose features stand for a teacher's, found through
``unwrap()``; every composite kind without a single network is refused."""

from __future__ import annotations

import pytest

from bayesdistill.errors import ConfigError
from bayesdistill.teachers import EnsembleTeacher, TemperedTeacher
from bayesdistill.train.features import feature_network

from ..teachers.test_composite import ProtocolOnly, cross_fitted, plain


def test_a_network_teacher_gives_its_network():
    teacher = plain()
    assert feature_network(teacher) is teacher.network


def test_a_tempered_teacher_gives_its_base_network_through_every_tempering():
    base = plain()
    assert feature_network(TemperedTeacher(base, 2.0)) is base.network
    assert feature_network(TemperedTeacher(TemperedTeacher(base, 2.0), 0.5)) is base.network


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (lambda: EnsembleTeacher([plain(1), plain(2)]), "ensemble"),
        (lambda: cross_fitted([plain(1), plain(2)]), "cross_fitted"),
        (lambda: cross_fitted([plain(1), plain(2)], full=plain(3)), "cross_fitted"),
        (lambda: TemperedTeacher(EnsembleTeacher([plain(1)]), 2.0), "tempered"),
        (lambda: TemperedTeacher(cross_fitted([plain(1), plain(2)]), 2.0), "tempered"),
    ],
)
def test_a_teacher_of_several_networks_is_refused(build, kind):
    with pytest.raises(ConfigError, match=f"a teacher of kind '{kind}' has no single network"):
        feature_network(build())


def test_a_protocol_teacher_without_unwrap_is_asked_for_its_own_network():
    teacher = ProtocolOnly()
    with pytest.raises(ConfigError, match="kind 'ProtocolOnly' has no single network"):
        feature_network(teacher)
    teacher.network = plain().network
    assert feature_network(teacher) is teacher.network
