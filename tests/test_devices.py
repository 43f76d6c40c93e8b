"""Device names: one check (`bayesdistill.devices.check_device`) wherever a device is named."""

from __future__ import annotations

import re

import pytest

from bayesdistill.cli.options import executor_overrides
from bayesdistill.config import load_config
from bayesdistill.devices import ALLOWED, check_device, parse_devices
from bayesdistill.errors import ConfigError
from bayesdistill.runner.common import resolve_device

BAD = ["tpu", "gpu0", "cuda:x", "cuda:-1", "cuda:0:1", "auto:1", "CUDA", ""]


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:7", "mps"])
def test_allowed_names_pass_unchanged(name):
    """Whether the machine has the device is not asked here (cuda:7 passes on any machine)."""
    assert check_device(name) == name


def _refused(name: str) -> str:
    return re.escape(f"device must be {ALLOWED}, got '{name}'")


@pytest.mark.parametrize("name", BAD)
def test_other_names_are_refused_naming_what_was_given_and_allowed(name):
    with pytest.raises(ConfigError, match=f"^{_refused(name)}$"):
        check_device(name)


def test_a_device_list():
    assert parse_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    assert parse_devices(None) == parse_devices("") == ["auto"]
    with pytest.raises(ConfigError, match=_refused("gpu0")):
        parse_devices("cpu,gpu0")


@pytest.mark.parametrize("name", ["tpu", "cuda:x"])
def test_every_place_that_takes_a_device_gives_the_same_message(name):
    """The config's device, the executor's devices, the command line's --devices and the
    runner's resolve_device."""
    places = [
        lambda: load_config(None, [f"device={name}"]),
        lambda: load_config(None, [f"runtime.executor.devices=[{name}]"]),
        lambda: executor_overrides(None, None, name, None),
        lambda: resolve_device(name),
    ]
    for place in places:
        with pytest.raises(ConfigError, match=_refused(name)):
            place()
