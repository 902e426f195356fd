r"""Seeing distraction: what a memory layer's keys, queries and attention look like.

Paper: Focused Transformer §3.3 (the distraction issue, Fig. 3) and §3.2 (crossbatch training).

A memory layer holds keys from many documents: the own document's previous context
:math:`C_\text{prev}` and, at inference, whatever else was read before (distractors). A query of
the current context :math:`C_\text{curr}` needs the keys of its own :math:`C_\text{prev}`; the
others only steal attention mass. This module turns one such situation into numbers and plots:

* :func:`memory_snapshot` reads a dictionary-lookup document with ``N`` distractor documents in a
  :class:`~fot_edu.memory.KNNMemory` and records every memory key, every query, the top-``k``
  neighbours and the attention weights (the data behind every view);
* :func:`key_space_figure` projects the keys to 2-D or 3-D (PCA, plain SVD) and marks a query,
  its true key and its top-``k`` neighbours; :func:`similarity_figure` shows the cosine
  :math:`\langle\hat q, \hat k\rangle` of queries with own vs distractor keys (where ``d = 1`` and
  FoT differ most visibly);
* :func:`attention_mass_figure` (mass per document), :func:`r_d_figure` (:math:`r_d` against
  ``d`` with the :math:`1/d` line), :func:`metric_vs_memory_figure` (accuracy or perplexity as
  memory grows), :func:`retrieval_table` (what a query found).

Interactive versions (sliders, dropdowns, live training curves) are in ``fot_edu.widgets``; the
standalone HTML report in ``fot_edu.report``. :func:`load_or_train` gives every notebook its
models: the shipped checkpoint when present, otherwise a short training run.

Colours are the same everywhere: :data:`OWN_COLOR` for the own document, :data:`DISTRACTOR_COLOR`
for distractors, :data:`LOCAL_COLOR` for the local window.
"""
from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go
import torch

from .checkpoint import CHECKPOINT_DIR, load_model
from .config import PRESETS, ModelConfig, TrainConfig, preset
from .evaluate import memory_layer
from .runtime import fast_mode
from .tasks import DictionaryVocab, dictionary_eval_batch

OWN_COLOR = "#0072B2"  # blue: the own document (C_prev of the query's document)
DISTRACTOR_COLOR = "#E69F00"  # orange: other documents in memory
LOCAL_COLOR = "#999999"  # grey: the local window (C_curr's own causal keys)
QUERY_COLOR = "#000000"
MODEL_COLORS = {"d=1": "#D55E00", "FoT": "#009E73", "MT": "#CC79A7", "vanilla": "#999999"}

_TRAINED: dict = {}


# ---------------------------------------------------------------------------------------------
# models: shipped checkpoint, else a short training run

def fallback_config(name: str, fast: bool) -> TrainConfig:
    """The config trained when checkpoint ``name`` is not shipped: the preset, shortened.

    ``fast`` (``FOT_EDU_FAST=1``): a smoke-sized model of the same kind (seconds on a CPU; it
    learns little, the point is that the notebook runs). Otherwise the preset capped at 300
    steps, its ``d`` schedule squeezed to fit (minutes on a CPU).
    """
    if name not in PRESETS:
        raise ValueError(f"name={name!r} is neither a shipped checkpoint nor a preset: choose one "
                         f"of {sorted(PRESETS)}")
    cfg = preset(name)
    if not fast:
        steps = min(cfg.steps, 300)
        ratio = steps / cfg.steps
        schedule = tuple((int(s * ratio), d) for s, d in cfg.d_schedule)
        return cfg.replace(steps=steps, d_schedule=schedule, warmup_steps=min(cfg.warmup_steps, 30),
                           eval_every=steps, checkpoint_every=steps)
    layers = (1,) if cfg.model.memory_layers else ()
    model = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_ff=64, memory_layers=layers,
                        memory_kind=cfg.model.memory_kind)
    schedule = ((0, 1), (20, 2)) if cfg.d_schedule else ()
    small = dict(model=model, d_schedule=schedule, d=1, batch_size=8, steps=40, warmup_steps=5,
                 eval_every=40, checkpoint_every=40, eval_batches=1)
    if cfg.data.task == "dictionary":
        return cfg.replace(**small, data=preset("tiny-fot").data)
    if cfg.data.task == "retrieval":  # one needle a window, and room for it
        return cfg.replace(**small, data=cfg.data.__class__(task="retrieval", window=128,
                                                            entries_per_window=1))
    return cfg.replace(**small, data=cfg.data.__class__(task=cfg.data.task, window=32))


