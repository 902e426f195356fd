"""Several processes (gloo, CPU, loopback only): 2 ranks of b/2 rows train exactly like 1 process
of b rows; crossbatch negatives cross ranks with their gradients; a crash names the failed rank;
``torchrun -m fot_edu train`` writes one checkpoint and resumes."""
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.testing import assert_close

from fot_edu.config import DataConfig, ModelConfig, TrainConfig
from fot_edu.data.batches import Batch
from fot_edu.training import distributed
from fot_edu.training.checkpoint import load_checkpoint
from fot_edu.training.train import Trainer, train

VOCAB, N, B = 16, 12, 8
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_batch(step):
    """C_curr repeats C_prev (only memory can predict it); row 0 has fewer target tokens, so the
    two ranks' shares of the loss differ and the weighting of their gradients matters."""
    g = torch.Generator().manual_seed(step)
    prev = torch.randint(0, VOCAB, (B, N), generator=g)
    tokens = torch.stack([prev, prev], dim=1)
    targets = torch.full_like(tokens, -100)
    targets[:, 1, :-1] = tokens[:, 1, 1:]
    targets[0, 1, 3:] = -100  # rows with different token counts: the loss weighting matters
    return Batch(tokens=tokens, targets=targets, doc_ids=torch.arange(100, 100 + B))


def tiny_cfg(**kw):
    model = ModelConfig(vocab_size=VOCAB, d_model=32, n_heads=2, d_ff=64, n_layers=2, memory_layers=(1,))
    base = dict(model=model, data=DataConfig(task="code", window=N), batch_size=B, steps=4,
                eval_every=1000, checkpoint_every=1000)
    return TrainConfig(**{**base, **kw})


def rows_of(own):
    """A batch_fn giving rows ``own`` of ``copy_batch``."""
    def batch_fn(step):
        batch = copy_batch(step)
        return Batch(batch.tokens[own], batch.targets[own], batch.doc_ids[own])
    return batch_fn


def gradients(trainer, step=0):
    loss, _ = trainer.backward(step)
    return loss, {name: p.grad.clone() for name, p in trainer.model.named_parameters()}


def join(rank, world_size, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    return distributed.torchrun_process("cpu", timeout_s=30)


def _equivalence_worker(rank, world_size, port, out):
    with join(rank, world_size, port) as (ranks, device):
        results = {}
        for scope, d in (("global", 6), ("local", 3)):
            trainer = Trainer(tiny_cfg(d=d, crossbatch_scope=scope), device=device,
                              batch_fn=copy_batch, ranks=ranks)
            if scope == "local":  # this rank's own gradient, before DDP averages it
                with trainer.parallel.no_sync():
                    results[scope] = gradients(trainer)
            else:
                results[scope] = gradients(trainer)
        torch.save(results, Path(out) / f"rank{rank}.pt")


def test_two_ranks_equal_one_process_with_global_and_local_negatives(tmp_path):
    mp.spawn(_equivalence_worker, args=(2, free_port(), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    # global: d = 6 > 4 rows per rank; row i sees rows i..i+5 mod 8 of the global batch
    loss, grads = gradients(Trainer(tiny_cfg(d=6), device="cpu", batch_fn=copy_batch))
    for r in range(2):
        got_loss, got_grads = ranks[r]["global"]
        assert abs(got_loss - loss) < 1e-5
        for name, grad in grads.items():
            assert_close(got_grads[name], grad, atol=1e-5, rtol=1e-5, msg=f"rank {r}: {name}")
    # local: each rank is a one-process run on its own 4 rows
    single = [gradients(Trainer(tiny_cfg(d=3, batch_size=4), device="cpu",
                                batch_fn=rows_of(slice(4 * r, 4 * r + 4))))
              for r in range(2)]
    counts = [(copy_batch(0).targets[4 * r:4 * r + 4] != -100).sum().item() for r in range(2)]
    mean = sum(c * s[0] for c, s in zip(counts, single)) / sum(counts)
    for r in range(2):
        got_loss, got_grads = ranks[r]["local"]
        assert abs(got_loss - mean) < 1e-5  # the reported loss is the global batch's
        weight = 2 * counts[r] / sum(counts)  # the rank's share of the target tokens
        for name, grad in single[r][1].items():
            assert_close(got_grads[name], weight * grad, atol=1e-5, rtol=1e-5, msg=f"rank {r}: {name}")


def test_batch_split_and_local_d_are_checked():
    with pytest.raises(ValueError, match="batch_size=8 is not allowed with 3 ranks"):
        distributed.check_split(tiny_cfg(), distributed.Ranks(0, 3))
    with pytest.raises(ValueError, match="crossbatch_scope='local'"):
        distributed.check_split(tiny_cfg(d=6), distributed.Ranks(0, 2))
    distributed.check_split(tiny_cfg(d=6, crossbatch_scope="global"), distributed.Ranks(0, 2))
    with pytest.raises(ValueError, match="crossbatch_scope"):
        tiny_cfg(crossbatch_scope="everywhere")
    share = distributed.rank_share(copy_batch(0), distributed.Ranks(1, 2))
    assert torch.equal(share.tokens, copy_batch(0).tokens[4:])


def _crash_batch(step):
    if step == 1 and os.environ["RANK"] == "1":
        raise ValueError("simulated data error")
    return copy_batch(step)


def _crash_worker(rank, port, out):
    try:
        with join(rank, 2, port) as (ranks, device):
            train(tiny_cfg(d=1), device=device, batch_fn=_crash_batch, progress=False, ranks=ranks)
        message = "finished"
    except Exception as err:  # noqa: BLE001 (the test reads what each rank says)
        message = f"{type(err).__name__}: {err}"
    Path(out, f"rank{rank}.txt").write_text(message)


def test_a_crashed_rank_stops_the_run_and_is_named(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_crash_worker, args=(r, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert not p.is_alive(), "a rank hangs after the other crashed"
    assert "simulated data error" in (tmp_path / "rank1.txt").read_text()
    survivor = (tmp_path / "rank0.txt").read_text()
    assert survivor.startswith("RuntimeError: rank 0 of 2 stopped: rank 1 failed at step 1"), survivor


@pytest.mark.slow
def test_torchrun_trains_writes_one_checkpoint_and_resumes(tmp_path):
    def torchrun(*extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
               "-m", "fot_edu", "train", "--preset", "tiny-fot", "--out", str(tmp_path),
               "--device", "cpu", "--threads", "1", "--quiet", *extra]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    first = torchrun("--steps", "6", "--crossbatch-scope", "global")
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("trained tiny-fot on 2 ranks (gloo)") == 1  # rank 0 alone prints
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 6 and state["config"].crossbatch_scope == "global"
    assert state["extra"]["distributed"] == {"world_size": 2, "backend": "gloo", "global_batch": 8,
                                             "per_rank_batch": 4, "crossbatch_scope": "global"}
    second = torchrun("--steps", "9", "--crossbatch-scope", "global", "--resume")
    assert second.returncode == 0, second.stderr[-2000:]
    resumed = load_checkpoint(tmp_path / "checkpoint.pt")
    assert resumed["step"] == 9 and [r["step"] for r in resumed["history"]] == list(range(9))
