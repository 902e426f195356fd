"""The committed code corpus (fot_edu/shipped/code.jsonl.gz): one fixed set of documents and one fixed split on
every Python, read from the file and never from the running interpreter's stdlib."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sysconfig

import pytest

from fot_edu.data import batches, corpora
from fot_edu.data.corpora import (CORPORA, DATA_DIR, Document, clear_cache, corpus_info,
                                  load_corpus, read_jsonl, split_documents)
from fot_edu.data.corpus_build import build_code, build_corpora, write_jsonl

# The shipped code-* checkpoints were trained on this file: its documents and its eval split must
# not change (a rebuild under another Python would change both; see fot_edu/shipped/README.md).
CODE_PYTHON = "3.11.7"
CODE_DOCUMENTS = 529
CODE_EVAL_NAMES_SHA256 = "f1e6f80d48a90d14c450046bae0cafacccdf4a6f80dda7bb57825c2ec57438bd"
# files that CPython's own build generates (install paths, compiler flags): they differ between
# two builds of the same version
BUILD_GENERATED = ("_sysconfigdata_", "config-3.11-")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture
def fresh_cache():
    clear_cache()
    batches._split.cache_clear()
    yield
    clear_cache()
    batches._split.cache_clear()


@pytest.fixture
def no_stdlib(monkeypatch):
    """Looking up or walking the interpreter's stdlib fails."""
    def refuse(*args, **kwargs):
        raise AssertionError("loading a corpus looked at the interpreter's stdlib")
    for name in ("get_paths", "get_path"):
        monkeypatch.setattr(sysconfig, name, refuse)
    monkeypatch.setattr(os, "walk", refuse)


def test_code_corpus_is_the_committed_file_from_python_3_11(fresh_cache):
    info = corpus_info("code")
    assert info["python_version"] == CODE_PYTHON
    assert "3.11.7" in info["source"] and "PSF" in info["license"]
    docs = load_corpus("code")
    assert len(docs) == info["documents"] == CODE_DOCUMENTS
    assert [d.name for d in docs] == [d.name for d in read_jsonl(DATA_DIR / "code.jsonl.gz")]


@pytest.mark.parametrize("name", CORPORA)
def test_manifest_matches_the_loaded_documents(name, fresh_cache):
    docs, info = load_corpus(name), corpus_info(name)
    assert list(info["manifest"]) == [d.name for d in docs]
    assert list(info["manifest"].values()) == [d.num_tokens for d in docs]
    assert info["bytes"] == sum(d.num_tokens for d in docs)
    if name == "code" or "sha256" in info:  # books/proofs get theirs when next rebuilt
        assert info["sha256"] == {d.name: _sha(d.text) for d in docs}


def test_code_split_is_the_one_recorded_beside_the_file(fresh_cache):
    info = corpus_info("code")
    train, evals = split_documents(load_corpus("code"), batches.EVAL_FRACTION, batches.SPLIT_SEED)
    assert (info["split"]["eval_fraction"], info["split"]["seed"]) == (batches.EVAL_FRACTION,
                                                                      batches.SPLIT_SEED)
    assert [d.name for d in evals] == info["split"]["eval"]
    assert [d.name for d in batches._split("code", False)["eval"]] == info["split"]["eval"]
    assert len(evals) == 53 and len(train) == CODE_DOCUMENTS - 53
    assert _sha("\n".join(info["split"]["eval"])) == CODE_EVAL_NAMES_SHA256


def test_loading_code_never_looks_at_the_stdlib(fresh_cache, no_stdlib):
    assert not hasattr(corpora, "sysconfig")
    docs = load_corpus("code")
    assert len(docs) == CODE_DOCUMENTS
    assert corpus_info("code")["python_version"] == CODE_PYTHON