def has_checkpoint(name: str) -> bool:
    """True when ``data/checkpoints/{name}.pt`` (or ``$FOT_EDU_CHECKPOINTS``) is shipped."""
    return (CHECKPOINT_DIR / f"{name}.pt").exists()


def load_or_train(name: str, *, fast: bool | None = None, callback=None):
    """``(model, cfg)``: the shipped checkpoint ``name``, or :func:`fallback_config` trained now.

    Trained fallbacks are cached for the session, so several cells may ask for the same model.
    ``callback`` sees each training step's history row (e.g. a live loss plot).
    """
    if has_checkpoint(name):
        return load_model(name)
    fast = fast_mode() if fast is None else fast
    if (name, fast) not in _TRAINED:
        from .measure import train_live

        result = train_live(fallback_config(name, fast), callback=callback)
        _TRAINED[(name, fast)] = (result.model.cpu().eval(), result.config)
    return _TRAINED[(name, fast)]


# ---------------------------------------------------------------------------------------------
# one memory, recorded

@dataclass
class MemorySnapshot:
    """One dictionary document read with ``N`` distractors in memory (batch row 0, one layer).

    Memory slot ``s`` holds the key of token ``slot_pos[s]`` of context ``slot_doc[s]``:
    0 .. N-1 are the distractors, ``N`` is the own ``C_prev`` (read last, nearest to the query).
    """
    keys: torch.Tensor  # (h, M, dh) unit memory keys
    slot_doc: torch.Tensor  # (M,) 0..N-1 distractor j, N = own document
    slot_pos: torch.Tensor  # (M,) position of the key's token in its window
    slot_text: list  # (M,) text around each key
    queries: torch.Tensor  # (h, n, dh) unit queries of C_curr
    query_text: list  # (n,) text around each query
    answer_queries: list  # positions of C_curr that predict an answer (the "<v>" after "<q> key")
    true_slot: dict  # answer position -> memory slot of the matching definition's "<v>"
    topk_slots: torch.Tensor  # (h, n, k) memory slots found by the kNN search
    topk_weights: torch.Tensor  # (h, n, k) attention weight on each found slot
    doc_mass: torch.Tensor  # (h, n, N + 1) dense memory attention mass per context
    local_mass: torch.Tensor  # (h, n) dense attention mass on the local window
    num_distractors: int
    correct: torch.Tensor  # (n,) bool: argmax prediction right (only answer targets meaningful)

    @property
    def own(self) -> int:
        return self.num_distractors

    def is_own(self) -> torch.Tensor:
        return self.slot_doc == self.own


def _snippet(words: list, pos: int, width: int = 3) -> str:
    left = " ".join(words[max(0, pos - width):pos])
    right = " ".join(words[pos + 1:pos + 1 + width])
    return f"{left} [{words[pos]}] {right}".strip()


def _definition_v_positions(window: torch.Tensor, vocab: DictionaryVocab, key_len: int) -> dict:
    """``{key tuple: position of its '<v>'}`` for the entries of a window (definitions or asks)."""
    ids = window.tolist()
    found = {}
    for p, t in enumerate(ids):
        if t in (vocab.k, vocab.q) and p + key_len + 1 < len(ids) and ids[p + key_len + 1] == vocab.v:
            found[tuple(ids[p + 1:p + 1 + key_len])] = p + key_len + 1
    return found


