"""The package's layers import downwards only, and import in any order.

Layers, lowest first: the foundations (errors, registry, seeding, io); data, models,
losses and metrics; train; teachers (built on train: they train networks with it, and
implement the `Teacher` protocol that `bayesdistill.train.protocol` defines); and the
layers that assemble them (config, runner, reports, theory, cli). Each check runs in a
fresh interpreter, so no module a test imported earlier hides a cycle.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

RANKS = {
    "errors": 0,
    "registry": 0,
    "seeding": 0,
    "io": 0,
    "data": 1,
    "models": 1,
    "losses": 1,
    "metrics": 1,
    "train": 2,
    "teachers": 3,
    "config": 4,
    "runner": 4,
    "reports": 4,
    "theory": 4,
    "cli": 4,
}
"""Each subpackage's layer; a subpackage may load lower layers and its peers, never a higher
layer (the assembling layers, rank 4, are not checked against each other)."""

LOADED_ALONE = """
import importlib, json, sys
import torch  # kept loaded: only bayesdistill's own modules are imported afresh

def fresh(name):
    for module in [m for m in sys.modules if m == "bayesdistill" or m.startswith("bayesdistill.")]:
        del sys.modules[module]
    importlib.import_module("bayesdistill." + name)
    return sorted({m.split(".")[1] for m in sys.modules if m.startswith("bayesdistill.")})

print(json.dumps({name: fresh(name) for name in sys.argv[1:]}))
"""


def _python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def loaded_alone() -> dict[str, list[str]]:
    """Subpackage → the bayesdistill subpackages that importing it alone loads."""
    return json.loads(_python(LOADED_ALONE, *RANKS))


@pytest.mark.parametrize("name", [n for n, rank in RANKS.items() if rank < 4])
def test_a_layer_loads_no_higher_layer(name, loaded_alone):
    higher = [p for p in loaded_alone[name] if RANKS.get(p, 4) > RANKS[name]]
    assert not higher, f"importing bayesdistill.{name} loads higher layers {higher}"


def test_train_does_not_import_teachers(loaded_alone):
    assert "teachers" not in loaded_alone["train"]
    assert "train" in loaded_alone["teachers"]


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_every_subpackage_imports_in_either_order(order):
    """Importing train before teachers, and teachers before train (and so for every pair
    of subpackages), in one fresh interpreter each."""
    names = list(RANKS) if order == "forward" else list(reversed(RANKS))
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module('bayesdistill.' + name)\n"
    _python(code, *names)
