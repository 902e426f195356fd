r"""The live race: ``d = 1`` against FoT, trained side by side from one pre-trained model.

Paper: Focused Transformer §3.2 (crossbatch training), §3.3 (distraction), and the LongLLaMA
recipe: FoT as a short continued training of an existing model.

**The starting point** (:func:`starting_point`): the shipped dictionary-lookup model
:data:`RaceConfig.base` (``dict-fot``), with the temperature of its memory layer reset to
:data:`RaceConfig.tau` (3.5; trained, it is 15-18 per head). The memory logits are ``tau * cos(q, k)``, so
at ``tau = 3.5`` the memory softmax is blurred: attention spreads over every slot in memory, so
the model answers poorly even with its own document alone, and worse when other documents'
definitions share the softmax (the distraction issue, §3.3). Both runs start from these weights
and must learn to read memory sharply again; the race asks which training makes that reading
survive other documents.

**The race**: both runs train for the same steps, on the same batches, with the same optimiser.
The only difference is what their memory layer sees during training:

* ``d = 1``: its own previous window ``C_prev`` only (the non-contrastive baseline);
* FoT: its own ``C_prev`` and the ``C_prev`` of ``d - 1`` other documents of the batch
  (crossbatch negatives, §3.2).

Which training teaches the model to focus again? A temperature moves slowly under Adam (its log
moves at most about ``lr`` a step), so neither run can just sharpen its softmax back in a few
hundred steps; FoT's negatives also push its keys and queries to tell entries apart.

The two runs advance one step each in turn, so their live curves grow together. Every
``eval_every`` steps both are read with ``N = 15`` other documents' definitions in memory
(a running accuracy-with-distractors figure); at the end, :func:`fot_edu.evaluation.distraction.dictionary_accuracy`
with ``N = 0, 7, 15, 31`` and the paper's ``r_8`` at the answer queries
(:func:`fot_edu.evaluation.distraction.distraction_summary`), each with its 95% interval.

``python -m fot_edu race [--json]`` runs it in a terminal; ``widgets.race_board`` in a notebook.
"""
from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from fot_edu.config import TrainConfig
from fot_edu.evaluation.distraction import dictionary_accuracy, distraction_summary
from fot_edu.evaluation.stats import wilson
from fot_edu.model import FoTModel
from fot_edu.runtime import default_device, fast_mode, one_thread
from fot_edu.training.checkpoint import load_checkpoint, load_state_into
from fot_edu.training.train import Trainer

RUNS = ("d=1", "FoT")


@dataclass
class RaceConfig:
    base: str = "dict-fot"  # shipped checkpoint both runs start from
    steps: int = 600  # optimiser steps per run
    batch_size: int = 8  # documents per step (FoT's negatives come from these)
    fot_d: int = 8  # FoT's crossbatch dimension: own C_prev + 7 negatives
    lr: float = 2e-3
    warmup_steps: int = 10
    tau: float | None = 3.5  # memory-layer temperature both runs start from (None: the base's)
    data_seed: int = 100  # training batches other than the base's (it was trained on seed 0)
    eval_every: int = 50  # steps between the live accuracy-with-distractors readings
    live_distractors: int = 15  # N of the live reading
    live_docs: int = 8  # documents per live reading
    final_distractors: tuple[int, ...] = (0, 7, 15, 31)
    final_docs: int = 32  # documents per N in the final evaluation (10 values each, 2 tokens)

    @classmethod
    def smoke(cls) -> "RaceConfig":
        """Seconds on a CPU (tests, ``FOT_EDU_FAST=1``): the same race, a few steps."""
        return cls(steps=6, eval_every=3, live_docs=2, final_distractors=(0, 7), final_docs=2)

    def train_config(self, base_cfg: TrainConfig, d: int) -> TrainConfig:
        return base_cfg.replace(d=d, d_schedule=(), batch_size=self.batch_size, steps=self.steps,
                                lr=self.lr, warmup_steps=self.warmup_steps, seed=self.data_seed,
                                eval_every=self.steps, checkpoint_every=self.steps)


@dataclass
class RaceResult:
    seconds: float
    device: str
    config: RaceConfig
    history: dict = field(default_factory=dict)  # run -> [{"step", "loss", "d"}, ...]
    live: dict = field(default_factory=dict)  # run -> {step: accuracy with N distractors}
    accuracy: dict = field(default_factory=dict)  # run -> {N: accuracy}
    r_8: dict = field(default_factory=dict)  # run -> r_8 (answer queries)
    r_8_ci95: dict = field(default_factory=dict)  # run -> [low, high], bootstrap over pairs
    r_8_pairs: int = 0  # held-out pairs r_8 is averaged over
    n_tokens: int = 0  # value tokens scored per N in the final evaluation
    models: dict = field(default_factory=dict)  # run -> (model, cfg), both in eval mode

    def to_json(self) -> dict:
        """``{"seconds", "device", "models": {run: {"accuracy": {N: a}, "r_8": r, "n": ...,
        "ci95": ...}}}``: 95% Wilson intervals of the accuracies over ``n`` value tokens, and a
        bootstrap interval of r_8 over ``n`` held-out pairs."""
        models = {}
        for run in RUNS:
            acc = {str(n): a for n, a in self.accuracy[run].items()}
            models[run] = {"accuracy": acc, "r_8": self.r_8[run],
                           "n": {"accuracy": self.n_tokens, "r_8": self.r_8_pairs},
                           "ci95": {"accuracy": {n: wilson(a, self.n_tokens) for n, a in acc.items()},
                                    "r_8": self.r_8_ci95.get(run)}}
        return {"seconds": round(self.seconds, 1), "device": self.device, "models": models}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"cpu ({platform.machine()}, {threads} torch thread{'s' if threads > 1 else ''})"


