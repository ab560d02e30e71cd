"""The files a user trusts the package by agree with each other and with the package.

(That the wheel holds what the package needs is checked by CI, which installs the wheel into a
fresh environment and runs the doctests and a training run from there: .ci/run.)
"""

import pathlib
import re
import tomllib

import yaml

import normax

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_file_is_the_license_pyproject_declares():
  assert PYPROJECT["project"]["license"] == {"text": "Apache-2.0"}
  text = (ROOT / "LICENSE").read_text()
  assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
  assert "END OF TERMS AND CONDITIONS" in text
  assert re.search(r"^   Copyright \d{4} The normax authors$", text, re.MULTILINE)


def test_the_version_is_one_number_with_a_changelog_section():
  version = PYPROJECT["project"]["version"]
  assert normax.__version__ == version
  changelog = (ROOT / "CHANGELOG.md").read_text()
  assert re.search(rf"^## \[?{re.escape(version)}\]?\b", changelog, re.MULTILINE), (
    f"CHANGELOG.md has no '## {version}' section."
  )


def test_the_package_ships_its_type_marker():
  assert (ROOT / "normax" / "py.typed").is_file()
  wheel = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]
  assert wheel["packages"] == ["normax"] and "exclude" not in wheel


def test_the_hosted_docs_build_what_ci_builds():
  config = yaml.safe_load((ROOT / ".readthedocs.yaml").read_text())
  ci = (ROOT / ".ci" / "run").read_text()
  assert config["sphinx"] == {
    "configuration": "docs/conf.py",
    "builder": "html",
    "fail_on_warning": True,
  }
  assert "python -m sphinx -W --keep-going -q -b html docs docs/_build/html" in ci
  (install,) = config["python"]["install"]
  assert install["method"] == "pip" and install["path"] == "."
  assert set(install["extra_requirements"]) <= set(PYPROJECT["project"]["optional-dependencies"])
  assert "docs" in install["extra_requirements"]
