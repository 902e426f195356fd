"""The views of fot_edu.teaching.figures / widgets, driven headless: set a control, check the figure's data."""
import math

import plotly.graph_objects as go
import pytest
import torch

from fot_edu.evaluation import knn_recall, probes
from fot_edu.teaching import figures, report, widgets
from fot_edu.training import pretrained
from fot_edu.training.presets import PRESETS
from fot_edu.training.train import train


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    out = {}
    for label, name in (("d=1", "dict-d1"), ("FoT", "dict-fot")):
        result = pretrained.train_live(pretrained.fallback_config(name, fast=True))
        out[label] = (result.model, result.config)
    return out


@pytest.fixture(scope="module")
def snap(models):
    model, cfg = models["FoT"]
    return probes.memory_snapshot(model, cfg, 3, k=4)


def _labelled(fig):
    """Every plot has a title, axis titles with units, a legend title."""
    layout = fig.layout
    assert layout.title.text
    if fig.data and fig.data[0].type not in ("table", "scatter3d"):
        assert layout.xaxis.title.text and layout.yaxis.title.text
        assert "(" in layout.yaxis.title.text  # a unit or a range in brackets
        assert layout.legend.title.text


def test_fallback_config_is_small_and_keeps_the_kind():
    fast = pretrained.fallback_config("dict-mt", fast=True)
    assert fast.model.memory_kind == "mt" and fast.d_at(fast.steps) == 1 and fast.steps <= 50
    assert pretrained.fallback_config("dict-vanilla", fast=True).model.memory_layers == ()
    slow = pretrained.fallback_config("dict-fot", fast=False)
    assert slow.steps <= 300 and slow.d_at(slow.steps - 1) == 8
    with pytest.raises(ValueError, match="preset"):
        pretrained.fallback_config("no-such-model", fast=True)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_has_a_fallback_that_takes_a_training_step(name):
    cfg = pretrained.fallback_config(name, fast=True).replace(steps=1)
    assert train(cfg, progress=False).history[0]["loss"] > 0


def test_snapshot_slots_and_masses(snap, models):
    n = models["FoT"][1].data.window
    assert snap.keys.shape[1] == 4 * n and snap.slot_doc.tolist().count(3) == n
    # true keys are own-document slots; dense attention over local + contexts sums to one
    assert all(snap.slot_doc[s] == snap.own for s in snap.true_slot.values())
    total = snap.doc_mass.sum(-1) + snap.local_mass
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-4, rtol=0)
    assert snap.topk_slots.shape[-1] == 4
    mass = probes.attention_mass(snap)
    assert len(mass["distractors"]) == 3 and 0 <= mass["own"] <= 1


def test_static_figures_are_labelled(snap):
    for fig in (figures.key_space_figure(snap), figures.similarity_figure(snap),
                figures.attention_mass_figure({"FoT": snap}), figures.r_d_figure({"FoT": {2: .6, 4: .4}}),
                figures.metric_vs_memory_figure({"FoT": {0: 1.0, 3: 0.5}}), figures.retrieval_table(snap)):
        assert isinstance(fig, go.Figure)
        _labelled(fig)
    fig3 = figures.key_space_figure(snap, dims=3)
    assert fig3.data[0].type == "scatter3d" and fig3.layout.scene.zaxis.title.text


def test_loss_curve_has_a_numeric_step_axis_and_marks_the_d_switches():
    fig = figures.loss_curve_figure({"FoT": {0: 2.0, 1: 1.5, 10: 1.2}}, d_switches={5: 4, 8: 8})
    _labelled(fig)
    assert list(fig.data[0].x) == [0, 1, 10]  # numbers, not category labels
    assert [a.text for a in fig.layout.annotations] == ["d = 4", "d = 8"]


def test_induction_figure_has_one_heatmap_per_model_on_one_scale():
    scores = {"a": {"scores": [[0.1, 0.2], [0.0, 0.9]], "uniform": 0.005},
              "b": {"scores": [[0.3, 0.0], [0.0, 0.0]], "uniform": 0.005}}
    fig = figures.induction_figure(scores)
    assert [t.name for t in fig.data] == ["a", "b"]
    assert all((t.zmin, t.zmax) == (0, 1) for t in fig.data)
    assert fig.data[0].text[1][1] == "0.900" and list(fig.data[1].z[0]) == [0.3, 0.0]
    assert [fig.layout.xaxis.title.text, fig.layout.xaxis2.title.text] == ["a", "b"]
    assert "0.005" in fig.layout.title.text


