# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module-level tests of text_files: one call writes a set of files into a directory."""

import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import _python_package
from ansible_collections.gaudi.vllm_lmcache.plugins.modules import text_files


def run_module(capsys, args, check=False, diff=False):
    args = dict(args)
    args['_ansible_check_mode'] = check
    args['_ansible_diff'] = diff
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            text_files.main()
    result = json.loads(capsys.readouterr().out)
    return exc.value.code, result


def snapshot(root):
    """relpath -> (bytes or None for a directory, mode) of everything below root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            data = None
            if not os.path.isdir(path):
                with open(path, 'rb') as f:
                    data = f.read()
            out[os.path.relpath(path, str(root))] = (data, stat.S_IMODE(os.lstat(path).st_mode))
    return out


def write(root, entries, mode=0o644):
    for relpath, data in entries.items():
        path = os.path.join(str(root), relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)
        os.chmod(path, mode)


FILES = {'a.env': 'A=1\n', 'b.env': 'B=2\n'}

CASES = [
    # id, existing files (bytes, mode 0644), args, expected changed_files
    ('fresh directory', {}, {}, ['a.env', 'b.env']),
    ('nothing to do', {'a.env': b'A=1\n', 'b.env': b'B=2\n'}, {}, []),
    ('one file edited', {'a.env': b'A=1\n', 'b.env': b'B=3\n'}, {}, ['b.env']),
    ('a missing trailing newline is a change', {'a.env': b'A=1', 'b.env': b'B=2\n'}, {}, ['a.env']),
    ('another mode', {'a.env': b'A=1\n', 'b.env': b'B=2\n'}, {'mode': '0600'}, ['a.env', 'b.env']),
    ('a mode of its own', {'a.env': b'A=1\n', 'b.env': b'B=2\n'}, {'modes': {'b.env': '0640'}}, ['b.env']),
    ('other files stay', {'a.env': b'A=1\n', 'b.env': b'B=2\n', 'old.env': b'O\n'}, {}, []),
]


@pytest.mark.parametrize('existing,args,expected', [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_changed_files_check_mode_and_real_run_agree(tmp_path, capsys, existing, args, expected):
    dest = tmp_path / 'etc'
    if existing:
        write(dest, existing)
    before = snapshot(tmp_path)
    base = dict(dest=str(dest), files=FILES, **args)

    rc, checked = run_module(capsys, base, check=True, diff=True)
    assert rc == 0
    assert checked['changed_files'] == expected
    assert checked['changed'] == bool(expected)
    assert snapshot(tmp_path) == before, 'check mode wrote something'

    rc, real = run_module(capsys, base)
    assert rc == 0
    assert real['changed_files'] == expected
    assert real['changed'] == checked['changed']
    after = snapshot(dest)
    for relpath, text in FILES.items():
        want_mode = int(args.get('modes', {}).get(relpath, args.get('mode', '0644')), 8)
        assert after[relpath] == (text.encode(), want_mode)
    if 'old.env' in existing:
        assert after['old.env'] == (b'O\n', 0o644)

    rc, again = run_module(capsys, base)
    assert (rc, again['changed'], again['changed_files']) == (0, False, [])


def test_creates_the_directory_and_its_parents_with_directory_mode(tmp_path, capsys):
    dest = tmp_path / 'a' / 'b'
    rc, result = run_module(capsys, dict(dest=str(dest), files={'x.yaml': 'x: 1\n'}, directory_mode='0750'))
    assert rc == 0 and result['changed']
    assert result['created_dirs'] == [str(tmp_path / 'a'), str(dest)]
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o750
    assert (dest / 'x.yaml').read_text() == 'x: 1\n'


def test_diff_shows_the_old_and_new_text(tmp_path, capsys):
    dest = tmp_path / 'etc'
    write(dest, {'a.env': b'A=0\n'})
    rc, result = run_module(capsys, dict(dest=str(dest), files={'a.env': 'A=1\n'}), check=True, diff=True)
    assert rc == 0
    entries = [d for d in result['diff'] if d['before'] != d['after']]
    assert [(d['before'], d['after']) for d in entries] == [('A=0\n', 'A=1\n')]
    assert str(dest / 'a.env') in entries[0]['after_header']


def test_without_purge_the_directory_is_not_walked(tmp_path, capsys, monkeypatch):
    """A configuration directory may be large (/etc/systemd/system): only the named files are read."""
    dest = tmp_path / 'etc'
    write(dest, {'a.env': b'A=1\n', 'deep/er/z.conf': b'z\n'})

    def no_walk(*args, **kwargs):
        raise AssertionError('os.walk called for %r' % (args,))

    monkeypatch.setattr(_python_package.os, 'walk', no_walk)
    rc, result = run_module(capsys, dict(dest=str(dest), files={'a.env': 'A=1\n'}))
    assert (rc, result['changed']) == (0, False)


BAD = [
    ('absolute path', {'files': {'/etc/x': 'x'}}, "files path '/etc/x' is absolute"),
    ('parent component', {'files': {'../x': 'x'}}, "files path '../x' has a '..' component"),
    ('not text', {'files': {'x': 1}}, "files['x'] must be text, got int"),
    ('modes of a file not written', {'files': {'x': 'x'}, 'modes': {'y': '0600'}}, 'modes names y'),
    ('symbolic mode', {'files': {'x': 'x'}, 'mode': 'u+rw'}, "mode 'u+rw' is not an octal mode"),
    ('unknown owner', {'files': {'x': 'x'}, 'owner': 'no-such-user-here'}, 'owner no-such-user-here: no such user'),
]


@pytest.mark.parametrize('args,message', [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_arguments_fail_naming_the_value_and_write_nothing(tmp_path, capsys, args, message):
    dest = tmp_path / 'etc'
    rc, result = run_module(capsys, dict(dest=str(dest), **args))
    assert rc == 1 and result['failed']
    assert result['msg'].startswith('text_files: ')
    assert message in result['msg']
    assert not dest.exists()


def test_a_directory_where_a_file_goes_fails(tmp_path, capsys):
    dest = tmp_path / 'etc'
    (dest / 'a.env').mkdir(parents=True)
    rc, result = run_module(capsys, dict(dest=str(dest), files={'a.env': 'A=1\n'}))
    assert rc == 1
    assert 'is a directory; it cannot be replaced by the file a.env' in result['msg']


def test_check_mode_counts_an_account_not_created_yet_as_a_change(tmp_path, capsys):
    """An earlier task of the run creates the group; check mode cannot see it yet."""
    dest = tmp_path / 'etc'
    write(dest, {'a.env': b'A=1\n'})
    args = dict(dest=str(dest), files={'a.env': 'A=1\n'}, group='no-such-group-yet')
    rc, result = run_module(capsys, args, check=True)
    assert (rc, result['changed'], result['changed_files']) == (0, True, ['a.env'])
    rc, result = run_module(capsys, args)
    assert rc == 1 and result['msg'] == 'text_files: group no-such-group-yet: no such group'
