r"""What changes with several processes: data-parallel training, and crossbatch across ranks.

``torchrun --nproc_per_node N -m fot_edu train --preset NAME`` starts ``N`` copies of the same
training run, one per GPU (or CPU process); torchrun tells each its place through environment
variables (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). Without
torchrun nothing here is active and training is one ordinary process.

Three things change, and nothing else:

1. **Each rank trains on its share of the global batch.** ``TrainConfig.batch_size`` stays the
   *global* ``b``. Batch ``step`` is the same pure function of ``(seed, step)`` as in one process,
   and rank ``r`` of ``N`` keeps its rows ``r*b/N .. (r+1)*b/N - 1`` (:func:`rank_share`), so
   ``N`` ranks see exactly the documents one process sees. (Every rank builds the whole batch and
   keeps its part: cheap for these tasks; a large pipeline would read only its own rows.)
2. **Gradients are averaged.** ``DistributedDataParallel`` all-reduces the gradients in backward.
   Each rank weighs its loss by its share of the batch's target tokens (:func:`loss_weight`), so the
   average is the gradient of the one-process loss, even when ranks hold different token counts.
3. **Crossbatch negatives may come from every rank** (``TrainConfig.crossbatch_scope``):

   ==========  ===================================================  =================================
   scope       row ``i`` of a rank's ``C_curr`` attends to           communication per step
   ==========  ===================================================  =================================
   ``local``   own ``C_prev`` + ``d - 1`` of its rank's rows          none beyond DDP; ``d <= b / N``
   ``global``  rows ``{i, ..., i+d-1} mod b`` of the *global* batch   all-gather of ``C_prev`` keys and
               (as in one process); ``d <= b``                        values per memory layer, and its
                                                                      reverse (reduce-scatter) in backward
   ==========  ===================================================  =================================

   ``global`` moves, per memory layer and step, ``2 * b * h * n * dh * bytes`` (keys and values of
   every ``C_prev``; ``bytes`` = 4 in fp32, 2 in bf16) through the all-gather and the same again
   through the reduce-scatter of their gradients; each rank sends and receives ``(N-1)/N`` of it.
   E.g. ``dict-fot`` (b=32, h=4, n=64, dh=32, fp32, one memory layer): 2.1 MB each way per step.
   DDP's all-reduce of the gradients (about twice the parameter bytes) happens in both scopes.

:func:`gather_rows` is the one new piece of autograd: an all-gather whose backward sends every
gathered row's gradient back to the rank that owns it, summed over the ranks whose loss used it.
The model's memory layer calls it only when its crossbatch context carries it
(``Crossbatch.gather``, ``fot_edu.model``); ``fot_edu.crossbatch`` does not know about ranks.

A crash of one rank must not leave the others waiting: the process group has a timeout
(:data:`TIMEOUT_S`), a failing rank writes what went wrong into torchrun's key-value store, and a
rank whose collective breaks reads it and says which rank failed (:func:`failures_reported`).
Rank 0 alone logs and writes checkpoints.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import os
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from fot_edu.data.tokenizer import IGNORE
from fot_edu.runtime import default_device

log = logging.getLogger(__name__)

# torch 2.13 renamed the tensor collectives to *_single; older releases have only the old names
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor

TIMEOUT_S = 90  # a collective that waits longer than this raises instead of hanging
_FAILED = "fot_edu/failed/"  # store key prefix: one report per failing rank


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: rank ``rank`` of ``world_size`` (one process: 0 of 1)."""
    rank: int = 0
    world_size: int = 1
    backend: str | None = None  # "gloo" (CPU) or "nccl" (GPU); None: one process
    store: object = dataclasses.field(default=None, repr=False, compare=False)  # for failure reports

    @property
    def main(self) -> bool:
        """Rank 0: the one that logs, prints and writes checkpoints."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


@contextlib.contextmanager
def torchrun_process(device=None, timeout_s: float = TIMEOUT_S):
    """Join the process group torchrun describes in the environment; leave it on exit.

    Yields ``(ranks, device)``: ``cuda:LOCAL_RANK`` with ``nccl`` when there are GPUs, the CPU
    with ``gloo`` otherwise. Without torchrun: ``(Ranks(), default device)``, nothing to join.
    """
    device = default_device(device)
    if not launched_by_torchrun():
        yield Ranks(), device
        return
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = timedelta(seconds=timeout_s)
    store, rank, world_size = next(dist.rendezvous("env://", timeout=timeout))
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    try:
        yield Ranks(rank, world_size, backend, store), device
    finally:
        dist.destroy_process_group()


def rank_share(batch, ranks: Ranks):
    """Rows ``r*b/N .. (r+1)*b/N - 1`` of a global batch (any dataclass of ``(b, ...)`` tensors)."""
    b = batch.tokens.shape[0]
    if b % ranks.world_size:
        raise ValueError(f"batch_size={b} is not allowed with {ranks.world_size} ranks: the global "
                         f"batch must divide evenly into per-rank batches")
    if not ranks.several:
        return batch
    per_rank = b // ranks.world_size
    own = slice(ranks.rank * per_rank, (ranks.rank + 1) * per_rank)
    return dataclasses.replace(batch, **{
        f.name: getattr(batch, f.name)[own] for f in dataclasses.fields(batch)
        if isinstance(getattr(batch, f.name), torch.Tensor)})


def loss_weight(global_targets: torch.Tensor, local_targets: torch.Tensor, ranks: Ranks) -> float:
    """Factor on this rank's mean loss so that DDP's average of gradients is the gradient of the
    global mean: ``N * (this rank's target tokens) / (the global batch's target tokens)``."""
    mine, total = (local_targets != IGNORE).sum().item(), (global_targets != IGNORE).sum().item()
    return ranks.world_size * mine / total


def mean_over_ranks(value: float, ranks: Ranks) -> float:
    """The average of ``value`` over ranks (one small all-reduce); itself with one process."""
    if not ranks.several:
        return value
    total = torch.tensor([value], dtype=torch.float64,
                         device="cuda" if ranks.backend == "nccl" else "cpu")
    dist.all_reduce(total)
    return total.item() / ranks.world_size


def data_parallel(model: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` (the same model with one process).

    DDP copies rank 0's weights to every rank and averages gradients in backward. The model's
    only buffers (RoPE tables) are constants, so they are not re-broadcast before every forward.
    """
    if not ranks.several:
        return model
    DDP = torch.nn.parallel.DistributedDataParallel
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters \
        else "broadcast_buffers"  # its name before torch 2.13
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None, **{no_sync: False})


