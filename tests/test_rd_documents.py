"""r_d intervals resample independent units: the documents of a corpus, not its pairs."""
import pytest
import torch

from fot_edu.config import DataConfig, ModelConfig, TrainConfig
from fot_edu.data.batches import training_batch
from fot_edu.data.tokenizer import IGNORE
from fot_edu.evaluation.distraction import distraction_ratio, distraction_summary
from fot_edu.evaluation.stats import bootstrap, ratio_of_sums, sum_by_group
from fot_edu.model import FoTModel
from fot_edu.training.objective import with_task_vocab


def test_sum_by_group_pools_the_units_of_each_group():
    units = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    assert torch.equal(sum_by_group(units, torch.tensor([9, 2, 9, 5])),
                       torch.tensor([[3.0, 4.0], [7.0, 8.0], [6.0, 8.0]]))
    with pytest.raises(ValueError, match="groups has 3 entries for 4 units"):
        sum_by_group(units, torch.tensor([0, 1, 2]))


def test_books_r_d_interval_resamples_its_8_documents_with_all_their_pairs():
    cfg = TrainConfig(model=ModelConfig(d_model=32, n_heads=2, d_ff=64, n_layers=2, memory_layers=(1,)),
                      data=DataConfig(task="books", window=32))
    torch.manual_seed(0)
    model = FoTModel(cfg.model).eval()
    res = distraction_summary(model, cfg, (4,), batches=1)
    groups = [training_batch(cfg.data, "eval", 8, step=1000 + i, seed=cfg.seed) for i in range(4)]
    rows = torch.cat([distraction_ratio(model, g.tokens, 4, per_row=True) for g in groups])
    docs = torch.cat([g.doc_ids for g in groups])
    assert res["n"]["r_d"][4] == 32 and len(docs.unique()) == 8
    assert res["r_d"][4] == pytest.approx(float(rows[:, 0].sum() / rows[:, 1].sum()), rel=1e-6)
    by_document = bootstrap(sum_by_group(rows, docs), ratio_of_sums)
    assert res["ci95"]["r_d"][4] == by_document
    assert by_document != bootstrap(rows, ratio_of_sums)  # pairs as if independent: another interval


def test_a_synthetic_task_keeps_every_pair_its_own_unit():
    """Every dictionary row is a document of its own: the interval is the pairs' bootstrap."""
    cfg = TrainConfig(model=ModelConfig(vocab_size=64, d_model=32, n_heads=2, d_ff=64, n_layers=2,
                                        memory_layers=(1,)),
                      data=DataConfig(task="dictionary", window=32, entries_per_window=4))
    cfg = with_task_vocab(cfg)
    torch.manual_seed(0)
    model = FoTModel(cfg.model).eval()
    res = distraction_summary(model, cfg, (2,), batches=2)
    groups = [training_batch(cfg.data, "eval", 32, step=1000 + i, seed=cfg.seed) for i in range(2)]
    rows = torch.cat([distraction_ratio(model, g.tokens, 2, per_row=True,
                                        query_mask=g.targets[:, 1] != IGNORE) for g in groups])
    assert res["n"]["r_d"][2] == 64 and res["ci95"]["r_d"][2] == bootstrap(rows, ratio_of_sums)