def test_key_space_marks_query_neighbours_and_true_key(snap):
    q = snap.answer_queries[0]
    fig = figures.key_space_figure(snap, head=0, query=q)
    names = [t.name for t in fig.data]
    found = sum(len(fig.data[names.index(n)].x) for n in names if n.startswith("top-k"))
    assert found == 4
    assert len(fig.data[names.index("true key (own definition)")].x) == 1
    n_keys = len(fig.data[0].x) + len(fig.data[1].x)
    assert n_keys == snap.keys.shape[1]
    sims = probes.similarities(snap)
    assert len(sims["own"]) + len(sims["distractors"]) == len(snap.answer_queries) * n_keys
    assert all(-1.001 <= s <= 1.001 for s in sims["own"])


def test_retrieval_rows_match_a_brute_force_search(snap):
    q = snap.answer_queries[0]
    rows = probes.retrieval_rows(snap, q)
    best = (snap.keys[0] @ snap.queries[0, q]).topk(4).values
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert [r["cosine"] for r in rows] == pytest.approx(best.tolist(), abs=1e-3)


def test_entry_key_cosine_is_a_mean_cosine(snap):
    value = probes.entry_key_cosine(snap)
    assert -1 <= value <= 1 and not math.isnan(value)


def test_distraction_dial_slider_changes_the_bars(models):
    widget, h = widgets.distraction_dial(models, max_distractors=7, value=1)
    # per model: one own-document bar (blue) and one bar per distractor (orange)
    assert [len(t.y) for t in h["mass"].data] == [1, 1, 1, 1]
    assert [t.marker.color for t in h["mass"].data[:2]] == [figures.OWN_COLOR, figures.DISTRACTOR_COLOR]
    assert h["mass"].data[0].marker.pattern.shape != h["mass"].data[2].marker.pattern.shape
    h["distractors"].value = 5
    assert [len(t.y) for t in h["mass"].data] == [1, 5, 1, 5]
    assert "5 distractor" in h["mass"].layout.title.text and "own document" in h["own"].value


def test_key_space_explorer_controls(models):
    widget, h = widgets.key_space_explorer(models, 2, k=4, max_distractors=6)
    before = len(h["keys"].data[0].x)
    h["distractors"].value = 5
    assert len(h["keys"].data[0].x) > before  # more distractor keys
    old_sim = list(h["similarity"].data[1].x)
    h["head"].value = 1
    assert list(h["similarity"].data[1].x) != old_sim
    first = list(h["keys"].data[-1].x)
    h["query"].value = h["query"].options[-1][1]
    assert list(h["keys"].data[-1].x) != first  # the query star moved
    h["dims"].value = 3
    assert h["keys"].data[0].type == "scatter3d"
    h["model"].value = "d=1"
    assert h["keys"].layout.title.text.startswith("d=1")


def test_classroom_dashboard_controls(models):
    widget, h = widgets.classroom_dashboard(models, k=4, max_distractors=5, r_d_values=(1, 2, 4))
    star = h["r_d"].data[-1]
    assert list(star.x) == [h["d"].value]
    h["d"].value = 1
    assert list(h["r_d"].data[-1].x) == [1] and h["r_d"].data[-1].y[0] == pytest.approx(1.0)
    h["distractors"].value = 5
    assert len(h["mass"].data[1].y) == 5  # one bar per distractor
    title_before = h["table"].layout.title.text
    h["query"].value = h["query"].options[-1][1]
    assert h["table"].layout.title.text != title_before
    assert len(h["table"].data[0].cells.values[0]) == 4  # k rows
    h["model"].value = "d=1"
    assert "d=1" in h["keys"].layout.title.text


def test_vanilla_model_is_refused(models):
    result = train(pretrained.fallback_config("dict-vanilla", fast=True).replace(steps=2), progress=False,
                   device="cpu")
    with pytest.raises(ValueError, match="memory layer"):
        probes.memory_snapshot(result.model, result.config, 2)


def test_report_is_standalone_html(models, tmp_path):
    path = report.write_report(tmp_path / "report.html", models)
    text = path.read_text()
    assert text.count("<script src=") == 0  # plotly.js embedded, nothing fetched
    assert text.count('class="plotly-graph-div"') == len(report.headline_figures(models)) == 7


def test_measurements_have_the_right_shape(models):
    curves = probes.r_d_curves(models, (1, 2, 4))
    assert curves["FoT"][1] == pytest.approx(1.0)
    res = probes.distraction_curves({"FoT": models["FoT"]}, (1, 3), k=4)
    assert set(res["precision"]["FoT"]) == {1, 3}
    keys, queries = knn_recall.collect_keys(*models["FoT"], windows=8)
    bench = knn_recall.knn_benchmark(keys, queries, [64], k=4, backends=("exact", "faiss"))
    assert bench["recall"]["exact"][64] == 1.0 and bench["recall"]["faiss"][64] > 0.95
