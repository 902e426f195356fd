"""Assignments: how an exercise checks a student's function.

The exercises themselves (what to write, the hints, the solutions) live in ``fot_edu.teaching.exercises``;
this file is the kit behind them, in the manner of Kaggle Learn's ``learntools`` and of nbgrader:

* :class:`Exercise` runs a student's function on a fixed list of cases, compares each output with
  the library's, and on the first difference tries the known-wrong variants so that it can name
  the mistake in words. ``check`` prints and returns ``True``/``False``; it never raises, so a
  notebook run with *Run All* reaches its last cell.
  ``assert_correct`` is the graded form: it raises ``AssertionError`` with the same message, so
  an autograder's test cell fails.
* The student versions of notebooks and nbgrader's metadata: ``fot_edu.teaching.handouts``.
"""
from __future__ import annotations

import textwrap
from typing import Callable

import torch
from einops import rearrange

NOT_IMPLEMENTED = "not implemented yet: write your function in the cell above"

# a wrong variant: (what the student got wrong, in words; its output from the case's arguments
# and the student's output, the latter for variants fitted to it such as a gated mix)
Mistake = tuple[str, Callable[[dict, object], object]]


def randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    """Standard normal ``shape`` tensor from ``gen``: cases never touch the global seed."""
    return torch.randn(*shape, generator=gen) * scale


def to_tensor(x) -> torch.Tensor:
    """A student's output as a tensor (lists of numbers are accepted)."""
    if torch.is_tensor(x):
        return x.detach()
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"expected a tensor, got {type(x).__name__}") from None


def to_float(x) -> float:
    """A student's output as one Python number (a 0-d or one-element tensor is fine)."""
    if torch.is_tensor(x):
        if x.numel() != 1:
            raise TypeError(f"expected one number, got a tensor of shape {tuple(x.shape)}: "
                            f"average it (.mean()) and return .item()")
        return float(x.detach())
    try:
        return float(x)
    except (TypeError, ValueError):
        raise TypeError(f"expected one number, got {type(x).__name__}") from None


def _integral(x) -> bool:
    """An integer answer (an int, a bool, an integer tensor), as opposed to a float one."""
    return not x.is_floating_point() if torch.is_tensor(x) else isinstance(x, int)


def same(a, b, atol: float = 1e-5) -> bool:
    """Equal outputs: of one kind (an int is not a float), numbers within ``atol`` (or 1e-4 of
    their size), tensors of one shape, close (floats) or equal."""
    if _integral(a) != _integral(b):
        return False
    if not torch.is_tensor(a) or not torch.is_tensor(b):
        try:
            return number_problem(float(a), float(b), atol) is None
        except (TypeError, ValueError, RuntimeError):
            return False
    if a.shape != b.shape:
        return False
    if a.is_floating_point():
        return bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=1e-4))
    return bool(torch.equal(a.long(), b.long()))


def tensor_problem(got: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5) -> str | None:
    """What differs between two tensors, in one sentence; None when they agree."""
    if got.shape != expected.shape:
        return f"wrong shape: expected {tuple(expected.shape)}, got {tuple(got.shape)}"
    if not expected.is_floating_point():
        if got.is_floating_point() or got.dtype == torch.bool:
            return f"expected an integer (long) tensor, got dtype {got.dtype}"
        wrong = (got.long() != expected).nonzero()
        if len(wrong) == 0:
            return None
        i = tuple(wrong[0].tolist())
        return f"{len(wrong)} entries differ, the first at index {i}: expected {int(expected[i])}, got {int(got[i])}"
    diff = (got.double() - expected.double()).abs().nan_to_num(nan=float("inf"))
    if bool((diff <= atol + 1e-4 * expected.double().abs()).all()):
        return None
    i = tuple(torch.unravel_index(diff.argmax(), diff.shape))
    return f"max abs difference {float(diff[i]):.3g} at index {tuple(int(j) for j in i)}"


def number_problem(got: float, expected: float, atol: float = 1e-5) -> str | None:
    """What differs between two numbers (within ``atol`` or 1e-4 of their size), or None."""
    if got == expected or abs(got - expected) <= atol + 1e-4 * abs(expected):
        return None
    return f"expected {expected:.6g}, got {got:.6g}"


def describe(args: dict) -> str:
    """``q (2, 3, 6, 8), k=4, spec='32x'``: the case's inputs, as the failure message names them."""
    return ", ".join(f"{name} {tuple(v.shape)}" if torch.is_tensor(v) else f"{name}={v!r}"
                     for name, v in args.items())


