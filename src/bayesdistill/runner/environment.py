"""environment.json: what a run's numbers depend on besides its config and seeds.

Package versions, torch's determinism settings, the device with the CPU and GPU model,
Python and the OS. The same config and seeds give the same numbers only in the same
environment: another torch, another BLAS or another CPU family can change the last bits
of a sum, and training amplifies them. Pin the versions with the repository's
``constraints.txt`` (``pip install -e ".[dev]" -c constraints.txt``).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

import torch

PACKAGES = (
    "bayesdistill",
    "torch",
    "torchvision",
    "laplace-torch",
    "backpack-for-pytorch",
    "curvlinops-for-pytorch",
    "asdfghjkl",
    "ivon-opt",
    "mnist1d",
    "numpy",
    "scipy",
    "POT",
    "matplotlib",
    "pydantic",
    "PyYAML",
    "typer",
    "tqdm",
)
"""Distributions whose versions are recorded (the package, its dependencies and the
libraries under the teachers: laplace-torch's curvature backends)."""
COMPARED = ("packages", "python", "cpu", "gpu", "torch_determinism")
"""Fields whose change between the start of a run and its resumption is worth a warning."""


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """``name → installed version`` (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def determinism_settings() -> dict[str, Any]:
    """Torch's settings that decide whether reruns give bit-identical numbers."""
    cudnn = torch.backends.cudnn
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_algorithms_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_enabled": bool(cudnn.enabled),
        "cudnn_deterministic": bool(cudnn.deterministic),
        "cudnn_benchmark": bool(cudnn.benchmark),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(cudnn.allow_tf32),
        "num_threads": torch.get_num_threads(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what `platform` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_record(device: torch.device | None) -> dict[str, Any] | None:
    """The GPU a CUDA ``device`` is: its name, memory and compute capability (else None)."""
    if device is None or device.type != "cuda" or not torch.cuda.is_available():
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {
        "name": torch.cuda.get_device_name(index),
        "memory_gib": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "count": torch.cuda.device_count(),
    }


def environment_record(device: torch.device | None = None) -> dict[str, Any]:
    """Everything environment.json holds (see the module docstring)."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return {
        "packages": package_versions(),
        "torch_determinism": determinism_settings(),
        "device": None if device is None else str(device),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_record(device),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "world_size": torch.distributed.get_world_size() if distributed else 1,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "argv": list(sys.argv),
    }


def environment_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs in the fields of `COMPARED`, one short line each."""
    out: list[str] = []
    for key in COMPARED:
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [
                f"{key}.{k}: {a.get(k)!r} -> {b.get(k)!r}"
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)
            ]
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out
