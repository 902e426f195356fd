"""Corpora, splits, batches and streams (fot_edu.data.corpora, fot_edu.data.batches)."""
from __future__ import annotations

import socket

import pytest
import torch

from fot_edu.cli.parser import main
from fot_edu.config import DataConfig
from fot_edu.data import batches
from fot_edu.data.batches import (Batch, eval_documents, iter_stream_windows, pad_token,
                                  training_batch, vocab_size)
from fot_edu.data.corpora import (CORPORA, Document, clear_cache, corpus_info, load_corpus,
                                  split_documents)
from fot_edu.data.summary import corpus_summary, format_summary


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("fot_edu tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", CORPORA)
def test_every_corpus_loads_offline_with_20_documents_of_utf8_text(name, no_network):
    clear_cache()  # really read it, here, with the network refused
    docs = load_corpus(name)
    assert len(docs) >= 20
    assert [d.id for d in docs] == list(range(len(docs)))
    assert len({d.name for d in docs}) == len(docs)
    for doc in docs:
        assert doc.text.strip()
        assert "\r" not in doc.text
        assert doc.num_tokens == len(doc.text.encode("utf-8")) > 0
        assert isinstance(doc.text.encode("utf-8").decode("utf-8"), str)


def test_code_corpus_is_the_stdlib_without_tests_or_tables():
    docs = load_corpus("code")
    info = corpus_info("code")
    assert info["python_version"] == "3.11.7"  # the committed file's, whatever Python runs this
    assert set(info["manifest"]) == {d.name for d in docs}
    for doc in docs:
        parts = doc.name.split("/")
        assert doc.name.endswith(".py")
        assert not {"test", "tests", "idle_test", "encodings", "pydoc_data"} & set(parts[:-1])
        assert "site-packages" not in parts
        assert doc.num_tokens >= 1000  # >= 1 KB on disk; normalising may trim a few spaces
    assert any(d.name == "argparse.py" for d in docs)


def test_committed_corpora_record_source_and_license():
    for name in CORPORA:
        info = corpus_info(name)
        assert info["source"] and info["license"]
        assert len(info["manifest"]) == len(load_corpus(name))
    assert "Project Gutenberg" not in "".join(d.text for d in load_corpus("books"))


def test_unknown_corpus_is_a_value_error_that_names_the_choices():
    with pytest.raises(ValueError, match=r"corpus='pg19'.*code"):
        load_corpus("pg19")


@pytest.mark.parametrize("name", CORPORA)
def test_split_is_by_whole_document_and_deterministic(name):
    docs = load_corpus(name)
    train, evals = split_documents(docs, eval_fraction=0.1, seed=0)
    train_ids, eval_ids = {d.id for d in train}, {d.id for d in evals}
    assert not train_ids & eval_ids
    assert train_ids | eval_ids == {d.id for d in docs}
    assert len(evals) == round(0.1 * len(docs))
    again = split_documents(load_corpus(name), eval_fraction=0.1, seed=0)
    assert [d.id for d in again[1]] == [d.id for d in evals]
    other = split_documents(docs, eval_fraction=0.1, seed=1)
    assert [d.id for d in other[1]] != [d.id for d in evals]


def test_split_rejects_bad_fraction():
    docs = load_corpus("proofs")
    with pytest.raises(ValueError, match="eval_fraction=1.5"):
        split_documents(docs, eval_fraction=1.5)


@pytest.mark.parametrize("task", ["code", "books", "proofs", "dictionary"])
def test_training_batch_is_a_pure_function_of_its_arguments(task):
    cfg = DataConfig(task=task, window=64)
    a = training_batch(cfg, "train", batch_size=4, step=7, seed=3)
    b = training_batch(cfg, "train", batch_size=4, step=7, seed=3)
    c = training_batch(cfg, "train", batch_size=4, step=8, seed=3)
    for field in ("tokens", "targets", "doc_ids"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.tokens, c.tokens)
    assert a.tokens.shape == a.targets.shape == (4, 2, 64)
    assert a.tokens.dtype == a.targets.dtype == a.doc_ids.dtype == torch.long
    assert a.tokens.max() < vocab_size(cfg)