class _GatherRows(torch.autograd.Function):
    """All-gather along the batch axis, with the gradient sent back to each row's owner."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        world_size = dist.get_world_size()
        gathered = local.new_empty((world_size * local.shape[0], *local.shape[1:]))
        _all_gather(gathered, local.contiguous())
        return gathered

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # every rank's loss may have used every gathered row: sum the gradients over ranks and
        # keep the own rows (a reduce-scatter)
        own = grad.new_empty((grad.shape[0] // dist.get_world_size(), *grad.shape[1:]))
        _reduce_scatter(own, grad.contiguous())
        return own


def gather_rows(local: torch.Tensor) -> torch.Tensor:
    """``(b/N, ...)`` on each rank -> ``(b, ...)`` everywhere, rank 0's rows first; differentiable.

    Used for the ``C_prev`` keys and values (and document ids) of crossbatch with global scope.
    """
    return _GatherRows.apply(local)


@contextlib.contextmanager
def failures_reported(ranks: Ranks, step_of=lambda: None, wait_s: float = 3.0):
    """Turn a broken collective into "rank k failed at step s: ..." instead of a bare error.

    A rank whose own code raises writes a one-line report into the store and re-raises. A rank
    whose collective breaks (a peer crashed) waits up to ``wait_s`` for a report from another rank
    and raises a ``RuntimeError`` naming it; without one (a peer killed, the network down) it says
    so. ``step_of()`` gives the step for the message.
    """
    try:
        yield
    except Exception as err:
        if not ranks.several or ranks.store is None:
            raise
        broken = _broken_collective(err)
        other = _other_report(ranks, wait_s if broken else 0.0)
        if other is not None:
            raise RuntimeError(f"rank {ranks.rank} of {ranks.world_size} stopped: {other}") from err
        if broken:
            log.error("rank %d of %d: a collective failed at step %s and no rank reported an error "
                      "(one was killed or lost its connection; torchrun's summary names it)",
                      ranks.rank, ranks.world_size, step_of())
            raise
        report = f"rank {ranks.rank} failed at step {step_of()}: {type(err).__name__}: {err}"
        with contextlib.suppress(Exception):
            ranks.store.set(f"{_FAILED}{ranks.rank}", report)
        log.error("%s", report)
        raise


def _broken_collective(err: Exception) -> bool:
    """NCCL raises DistBackendError; gloo a RuntimeError that names its source file."""
    return isinstance(err, dist.DistError) or (isinstance(err, RuntimeError) and "gloo" in str(err))


def _other_report(ranks: Ranks, wait_s: float) -> str | None:
    deadline = time.monotonic() + wait_s
    others = [f"{_FAILED}{r}" for r in range(ranks.world_size) if r != ranks.rank]
    while True:
        for key in others:
            with contextlib.suppress(Exception):
                if ranks.store.check([key]):
                    return ranks.store.get(key).decode()
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def check_split(cfg, ranks: Ranks) -> None:
    """The global batch must split evenly; local negatives must fit in one rank's rows."""
    b, world_size = cfg.batch_size, ranks.world_size
    if b % world_size:
        raise ValueError(f"batch_size={b} is not allowed with {world_size} ranks: the global batch "
                         f"must be a multiple of the number of ranks")
    d_max = cfg.d_max
    if cfg.mode == "crossbatch" and cfg.crossbatch_scope == "local" and d_max > b // world_size:
        raise ValueError(f"d={d_max} is not allowed with crossbatch_scope='local' and {world_size} "
                         f"ranks: at most the per-rank batch {b // world_size} (or "
                         f"crossbatch_scope='global': d up to batch_size={b})")


def describe(cfg, ranks: Ranks) -> dict:
    """How a run is spread over processes: stored in the checkpoint beside the config."""
    return {"world_size": ranks.world_size, "backend": ranks.backend, "global_batch": cfg.batch_size,
            "per_rank_batch": cfg.batch_size // ranks.world_size,
            "crossbatch_scope": cfg.crossbatch_scope}


def check_same(value, what: str, ranks: Ranks) -> None:
    """Raise unless every rank holds the same ``value`` (e.g. the step a resumed run starts at)."""
    if not ranks.several:
        return
    values = [None] * ranks.world_size
    dist.all_gather_object(values, value)
    if len(set(values)) > 1:
        raise ValueError(f"ranks disagree on {what}: {values} (one per rank); with several machines "
                         f"--resume needs the checkpoint folder shared with (or copied to) every one")