@torch.no_grad()
def memory_snapshot(model, cfg: TrainConfig, num_distractors: int = 7, *, k: int = 8,
                    seed: int = 0, layer: int | None = None) -> MemorySnapshot:
    """Read one dictionary document with ``num_distractors`` other documents in memory.

    The distractors' definition windows go into memory first, then the own ``C_prev``; ``C_curr``
    (the questions) reads it twice: with top-``k`` kNN retrieval (what was found and its weight)
    and with dense memory attention (how the mass splits between documents).
    """
    if cfg.data.task != "dictionary":
        raise ValueError(f"memory_snapshot needs a dictionary model, got task={cfg.data.task!r}")
    layer = memory_layer(model, layer)
    model = model.cpu().eval()
    vocab = DictionaryVocab(cfg.data.num_symbols)
    batch = dictionary_eval_batch(cfg.data, 1, num_distractors, seed=seed)
    contexts = torch.cat([batch.distractors, batch.tokens[:, :1]], dim=1)  # (1, N + 1, n)
    c, n = contexts.shape[1], contexts.shape[2]
    memories = model.new_memories(1, c * n)
    for j in range(c):
        model(contexts[:, j], memories=memories, doc_ids=torch.tensor([j]))
    query = batch.tokens[:, 1]
    dense = model(query, memories=memories, k=None, add_to_memory=False, trace=True)
    trace = dense.traces[layer]
    w = trace.weights[0].float()  # (h, n, n_local + M); MT: memory softmax alone
    memory_w = w[..., w.shape[-1] - c * n:]
    doc_mass = memory_w.reshape(*memory_w.shape[:2], c, n).sum(-1)
    local_mass = w[..., :w.shape[-1] - c * n].sum(-1)
    found = memories[layer].search(trace.queries, k)
    knn = model(query, memories=memories, k=k, add_to_memory=False, trace=True).traces[layer]
    topk_weights = knn.weights[0, ..., -found.indices.shape[-1]:].float()

    words = [[vocab.name(t) for t in window.tolist()] for window in contexts[0]]
    q_words = [vocab.name(t) for t in query[0].tolist()]
    defs = _definition_v_positions(contexts[0, -1], vocab, cfg.data.key_len)
    asks = _definition_v_positions(query[0], vocab, cfg.data.key_len)
    true_slot = {p: (c - 1) * n + defs[key] for key, p in sorted(asks.items(), key=lambda kv: kv[1])
                 if key in defs}
    targets = batch.targets[0, 1]
    correct = dense.logits[0].argmax(-1) == targets
    return MemorySnapshot(
        keys=memories[layer].keys[0, :, :c * n].clone(),
        slot_doc=torch.arange(c).repeat_interleave(n), slot_pos=torch.arange(n).repeat(c),
        slot_text=[_snippet(words[j], p) for j in range(c) for p in range(n)],
        queries=trace.queries[0].float(), query_text=[_snippet(q_words, p) for p in range(n)],
        answer_queries=sorted(true_slot), true_slot=true_slot, topk_slots=found.indices[0],
        topk_weights=topk_weights, doc_mass=doc_mass, local_mass=local_mass,
        num_distractors=num_distractors, correct=correct)


def doc_label(snap: MemorySnapshot, doc: int) -> str:
    return "own document" if doc == snap.own else f"distractor {doc + 1}"


# ---------------------------------------------------------------------------------------------
# static figures (go.Figure); widgets wrap them in go.FigureWidget

def pca(points: torch.Tensor, dims: int = 2):
    """``(mean, basis)`` of the top ``dims`` principal directions of ``points`` ``(m, dh)``."""
    mean = points.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(points - mean, full_matrices=False)
    return mean, vh[:dims].T  # project: (x - mean) @ basis


