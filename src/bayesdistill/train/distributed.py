"""One network trained by several processes: DistributedDataParallel (DDP).

Launch any bayesdistill command under ``torchrun`` (``torchrun --nproc_per_node N -m
bayesdistill study ...``), or call `init_from_env` in your own script started by torchrun,
and every `bayesdistill.train.fit` call trains its network with DDP:

- each process (rank) takes its part of every global batch (`Shard`): the config's
  ``batch_size`` is the global batch, so a run on N processes follows the same
  trajectory as a run on one process, up to floating-point summation order (and
  BatchNorm, whose statistics are per rank unless ``sync_batchnorm``);
- gradients are averaged across ranks by DDP; every loss term, feature losses included,
  goes through the wrapped module's forward, so all of them synchronise;
- only rank 0 writes files (`is_writer`); each rank's random state is saved in the
  checkpoint, and ``--resume`` restores every rank's own.

The backend is NCCL on CUDA and gloo on the CPU (the tests run 2 gloo processes).
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from bayesdistill import io
from bayesdistill.errors import ConfigError
from bayesdistill.train.batches import Shard

log = logging.getLogger("bayesdistill")

INIT_TIMEOUT = datetime.timedelta(minutes=30)


def current_shard() -> Shard | None:
    """This process's `Shard` in an initialised process group of 2 or more, else None."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    world = dist.get_world_size()
    return Shard(dist.get_rank(), world) if world > 1 else None


def rank() -> int:
    shard = current_shard()
    return 0 if shard is None else shard.rank


def is_writer() -> bool:
    """Whether this process writes files: always, except on ranks ≠ 0 of a distributed run."""
    return io.is_writer()


def barrier() -> None:
    """Wait for every rank (nothing outside a distributed run)."""
    if current_shard() is not None:
        dist.barrier()


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ and "LOCAL_RANK" in os.environ


def init_from_env(device: str = "auto") -> torch.device:
    """Join the process group torchrun describes in the environment; return this rank's
    device (``cuda:<LOCAL_RANK>`` on a GPU machine, else the CPU).

    Does nothing but pick the device when not launched by torchrun (or with one process).
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) < 2:
        return _device(device, 0)
    local_rank = int(os.environ["LOCAL_RANK"])
    chosen = _device(device, local_rank)
    if not dist.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group(backend=backend, timeout=INIT_TIMEOUT)
        log.info(
            "distributed: rank %d of %d on %s (%s)",
            dist.get_rank(),
            dist.get_world_size(),
            chosen,
            backend,
        )
    return chosen


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        return torch.device(f"cuda:{local_rank}")
    return device


def wrap(model: nn.Module, device: torch.device, *, sync_batchnorm: bool) -> nn.Module:
    """``model`` as a DDP module (its BatchNorm layers made synchronous when asked)."""
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn and sync_batchnorm:
        _convert_sync_batchnorm(model)
    elif has_bn:
        log.warning(
            "distributed training of a network with BatchNorm: each rank normalises with its "
            "own part of the batch; set sync_batchnorm: true to match a single-process run"
        )
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def _convert_sync_batchnorm(model: nn.Module) -> None:
    """Replace every BatchNorm layer below ``model`` by a SyncBatchNorm, in place."""
    for name, child in list(model.named_children()):
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(child)
        if converted is not child:
            setattr(model, name, converted)
    if isinstance(model, nn.modules.batchnorm._BatchNorm):
        raise ConfigError("sync_batchnorm cannot convert a network that is a single BatchNorm")


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` outside a distributed run)."""
    shard = current_shard()
    if shard is None:
        return [obj]
    out: list[Any] = [None] * shard.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself outside a distributed run)."""
    if current_shard() is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums over ranks of ``values`` (the values themselves outside a run)."""
    if current_shard() is None:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()
