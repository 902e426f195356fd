"""The files users, citers and contributors look for: LICENSE, the corpus licence beside the corpus,
CITATION.cff (valid against the CFF 1.2.0 schema), the README's BibTeX, the changelog, the
pre-commit hooks, and a CI script that sets CI itself.

The CFF schema is the one the ``cffconvert`` wheel ships (``cffconvert/schemas/1.2.0/schema.json``).
``cffconvert`` itself cannot be installed beside JupyterLab (it requires ``jsonschema<4``), so
``make test`` downloads its wheel, without installing it, into ``.venv/cffconvert/`` and this test
reads the schema from there."""
from __future__ import annotations

import copy
import json
import os
import re
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WHEELS = Path(sys.prefix) / "cffconvert"  # make test: pip download --no-deps cffconvert


def _schema() -> dict:
    wheels = sorted(WHEELS.glob("cffconvert-*.whl"))
    if not wheels:
        message = f"no cffconvert wheel in {WHEELS}: run `make venv-test` (it downloads the CFF schema)"
        if os.environ.get("CI"):
            raise FileNotFoundError(message)
        pytest.skip(message)
    with zipfile.ZipFile(wheels[-1]) as wheel:
        return json.loads(wheel.read("cffconvert/schemas/1.2.0/schema.json"))


SCHEMA = None


@pytest.fixture(scope="module", autouse=True)
def schema():
    global SCHEMA
    SCHEMA = _schema()
PAPER_AUTHORS = [("Szymon", "Tworkowski"), ("Konrad", "Staniszewski"), ("Mikołaj", "Pacek"),
                 ("Yuhuai", "Wu"), ("Henryk", "Michalewski"), ("Piotr", "Miłoś")]
PAPER_TITLE = "Focused Transformer: Contrastive Training for Context Scaling"


def _version() -> str:
    return re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


@pytest.fixture(scope="module")
def cff():
    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def _errors(document):
    validator = jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


def test_citation_cff_is_valid_cff_1_2_0(cff):
    assert SCHEMA["$id"] == "https://citation-file-format.github.io/1.2.0/schema.json"
    assert cff["cff-version"] == "1.2.0"
    assert _errors(cff) == []


@pytest.mark.parametrize("break_it", [
    lambda d: d.pop("authors"),
    lambda d: d["preferred-citation"].update(type="journal article"),
    lambda d: d.update({"date-released": "2 December 2026"}),
    lambda d: d.update(license="MIT License"),
])
def test_the_schema_check_catches_a_broken_file(cff, break_it):
    broken = copy.deepcopy(cff)
    break_it(broken)
    assert _errors(broken)


def test_citation_names_this_version_and_prefers_the_paper(cff):
    assert str(cff["version"]) == _version() and cff["license"] == "MIT"
    paper = cff["preferred-citation"]
    assert paper["type"] == "conference-paper" and paper["title"] == PAPER_TITLE
    assert [(a["given-names"], a["family-names"]) for a in paper["authors"]] == PAPER_AUTHORS
    assert paper["year"] == 2023 and "NeurIPS 2023" in paper["conference"]["name"]
    assert {"type": "doi", "value": "10.48550/arXiv.2307.03170"} in [
        {k: i[k] for k in ("type", "value")} for i in paper["identifiers"]]


def test_readme_bibtex_matches_the_citation_file():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    entry = re.search(r"```bibtex\n(@inproceedings\{.*?\n\})\n```", readme, re.S).group(1)
    assert f"title         = {{{PAPER_TITLE}}}" in entry
    assert "eprint        = {2307.03170}" in entry and "volume        = {36}" in entry
    authors = re.search(r"author\s*= \{(.*?)\},\n", entry, re.S).group(1)
    families = [name.split(",")[0].strip() for name in re.split(r"\s+and\s+", authors)]
    latex = {"Pacek": "Pacek", "Miłoś": "Mi{\\l}o{\\'s}"}
    assert families == [latex.get(f, f) for _, f in PAPER_AUTHORS]


def test_changelog_starts_with_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    first = re.search(r"^## (\S+) - (\d{4}-\d{2}-\d{2})$", changelog, re.M)
    assert first.group(1) == _version()


def test_licenses_are_where_people_look():
    mit = (ROOT / "LICENSE").read_text()
    assert mit.startswith("MIT License\n\nCopyright (c) 2026 the fot_edu authors\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in mit
    psf = (ROOT / "fot_edu" / "shipped" / "LICENSE-PSF.txt").read_text()
    assert "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2" in psf
    assert "2023 Python Software Foundation;\nAll Rights Reserved" in psf  # CPython 3.11.7's notice
    assert "(LICENSE-PSF.txt)" in (ROOT / "fot_edu" / "shipped" / "README.md").read_text(encoding="utf-8")


def test_pre_commit_strips_notebooks_from_pypi_only():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert hooks["nbstripout"]["types"] == ["jupyter"]
    assert all(repo["repo"] == "local" for repo in config["repos"])  # nothing cloned from a git host
    assert all(re.fullmatch(r"[\w.-]+==[\w.]+", dep) for h in hooks.values()
               for dep in h["additional_dependencies"])


def test_ci_script_sets_ci_itself():
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^export CI=true$", script, re.M)
    assert script.index("export CI=true") < script.rindex("\nmake test\n")
