"""Looking at the data: what ``python -m fot_edu data show CORPUS`` prints.

:func:`corpus_summary` counts a corpus (documents, the train/eval split, sizes in tokens), says
where it came from and under what licence, and shows a held-out sample; for the synthetic
dictionary task it shows one document window by window. :func:`format_summary` makes that a few
readable lines.
"""
from __future__ import annotations

import statistics

from fot_edu.config import DataConfig
from fot_edu.data import dictionary
from fot_edu.data.batches import vocab_size
from fot_edu.data.corpora import (EVAL_FRACTION, SPLIT_SEED, corpus_info, load_corpus,
                                  split_documents)

__all__ = ["corpus_summary", "format_summary"]


def corpus_summary(name: str, large: bool = False, sample_chars: int = 400) -> dict:
    """Counts, sizes, provenance and a sample of corpus ``name`` (or of the dictionary task)."""
    if name == "dictionary":
        cfg = DataConfig(task="dictionary")
        doc = dictionary.dictionary_documents(cfg, 1, windows=3)[0]
        windows = doc.tokens.reshape(3, cfg.window)
        return {"corpus": "dictionary", "vocab_size": vocab_size(cfg), "window": cfg.window,
                "num_symbols": cfg.num_symbols, "key_len": cfg.key_len,
                "value_len": cfg.value_len, "entries_per_window": cfg.entries_per_window,
                "sample_name": doc.name,
                "sample": "\n".join(f"window {j}: {dictionary.format_window(w, cfg)}"
                                    for j, w in enumerate(windows))}
    docs = load_corpus(name, large)
    train, evals = split_documents(docs, EVAL_FRACTION, SPLIT_SEED)
    sizes = [d.num_tokens for d in docs]
    info = corpus_info(name, large)
    sample = max(evals, key=lambda d: d.num_tokens)
    out = {"corpus": name, "documents": len(docs), "train_documents": len(train),
           "eval_documents": len(evals), "tokens": sum(sizes), "min_tokens": min(sizes),
           "median_tokens": int(statistics.median(sizes)), "max_tokens": max(sizes),
           "source": info.get("source", ""), "license": info.get("license", ""),
           "sample_name": sample.name, "sample": sample.text[:sample_chars]}
    if "python_version" in info:
        out["python_version"] = info["python_version"]
    return out


def format_summary(summary: dict) -> str:
    """The summary as a few readable lines followed by the sample."""
    lines = [f"{k:>18}: {v}" for k, v in summary.items() if k not in ("sample", "sample_name")]
    lines += ["", f"--- sample: {summary['sample_name']} ---", summary["sample"]]
    return "\n".join(lines)
