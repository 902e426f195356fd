"""Several event streams computed at once, one process each, merged as their events come.

The race (``fot_edu.teaching.race``) trains ``d = 1`` and FoT at the same time on a CPU: each run
is a generator of ``(event, data)`` pairs; here each generator runs in its own spawned process
with its own torch threads, and the calling process reads their events from one queue. A failure
in a child reaches the parent as an exception carrying the child's traceback.

``target(name, *args)`` must be a module-level function (the child imports it by name) that
returns an iterator of ``(event, data)``; ``data`` must pickle (tensors as :func:`to_bytes`).
"""
from __future__ import annotations

import io
import multiprocessing
import queue as queues
import traceback
from typing import Callable, Iterator

import torch

__all__ = ["side_by_side", "to_bytes", "from_bytes"]


def to_bytes(state: dict) -> bytes:
    """A state dict as bytes (CPU tensors), to send between processes."""
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer := io.BytesIO())
    return buffer.getvalue()


def from_bytes(blob: bytes) -> dict:
    return torch.load(io.BytesIO(blob), weights_only=True)


def _child(target, name, args, threads, events) -> None:
    torch.set_num_threads(threads)
    try:
        for event in target(name, *args):
            events.put(event)
        events.put(("_finished", {"name": name}))
    except BaseException:
        events.put(("_error", {"name": name, "traceback": traceback.format_exc()}))


def side_by_side(target: Callable[..., Iterator], names: tuple[str, ...], args: tuple = (),
                 threads: int = 1) -> Iterator:
    """``yield "started", {}``, then every ``(event, data)`` of ``target(name, *args)`` for each
    name, each in its own process with ``threads`` torch threads, in the order they arrive."""
    context = multiprocessing.get_context("spawn")  # fork is unsafe once torch has run threads
    events = context.Queue()
    children = [context.Process(target=_child, daemon=True, args=(target, name, args, threads, events))
                for name in names]
    for child in children:
        child.start()
    try:
        yield "started", {}
        finished = 0
        while finished < len(children):
            try:
                event, data = events.get(timeout=2)
            except queues.Empty:
                dead = [c.exitcode for c in children if c.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a side-by-side process died (exit code {dead[0]})") from None
                continue
            if event == "_error":
                raise RuntimeError(f"the {data['name']} process failed:\n{data['traceback']}")
            if event == "_finished":
                finished += 1
                continue
            yield event, data
    finally:
        for child in children:
            child.join(timeout=5)
            child.terminate()  # only one still running: the parent gave up on it
