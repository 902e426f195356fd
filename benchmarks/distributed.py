"""Data-parallel scaling on this CPU: tokens/s of 1 process against 2 ranks (gloo), side by side.

``python benchmarks/distributed.py [--preset dict-fot] [--steps 15] [--rounds 2]``

Every variant trains the same preset with the same *global* batch (``b`` documents a step, d = 8
from the start), one torch thread per process, through ``fot_edu.training.train.Trainer`` as ``torchrun
-m fot_edu train`` runs it:

* ``1 process``: the ordinary single-process run;
* ``2 ranks, local``: two processes of ``b/2`` rows, DDP, negatives from the own rank's rows;
* ``2 ranks, global``: the same, negatives from both ranks (all-gather of ``C_prev`` keys/values).

Variants run in turn, round after round (A, B, C, A, B, C), each in fresh processes; the warm-up
steps and process start are not timed. Tokens/s counts both windows of every row of the global
batch. The machine's load average is recorded at each run: on a shared 2-core machine a second
process competes with everyone else's work, so read the scaling against the load. Writes the
record ``results/records/distributed-cpu.json`` (command, commit, machine, load, results).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fot_edu.evaluation.records import RECORDS_DIR, Recording, load_average, write_record
from fot_edu.training import distributed
from fot_edu.training.presets import preset
from fot_edu.training.train import Trainer

VARIANTS = {"1 process": (1, "local"), "2 ranks, local": (2, "local"),
            "2 ranks, global": (2, "global")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, port, cfg, warmup, steps, queue):
    torch.set_num_threads(1)
    if world_size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
        joined = distributed.torchrun_process("cpu")
    else:
        joined = contextlib.nullcontext((distributed.Ranks(), torch.device("cpu")))
    with joined as (ranks, device):
        trainer = Trainer(cfg, device=device, ranks=ranks)
        for _ in range(warmup):
            trainer.step()
        if ranks.several:
            dist.barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.step()
        if ranks.several:
            dist.barrier()
        seconds = time.perf_counter() - t0
        if ranks.main:
            tokens = cfg.batch_size * 2 * cfg.data.window * steps
            queue.put({"tokens_per_s": tokens / seconds, "s_per_step": seconds / steps})


def measure(cfg, world_size: int, warmup: int, steps: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_worker, args=(world_size, _free_port(), cfg, warmup, steps, queue),
                       nprocs=world_size, start_method="spawn")
    return queue.get()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="dict-fot")
    parser.add_argument("--d", type=int, default=8, help="crossbatch dimension (no schedule)")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-record", action="store_true", help="print only, write no record")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as in every worker (and so machine() says so)
    total = args.warmup + args.steps + 1  # the last step (with its evaluation) is never run
    cfg = preset(args.preset).replace(d=args.d, d_schedule=(), steps=total, warmup_steps=0,
                                      eval_every=total, checkpoint_every=total)
    runs = {name: [] for name in VARIANTS}
    recording = Recording(seed=cfg.seed)
    for _ in range(args.rounds):
        for name, (world_size, scope) in VARIANTS.items():
            load = load_average()
            result = measure(cfg.replace(crossbatch_scope=scope), world_size, args.warmup, args.steps)
            runs[name].append({**result, "load_at_start": load})
            print(f"{name:>16}: {result['tokens_per_s']:8,.0f} tokens/s "
                  f"({1e3 * result['s_per_step']:.0f} ms/step), load {load}", flush=True)
    median = {name: statistics.median(r["tokens_per_s"] for r in rs) for name, rs in runs.items()}
    scaling = {name: round(tps / median["1 process"], 3) for name, tps in median.items()}
    print("median tokens/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in median.items()))
    print("scaling vs 1 process: " + ", ".join(f"{k} {v}x" for k, v in scaling.items()))
    record = {"threads_per_process": 1, "cpu_count": os.cpu_count(),
              "setup": {"preset": args.preset, "d": args.d, "global_batch": cfg.batch_size,
                        "window": cfg.data.window, "warmup_steps": args.warmup,
                        "timed_steps": args.steps, "rounds": args.rounds, "backend": "gloo"},
              "median_tokens_per_s": {k: round(v) for k, v in median.items()},
              "scaling_vs_1_process": scaling, "runs": runs}
    if not args.no_record:
        print(f"record: {write_record(RECORDS_DIR / 'distributed-cpu.json', recording, **record)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