def key_space_traces(snap: MemorySnapshot, head: int = 0, query: int | None = None,
                     dims: int = 2) -> list:
    """Scatter traces: distractor keys, own keys, top-k found, true key, the query."""
    if dims not in (2, 3):
        raise ValueError(f"dims={dims!r} is not allowed: 2 or 3")
    query = snap.answer_queries[0] if query is None else query
    keys = snap.keys[head].float()
    mean, basis = pca(keys, dims)
    xy = ((keys - mean) @ basis).tolist()
    q_xy = ((snap.queries[head, query:query + 1] - mean) @ basis).tolist()
    own = snap.is_own()
    scatter = go.Scatter3d if dims == 3 else go.Scatter
    size = 3 if dims == 3 else 6

    def points(slots, name, color, symbol, msize, text=None, opacity=0.6):
        slots = list(slots)
        cols = list(zip(*[xy[s] for s in slots])) if slots else [[]] * dims
        coords = dict(zip("xyz", cols))
        hover = text if text is not None else [f"{doc_label(snap, int(snap.slot_doc[s]))}: "
                                               f"{snap.slot_text[s]}" for s in slots]
        return scatter(**coords, mode="markers", name=name, text=hover, hoverinfo="text",
                       marker=dict(color=color, size=msize, symbol=symbol, opacity=opacity,
                                   line=dict(width=1, color=QUERY_COLOR)))

    found = snap.topk_slots[head, query].tolist()
    distractor_found = [s for s in found if not own[s]]
    true = snap.true_slot.get(query)
    traces = [points(torch.nonzero(~own).flatten().tolist(), "distractor keys", DISTRACTOR_COLOR,
                     "circle", size),
              points(torch.nonzero(own).flatten().tolist(), "own-document keys", OWN_COLOR,
                     "circle", size),
              points([s for s in found if own[s]], "top-k found (own)", OWN_COLOR,
                     "diamond", size + 5, opacity=1.0),
              points(distractor_found, "top-k found (distractor: near miss)", DISTRACTOR_COLOR,
                     "diamond", size + 5, opacity=1.0),
              points([true] if true is not None else [], "true key (own definition)", OWN_COLOR,
                     "square", size + 8, opacity=1.0)]
    q_cols = dict(zip("xyz", zip(*q_xy)))
    traces.append(scatter(**q_cols, mode="markers", name="query", hoverinfo="text",
                          text=[f"query: {snap.query_text[query]}"],
                          marker=dict(color=QUERY_COLOR, size=size + 8,
                                      symbol="x" if dims == 3 else "star")))
    return traces


def key_space_figure(snap: MemorySnapshot, head: int = 0, query: int | None = None,
                     dims: int = 2, title: str = "") -> go.Figure:
    """Memory keys of one head, projected by PCA; the query's neighbours highlighted."""
    fig = go.Figure(key_space_traces(snap, head, query, dims))
    heading = title or f"Memory keys (head {head}, {snap.num_distractors} distractors), PCA"
    axes = dict(xaxis_title="PC 1 (unitless)", yaxis_title="PC 2 (unitless)")
    if dims == 3:
        fig.update_layout(scene=dict(**axes, zaxis_title="PC 3 (unitless)"))
    else:
        fig.update_layout(**axes)
    return fig.update_layout(title=heading, legend_title_text="key", height=450)


def similarities(snap: MemorySnapshot, head: int = 0) -> dict:
    """Cosine of every answer query with every memory key: ``{"own": [...], "distractors": [...]}``."""
    q = snap.queries[head, snap.answer_queries]  # (a, dh)
    sim = q @ snap.keys[head].float().T  # (a, M)
    own = snap.is_own()
    return {"own": sim[:, own].flatten().tolist(), "distractors": sim[:, ~own].flatten().tolist()}


def entry_key_cosine(snap: MemorySnapshot, head: int = 0) -> float:
    """Mean cosine between the '<v>' keys of different dictionary entries (own and distractors).

    High when keys of different entries crowd together. An early prototype of this recipe
    measured 0.2-0.8 under d=1 and ~0.05 under FoT. The shipped checkpoints give ~0.6 (d=1) and ~0.77 (FoT, head
    0): their FoT separates entries with a sharper learned temperature (tau ~17 vs ~9), not by
    spreading keys apart on average.
    """
    n = int(snap.slot_pos.max()) + 1
    own_v = {s % n for s in snap.true_slot.values()}
    slots = [s for s in range(snap.keys.shape[1]) if int(snap.slot_pos[s]) in own_v]
    keys = snap.keys[head, slots].float()
    sim = keys @ keys.T
    off = ~torch.eye(len(slots), dtype=torch.bool)
    return sim[off].mean().item() if off.any() else float("nan")


