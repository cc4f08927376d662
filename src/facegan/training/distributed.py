"""Training on several processes with PyTorch's own engine: torch.distributed + DistributedDataParallel.

Processes ("ranks") are started by `torchrun` (or `facegan train --nproc N`, which calls torchrun's
launcher), which sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT. Each rank runs the
ordinary training loop; this module holds everything that differs when there is more than one.

How the pieces stay correct:

* Data. Every rank keeps the same global `BatchOrder` (same seed, same state) and takes the
  strided part `global_batch[rank::world]` of each global batch, which is what
  `torch.utils.data.DistributedSampler` does to its index list. Because the order is defined over
  global batches, a checkpoint holds one data position whatever the number of ranks, and a run
  written by N ranks resumes on M ranks drawing exactly the batches it would have drawn. Strided
  rather than contiguous parts keep the resnet discriminator's minibatch-stddev groups (images
  i, i+B/4, i+2B/4, i+3B/4 of a batch of B) whole on one rank: when the global batch is a multiple
  of 4 x ranks, every rank sees exactly the groups a 1-process run sees.
* Noise. Every rank draws the global batch of latents (and mirror flips) from the same random
  stream and keeps its strided part, so ranks consume the stream identically and a 2-process run
  computes what a 1-process run computes, up to the order of floating-point sums. DiffAugment
  draws inside `rank_random_stream`, a per-rank stream, so ranks augment independently.
* Gradients. G and the discriminator phase's D are wrapped in DistributedDataParallel, which
  averages gradients over ranks; each rank's losses are means over its part, so the average is
  the global mean and nothing is counted twice. The generator phase calls the unwrapped D, whose
  parameters are frozen: its backward only carries gradients to G, so DDP never waits for D
  gradients that do not come. Lazy R1 differentiates D's output with respect to its input with
  `torch.autograd.grad`, which does not touch the parameters' gradient hooks; the penalty then
  joins the discriminator loss and its parameter gradients are averaged in the same backward.
  No `find_unused_parameters` is needed.
* EMA. After each step the parameters are identical on every rank (same start, same averaged
  gradients, same Adam), so every rank updates its moving-average generator the same way; no
  communication is needed, and rank 0's copy is the one saved.
* BatchNorm (dcgan, mlp) becomes SyncBatchNorm on GPUs, so statistics span the global batch.
  PyTorch's SyncBatchNorm only runs on accelerators (on CPU it raises "SyncBatchNorm expected
  input tensor to be on GPU"), so on CPU each rank normalises its own part and a warning says so.
* Files. Only rank 0 writes (logs, samples, TensorBoard, checkpoints, GIF, plot); the checkpoint
  holds the unwrapped networks, so it loads on any number of ranks. On resume rank 0 reads the
  checkpoint and sends it to the others, so only the data must be present on every machine.
* Stopping. Budgets and signals are combined with an all-reduce (MAX) every step: when one rank
  hits its minute budget or receives SIGTERM, every rank stops after the same step and rank 0
  writes one checkpoint.
"""
from __future__ import annotations

import contextlib
import functools
import os
import uuid
import warnings
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

# Why a run stops, in rising priority: the all-reduce keeps the highest code any rank reports.
STOP_REASONS = (None, "steps", "kimg", "minutes", "SIGINT", "SIGTERM")


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's index on its machine, as torchrun numbers them (0 when not under torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def rank_device(device: torch.device) -> torch.device:
    """Under torchrun every rank uses the GPU of its local rank; CPU stays CPU."""
    if device.type == "cuda" and launched_by_torchrun():
        return torch.device("cuda", local_rank())
    return device


def init() -> bool:
    """Join the process group described by torchrun's environment: NCCL for GPU tensors, gloo for CPU ones.

    Returns True when this call created the group (and so `cleanup` should end it); False when
    there is nothing to join or the caller already initialised torch.distributed.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        dist.init_process_group(backend="cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group(backend="gloo")
    return True


def cleanup(created: bool) -> None:
    if created and dist.is_initialized():
        dist.destroy_process_group()


def in_process_group(function):
    """Run `function` inside torchrun's process group when launched by torchrun (joined and left around it)."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        created = init()
        try:
            return function(*args, **kwargs)
        finally:
            cleanup(created)

    return run


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (say, preparing a cache), then the other ranks."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def check_batch(batch: int) -> int:
    """The per-rank part of a global batch; ValueError when the ranks cannot share it equally."""
    ranks = world_size()
    if batch % ranks:
        raise ValueError(f"--batch {batch} is the global batch and must divide among {ranks} processes")
    return batch // ranks


