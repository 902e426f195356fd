r"""The live race: ``d = 1`` against FoT, trained side by side from an untrained model.

Paper: Focused Transformer §3.2 (crossbatch training), §3.3 (distraction), §5.2, App. F.

**The starting point** (:func:`starting_point`): fresh weights of the dictionary model (the
``dict-*`` presets' architecture, drawn with ``RaceConfig.init_seed``). It has read no document
and seen no negatives. Both runs start from these weights and train the same steps on the same
batches in the same order with the same optimiser; only what their memory layer sees differs:

* ``d = 1``: its own previous window ``C_prev`` only (the non-contrastive baseline);
* FoT: its own ``C_prev`` and the ``C_prev`` of ``d - 1`` other documents of the batch (§3.2),
  ``d`` raised ``1 -> 2 -> 4 -> 8`` (``RaceConfig.fot_schedule``; App. F: a large ``d`` before
  the model reads memory at all teaches it to ignore memory).

:func:`measure` reads a model: value accuracy with ``N`` other documents' definitions in memory
(``dictionary_accuracy``), ``r_8`` at the answer queries on the 64 held-out pairs of the shipped
models' ``r_d`` (``distraction_summary`` with their seed), and the mean cosine between memory keys
of different entries per head (``probes.entry_key_cosine``). The starting point is measured
before training and drawn at step 0 of the live figures; every ``eval_every`` steps both runs
are read with ``N = 15`` distractor documents; at the end both are measured like the start.

``RaceConfig(base="dict-fot")`` races from the shipped ``dict-fot`` instead: trained with
negatives up to ``d = 8``, its entry keys nearly orthogonal. That race asks whether ``d = 1``
training wears an existing separation down, not whether FoT creates one.

**Side by side.** On a CPU the runs train at once in two processes, one torch thread each
(``RaceConfig.parallel``), else they alternate a step each; the events reach ``callback`` in the
calling process. ``python -m fot_edu race`` runs it in a terminal, ``race_board.race_board`` in a notebook.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from fot_edu.config import TrainConfig
from fot_edu.evaluation.distraction import dictionary_accuracy, distraction_summary
from fot_edu.evaluation.probes import entry_key_cosine, memory_snapshot
from fot_edu.evaluation.stats import wilson
from fot_edu.model import FoTModel
from fot_edu.runtime import default_device, fast_mode, one_thread
from fot_edu.teaching.side_by_side import from_bytes, side_by_side, to_bytes
from fot_edu.training.checkpoint import load_checkpoint, load_state_into
from fot_edu.training.objective import with_task_vocab
from fot_edu.training.presets import preset
from fot_edu.training.train import Trainer

RUNS = ("d=1", "FoT")
R_D_SEED = 0  # the shipped dictionary models' seed: distraction_summary reads its 64 pairs


@dataclass
class RaceConfig:
    base: str | None = None  # None: untrained weights; or a shipped dictionary checkpoint to continue
    init_seed: int = 0  # the untrained weights both runs start from
    steps: int = 600  # optimiser steps per run
    batch_size: int = 32  # documents per step (FoT's negatives come from these)
    fot_schedule: tuple[tuple[int, int], ...] = ((0, 1), (75, 2), (125, 4), (175, 8))  # (step, d)
    lr: float = 2e-3
    warmup_steps: int = 100
    data_seed: int = 0  # training batches (the dict-* presets' seed)
    eval_every: int = 50  # steps between the live accuracy-with-distractors readings
    live_distractors: int = 15  # N of the live reading
    live_docs: int = 8  # documents per live reading
    final_distractors: tuple[int, ...] = (0, 7, 15, 31)
    final_docs: int = 32  # documents per N in the final evaluation (10 values each, 2 tokens)
    r_d_batches: int = 2  # groups of 32 held-out pairs for r_8 (2: the shipped models' 64)
    parallel: bool = True  # on a CPU: the two runs in two processes, one torch thread each

    def __post_init__(self) -> None:
        self.fot_schedule = tuple(tuple(pair) for pair in self.fot_schedule)
        for name in ("steps", "batch_size", "eval_every", "live_docs", "final_docs", "r_d_batches"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: a positive integer")
        if self.base is not None and not isinstance(self.base, str):
            raise ValueError(f"base={self.base!r} is not allowed: None (untrained) or a checkpoint name")
        if not self.fot_schedule or self.fot_schedule[0][0] != 0 or self.fot_d < 2:
            raise ValueError(f"fot_schedule={self.fot_schedule!r} is not allowed: (step, d) pairs "
                             "from step 0 that reach d >= 2")

    @property
    def fot_d(self) -> int:  # FoT's largest d: own C_prev + fot_d - 1 negatives
        return max(d for _, d in self.fot_schedule)

    @classmethod
    def smoke(cls) -> "RaceConfig":
        """Seconds on a CPU (tests, ``FOT_EDU_FAST=1``): the same race, a few steps, one process."""
        return cls(steps=6, batch_size=8, fot_schedule=((0, 1), (2, 2), (4, 4)), warmup_steps=2,
                   eval_every=3, live_docs=2, final_distractors=(0, 7), final_docs=2,
                   r_d_batches=1, parallel=False)

    def train_config(self, base_cfg: TrainConfig, run: str) -> TrainConfig:
        schedule = self.fot_schedule if run == "FoT" else ()
        return base_cfg.replace(d=1, d_schedule=schedule, batch_size=self.batch_size,
                                steps=self.steps, lr=self.lr, warmup_steps=self.warmup_steps,
                                seed=self.data_seed, eval_every=self.steps,
                                checkpoint_every=self.steps, base=None)

    def start_name(self) -> str:
        return (f"an untrained model (fresh weights, seed {self.init_seed})" if self.base is None
                else f"{self.base} (a trained checkpoint)")


@dataclass
class RaceResult:
    seconds: float
    device: str
    config: RaceConfig
    start: dict = field(default_factory=dict)  # measure() of the starting point
    history: dict = field(default_factory=dict)  # run -> [{"step", "loss", "d"}, ...]
    live: dict = field(default_factory=dict)  # run -> {step: accuracy with N distractors}; 0: start
    final: dict = field(default_factory=dict)  # run -> measure() after training
    models: dict = field(default_factory=dict)  # run -> (model, cfg), both in eval mode

    accuracy = property(lambda self: {run: m["accuracy"] for run, m in self.final.items()})
    r_8 = property(lambda self: {run: m["r_8"] for run, m in self.final.items()})

    def to_json(self) -> dict:
        """``{"seconds", "device", "start": {...}, "models": {run: {...}}, "live": {run: {step:
        accuracy}}}`` (the live curves, step 0 the start), each model and the start as ``{"accuracy": {N: a}, "r_8", "key_cosine": [per head], "n", "ci95"}``: 95%
        Wilson intervals of the accuracies over ``n`` value tokens, a bootstrap interval of r_8
        over ``n`` held-out pairs."""
        def entry(m):
            acc = {str(n): a for n, a in m["accuracy"].items()}
            return {"accuracy": acc, "r_8": m["r_8"], "key_cosine": m["key_cosine"],
                    "n": {"accuracy": m["n_tokens"], "r_8": m["r_8_pairs"]},
                    "ci95": {"accuracy": {n: wilson(a, m["n_tokens"]) for n, a in acc.items()},
                             "r_8": m["r_8_ci95"]}}
        return {"seconds": round(self.seconds, 1), "device": self.device,
                "start": entry(self.start), "models": {run: entry(self.final[run]) for run in RUNS},
                "live": {run: {str(step): round(a, 4) for step, a in self.live[run].items()}
                         for run in RUNS}}


def device_name(device: torch.device, threads: int = 1) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"cpu ({platform.machine()}, {threads} torch thread{'s' if threads > 1 else ''} per run)")


def starting_point(cfg: RaceConfig) -> tuple[dict, TrainConfig]:
    """``(weights, config)`` both runs start from: untrained (``cfg.base`` None), or a checkpoint."""
    if cfg.base is None:
        base_cfg = with_task_vocab(preset("dict-d1"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            return FoTModel(base_cfg.model).state_dict(), base_cfg
    state = load_checkpoint(cfg.base)
    if state["config"].data.task != "dictionary":
        raise ValueError(f"base={cfg.base!r} is not a dictionary model (task "
                         f"{state['config'].data.task!r})")
    return dict(state["model"]), state["config"]


def start_model(cfg: RaceConfig, device=None) -> tuple[FoTModel, TrainConfig]:
    """The model both runs start from, in eval mode (to look at before the race)."""
    weights, base_cfg = starting_point(cfg)
    return _model(base_cfg, weights, device or "cpu"), base_cfg


def start_runs(cfg: RaceConfig, device=None) -> dict:
    """``{"d=1": Trainer, "FoT": Trainer}``, both from :func:`starting_point`."""
    weights, base_cfg = starting_point(cfg)
    return {run: Trainer(cfg.train_config(base_cfg, run), device=device, init_state=weights)
            for run in RUNS}


def live_accuracy(model, cfg: TrainConfig, race: RaceConfig, device) -> float:
    return dictionary_accuracy(model, cfg, (race.live_distractors,), batch_size=race.live_docs,
                               batches=1, seed=4321, device=device)["accuracy"][race.live_distractors]


@torch.no_grad()
def measure(model, cfg: TrainConfig, race: RaceConfig, device="cpu") -> dict:
    """Accuracy at ``race.final_distractors``, r_8 and its interval, entry-key cosine per head."""
    acc = dictionary_accuracy(model, cfg, race.final_distractors, batch_size=race.final_docs,
                              batches=1, device=device)
    summary = distraction_summary(model, cfg.replace(seed=R_D_SEED), (8,),
                                  batches=race.r_d_batches, device=device)
    snap, heads, data = memory_snapshot(model, cfg, 7), model.cfg.n_heads, cfg.data
    model.to(device).eval()
    return {"accuracy": acc["accuracy"], "r_8": summary["r_d"][8],
            "r_8_ci95": summary["ci95"]["r_d"][8], "r_8_pairs": summary["n"]["r_d"][8],
            "key_cosine": [round(entry_key_cosine(snap, h), 4) for h in range(heads)],
            "n_tokens": race.final_docs * data.entries_per_window * data.value_len}


def _one_run(run: str, cfg: RaceConfig, weights: dict, base_cfg: TrainConfig, device) -> Iterator:
    """One run's events: ``step`` every step, ``live`` every ``eval_every``, ``trained``, ``final``."""
    trainer = Trainer(cfg.train_config(base_cfg, run), device=device, init_state=weights)
    for step in range(cfg.steps):
        row = trainer.step()
        yield "step", {"run": run, "step": step, "loss": row["loss"], "d": row["d"]}
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            accuracy = live_accuracy(trainer.model, trainer.cfg, cfg, device)
            trainer.model.train()
            yield "live", {"run": run, "step": step + 1, "accuracy": accuracy}
    yield "trained", {"run": run}
    model = trainer.result().model.eval()
    yield "final", {"run": run, "measure": measure(model, trainer.cfg, cfg, device),
                    "weights": to_bytes(model.state_dict())}


