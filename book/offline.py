"""Does the built book load anything from outside the machine? A scan of its HTML and CSS.

A *resource* is something the browser fetches by itself when it shows a page: a script, a
stylesheet, an icon, a font, an image, a frame, a media source. Every resource must be a relative
path (or a ``data:`` URL). A link that a reader clicks (``<a href="https://arxiv.org/...">``) is
not a resource and may point anywhere: the book cites the paper. The scan reads every ``.html``
file (``<script src>``, every ``<link href>``, ``src``/``srcset``/``poster``/``data`` of
``img``, ``iframe``, ``source``, ``video``, ``audio``, ``embed``, ``object``, ``input``, ``url(...)``
and ``@import`` in ``style`` attributes and ``<style>`` blocks) and every ``.css`` file.

Text inside scripts is not read (plotly.js and MathJax mention their home pages in strings that
never load); what a page really requests is checked in a browser by ``tests/browser/test_book.py``.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

# a URL that leaves the machine: a scheme with a host, or protocol-relative ("//cdn...")
OUTSIDE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.I)
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""", re.I)
RESOURCE_ATTRS = {
    "script": ("src",), "link": ("href",), "img": ("src", "srcset"), "iframe": ("src",),
    "source": ("src", "srcset"), "video": ("src", "poster"), "audio": ("src",), "embed": ("src",),
    "object": ("data",), "input": ("src",), "track": ("src",),
}


def _urls_in_srcset(value: str) -> list[str]:
    return [part.strip().split()[0] for part in value.split(",") if part.strip()]


def outside_in_css(text: str) -> list[str]:
    """The URLs in CSS text (``url(...)``, ``@import``) that leave the machine."""
    found = [a or b for a, b in CSS_URL.findall(text)]
    return [u for u in found if OUTSIDE.match(u)]


class _Scanner(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in RESOURCE_ATTRS.get(tag, ()):
            value = attrs.get(name)
            if not value:
                continue
            urls = _urls_in_srcset(value) if name == "srcset" else [value]
            self.found += [f"<{tag} {name}={u}>" for u in urls if OUTSIDE.match(u)]
        if attrs.get("style"):
            self.found += [f"<{tag} style=url({u})>" for u in outside_in_css(attrs["style"])]
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.found += [f"<style> url({u})" for u in outside_in_css(data)]


def outside_in_html(text: str) -> list[str]:
    """The resource URLs in an HTML document that leave the machine, as ``<tag attr=url>``."""
    scanner = _Scanner()
    scanner.feed(text)
    scanner.close()
    return scanner.found


def scan(site: Path) -> dict[str, list[str]]:
    """``{relative path: [outside resources]}`` for every HTML and CSS file under ``site`` that has any."""
    problems: dict[str, list[str]] = {}
    for path in sorted(site.rglob("*")):
        if path.suffix == ".html":
            found = outside_in_html(path.read_text(encoding="utf-8", errors="replace"))
        elif path.suffix == ".css":
            found = outside_in_css(path.read_text(encoding="utf-8", errors="replace"))
        else:
            continue
        if found:
            problems[str(path.relative_to(site))] = found
    return problems
