"""docs/variables.md must match the roles' argument_specs (it is generated from them)."""

import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def test_variables_reference_is_up_to_date():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "gen-variables-doc.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_role_has_an_argument_spec_and_readme():
    roles = sorted(os.listdir(os.path.join(ROOT, "roles")))
    assert roles, "no roles found"
    for role in roles:
        assert os.path.isfile(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")), role
        assert os.path.isfile(os.path.join(ROOT, "roles", role, "README.md")), role
    with open(os.path.join(ROOT, "docs", "variables.md")) as handle:
        text = handle.read()
    for role in roles:
        assert "## %s\n" % role in text, role
