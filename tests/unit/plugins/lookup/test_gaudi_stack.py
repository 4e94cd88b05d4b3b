# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the gaudi_stack lookup (rows of meta/gaudi_stack.yml)."""

import os

import pytest
import yaml
from ansible.errors import AnsibleLookupError

from ansible_collections.gaudi.vllm_lmcache.plugins.lookup import gaudi_stack as module

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
# The options documented in the plugin and their defaults. Ansible's config manager knows them
# only when the plugin comes from the plugin loader; tests/unit/roles/test_gaudi_stack_defaults.py
# runs the plugin through ansible-playbook.
OPTION_DEFAULTS = {"stack": "", "all_rows": False}


@pytest.fixture
def plugin():
    return module


@pytest.fixture
def run():
    def _run(terms=(), **kwargs):
        lookup = module.LookupModule()
        options = dict(OPTION_DEFAULTS)

        def set_options(var_options=None, direct=None):
            assert set(direct or {}) <= set(OPTION_DEFAULTS), direct
            options.update(direct or {})

        lookup.set_options = set_options
        lookup.get_option = options.__getitem__
        return lookup.run(list(terms), variables={}, **kwargs)

    return _run


def test_documented_options_are_the_ones_tested():
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert {k: v.get("default") for k, v in doc["options"].items() if k != "_terms"} == OPTION_DEFAULTS


def test_matrix_path_is_the_collections_meta_file(plugin):
    # Resolved from the plugin's own location, so an installed collection finds its copy.
    assert os.path.realpath(plugin.MATRIX_PATH) == os.path.realpath(os.path.join(ROOT, "meta", "gaudi_stack.yml"))


def test_default_row_without_stack(run):
    matrix = yaml.safe_load(open(os.path.join(ROOT, "meta", "gaudi_stack.yml")))
    assert run(["id"]) == [matrix["default"]]
    row = run()[0]
    assert row["id"] == matrix["default"]


def test_fields_of_a_named_row(run):
    assert run(
        ["habana_driver_version", "gaudi_release", "gaudi_build", "pytorch"], stack="plugin-0.21.0-sw1.24.0"
    ) == [
        "1.24.0-1007",
        "1.24.0",
        "1007",
        "2.10.0",
    ]
    versions = run(["lmcache_versions"], stack="plugin-0.17.1-sw1.23.0")
    assert versions == [["0.4.2"]]


def test_empty_stack_means_default(run):
    assert run(["id"], stack="") == run(["id"])


def test_unknown_row_names_the_value_and_the_rows(run):
    with pytest.raises(AnsibleLookupError) as err:
        run(["id"], stack="plugin-9.9.9-sw9")
    text = str(err.value)
    assert "gaudi_stack=plugin-9.9.9-sw9 is not a row" in text
    assert "plugin-0.26.0-sw1.24.1" in text


def test_unknown_field_names_the_field_and_the_fields(run):
    with pytest.raises(AnsibleLookupError) as err:
        run(["driver"])
    assert "driver is not a field" in str(err.value)
    assert "habana_driver_version" in str(err.value)


def test_all_rows_returns_copies(run):
    rows = run(all_rows=True)
    assert len(rows) == len({r["id"] for r in rows}) > 10
    rows[0]["id"] = "changed"
    assert run(all_rows=True)[0]["id"] != "changed"


def test_broken_matrix_file_is_refused(plugin, tmp_path):
    bad = tmp_path / "m.yml"
    bad.write_text("rows: []\n")
    with pytest.raises(AnsibleLookupError, match="must hold"):
        plugin.load_matrix(str(bad))
    with pytest.raises(AnsibleLookupError, match="cannot read"):
        plugin.load_matrix(str(tmp_path / "missing.yml"))
