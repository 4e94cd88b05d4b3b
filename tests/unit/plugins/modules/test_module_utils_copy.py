# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils_copy: writes the collection's parsers as plain modules, idempotent, honest check mode."""

import importlib.util
import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gaudi.vllm_lmcache.plugins.modules import module_utils_copy

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))


def run_module(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module_utils_copy.main()
    return json.loads(capsys.readouterr().out)


def test_writes_importable_copies_then_reports_no_change(capsys, tmp_path):
    dest = str(tmp_path / 'support')
    first = run_module(capsys, {'dest': dest})
    assert first['changed'] is True and [f['name'] for f in first['files']] == ['hl_smi', 'lmcache_hpu_patch']
    for name in ('hl_smi', 'lmcache_hpu_patch'):
        path = os.path.join(dest, name + '.py')
        with open(path) as handle:
            text = handle.read()
        with open(os.path.join(ROOT, 'plugins', 'module_utils', name + '.py')) as handle:
            assert text.endswith(handle.read())
        assert oct(os.stat(path).st_mode & 0o777) == '0o644'
        spec = importlib.util.spec_from_file_location('copied_' + name, path)
        copied = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(copied)
    assert copied.classify  # lmcache_hpu_patch, the last one
    second = run_module(capsys, {'dest': dest})
    assert second['changed'] is False and not any(f['changed'] for f in second['files'])


def test_check_mode_changes_nothing_and_diff_shows_the_file(capsys, tmp_path):
    dest = tmp_path / 'support'
    dest.mkdir()
    (dest / 'hl_smi.py').write_text('# an old copy\n')
    result = run_module(
        capsys, {'dest': str(dest), 'names': ['hl_smi'], '_ansible_check_mode': True, '_ansible_diff': True}
    )
    assert result['changed'] is True and result['files'][0]['changed'] is True
    assert (dest / 'hl_smi.py').read_text() == '# an old copy\n'
    assert result['diff'][0]['before'] == '# an old copy\n' and 'def parse_csv' in result['diff'][0]['after']


def test_relative_dest_and_unknown_name_fail(capsys):
    result = run_module(capsys, {'dest': 'relative/dir'})
    assert result['failed'] and 'absolute' in result['msg']
    result = run_module(capsys, {'dest': '/tmp/x', 'names': ['nope']})
    assert result['failed'] and 'nope' in result['msg']
