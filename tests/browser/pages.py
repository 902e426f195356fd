"""A browser page that stays on this machine: what every browser test opens."""
from __future__ import annotations

LOOPBACK = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")


def open_page(browser, request, size: tuple[int, int], allowed: tuple[str, ...] = LOOPBACK):
    """``(context, page)``: a fresh page that may fetch only URLs starting with ``allowed``; it
    aborts the rest and lists them in ``page.outside`` (a request elsewhere is a bug, or a CDN in a
    notebook), and keeps the console and page errors in ``page.errors`` for the failure report."""
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    outside: list[str] = []

    def route(r):
        if r.request.url.startswith(allowed):
            return r.continue_()
        outside.append(r.request.url)
        return r.abort()

    context.route("**/*", route)
    pg = context.new_page()
    logs: list[str] = []
    pg.on("console", lambda m: logs.append(f"console.{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: logs.append(f"pageerror: {e}"))
    request.node.browser_logs, request.node.browser_page = logs, pg
    pg.outside, pg.errors = outside, logs
    return context, pg
