"""Bad inputs get clear errors; checkpoints survive a real kill; memory stays bounded; no NaN.

The table below is the contract: each bad input raises ``ValueError`` whose message names the
offending value (and says what is allowed). Some of these inputs are also covered, with more
detail, in the module tests; here they are listed together.
"""
from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fot_edu.attention import memory_attention, mt_attention
from fot_edu.config import DataConfig, ModelConfig, TrainConfig
from fot_edu.crossbatch import crossbatch_memory, neighbour_rows
from fot_edu.data.batches import training_batch
from fot_edu.data.corpora import load_corpus, read_jsonl
from fot_edu.evaluation.passkey import passkey_accuracy
from fot_edu.memory import KNNMemory
from fot_edu.model import FoTModel
from fot_edu.streaming import generate, stream_logits
from fot_edu.training.checkpoint import (load_checkpoint, load_model, load_state_into, resolve,
                                         save_checkpoint)
from fot_edu.training.presets import preset

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(vocab_size=16, d_model=16, n_heads=2, d_ff=32, n_layers=2, memory_layers=(1,), max_window=32)


def tiny_model(**kw):
    return FoTModel(ModelConfig(**{**TINY, **kw})).eval()


def qkv(b=1, h=2, n=3, dh=4, dtype=torch.float32):
    return [torch.randn(b, h, n, dh, dtype=dtype) for _ in range(3)]


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def _pickle_checkpoint(tmp):
    path = tmp / "evil.pt"
    torch.save({"format_version": 1, "payload": _Evil()}, path)
    return load_checkpoint(path)


def _truncated_checkpoint(tmp):
    model = tiny_model()
    path = save_checkpoint(tmp / "m.pt", model, TrainConfig(model=model.cfg, data=DataConfig(window=32, entries_per_window=2)))
    path.write_bytes(path.read_bytes()[:300])
    return load_checkpoint(path)


def _garbage_checkpoint(tmp):
    path = tmp / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    return load_checkpoint(path)


def _other_config_checkpoint(tmp):
    small = tiny_model()
    return load_state_into(tiny_model(d_model=32), small.state_dict())


def _non_utf8_corpus(tmp):
    path = tmp / "bad.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b'{"name": "a", "text": "caf\xe9"}\n')
    return read_jsonl(path)


def _missing_out_folder(tmp):
    model = tiny_model()
    cfg = TrainConfig(model=model.cfg, data=DataConfig(window=32, entries_per_window=2))
    return save_checkpoint(tmp / "no" / "such" / "dir" / "m.pt", model, cfg)


def _nan_keys(tmp):
    memory = KNNMemory(1, 1, 4, 8)
    keys = torch.randn(1, 1, 3, 4)
    keys[0, 0, 1, 2] = float("nan")
    return memory.add(keys, torch.randn(1, 1, 3, 4))


def _window_too_long(tmp):
    return tiny_model()(torch.zeros(1, 40, dtype=torch.long))