def test_code_is_read_from_the_data_folder(fresh_cache, no_stdlib, monkeypatch, tmp_path):
    docs = [Document(i, f"pkg/m{i}.py", f"x = {i}\n" * 200) for i in range(4)]
    write_jsonl(tmp_path / "code.jsonl.gz", docs, {"corpus": "code", "python_version": "0.0"})
    monkeypatch.setattr(corpora, "DATA_DIR", tmp_path)
    loaded = load_corpus("code")
    assert [(d.name, d.text) for d in loaded] == [(d.name, d.text) for d in docs]
    info = corpus_info("code")
    assert info["python_version"] == "0.0"
    assert info["split"]["eval"] == [d.name for d in split_documents(loaded)[1]]


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_build_code_keeps_readable_py_files_of_1kb_in_path_order(tmp_path, caplog):
    body = b"def f():  \r\n    return 1\r\n" * 60  # > 1 KB, CRLF and trailing spaces
    _write(tmp_path / "zlib_tools.py", body)
    _write(tmp_path / "abc.py", body)
    _write(tmp_path / "email" / "parser.py", body)
    _write(tmp_path / "small.py", b"x = 1\n")
    _write(tmp_path / "notes.txt", body)
    _write(tmp_path / "latin.py", "# caf\u00e9\n".encode("latin-1") * 200)
    for skipped in ("test", "tests", "idle_test", "encodings", "pydoc_data", "site-packages"):
        _write(tmp_path / skipped / "x.py", body)
    docs, meta = build_code(tmp_path)
    assert [d.name for d in docs] == ["abc.py", "email/parser.py", "zlib_tools.py"]
    assert [d.id for d in docs] == [0, 1, 2]
    assert docs[0].text == "def f():\n    return 1\n" * 60
    assert docs[0].source.endswith(f"/lib/{tmp_path.name}/abc.py")
    assert not os.path.isabs(docs[0].source)  # no path of the machine that built it
    assert meta["skipped_not_utf8"] == ["latin.py"] and "latin.py" in caplog.text
    assert meta["python_version"] == platform.python_version()
    with_tests, _ = build_code(tmp_path, include_tests=True)
    assert {"test/x.py", "tests/x.py", "idle_test/x.py"} <= {d.name for d in with_tests}
    assert "encodings/x.py" not in {d.name for d in with_tests}


def test_build_writes_a_reproducible_file_with_manifest_and_split(tmp_path, monkeypatch):
    body = "import os\n" * 200
    for name in ("a.py", "b.py", "c/d.py"):
        _write(tmp_path / "lib" / "python9.9" / name, body.encode())
    stdlib = tmp_path / "lib" / "python9.9"
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"stdlib": str(stdlib)})
    out = tmp_path / "out"
    report = build_corpora(out, code=True, proofs_source=tmp_path / "none")
    assert report["code"].startswith("3 documents")
    first = (out / "code.jsonl.gz").read_bytes()
    meta = json.loads((out / "code.meta.json").read_text())
    assert meta["manifest"] == {"a.py": len(body), "b.py": len(body), "c/d.py": len(body)}
    assert meta["sha256"]["a.py"] == _sha(body)
    written = read_jsonl(out / "code.jsonl.gz")
    assert meta["split"]["eval"] == [d.name for d in split_documents(written)[1]]
    build_corpora(out, code=True, proofs_source=tmp_path / "none")
    assert (out / "code.jsonl.gz").read_bytes() == first


@pytest.mark.skipif(platform.python_version() != CODE_PYTHON,
                    reason=f"the committed code corpus comes from Python {CODE_PYTHON}'s stdlib")
def test_rebuilding_from_this_stdlib_gives_the_committed_documents(fresh_cache):
    built, meta = build_code()
    committed = load_corpus("code")
    assert [d.name for d in built] == [d.name for d in committed]
    assert meta["skipped_not_utf8"] == corpus_info("code")["skipped_not_utf8"]
    for new, old in zip(built, committed):
        if not new.name.startswith(BUILD_GENERATED):
            assert new.text == old.text, new.name
