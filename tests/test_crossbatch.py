import pytest
import torch
from torch.testing import assert_close

from fot_edu.attention import memory_attention
from fot_edu.config import ModelConfig
from fot_edu.crossbatch import context_mass, crossbatch_memory, hard_negative_rows
from fot_edu.model import FoTModel

b, h, n, dh = 5, 2, 4, 8


def prev():
    return torch.randn(b, h, n, dh, requires_grad=True), torch.randn(b, h, n, dh, requires_grad=True)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_attended_rows_are_i_to_i_plus_d_minus_1_mod_b(d):
    keys, values = prev()
    mem_k, mem_v, rows, docs = crossbatch_memory(keys, values, d, doc_ids=torch.arange(b) + 100)
    expected = torch.tensor([[(i + j) % b for j in range(d)] for i in range(b)])
    assert torch.equal(rows, expected)
    assert torch.equal(docs, expected + 100)
    for i in range(b):  # the memory of row i is exactly the concatenation of those C_prev windows
        assert_close(mem_k[i], torch.cat([keys[r] for r in expected[i]], dim=1))
        assert_close(mem_v[i], torch.cat([values[r] for r in expected[i]], dim=1))


def test_d1_sees_only_own_prev_and_d_equal_b_sees_all():
    keys, values = prev()
    _, _, rows, _ = crossbatch_memory(keys, values, 1)
    assert rows.flatten().tolist() == list(range(b))
    _, _, rows, _ = crossbatch_memory(keys, values, b)
    assert all(sorted(r) == list(range(b)) for r in rows.tolist())


def test_gradients_reach_the_negatives():
    keys, values = prev()
    q = torch.randn(b, h, n, dh)
    local = torch.randn(b, h, n, dh)
    mem_k, mem_v, _, _ = crossbatch_memory(keys, values, 2)
    out, _ = memory_attention(q, local, local, mem_k, mem_v)
    out[0].sum().backward()  # row 0 sees rows 0 (positive) and 1 (negative)
    assert keys.grad[1].abs().sum() > 0 and values.grad[1].abs().sum() > 0
    assert keys.grad[2:].abs().sum() == 0, "row 0 must not see rows it was not given"


@pytest.mark.parametrize("d", [0, b + 1, 2.0])
def test_d_outside_1_to_b_is_a_value_error(d):
    keys, values = prev()
    with pytest.raises(ValueError, match=f"d={d!r}"):
        crossbatch_memory(keys, values, d)


def test_hard_negatives_pick_the_most_similar_rows():
    keys = torch.randn(4, 1, 3, 8)
    keys[2] = keys[0] + 0.01 * torch.randn(1, 3, 8)  # row 2 looks like row 0
    rows = hard_negative_rows(keys, 2)
    assert rows[0].tolist() == [0, 2] and rows[2].tolist() == [2, 0]
    assert (rows[:, 0] == torch.arange(4)).all()


def test_context_mass_sums_each_context():
    w = torch.softmax(torch.randn(b, h, n, n + 3 * n), -1)
    mass = context_mass(w, n, 3)
    assert_close(mass.sum(-1) + w[..., :n].sum(-1), torch.ones(b, h, n))
    assert_close(mass[..., 1], w[..., 2 * n:3 * n].sum(-1))


def tiny_model(kind="fot"):
    cfg = ModelConfig(vocab_size=20, d_model=16, n_heads=2, d_ff=32, n_layers=2,
                      memory_layers=(1,), memory_kind=kind)
    return FoTModel(cfg)


def test_model_d1_window_attends_only_its_own_prev_window():
    model = tiny_model()
    tokens = torch.randint(0, 20, (4, 2, 6))
    base = model(tokens, d=1).logits[:, 1]
    changed = tokens.clone()
    changed[1, 0] = torch.randint(0, 20, (6,))  # another row's C_prev
    out = model(changed, d=1).logits[:, 1]
    assert_close(out[[0, 2, 3]], base[[0, 2, 3]])
    assert not torch.allclose(out[1], base[1])
    out_d2 = model(changed, d=2).logits[:, 1]  # now row 0 sees row 1's C_prev
    assert not torch.allclose(out_d2[0], model(tokens, d=2).logits[0, 1])


def test_model_gradients_reach_negative_inputs():
    model = tiny_model()
    tokens = torch.randint(0, 20, (3, 2, 5))
    captured = {}

    def keep_embeddings(module, inputs, output):
        output.retain_grad()
        captured["x"] = output

    model.embed.register_forward_hook(keep_embeddings)
    model(tokens, d=2).logits[0, 1].sum().backward()  # row 0's C_curr sees rows 0 and 1
    grad = captured["x"].grad.view(3, 2, 5, -1)
    assert grad[1, 0].abs().sum() > 0, "the negative C_prev (row 1) got no gradient"
    assert grad[2, 0].abs().sum() == 0, "row 2 was not among row 0's contexts"
