import pytest
import torch
from torch.testing import assert_close

from fot_edu.attention import memory_attention, mt_attention


def naive_memory_attention(q, k, v, mem_k, mem_v, mem_mask, scale):
    """float64 loop over queries: softmax over [causal local | memory] written out."""
    b, h, n, dh = q.shape
    out = torch.zeros(b, h, n, dh, dtype=torch.float64)
    weights = []
    for bi in range(b):
        for hi in range(h):
            for t in range(n):
                keys = torch.cat([k[bi, hi, : t + 1], mem_k[bi, hi]]).double()
                vals = torch.cat([v[bi, hi, : t + 1], mem_v[bi, hi]]).double()
                logits = keys @ q[bi, hi, t].double() * scale
                allowed = torch.cat([torch.ones(t + 1, dtype=torch.bool), mem_mask[bi]])
                logits[~allowed] = float("-inf")
                w = torch.softmax(logits, 0)
                out[bi, hi, t] = w @ vals
                full = torch.zeros(n + mem_k.shape[2], dtype=torch.float64)
                full[: t + 1], full[n:] = w[: t + 1], w[t + 1:]
                weights.append(full)
    return out, torch.stack(weights).view(b, h, n, -1)


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def test_shared_memory_equals_naive_loop():
    b, h, n, m, dh = 2, 3, 5, 7, 4
    q, k, v, mk, mv = rand(b, h, n, dh), rand(b, h, n, dh), rand(b, h, n, dh), rand(b, h, m, dh), rand(b, h, m, dh)
    mask = torch.rand(b, m) > 0.3
    out, w = memory_attention(q, k, v, mk, mv, mask)
    ref_out, ref_w = naive_memory_attention(q, k, v, mk, mv, mask, dh ** -0.5)
    assert_close(out, ref_out)
    assert_close(w, ref_w)


def test_per_query_with_all_memory_equals_shared():
    b, h, n, m, dh = 2, 2, 6, 5, 8
    q, k, v, mk, mv = (torch.randn(b, h, x, dh) for x in (n, n, n, m, m))
    out_shared, w_shared = memory_attention(q, k, v, mk, mv)
    per_query_k = mk[:, :, None].expand(b, h, n, m, dh)
    per_query_v = mv[:, :, None].expand(b, h, n, m, dh)
    out_q, w_q = memory_attention(q, k, v, per_query_k, per_query_v)
    assert_close(out_q, out_shared)
    assert_close(w_q, w_shared)


def test_masked_slots_get_zero_weight_and_weights_sum_to_one():
    b, h, n, m, dh = 2, 2, 4, 6, 8
    q, k, v, mk, mv = (torch.randn(b, h, x, dh) for x in (n, n, n, m, m))
    mask = torch.tensor([[True, False, True, False, False, True]] * b)
    _, w = memory_attention(q, k, v, mk, mv, mask)
    assert torch.all(w[..., n:][..., ~mask[0]] == 0)
    assert_close(w.sum(-1), torch.ones(b, h, n))
    assert torch.all(w[..., :n].triu(1) == 0), "a query attended a future local key"


@pytest.mark.parametrize("m", [0, 5])
def test_no_nan_with_empty_or_fully_masked_memory(m):
    b, h, n, dh = 2, 2, 4, 8
    q, k, v, mk, mv = (torch.randn(b, h, x, dh) for x in (n, n, n, m, m))
    mask = torch.zeros(b, m, dtype=torch.bool)
    out, w = memory_attention(q, k, v, mk, mv, mask)
    local, _ = memory_attention(q, k, v)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    assert_close(out, local)
    out_mt, _ = mt_attention(q, k, v, mk, mv, torch.zeros(h), mask)
    assert torch.isfinite(out_mt).all()
    assert_close(out_mt, local)


def test_sdpa_fast_path_equals_explicit():
    b, h, n, m, dh = 2, 2, 5, 9, 8
    q, k, v, mk, mv = (torch.randn(b, h, x, dh) for x in (n, n, n, m, m))
    mask = torch.rand(b, m) > 0.5
    for args in [(), (mk, mv, mask), (mk, mv, None)]:
        slow, _ = memory_attention(q, k, v, *args)
        fast, w = memory_attention(q, k, v, *args, need_weights=False)
        assert w is None
        assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_mt_gate_zero_is_local_and_one_is_memory():
    b, h, n, m, dh = 1, 2, 4, 3, 8
    q, k, v, mk, mv = (torch.randn(b, h, x, dh) for x in (n, n, n, m, m))
    local, _ = memory_attention(q, k, v)
    out, _ = mt_attention(q, k, v, mk, mv, torch.full((h,), -1e4))
    assert_close(out, local)
    out, info = mt_attention(q, k, v, mk, mv, torch.full((h,), 1e4))
    mem_only = torch.softmax(q @ mk.transpose(-1, -2) * dh ** -0.5, -1) @ mv
    assert_close(out, mem_only)


def test_bad_shapes_name_the_problem():
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match="head_dim"):
        memory_attention(q, q, q, torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match="mem_mask"):
        memory_attention(q, q, q, torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8),
                         torch.ones(1, 3))