def starting_point(cfg: RaceConfig) -> tuple[dict, TrainConfig]:
    """``(weights, config)`` both runs start from: ``cfg.base``, memory temperature ``cfg.tau``."""
    state = load_checkpoint(cfg.base)
    if state["config"].data.task != "dictionary":
        raise ValueError(f"base={cfg.base!r} is not a dictionary model (task "
                         f"{state['config'].data.task!r})")
    weights = dict(state["model"])
    if cfg.tau is not None:
        if not (isinstance(cfg.tau, (int, float)) and cfg.tau > 0):
            raise ValueError(f"tau={cfg.tau!r} is not allowed: a positive temperature or None")
        for name, value in weights.items():
            if name.endswith("attn.log_tau"):
                weights[name] = torch.full_like(value, math.log(cfg.tau))
    return weights, state["config"]


def start_model(cfg: RaceConfig, device=None) -> tuple[FoTModel, TrainConfig]:
    """The model both runs start from, in eval mode (to look at before the race)."""
    weights, base_cfg = starting_point(cfg)
    model = FoTModel(base_cfg.model)
    load_state_into(model, weights)
    return model.to(device or "cpu").eval(), base_cfg


def start_runs(cfg: RaceConfig, device=None) -> dict:
    """``{"d=1": Trainer, "FoT": Trainer}``, both from :func:`starting_point`."""
    weights, base_cfg = starting_point(cfg)
    return {run: Trainer(cfg.train_config(base_cfg, d), device=device, init_state=weights)
            for run, d in (("d=1", 1), ("FoT", cfg.fot_d))}


def live_accuracy(model, cfg: TrainConfig, race: RaceConfig, device) -> float:
    accuracy = dictionary_accuracy(model, cfg, (race.live_distractors,), batch_size=race.live_docs,
                                   batches=1, seed=4321, device=device)["accuracy"]
    model.train()
    return accuracy[race.live_distractors]


def race(cfg: RaceConfig | None = None, *, device=None, threads: int | None = None,
         callback: Callable[[str, dict], None] | None = None) -> RaceResult:
    """Train both runs, a step each in turn, then evaluate both with distractors in memory.

    On a CPU the race runs on one torch thread unless ``threads`` says otherwise: these models
    are so small that a second thread mostly waits (``runtime.one_thread``).

    ``callback(event, data)`` sees ``("step", {"run", "step", "loss", "d", "seconds", "eta"})``
    after every step of each run, ``("live", {"run", "step", "accuracy"})`` at every live reading
    and ``("evaluating", {})`` / ``("done", {"result"})`` at the end.
    """
    cfg = cfg or (RaceConfig.smoke() if fast_mode() else RaceConfig())
    device = default_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    with one_thread(device.type == "cpu" and threads is None):
        return _race(cfg, device, callback or (lambda event, data: None))


def _race(cfg: RaceConfig, device, notify) -> RaceResult:
    t0 = time.perf_counter()
    trainers = start_runs(cfg, device)
    history = {run: [] for run in RUNS}
    live = {run: {} for run in RUNS}
    for step in range(cfg.steps):
        for run, trainer in trainers.items():
            row = trainer.step()
            history[run].append({"step": row["step"], "loss": row["loss"], "d": row["d"]})
            elapsed = time.perf_counter() - t0
            eta = elapsed / (step + 1) * (cfg.steps - step - 1)
            notify("step", {"run": run, "step": step, "loss": row["loss"], "d": row["d"],
                            "seconds": elapsed, "eta": eta})
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            for run, trainer in trainers.items():
                live[run][step + 1] = live_accuracy(trainer.model, trainer.cfg, cfg, device)
                notify("live", {"run": run, "step": step + 1, "accuracy": live[run][step + 1]})
    notify("evaluating", {})
    models = {run: (trainer.result().model, trainer.cfg) for run, trainer in trainers.items()}
    accuracy, r_8, r_8_ci95, pairs = {}, {}, {}, 0
    for run, (model, train_cfg) in models.items():
        accuracy[run] = dictionary_accuracy(model, train_cfg, cfg.final_distractors,
                                            batch_size=cfg.final_docs, batches=1, device=device)["accuracy"]
        summary = distraction_summary(model, train_cfg, (8,), batches=1, device=device)
        r_8[run], r_8_ci95[run] = summary["r_d"][8], summary["ci95"]["r_d"][8]
        pairs = summary["n"]["r_d"][8]
    data = next(iter(models.values()))[1].data
    result = RaceResult(seconds=time.perf_counter() - t0, device=device_name(device), config=cfg,
                        history=history, live=live, accuracy=accuracy, r_8=r_8,
                        r_8_ci95=r_8_ci95, r_8_pairs=pairs,
                        n_tokens=cfg.final_docs * data.entries_per_window * data.value_len,
                        models=models)
    notify("done", {"result": result})
    return result


def race_table(result: RaceResult) -> str:
    """The final comparison as a terminal table."""
    ns = list(result.config.final_distractors)
    tau = "" if result.config.tau is None else f" with memory temperature {result.config.tau:g}"
    lines = [f"{'run':>4}  " + "  ".join(f"{f'acc N={n}':>9}" for n in ns) + "    r_8 (answer queries)",
             *(f"{run:>4}  " + "  ".join(f"{result.accuracy[run][n]:>9.3f}" for n in ns)
               + f"  {result.r_8[run]:.3f} {result.r_8_ci95.get(run)}" for run in RUNS),
             f"({result.n_tokens} value tokens per N, r_8 over {result.r_8_pairs} pairs; both runs fine-tuned {result.config.steps} steps "
             f"from {result.config.base}{tau}; {result.seconds:.0f} s on {result.device})"]
    return "\n".join(lines)
