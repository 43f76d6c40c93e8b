"""Saved teacher files: wrappers register themselves by kind, so `files` imports no teacher."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from bayesdistill.teachers import SavableTeacher, base, files, load_teacher, saved_kinds
from bayesdistill.teachers.cross_fit import CrossFittedTeacher
from bayesdistill.teachers.tempered import TemperedTeacher


@pytest.fixture
def own_wrappers(monkeypatch):
    """The wrapper registry as it is, restored after the test (which may add to it)."""
    monkeypatch.setattr(base, "_WRAPPERS", dict(base._WRAPPERS))


def test_the_wrappers_are_registered_by_kind():
    assert set(base.wrapper_classes()) == {CrossFittedTeacher, TemperedTeacher}
    assert saved_kinds()["tempered"] is TemperedTeacher
    assert saved_kinds()["cross_fitted"] is CrossFittedTeacher


def test_a_declared_wrapper_is_read_back_from_its_file(own_wrappers, tmp_path):
    class Halves(SavableTeacher, wrapper=True):
        kind = "halves_for_a_test"
        num_classes = 2

        def _predict(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((len(x), 2), 0.5)

        def payload(self):
            return {}

        @classmethod
        def from_payload(cls, payload):
            return cls()

    Halves().save(tmp_path / "t.pt")
    assert saved_kinds()["halves_for_a_test"] is Halves
    assert isinstance(load_teacher(tmp_path / "t.pt"), Halves)


def test_a_wrapper_kind_that_is_taken_is_refused(own_wrappers):
    with pytest.raises(TypeError, match="kind 'tempered' is taken by .*TemperedTeacher"):

        class Impostor(SavableTeacher, wrapper=True):
            kind = "tempered"


def test_a_wrapper_without_a_kind_of_its_own_is_refused(own_wrappers):
    with pytest.raises(TypeError, match="must set its own `kind`"):

        class Nameless(TemperedTeacher, wrapper=True):
            pass


def test_a_subclass_that_is_not_declared_a_wrapper_is_not_registered(own_wrappers):
    class Plain(SavableTeacher):
        kind = "plain_for_a_test"

    assert "plain_for_a_test" not in saved_kinds()


def test_files_imports_no_concrete_teacher():
    """`files` reads every kind through the registries, so no teacher module imports it back
    in a cycle: it takes only the base class and the registry."""
    tree = ast.parse(Path(files.__file__).read_text())
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    teachers = {m for m in imported if m.startswith("bayesdistill.teachers")}
    assert teachers == {"bayesdistill.teachers.base", "bayesdistill.teachers.context"}