def _one_process(run, cfg, weights_blob, base_cfg) -> Iterator:
    """One run in its own process (``side_by_side``): the weights arrive as bytes."""
    return _one_run(run, cfg, from_bytes(weights_blob), base_cfg, torch.device("cpu"))


def _alternating(cfg, weights, base_cfg, device) -> Iterator:
    """Both runs in this process, one event of each in turn (same events in the same order)."""
    yield "started", {}
    for pair in zip(*(_one_run(run, cfg, weights, base_cfg, device) for run in RUNS)):
        yield from pair


def race(cfg: RaceConfig | None = None, *, device=None, threads: int | None = None,
         callback: Callable[[str, dict], None] | None = None) -> RaceResult:
    """Measure the starting point, train both runs side by side, then measure both again.

    ``threads``: torch CPU threads per run (default 1). ``callback(event, data)`` sees ``("start",
    measure() + {"live": step-0 live reading})``, ``("step", {"run", "step", "loss", "d",
    "seconds", "eta"})`` after every step of each run, ``("live", {"run", "step", "accuracy"})``,
    then ``("evaluating", {})`` and ``("done", {"result"})``."""
    cfg = cfg or (RaceConfig.smoke() if fast_mode() else RaceConfig())
    device = default_device(device)
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise ValueError(f"threads={threads!r} is not allowed: a positive integer or None")
    notify = callback or (lambda event, data: None)
    t0 = time.perf_counter()
    weights, base_cfg = starting_point(cfg)
    parallel = cfg.parallel and device.type == "cpu"
    with one_thread(device.type == "cpu" and (parallel or threads is None)):
        if not parallel and threads is not None:
            torch.set_num_threads(threads)
        events = (side_by_side(_one_process, RUNS, (cfg, to_bytes(weights), base_cfg), threads or 1)
                  if parallel else _alternating(cfg, weights, base_cfg, device))
        next(events)  # the runs start; the starting point is measured meanwhile
        model = _model(base_cfg, weights, device)
        start = measure(model, base_cfg, cfg, device)
        start_live = live_accuracy(model, base_cfg, cfg, device)
        live = {run: {0: start_live} for run in RUNS}
        notify("start", {**start, "live": start_live})
        history, final, models, trained = {run: [] for run in RUNS}, {}, {}, 0
        for event, data in events:
            run = data["run"]
            if event == "step":
                history[run].append({k: data[k] for k in ("step", "loss", "d")})
                elapsed, done = time.perf_counter() - t0, min(len(h) for h in history.values())
                eta = elapsed / max(done, 1) * (cfg.steps - done)
                notify("step", {**data, "seconds": elapsed, "eta": eta})
            elif event == "live":
                live[run][data["step"]] = data["accuracy"]
                notify("live", data)
            elif event == "trained" and (trained := trained + 1) == len(RUNS):
                notify("evaluating", {})
            elif event == "final":
                final[run] = data["measure"]
                weights = from_bytes(data["weights"])
                models[run] = _model(base_cfg, weights, device), cfg.train_config(base_cfg, run)
    result = RaceResult(seconds=time.perf_counter() - t0, device=device_name(device, threads or 1),
                        config=cfg, start=start, history=history, live=live, final=final,
                        models=models)
    notify("done", {"result": result})
    return result


def _model(base_cfg: TrainConfig, weights: dict, device) -> FoTModel:
    model = FoTModel(base_cfg.model)
    load_state_into(model, weights)
    return model.to(device).eval()