# (id, call taking tmp_path, text the message must contain: the value, and what is allowed)
BAD_INPUTS = [
    ("d<1", lambda t: neighbour_rows(4, 0), ["d=0", "1..b"]),
    ("d>batch", lambda t: crossbatch_memory(*qkv(b=4)[:2], d=5), ["d=5", "b=4"]),
    ("d>batch in config", lambda t: TrainConfig(batch_size=4, d=8), ["d=8", "batch_size=4"]),
    ("k<1", lambda t: KNNMemory(1, 1, 4, 8).search(torch.randn(1, 1, 2, 4), 0), ["k=0", "positive"]),
    ("k negative", lambda t: KNNMemory(1, 1, 4, 8).search(torch.randn(1, 1, 2, 4), -3), ["k=-3"]),
    ("memory layer out of range", lambda t: ModelConfig(n_layers=3, memory_layers=(5,)),
     ["memory_layers=(5,)", "0..2"]),
    ("window > max_window", _window_too_long, ["40 tokens", "max_window=32"]),
    ("stream window 0", lambda t: stream_logits(tiny_model(), torch.zeros(1, 8, dtype=torch.long), 0),
     ["window=0", "1..32"]),
    ("head_dim memory vs queries", lambda t: memory_attention(*qkv(dh=8), torch.randn(1, 2, 5, 4),
                                                              torch.randn(1, 2, 5, 4)),
     ["memory keys have 4", "queries have 8"]),
    ("head_dim memory store", lambda t: KNNMemory(1, 2, 8, 16).search(torch.randn(1, 2, 3, 4), 2),
     ["(1, 2, 3, 4)", "(1, 2, n, 8)"]),
    ("empty document stream", lambda t: stream_logits(tiny_model(), torch.zeros(2, 0, dtype=torch.long), 8),
     ["(2, 0)", "empty document"]),
    ("empty prompt", lambda t: generate(tiny_model(), torch.zeros(1, 0, dtype=torch.long), 3, 8),
     ["(1, 0)", "L >= 1"]),
    ("non-UTF-8 corpus file", _non_utf8_corpus, ["bad.jsonl.gz", "not UTF-8", r"b'\xe9'"]),
    ("unknown preset", lambda t: preset("gigantic-fot"), ["'gigantic-fot'", "tiny-fot"]),
    ("unknown corpus", lambda t: load_corpus("poetry"), ["'poetry'", "code"]),
    ("unknown task", lambda t: DataConfig(task="poetry"), ["task='poetry'", "dictionary"]),
    ("checkpoint of another config", _other_config_checkpoint, ["another model config", "(16, 32)"]),
    ("truncated checkpoint", _truncated_checkpoint, ["m.pt", "truncated or corrupt"]),
    ("garbage checkpoint", _garbage_checkpoint, ["garbage.pt", "truncated or corrupt"]),
    ("pickle-bearing checkpoint", _pickle_checkpoint, ["evil.pt", "refusing to load"]),
    ("unknown checkpoint name", lambda t: resolve("no-such-model"), ["'no-such-model'", "shipped"]),
    ("negative capacity", lambda t: KNNMemory(1, 1, 4, -5), ["capacity=-5", "positive integer"]),
    ("zero heads", lambda t: KNNMemory(1, 0, 4, 8), ["num_heads=0", "positive integer"]),
    ("unknown backend", lambda t: KNNMemory(1, 1, 4, 8, backend="annoy"), ["backend='annoy'", "exact"]),
    ("integer keys", lambda t: KNNMemory(1, 1, 4, 8).add(torch.ones(1, 1, 2, 4, dtype=torch.long),
                                                         torch.ones(1, 1, 2, 4, dtype=torch.long)),
     ["torch.int64", "floating-point"]),
    ("float token ids", lambda t: tiny_model()(torch.zeros(1, 4)), ["torch.float32", "integer ids"]),
    ("token id out of vocab", lambda t: tiny_model()(torch.full((1, 4), 99)), ["99", "0..15"]),
    ("dtype mix q/k/v", lambda t: memory_attention(torch.randn(1, 1, 2, 4), torch.randn(1, 1, 2, 4).double(),
                                                   torch.randn(1, 1, 2, 4)),
     ["torch.float64", "one dtype and device"]),
    ("non-bool memory mask", lambda t: memory_attention(*qkv(), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4),
                                                        torch.ones(1, 5)),
     ["torch.float32", "bool"]),
    ("NaN keys into memory", _nan_keys, ["1 NaN/inf", "finite"]),
    ("missing output folder", _missing_out_folder, ["no/such/dir", "does not exist"]),
    ("unknown negatives", lambda t: crossbatch_memory(*qkv(b=2)[:2], d=2, negatives="random"),
     ["negatives='random'", "hard"]),
    ("clear row out of range", lambda t: KNNMemory(2, 1, 4, 8).clear([5]), ["rows=[5]", "0..1"]),
    ("unknown split", lambda t: training_batch(DataConfig(), "test", 2, 0), ["split='test'", "eval"]),
    ("crossbatch tokens without pairs", lambda t: tiny_model()(torch.zeros(2, 8, dtype=torch.long), d=1),
     ["(2, 8)", "(b, 2, n)"]),
    ("passkey trials 0", lambda t: passkey_accuracy(tiny_model(), TrainConfig(), ("1x",), trials=0),
     ["trials=0", "positive"]),
    ("passkey length too short, after a valid one",
     lambda t: passkey_accuracy(tiny_model(), TrainConfig(), ("2x", "100")), ["length='100'", "at least"]),
    ("passkey length not a length", lambda t: passkey_accuracy(tiny_model(), TrainConfig(), ("2y",)),
     ["length='2y'", "32x"]),
    ("missing checkpoint", lambda t: load_model(t / "nothing.pt"),
     ["nothing.pt", "dict-fot", "python -m fot_edu train --preset"]),
    ("mt trained with d>1", lambda t: TrainConfig(model=ModelConfig(memory_kind="mt"), d=2),
     ["d=2", "memory_kind='mt'"]),
]