@pytest.mark.parametrize("split", ["train", "eval"])
@pytest.mark.parametrize("windows", [2, 3])
def test_corpus_rows_are_consecutive_windows_of_one_document(split, windows):
    cfg = DataConfig(task="code", window=16)
    batch = training_batch(cfg, split, batch_size=8, step=1, windows=windows)
    docs = {d.id: d for d in load_corpus("code")}
    train, evals = split_documents(list(docs.values()), batches.EVAL_FRACTION, batches.SPLIT_SEED)
    allowed = {d.id for d in (train if split == "train" else evals)}
    assert len(set(batch.doc_ids.tolist())) == 8  # rows hold distinct documents
    for row in range(8):
        doc = docs[int(batch.doc_ids[row])]
        assert doc.id in allowed
        start = int(batch.offsets[row])
        expected = doc.tokens[start:start + windows * 16 + 1]
        # C_prev, C_curr (, ...) are the document's windows in order, each just before the next
        assert torch.equal(batch.tokens[row].reshape(-1), expected[:-1])
        assert torch.equal(batch.targets[row].reshape(-1), expected[1:])
        assert torch.equal(batch.tokens[row, 1, 0], expected[16])
        assert torch.equal(batch.targets[row, 0, -1], batch.tokens[row, 1, 0])


def test_training_batch_validates_its_arguments():
    cfg = DataConfig(task="proofs", window=32)
    with pytest.raises(ValueError, match="split='test'"):
        training_batch(cfg, "test", batch_size=2, step=0)
    with pytest.raises(ValueError, match="step=-1"):
        training_batch(cfg, "train", batch_size=2, step=-1)
    with pytest.raises(ValueError, match="batch_size=64.*different documents"):
        training_batch(cfg, "eval", batch_size=64, step=0)


def _doc(doc_id: int, text: str) -> Document:
    return Document(id=doc_id, name=f"doc{doc_id}", text=text)


def test_stream_keeps_a_document_in_its_row_in_order_and_never_mixes_two():
    docs = [_doc(i, "".join(chr(97 + i)) * length) for i, length in
            enumerate([5, 23, 8, 16, 1, 40, 9])]
    n, b = 8, 3
    seen: dict[int, list[int]] = {}
    row_of: dict[int, int] = {}
    for step in iter_stream_windows(docs, batch_size=b, window=n, pad_id=0):
        assert step.tokens.shape == step.targets.shape == (b, n)
        for r in range(b):
            doc_id = int(step.doc_ids[r])
            if doc_id < 0:
                assert not step.active[r] and (step.targets[r] == -100).all()
                continue
            assert bool(step.new_doc[r]) == (doc_id not in seen)
            assert row_of.setdefault(doc_id, r) == r  # a document keeps its row
            real = step.tokens[r][step.tokens[r] != 0]
            assert set(real.tolist()) == {97 + doc_id}  # one document per window
            seen.setdefault(doc_id, []).extend(real.tolist())
    for doc in docs:  # every window, in order, nothing lost
        assert seen[doc.id] == doc.tokens.tolist()


def test_stream_targets_are_next_tokens_across_window_boundaries():
    docs = eval_documents(DataConfig(task="books", window=16), count=3)
    stream = list(iter_stream_windows(docs, batch_size=3, window=16, max_tokens_per_doc=100))
    tokens = torch.cat([s.tokens[0] for s in stream])
    targets = torch.cat([s.targets[0] for s in stream])
    length = 100
    assert torch.equal(tokens[:length], docs[0].tokens[:length])
    assert torch.equal(targets[:length - 1], tokens[1:length])
    assert (targets[length - 1:] == -100).all()


def test_stream_of_dictionary_documents_keeps_answer_only_targets():
    cfg = DataConfig(task="dictionary")
    docs = eval_documents(cfg, count=4, windows=3)
    steps = list(iter_stream_windows(docs, batch_size=2, window=cfg.window, pad_id=pad_token(cfg)))
    assert len(steps) == 6
    assert steps[0].new_doc.all() and not steps[1].new_doc.any() and steps[3].new_doc.all()
    assert torch.equal(torch.cat([s.targets[1] for s in steps[:3]]), docs[1].targets)


def test_vocab_size():
    assert vocab_size(DataConfig(task="code")) == 256
    assert vocab_size(DataConfig(task="dictionary", num_symbols=32)) == 36


@pytest.mark.parametrize("name", CORPORA + ("dictionary",))
def test_corpus_summary_and_cli_show(name, capsys):
    summary = corpus_summary(name, sample_chars=50)
    assert summary["corpus"] == name and summary["sample"]
    if name != "dictionary":
        assert summary["documents"] == summary["train_documents"] + summary["eval_documents"] >= 20
    assert name in format_summary(summary)
    assert main(["data", "show", name]) == 0
    assert f"corpus: {name}" in capsys.readouterr().out


def test_batch_dataclass_fields():
    batch = training_batch(DataConfig(), "eval", batch_size=2, step=0)
    assert isinstance(batch, Batch) and batch.doc_ids.shape == (2,)
    assert batch.doc_ids[0] != batch.doc_ids[1]
