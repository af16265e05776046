"""The README's Python section: its snippet is run as written and prints what the README shows."""

from __future__ import annotations

import re

from registry_server import PYTHON_SRC, REPO_ROOT, run_debian_python

README = (REPO_ROOT / "README.md").read_text()


def python_section() -> str:
    match = re.search(r"^## From Python\b.*?(?=^## )", README, re.S | re.M)
    assert match, "README.md has no '## From Python' section"
    return match.group(0)


def test_the_install_is_debians_packages_and_clients_python_src_on_pythonpath():
    section = python_section()
    assert "apt-get install python3-grpcio python3-protobuf" in section
    assert "export PYTHONPATH=$PWD/clients/python/src" in section
    assert PYTHON_SRC == REPO_ROOT / "clients" / "python" / "src"
    assert "Python 3.11" in section and "1.51" in section and "3.21" in section


def test_the_snippet_prints_what_the_readme_shows(start_registry, tmp_path):
    section = python_section()
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shown = re.search(r"it prints.*?\n```\n(.*?)```", section, re.S).group(1)
    server = start_registry()  # a fresh registry, as the README says
    script = tmp_path / "snippet.py"
    script.write_text(snippet.replace('"localhost:50051"', f'"{server.address}"'))
    # From a folder outside the repository, with only clients/python/src on PYTHONPATH.
    run = run_debian_python([str(script)], cwd=str(tmp_path))
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == shown