def local_part(batch):
    """This rank's strided part of a global batch (tensor or index array): items rank, rank+W, ..."""
    return batch[rank()::world_size()] if is_distributed() else batch


def agree_on_stop(reason: str | None, device: torch.device) -> str | None:
    """The stop decision of the rank most eager to stop, on every rank (an all-reduce MAX)."""
    if not is_distributed():
        return reason
    code = torch.tensor([STOP_REASONS.index(reason)], device=device)
    dist.all_reduce(code, op=dist.ReduceOp.MAX)
    return STOP_REASONS[int(code.item())]


def mean_over_ranks(stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-rank scalar statistics averaged over ranks (every rank must call it at the same step)."""
    if not is_distributed() or not stats:
        return stats
    values = torch.stack([v.detach().float().reshape(()) for v in stats.values()])
    dist.all_reduce(values)
    return dict(zip(stats, values / world_size()))


def share_from_main(obj):
    """Rank 0's `obj` on every rank (pickled; for configurations and loaded checkpoints)."""
    if not is_distributed():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def from_main(function, *args):
    """`function(*args)` computed on rank 0 alone (say, reading a checkpoint) and sent to every rank."""
    return share_from_main(function(*args) if is_main() else None)


def share_random_state(device: torch.device) -> None:
    """Give every rank rank 0's random state, so all draw the same global noise.

    A resumed checkpoint stores rank 0's CUDA state as device 0's; this puts it on each rank's own GPU.
    """
    if not is_distributed():
        return
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    state = share_from_main(state)
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def rank_random_stream(seed: int, step: int, device: torch.device):
    """Inside: a random stream of this rank and step (for augmentation); outside: the shared one, untouched."""
    if not is_distributed():
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(((seed * 1_000_003 + step) * 65_537 + rank()) % 2**63)
        yield


def synchronise_batchnorm(module: nn.Module, device: torch.device, name: str) -> nn.Module:
    """BatchNorm layers as SyncBatchNorm where PyTorch supports it (GPUs); on CPU a warning, and per-rank BN."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        return module
    if device.type == "cpu":
        warnings.warn(f"{name}: SyncBatchNorm needs GPUs; on CPU each of the {world_size()} processes "
                      "normalises its own part of the batch", stacklevel=2)
        return module
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` in DistributedDataParallel (gradients averaged over ranks in backward)."""
    ids = [device.index] if device.type == "cuda" else None
    # Buffers (BatchNorm running statistics) are not re-broadcast at every forward: with SyncBatchNorm they agree
    # anyway, and only rank 0's are ever saved or sampled with.
    return DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)


def launch(nproc: int, function: Callable, *args):
    """`function(*args)` in `nproc` processes on this machine, started by torchrun's launcher; rank 0's result.

    This is what `torchrun --standalone --nproc-per-node N` does, called from Python: `function` and `args`
    go to each process pickled, so nothing passes through a command line.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # as torchrun does: N processes share the cores
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0)
    try:
        return elastic_launch(config, function)(*args)[0]
    except ChildFailedError as error:
        raise RuntimeError(f"{len(error.failures)} of {nproc} training processes failed (their messages are above)") from None
    except SignalException:
        # The launcher has passed the signal on and waited for the ranks, which stop after one checkpoint.
        return None


class RankAugmentedLoss:
    """A loss whose own random draws (DiffAugment) come from a stream of this rank, phase and step."""

    def __init__(self, loss, seed: int, device: torch.device):
        self.loss, self.seed, self.device = loss, seed, device

    def discriminator_loss(self, D, real, fake, step: int):
        with rank_random_stream(self.seed, 2 * step, self.device):
            return self.loss.discriminator_loss(D, real, fake, step)

    def generator_loss(self, D, fake, real, step: int):
        with rank_random_stream(self.seed, 2 * step + 1, self.device):
            return self.loss.generator_loss(D, fake, real, step)


def parallelise(state, loss, device: torch.device):
    """Make a TrainingState ready for DDP (shared random state, SyncBatchNorm, wrapped G and D); returns the loss to use."""
    if not is_distributed():
        return loss
    check_batch(state.batch)
    # convert_sync_batchnorm keeps the same Parameter objects, so the optimisers stay valid.
    state.G = synchronise_batchnorm(state.G, device, "G")
    state.D = synchronise_batchnorm(state.D, device, "D")
    share_random_state(device)
    state.G_train, state.D_train = wrap(state.G, device), wrap(state.D, device)
    return RankAugmentedLoss(loss, state.config.seed, device) if getattr(loss, "augment", None) else loss
