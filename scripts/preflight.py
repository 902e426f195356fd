"""Before ``make`` creates .venv: is this Python new enough, and can it make a virtual environment?

    python3 scripts/preflight.py [NAME]

prints one line and exits 0 when it can; otherwise it prints the problem and its fix in one line
and exits 1. NAME (the Makefile passes its ``PYTHON``) is what the line calls this interpreter.
Standard library only, and written so that every Python 3 (and 2.7) can parse it: an old
interpreter gets this message instead of a syntax error.
"""
import os
import sys

MIN_VERSION = (3, 10)  # pyproject.toml: requires-python = ">=3.10"


def problems(version, has_venv, has_ensurepip, python="python3"):
    """What stops ``python -m venv .venv && .venv/bin/pip install ...``, one line each with its
    fix. ``version``: (major, minor); ``has_venv``/``has_ensurepip``: the modules can be found."""
    found = []
    if tuple(version[:2]) < MIN_VERSION:
        found.append(
            "%s is Python %d.%d; fot_edu needs %d.%d or newer: install one (Debian/Ubuntu: "
            "sudo apt install python3.11 python3.11-venv) and run make with PYTHON=python3.11"
            % ((python,) + tuple(version[:2]) + MIN_VERSION))
        return found  # the fixes below would be for the wrong interpreter
    if not (has_venv and has_ensurepip):
        missing = " and ".join(name for name, ok in (("venv", has_venv), ("ensurepip", has_ensurepip))
                               if not ok)
        found.append(
            "%s (Python %d.%d) has no %s, so it cannot create .venv: on Debian/Ubuntu run "
            "sudo apt install python3-venv (for this version: python%d.%d-venv), elsewhere "
            "install a Python from python.org or your package manager"
            % ((python, version[0], version[1], missing) + tuple(version[:2])))
    return found


def _module_found(name):
    try:
        import importlib.util
        return importlib.util.find_spec(name) is not None
    except ImportError:  # Python 2
        import imp
        try:
            imp.find_module(name)
            return True
        except ImportError:
            return False


def main():
    python = sys.argv[1] if len(sys.argv) > 1 else os.path.basename(sys.executable or "python3")
    found = problems(sys.version_info, _module_found("venv"), _module_found("ensurepip"), python)
    if found:
        for line in found:
            sys.stderr.write("pre-flight: %s\n" % line)
        return 1
    print("pre-flight: %s is Python %d.%d.%d with venv and ensurepip: fine"
          % ((python,) + tuple(sys.version_info[:3])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