def similarity_figure(snap: MemorySnapshot, head: int = 0, title: str = "") -> go.Figure:
    """Histogram of query-key cosines, own document vs distractors (answer queries only)."""
    sims = similarities(snap, head)
    fig = go.Figure([
        go.Histogram(x=sims["distractors"], name="distractor keys", marker_color=DISTRACTOR_COLOR,
                     histnorm="probability density", opacity=0.7, xbins=dict(start=-1, end=1, size=0.05)),
        go.Histogram(x=sims["own"], name="own-document keys", marker_color=OWN_COLOR,
                     histnorm="probability density", opacity=0.7, xbins=dict(start=-1, end=1, size=0.05))])
    heading = title or (f"Query-key cosine, head {head} (mean cosine between entries' keys: "
                        f"{entry_key_cosine(snap, head):.2f})")
    return fig.update_layout(barmode="overlay", title=heading, height=450,
                             xaxis_title="cosine similarity <q, k> (unitless, -1..1)",
                             yaxis_title="density (per unit cosine)", legend_title_text="keys of")


def attention_mass(snap: MemorySnapshot, head: int | None = None) -> dict:
    """Mean dense attention mass of the answer queries: local, own document, each distractor."""
    mass = snap.doc_mass[:, snap.answer_queries]  # (h, a, N + 1)
    local = snap.local_mass[:, snap.answer_queries]
    if head is not None:
        mass, local = mass[head:head + 1], local[head:head + 1]
    per_doc = mass.mean(dim=(0, 1)).tolist()
    return {"local": local.mean().item(), "own": per_doc[snap.own], "distractors": per_doc[:snap.own]}


def attention_mass_traces(snaps: dict, head: int | None = None) -> list:
    """One bar group per model: attention mass on own document vs each distractor."""
    traces = []
    for name, snap in snaps.items():
        m = attention_mass(snap, head)
        x = ["own document"] + [f"distractor {j + 1}" for j in range(len(m["distractors"]))]
        colors = [OWN_COLOR] + [DISTRACTOR_COLOR] * len(m["distractors"])
        traces.append(go.Bar(x=x, y=[m["own"]] + m["distractors"], name=name,
                             marker=dict(color=colors, line=dict(width=2, color=MODEL_COLORS.get(
                                 name, QUERY_COLOR))),
                             hovertemplate=name + "<br>%{x}: %{y:.3f}<extra></extra>"))
    return traces


def attention_mass_figure(snaps: dict, head: int | None = None, title: str = "") -> go.Figure:
    """Bars of the answer queries' memory attention per document, one group per model."""
    n = next(iter(snaps.values())).num_distractors
    fig = go.Figure(attention_mass_traces(snaps, head))
    return fig.update_layout(
        title=title or f"Where memory attention goes with {n} distractor documents",
        barmode="group", xaxis_title="memory context (blue: own document, orange: distractors)",
        yaxis_title="attention mass (share of all attention, 0..1)", yaxis_range=[0, 1],
        legend_title_text="model", height=420)


def r_d_figure(curves: dict, title: str = "") -> go.Figure:
    """``curves`` ``{model: {d: r_d}}``: r_d against d, with the 1/d of a model that cannot tell
    documents apart."""
    fig = go.Figure()
    ds = sorted({d for c in curves.values() for d in c})
    fig.add_trace(go.Scatter(x=ds, y=[1 / d for d in ds], name="1/d (no focus)", mode="lines",
                             line=dict(dash="dash", color=LOCAL_COLOR)))
    for name, curve in curves.items():
        xs = sorted(curve)
        fig.add_trace(go.Scatter(x=xs, y=[curve[d] for d in xs], name=name, mode="lines+markers",
                                 line=dict(color=MODEL_COLORS.get(name))))
    return fig.update_layout(title=title or "r_d: attention on the own C_prev among d contexts (§3.3)",
                             xaxis_title="d (contexts in memory: own + d-1 others)",
                             yaxis_title="r_d (share of memory attention, 0..1)", xaxis_type="log",
                             yaxis_range=[0, 1.05], legend_title_text="model", height=420)