@pytest.mark.parametrize("call, expected", [pytest.param(c, e, id=i) for i, c, e in BAD_INPUTS])
def test_bad_input_is_a_clear_error(call, expected, tmp_path):
    with pytest.raises(ValueError) as info:
        call(tmp_path)
    for text in expected:
        assert text in str(info.value), f"{text!r} not in message: {info.value}"


def test_the_table_has_at_least_20_cases():
    assert len(BAD_INPUTS) >= 20


def test_k_larger_than_the_memory_is_clamped_and_masked():
    """Documented in fot_edu.memory: k is clamped to the capacity; missing items score -inf."""
    memory = KNNMemory(1, 1, 4, 6)
    memory.add(torch.randn(1, 1, 2, 4), torch.randn(1, 1, 2, 4))
    found = memory.search(torch.randn(1, 1, 3, 4), 50)
    assert found.scores.shape == (1, 1, 3, 6)
    assert found.scores.isfinite().sum(-1).tolist() == [[[2, 2, 2]]]


# -- checkpoints ----------------------------------------------------------------------------------

def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact and no temp file behind."""
    model = tiny_model()
    cfg = TrainConfig(model=model.cfg, data=DataConfig(window=32, entries_per_window=2))
    path = save_checkpoint(tmp_path / "c.pt", model, cfg, step=1)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, cfg, step=2)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_loading_a_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "x": Payload()}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()


def _train_cmd(out, *extra):
    return [sys.executable, "-m", "fot_edu", "train", "--preset", "tiny-fot", "--out", str(out),
            "--steps", "60", "--device", "cpu", "--quiet", *extra]


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", FOT_EDU_DEVICE="cpu")
    env.pop("FOT_EDU_FAST", None)
    return env


@pytest.mark.slow
def test_sigkilled_training_resumes_to_the_same_loss(tmp_path):
    """Kill a real training process with SIGKILL after its first checkpoint, resume it, and land
    on the same final loss as an uninterrupted run (same seed, CPU)."""
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(_train_cmd(killed), cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = killed / "checkpoint.pt"
    deadline = time.monotonic() + 60
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), proc.stderr.read().decode()[-2000:]
    step_at_kill = load_checkpoint(ckpt)["step"]
    assert 0 < step_at_kill < 60, f"killed too late to test resuming (step {step_at_kill})"

    resumed = subprocess.run(_train_cmd(killed, "--resume"), cwd=ROOT, env=_env(),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    full = subprocess.run(_train_cmd(clean), cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert full.returncode == 0, full.stderr[-2000:]
    a, b = load_checkpoint(ckpt), load_checkpoint(clean / "checkpoint.pt")
    assert a["step"] == b["step"] == 60
    assert [r["step"] for r in a["history"]] == list(range(60))
    torch.testing.assert_close(torch.tensor([r["loss"] for r in a["history"]]),
                               torch.tensor([r["loss"] for r in b["history"]]), rtol=1e-5, atol=1e-6)


# -- bounded memory -------------------------------------------------------------------------------

def test_a_million_tokens_keep_the_memory_at_capacity():
    capacity, chunk = 50_000, 65_536
    memory = KNNMemory(1, 2, 8, capacity)
    buffers = (memory.keys.data_ptr(), memory.values.data_ptr(), memory.keys.shape)
    total, last = 0, None
    while total < 1_000_000:
        keys = torch.randn(1, 2, chunk, 8)
        keys[..., 0] = torch.arange(total, total + chunk, dtype=torch.float32)  # token number
        memory.add(keys, keys, doc_ids=torch.tensor([total // chunk]))
        total += chunk
        last = total
        assert len(memory) == capacity
    assert (memory.keys.data_ptr(), memory.values.data_ptr(), memory.keys.shape) == buffers
    kept = memory.keys[0, 0, :, 0].sort().values
    torch.testing.assert_close(kept, torch.arange(last - capacity, last, dtype=torch.float32))
    assert memory.search(torch.randn(1, 2, 4, 8), 16).scores.isfinite().all()


# -- numerics -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_no_nan_with_empty_or_fully_masked_memory(dtype):
    q, k, v = qkv(b=2, h=2, n=5, dh=8, dtype=dtype)
    mem_k, mem_v = torch.randn(2, 2, 7, 8, dtype=dtype), torch.randn(2, 2, 7, 8, dtype=dtype)
    none = torch.zeros(2, 7, dtype=torch.bool)
    for need in (True, False):
        out, _ = memory_attention(q, k, v, mem_k, mem_v, none, need_weights=need)
        assert torch.isfinite(out).all()
        plain, _ = memory_attention(q, k, v, need_weights=need)
        torch.testing.assert_close(out, plain, atol=2e-2 if dtype == torch.bfloat16 else 1e-5, rtol=0)
    out, _ = mt_attention(q, k, v, mem_k, mem_v, torch.zeros(2, dtype=dtype), none)
    assert torch.isfinite(out).all()
    memory = KNNMemory(2, 2, 8, 16, dtype=dtype)
    found = memory.search(q, 4)  # empty store
    out, _ = memory_attention(q, k, v, found.keys, found.values, found.scores.isfinite())
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("k", [None, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_long_stream_stays_finite(k, dtype):
    torch.manual_seed(0)
    model = tiny_model().to(dtype)
    tokens = torch.randint(0, 16, (2, 2000))
    memories = model.new_memories(2, 300)
    for memory in memories.values():  # the store keeps the model's dtype
        memory.keys, memory.values = memory.keys.to(dtype), memory.values.to(dtype)
    reset = torch.zeros(2, 2000 // 32 + 1, dtype=torch.bool)
    reset[0, 10] = True  # one row's memory cleared mid-stream: empty again
    logits = stream_logits(model, tokens, 32, memories, k=k, reset=reset)
    assert logits.shape == (2, 2000, 16) and torch.isfinite(logits.float()).all()
    assert len(memories[1]) == 300


def test_crossbatch_training_step_is_finite_in_bf16_autocast():
    model = tiny_model().train()
    tokens = torch.randint(0, 16, (4, 2, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(tokens, d=4).logits
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, -2), tokens.flatten())
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters()
                                        if p.grad is not None)


def test_memory_layer_accepts_fp32_normalize_under_bf16_like_cuda_autocast(monkeypatch):
    # CUDA autocast runs F.normalize in fp32 while the projections stay bf16; CPU autocast does
    # not, so imitate it: before the fix, memory_attention refused the fp32 q/k with bf16 v.
    import torch.nn.functional as F

    normalize = F.normalize
    monkeypatch.setattr(F, "normalize", lambda x, *a, **kw: normalize(x.float(), *a, **kw))
    model = tiny_model().to(torch.bfloat16)
    tokens = torch.randint(0, 16, (4, 2, 8))
    assert torch.isfinite(model(tokens, d=4).logits.float()).all()
    memories = model.new_memories(4, 32)
    out = model(tokens[:, 0], memories=memories, k=4)
    assert torch.isfinite(out.logits.float()).all()


# -- no network -----------------------------------------------------------------------------------

def test_network_fixture_blocks_outside_and_allows_loopback():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        with pytest.raises(OSError, match="network access blocked"):
            s.connect(("93.184.216.34", 80))  # any public address; never reached
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.connect(server.getsockname())
            conn, _ = server.accept()
            conn.close()
    finally:
        server.close()
