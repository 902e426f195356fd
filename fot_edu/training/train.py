r"""Training: crossbatch (FoT with any d), stream (the Memorizing Transformer's recipe) or plain.

Paper: Focused Transformer §3.2 and App. C; Wu et al. 2022 §3 for MT's training.

The loop knows nothing about the task: it asks ``batch_fn(step)`` for a batch and minimises the
ordinary language-modelling loss of it (``fot_edu.training.objective``: what each model's memory
layers attend in each mode).

**Stream mode.** Each of the ``b`` rows holds one document at a time and reads it window by
window (``fot_edu.data.batches.training_stream``); an optimiser step is one window of every row
(``b x n`` tokens, half a crossbatch step). Each memory layer keeps a ``KNNMemory`` per row of the
earlier windows' keys and values, stored detached, so no gradient reaches an earlier window
(``fot_edu.streaming.read_window``); a row's memory is cleared when a new document starts in
it. Here ``batch_fn(i)`` gives window ``i`` of the stream (a ``StreamStep``); a window in which
no row has a target only fills memory. A resumed run rebuilds the memories by reading again the
last windows they hold, with the resumed weights: the one way it differs from an uninterrupted run.

``d`` may follow a schedule (``TrainConfig.d_schedule``): the paper warns that a large ``d``
from the start makes the model ignore its previous context, so we ramp it up (1 -> 2 -> 4 -> 8).

Optimiser: AdamW with linear warm-up and cosine decay. Checkpoints every ``checkpoint_every``
steps (atomic, safe; ``fot_edu.training.checkpoint``); ``resume=True`` continues from the last one. Every
batch is a pure function of ``(seed, step)``, and dropout is off by default, so a resumed CPU run
follows the same loss trajectory as an uninterrupted one.

Under ``torchrun`` (``ranks``, ``fot_edu.training.distributed``) the same loop runs in every process: each
takes its rows of the global batch, ``DistributedDataParallel`` averages the gradients, and rank 0
alone evaluates, logs and writes checkpoints.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from fot_edu.config import TrainConfig
from fot_edu.model import FoTModel
from fot_edu.runtime import autocast, default_device
from fot_edu.streaming import read_window
from fot_edu.training import distributed
from fot_edu.training.checkpoint import load_checkpoint, load_state_into, save_checkpoint
from fot_edu.training.distributed import Ranks
from fot_edu.training.longllama import continuation_weights
from fot_edu.training.objective import (batch_loss, default_batch_fn, evaluate_loss, has_targets,
                                        with_task_vocab)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: FoTModel
    config: TrainConfig
    history: list[dict] = field(default_factory=list)  # one row per step: step, loss, lr, d, ...
    evals: list[dict] = field(default_factory=list)  # one row per evaluation: step, eval_loss
    checkpoint: Path | None = None


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def make_optimizer(model: FoTModel, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norms, temperatures, gates)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def starting_weights(cfg: TrainConfig, init_state: dict | None = None) -> dict | None:
    """The weights a new run starts from: ``init_state`` when given, else for a config with ``base``
    that vanilla checkpoint with its memory layers added (the LongLLaMA recipe,
    ``fot_edu.training.longllama.continuation_weights``), else None (fresh weights)."""
    if init_state is None and cfg.base is not None:
        return continuation_weights(cfg)
    return init_state


def _check_resumable(old: TrainConfig, cfg: TrainConfig, path) -> None:
    if old.model != cfg.model or old.mode != cfg.mode:
        raise ValueError(f"cannot resume from {str(path)!r}: it was trained with another model "
                         f"config or mode ({old.model}, mode={old.mode!r} vs {cfg.model}, "
                         f"mode={cfg.mode!r})")


class Trainer:
    """One training run, a step at a time: :func:`train` loops over it, the live race
    (``fot_edu.teaching.race``) interleaves two.

    A new trainer stands at step 0: its model starts from ``init_state`` (the caller's choice,
    :func:`starting_weights`; None: fresh weights), with a fresh optimiser and, in stream mode,
    empty memories. :meth:`resumed` continues a run from its checkpoint instead. ``ranks``: this
    process's place under torchrun; ``batch_fn`` always gives the global batch, of which each rank
    trains on its rows. Stream mode: ``memories`` are this rank's rows' memories, ``windows_read``
    how far the stream has been read.
    """

    def __init__(self, cfg: TrainConfig, *, device=None, batch_fn=None, eval_batch_fn=None,
                 init_state: dict | None = None, out_path: Path | None = None,
                 ranks: Ranks | None = None):
        if init_state is None and cfg.base is not None:
            raise ValueError(f"base={cfg.base!r} is not allowed without init_state: pass "
                             f"init_state=starting_weights(cfg) to continue it (the LongLLaMA recipe)")
        self.device = default_device(device)
        self.ranks = ranks or Ranks()
        distributed.check_split(cfg, self.ranks)
        if batch_fn is None:
            cfg = with_task_vocab(cfg)
            batch_fn = default_batch_fn(cfg, "train")
            eval_batch_fn = eval_batch_fn or default_batch_fn(cfg, "eval")
        if not self.ranks.main:
            eval_batch_fn = None  # rank 0 evaluates the whole held-out batches alone
        self.cfg, self.batch_fn, self.eval_batch_fn, self.out_path = cfg, batch_fn, eval_batch_fn, out_path
        torch.manual_seed(cfg.seed)
        self.model = FoTModel(cfg.model).to(self.device)
        if init_state is not None:
            load_state_into(self.model, init_state)
        self.optimizer = make_optimizer(self.model, cfg)
        self.history, self.evals, self.step_index, self.windows_read = [], [], 0, 0
        self.memories = None if cfg.mode != "stream" else self.model.new_memories(
            cfg.batch_size // self.ranks.world_size, cfg.memory_capacity)
        self.model.train()
        self.parallel = distributed.data_parallel(self.model, self.ranks, self.device)
        global_negatives = self.ranks.several and cfg.crossbatch_scope == "global"
        self.gather = distributed.gather_rows if global_negatives else None

    @classmethod
    def resumed(cls, cfg: TrainConfig, out_path: Path, **kwargs) -> "Trainer":
        """The run whose checkpoint is ``out_path``, continued where it stopped (every rank reads
        it): weights, optimiser, random state, history and step, and in stream mode the memories
        read again (:meth:`reread_memories`)."""
        state = load_checkpoint(out_path, map_location=default_device(kwargs.get("device")))
        _check_resumable(state["config"], cfg if kwargs.get("batch_fn") else with_task_vocab(cfg),
                         out_path)
        trainer = cls(cfg, out_path=out_path, init_state=state["model"], **kwargs)
        trainer.restore(state)
        return trainer

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint's ``state`` (:func:`~fot_edu.training.checkpoint.load_checkpoint`)."""
        _check_resumable(state["config"], self.cfg, self.out_path)
        load_state_into(self.model, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        self.history, self.evals = state["history"], state["extra"].get("evals", [])
        self.step_index, self.windows_read = state["step"], state["extra"].get("stream_windows", 0)
        log.info("resumed from %s at step %d (it was trained with %s)", self.out_path,
                 self.step_index, state["extra"].get("distributed", "one process"))
        distributed.check_same(self.step_index, "the step to start at", self.ranks)
        self.reread_memories()

    def reread_memories(self) -> None:
        """Stream mode, resumed: read again the last windows the memories held, with the current
        weights (the one way a resumed run differs from an uninterrupted one)."""
        if self.memories is None:
            return
        span = math.ceil(self.cfg.memory_capacity / self.cfg.data.window)
        for index in range(max(0, self.windows_read - span), self.windows_read):
            self._fill(self._my_rows(self.batch_fn(index)))

    @property
    def done(self) -> bool:
        return self.step_index >= self.cfg.steps

    def _my_rows(self, batch):
        return distributed.rank_share(batch, self.ranks).to(self.device)

    def _fill(self, window) -> None:
        """Stream mode: read ``window`` (this rank's rows) into the memories, no logits."""
        read_window(self.model, window.tokens, self.memories, k=self.cfg.memory_k,
                    doc_ids=window.doc_ids, reset=window.new_doc, logits=False)

    def _next_window(self):
        """Stream mode: the next window in which some row has a target; the windows before it,
        where none has (every row at its definitions, e.g. the first), only fill memory."""
        while True:
            window = self.batch_fn(self.windows_read)
            self.windows_read += 1
            if has_targets(window):
                return window
            self._fill(self._my_rows(window))

    def backward(self, step: int):
        """Gradients of batch ``step`` (with several ranks: averaged over them, i.e. of the whole
        global batch); returns ``(loss over the global batch, the global batch)``."""
        batch = self.batch_fn(step) if self.memories is None else self._next_window()
        mine = self._my_rows(batch)
        with autocast(self.device):
            loss, _ = batch_loss(self.parallel, self.cfg, mine, step, self.gather, self.ranks.rank,
                                 self.memories)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr={self.cfg.lr}")
        weight = distributed.loss_weight(batch.targets, mine.targets, self.ranks)
        self.optimizer.zero_grad(set_to_none=True)
        (loss * weight).backward()
        return distributed.mean_over_ranks(loss.item() * weight, self.ranks), batch

    def step(self) -> dict:
        """One optimiser step; returns (and keeps) its history row."""
        cfg, model, step = self.cfg, self.model, self.step_index
        t0 = time.perf_counter()
        lr = lr_at(cfg, step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, batch = self.backward(step)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        seconds = time.perf_counter() - t0
        row = {"step": step, "loss": loss, "lr": lr,  # tokens/s: of all ranks together
               "d": cfg.d_at(step) if cfg.mode == "crossbatch" else None,
               "tokens_per_s": batch.tokens.numel() / seconds}
        last = step + 1 == cfg.steps
        if self.eval_batch_fn is not None and ((step + 1) % cfg.eval_every == 0 or last):
            row["eval_loss"] = evaluate_loss(model, cfg, self.eval_batch_fn, step, self.device)
            self.evals.append({"step": step, "eval_loss": row["eval_loss"]})
        self.history.append(row)
        self.step_index += 1
        if self.out_path is not None and self.ranks.main and ((step + 1) % cfg.checkpoint_every == 0
                                                              or last):
            self.save()
        return row

    def save(self) -> None:
        save_checkpoint(self.out_path, self.model, self.cfg, optimizer=self.optimizer,
                        step=self.step_index, history=self.history,
                        extra={"evals": self.evals, "stream_windows": self.windows_read,
                               "distributed": distributed.describe(self.cfg, self.ranks)})

    def result(self) -> TrainResult:
        self.model.eval()
        return TrainResult(self.model, self.cfg, self.history, self.evals, self.out_path)


def train(cfg: TrainConfig, *, out_dir=None, resume: bool = False, device=None,
          batch_fn: Callable[[int], object] | None = None,
          eval_batch_fn: Callable[[int], object] | None = None, init_state: dict | None = None,
          progress: bool = True, callback: Callable[[dict], None] | None = None,
          ranks: Ranks | None = None) -> TrainResult:
    """Train a model from ``cfg``; returns the model and its loss history.

    Args:
        out_dir: folder for ``checkpoint.pt`` (written every ``checkpoint_every`` steps and at
            the end); None keeps everything in memory.
        resume: continue from ``out_dir/checkpoint.pt`` if it exists.
        batch_fn / eval_batch_fn: ``step -> Batch``; default: the config's data task.
        init_state: start from these weights (a state dict) instead of a fresh model. Without
            it a config with ``base`` starts from that vanilla checkpoint, its memory layers added
            (``fot_edu.training.longllama.continuation_weights``).
        callback: called with each step's history row (live plots in notebooks).
        ranks: this process's place under torchrun (``fot_edu.training.distributed.torchrun_process``);
            only rank 0 shows progress and writes the checkpoint.
    """
    out_path = None
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        out_path = out_dir / "checkpoint.pt"
    ranks = ranks or Ranks()
    common = dict(device=device, batch_fn=batch_fn, eval_batch_fn=eval_batch_fn, ranks=ranks)
    if resume and out_path is not None and out_path.exists():
        trainer = Trainer.resumed(cfg, out_path, **common)
    else:
        trainer = Trainer(cfg, init_state=starting_weights(cfg, init_state), out_path=out_path, **common)
    desc = f"train {cfg.mode}"
    if ranks.several:
        desc += (f" on {ranks.world_size} ranks ({ranks.backend}; b={cfg.batch_size} = "
                 f"{ranks.world_size} x {cfg.batch_size // ranks.world_size}, crossbatch "
                 f"{cfg.crossbatch_scope})")
        if ranks.main:
            log.info("%s", desc)
    bar = tqdm(total=cfg.steps, initial=trainer.step_index, disable=not (progress and ranks.main),
               desc=desc, dynamic_ncols=True)
    with distributed.failures_reported(ranks, lambda: trainer.step_index):
        while not trainer.done:
            row = trainer.step()
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", d=row["d"], tok_s=f"{row['tokens_per_s']:.0f}")
            if callback is not None:
                callback(row)
    bar.close()
    return trainer.result()