def metric_vs_memory_figure(results: dict, metric: str = "accuracy", title: str = "",
                            xlabel: str = "distractor documents in memory (N)") -> go.Figure:
    """``results`` ``{model: {N: value}}``: accuracy or perplexity as memory grows."""
    units = {"accuracy": "value-token accuracy (0..1)", "perplexity": "perplexity (tokens, lower is better)",
             "r": "attention on own document (share, 0..1)"}
    fig = go.Figure()
    for name, curve in results.items():
        numeric = all(isinstance(x, (int, float)) for x in curve)
        xs = sorted(curve) if numeric else list(curve)  # "1x", "4x", ...: the order given
        fig.add_trace(go.Scatter(x=[str(x) for x in xs], y=[curve[x] for x in xs], name=name,
                                 mode="lines+markers", line=dict(color=MODEL_COLORS.get(name))))
    return fig.update_layout(title=title or f"{metric} against memory size", xaxis_title=xlabel,
                             yaxis_title=units.get(metric, metric), legend_title_text="model",
                             height=420)


def retrieval_rows(snap: MemorySnapshot, query: int | None = None, head: int = 0) -> list:
    """The query's top-k: ``[{"rank", "snippet", "document", "cosine", "weight"}, ...]``."""
    query = snap.answer_queries[0] if query is None else query
    rows = []
    for rank, (slot, weight) in enumerate(zip(snap.topk_slots[head, query].tolist(),
                                              snap.topk_weights[head, query].tolist()), 1):
        cos = float(snap.queries[head, query] @ snap.keys[head, slot].float())
        rows.append({"rank": rank, "snippet": snap.slot_text[slot],
                     "document": doc_label(snap, int(snap.slot_doc[slot])),
                     "cosine": round(cos, 3), "weight": round(weight, 3),
                     "true key": "yes" if snap.true_slot.get(query) == slot else ""})
    return rows


def retrieval_table(snap: MemorySnapshot, query: int | None = None, head: int = 0) -> go.Figure:
    """A table of what the query retrieved: snippet, document, cosine, attention weight."""
    rows = retrieval_rows(snap, query, head)
    query = snap.answer_queries[0] if query is None else query
    cols = ["rank", "snippet", "document", "cosine", "weight", "true key"]
    fill = [[OWN_COLOR + "33" if r["document"] == "own document" else DISTRACTOR_COLOR + "33"
             for r in rows]] * len(cols)
    table = go.Table(header=dict(values=cols), cells=dict(values=[[r[c] for r in rows] for c in cols],
                                                          fill_color=fill))
    return go.Figure(table).update_layout(
        title=f"Top-{len(rows)} retrieved for query '{snap.query_text[query]}' (head {head})",
        height=120 + 28 * len(rows))


def weights_figure(weights: dict, n_local: int, title: str = "") -> go.Figure:
    """``weights`` ``{name: (n_local + m,) weights of one query}``: local keys then memory keys."""
    fig = go.Figure()
    for name, w in weights.items():
        w = [float(x) for x in w]
        fig.add_trace(go.Bar(x=list(range(len(w))), y=w, name=name,
                             marker_line_color=MODEL_COLORS.get(name, QUERY_COLOR),
                             marker_line_width=2,
                             marker_color=[LOCAL_COLOR] * n_local + [OWN_COLOR] * (len(w) - n_local)))
    fig.add_vline(x=n_local - 0.5, line_dash="dash")
    return fig.update_layout(
        title=title or "One query's attention: local keys (grey) | memory keys (blue)",
        barmode="group", xaxis_title="key index (local window first, then memory)",
        yaxis_title="attention weight (0..1)", legend_title_text="attention", height=380)


def timing_figure(results: dict, title: str, ytitle: str) -> go.Figure:
    """``{backend: {size: value}}`` against memory size (log x)."""
    fig = metric_vs_memory_figure(results, "", title=title, xlabel="memory size (keys per head)")
    return fig.update_layout(yaxis_title=ytitle, legend_title_text="search backend")
