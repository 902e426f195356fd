"""Training loop, checkpoints and resume, on a tiny synthetic copy task (C_curr repeats C_prev):
only a model that reads its previous window through memory can predict C_curr."""

import pytest
import torch
from torch.testing import assert_close

from fot_edu.config import DataConfig, ModelConfig, TrainConfig
from fot_edu.data.batches import Batch
from fot_edu.training.checkpoint import load_checkpoint, load_model, save_checkpoint
from fot_edu.training.train import Trainer, train

VOCAB, N, B = 16, 12, 8


def copy_batch(step, seed=0):
    g = torch.Generator().manual_seed(seed * 100_003 + step)
    prev = torch.randint(0, VOCAB, (B, N), generator=g)
    tokens = torch.stack([prev, prev], dim=1)  # (b, 2, n): C_curr == C_prev
    targets = torch.full_like(tokens, -100)
    targets[:, 1, :-1] = tokens[:, 1, 1:]  # loss on C_curr only: copy the rest of C_prev
    return Batch(tokens=tokens, targets=targets, doc_ids=torch.arange(B))


def tiny_cfg(**kw):
    model = ModelConfig(vocab_size=VOCAB, d_model=32, n_heads=2, d_ff=64, n_layers=2, memory_layers=(1,))
    base = dict(model=model, data=DataConfig(task="code", window=N), batch_size=B, steps=120, lr=3e-3,
                warmup_steps=10, eval_every=1000, checkpoint_every=1000, d=1)
    return TrainConfig(**{**base, **kw})


def mean_loss(history, lo, hi):
    return sum(r["loss"] for r in history[lo:hi]) / (hi - lo)


@pytest.mark.slow
def test_short_training_run_halves_the_loss():
    result = train(tiny_cfg(), batch_fn=copy_batch, progress=False, device="cpu")
    first, last = mean_loss(result.history, 0, 10), mean_loss(result.history, -10, len(result.history))
    assert last < 0.5 * first, f"loss {first:.3f} -> {last:.3f}: did not halve"


def test_checkpoint_roundtrip_gives_identical_logits(tmp_path):
    cfg = tiny_cfg(steps=3)
    result = train(cfg, batch_fn=copy_batch, progress=False, device="cpu")
    path = save_checkpoint(tmp_path / "m.pt", result.model, cfg, step=3, history=result.history)
    model, loaded_cfg = load_model(path)
    assert loaded_cfg == cfg
    tokens = copy_batch(99).tokens
    assert torch.equal(model(tokens, d=1).logits, result.model(tokens, d=1).logits)
    assert load_checkpoint(path)["history"] == result.history


def test_resume_continues_the_same_loss_trajectory(tmp_path):
    cfg = tiny_cfg(steps=16, checkpoint_every=6)
    full = train(cfg, batch_fn=copy_batch, progress=False, device="cpu")

    def crash(row):
        if row["step"] == 8:  # killed after the step-6 checkpoint, mid-way to the next one
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, out_dir=tmp_path, batch_fn=copy_batch, progress=False, device="cpu", callback=crash)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 6
    resumed = train(cfg, out_dir=tmp_path, resume=True, batch_fn=copy_batch, progress=False, device="cpu")
    assert [r["step"] for r in resumed.history] == list(range(16))
    assert_close(torch.tensor([r["loss"] for r in resumed.history]),
                 torch.tensor([r["loss"] for r in full.history]), rtol=1e-6, atol=1e-6)


class Evil:
    def __reduce__(self):
        return (print, ("this would have run arbitrary code",))


def test_pickle_bearing_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "payload": Evil()}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        load_checkpoint(path)


@pytest.fixture
def one_step(tmp_path):
    """A model trained for one step and its checkpoint: ``(result, path)``."""
    cfg = tiny_cfg(steps=1)
    result = train(cfg, batch_fn=copy_batch, progress=False, device="cpu")
    return result, save_checkpoint(tmp_path / "m.pt", result.model, cfg)


def test_truncated_checkpoint_is_a_clear_error(one_step):
    _, path = one_step
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_checkpoint_from_another_config_is_named(one_step):
    state = load_checkpoint(one_step[1])
    from fot_edu.model import FoTModel
    from fot_edu.training.checkpoint import load_state_into

    other = FoTModel(ModelConfig(vocab_size=VOCAB, d_model=64, n_heads=2, d_ff=64, n_layers=2))
    with pytest.raises(ValueError, match="another model config"):
        load_state_into(other, state["model"])


def test_save_into_missing_folder_is_named(one_step, tmp_path):
    result, _ = one_step
    with pytest.raises(ValueError, match="does not exist"):
        save_checkpoint(tmp_path / "nope" / "m.pt", result.model, result.config)


def test_train_config_errors_name_the_field():
    with pytest.raises(ValueError, match="d=9"):
        tiny_cfg(d=9)
    with pytest.raises(ValueError, match="mode"):
        tiny_cfg(mode="contrastive")
    with pytest.raises(ValueError, match="d_schedule"):
        tiny_cfg(d_schedule=((10, 2), (5, 4)))


def test_mt_trains_with_d1_only():
    mt_model = ModelConfig(vocab_size=VOCAB, d_model=32, n_heads=2, d_ff=64, n_layers=2,
                           memory_layers=(1,), memory_kind="mt")
    with pytest.raises(ValueError, match="memory_kind='mt'"):
        tiny_cfg(model=mt_model, d=2)
    with pytest.raises(ValueError, match="mode='mt'"):  # MT is a model kind, not a training mode
        tiny_cfg(model=mt_model, mode="mt")
    tiny_cfg(model=mt_model)  # d=1: fine


def test_a_small_held_out_split_gives_smaller_eval_batches_or_fails_before_training():
    """``books`` holds 8 held-out documents: batch 16 trains, and its held-out loss reads 8 rows
    (it used to fail at the first evaluation, minutes into training). Too few for d: at once."""
    from fot_edu.training.objective import default_batch_fn

    cfg = TrainConfig(model=ModelConfig(d_model=32, n_heads=2, d_ff=64, n_layers=2,
                                        memory_layers=(1,)),
                      data=DataConfig(task="books", window=32), batch_size=16, d=4)
    assert default_batch_fn(cfg, "eval")(0).tokens.shape[0] == 8
    assert default_batch_fn(cfg, "train")(0).tokens.shape[0] == 16
    proofs = cfg.replace(data__task="proofs", d=8)  # 4 held-out documents
    with pytest.raises(ValueError, match="d=8 is not allowed for corpus 'proofs'.*only 4"):
        Trainer(proofs, device="cpu")