class Exercise:
    """One exercise: ``check(fn)``, ``hint()``, ``solution()``.

    Args:
        name, signature: the student's function, e.g. ``"knn_search"``, ``"(queries, keys, k)"``.
        cases: returns the list of argument dicts (fixed seed), random cases first, edge cases after.
        reference: the library's answer for one case.
        convert: the student's output in comparable form (raises TypeError with a sentence).
        compare: ``(got, expected, args) -> None`` when right, else what differs, in a sentence
            (default: the tensors' shapes and values, :func:`tensor_problem`).
        mistakes: known-wrong variants, tried in order on the first case that differs.
        against: what the reference is, for the success line.
        hint_text, solution_source: printed by :meth:`hint` and :meth:`solution`.
    """

    def __init__(self, name: str, signature: str, cases: Callable[[], list[dict]],
                 reference: Callable, convert: Callable, mistakes: list[Mistake], against: str,
                 hint_text: str, solution_source: str, compare: Callable | None = None):
        self.name, self.signature, self.against = name, signature, against
        compare = compare or (lambda got, expected, args: tensor_problem(got, expected))
        self.cases, self.reference, self.convert, self.compare = cases, reference, convert, compare
        self.mistakes = mistakes
        self.hint_text = textwrap.dedent(hint_text).strip()
        self.solution_source = textwrap.dedent(solution_source).strip() + "\n"

    def __repr__(self) -> str:
        return (f"<exercise {self.name}{self.signature}: .check(fn), .assert_correct(fn), .hint(), "
                f".solution()>")

    def verdict(self, fn) -> tuple[bool, str]:
        """Run ``fn`` on every case (arguments by position, in the signature's order): ``(True,
        the success line)`` or ``(False, what is wrong on the first case that differs)``."""
        if not callable(fn):
            return False, (f"Incorrect: pass your function itself, e.g. check({self.name}), "
                           f"not a {type(fn).__name__}")
        cases = self.cases()
        for number, args in enumerate(cases, start=1):
            where = f"case {number} of {len(cases)} ({describe(args)})"
            expected = self.reference(**args)
            try:
                got = fn(*(v.clone() if torch.is_tensor(v) else v for v in args.values()))
            except NotImplementedError:
                return False, NOT_IMPLEMENTED
            except Exception as error:  # noqa: BLE001: a student's bug of any kind is reported
                message = (str(error).strip().splitlines() or [""])[0]
                return False, f"Incorrect: {self.name} raised {type(error).__name__}: {message}  [{where}]"
            try:
                got = self.convert(got)
                problem = self.compare(got, expected, args)
            except Exception as error:  # noqa: BLE001: an output of the wrong kind
                problem = str(error) or type(error).__name__
            if problem is not None:
                mistake = self._diagnose(args, got, expected)
                return False, (f"Incorrect: {self.name}, {where}:\n  "
                               + (f"{mistake}\n  ({problem})" if mistake else problem))
        return True, (f"Correct: {self.name} agrees with {self.against} on all {len(cases)} cases "
                      f"(random inputs and edge cases).")

    def check(self, fn) -> bool:
        """Self-study: print the verdict on ``fn`` and return True or False. Never raises, so a
        notebook run with *Run All* reaches its last cell."""
        ok, message = self.verdict(fn)
        print(message)
        return ok

    def assert_correct(self, fn) -> None:
        """An autograder's test (nbgrader's locked test cell): print the success line, or raise
        ``AssertionError`` with the same message ``check`` prints, so the cell fails and its
        points are lost."""
        ok, message = self.verdict(fn)
        if not ok:
            raise AssertionError(message)
        print(message)

    def wrong_version(self, number: int) -> Callable:
        """The known mistake ``mistakes[number]`` as a function with the student's signature (a
        wrong answer for tests and for trying out the checker); mistakes fitted to the student's
        own output have no such function."""
        arg_names = list(self.cases()[0])
        variant = self.mistakes[number][1]
        return lambda *args: variant(dict(zip(arg_names, args)), None)

    def _diagnose(self, args: dict, got, expected) -> str | None:
        """The first known-wrong variant whose output equals the student's (and, on this case,
        differs from the right answer), in words."""
        for message, variant in self.mistakes:
            try:
                wrong = variant(args, got)
                if same(got, wrong) and not same(wrong, expected):
                    return f"Likely mistake: {message}"
            except Exception:  # noqa: BLE001: a variant that does not apply to this case
                continue
        return None

    def hint(self) -> None:
        print(f"Hint for {self.name}{self.signature}:\n{self.hint_text}")

    def solution(self) -> None:
        print(self.solution_source, end="")

    def solution_function(self) -> Callable:
        """The printed solution as a function (tests check that it passes)."""
        namespace = {"torch": torch, "F": torch.nn.functional, "rearrange": rearrange}
        exec(compile(self.solution_source, f"<solution {self.name}>", "exec"), namespace)
        return namespace[self.name]
