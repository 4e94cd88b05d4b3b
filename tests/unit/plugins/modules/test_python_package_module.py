# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module-level tests of python_package, and of its action plugin without a connection."""

import grp
import json
import os
import pwd
import re
import stat

import pytest
from ansible.errors import AnsibleActionFail
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gaudi.vllm_lmcache.plugins.action import python_package as action
from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils._python_package import INIT_TEXT, PackageError
from ansible_collections.gaudi.vllm_lmcache.plugins.modules import python_package

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
MODULE_UTILS = os.path.join(ROOT, 'plugins', 'module_utils')
PYC = 'cpython-311.pyc'


def run_module(capsys, args, check=False, diff=False):
    args = dict(args)
    args['_ansible_check_mode'] = check
    args['_ansible_diff'] = diff
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            python_package.main()
    result = json.loads(capsys.readouterr().out)
    return exc.value.code, result


def snapshot(root):
    """relpath -> (bytes or None for a directory, mode) of everything below root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, str(root))
            data = None
            if not os.path.isdir(path):
                with open(path, 'rb') as f:
                    data = f.read()
            out[rel] = (data, stat.S_IMODE(os.lstat(path).st_mode))
    return out


def write(root, entries, mode=0o644):
    for relpath, data in entries.items():
        path = os.path.join(str(root), relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)
        os.chmod(path, mode)


FILES = {'__init__.py': '"""pkg"""\n', '_collection/__init__.py': INIT_TEXT, '_collection/hl_smi.py': '# hl\n'}

CASES = [
    # id, existing files, args, expected changed_files, removed_files
    ('fresh install', {}, {}, sorted(FILES), []),
    ('nothing to do', {k: v.encode() for k, v in FILES.items()}, {}, [], []),
    (
        'content change',
        dict({k: v.encode() for k, v in FILES.items()}, **{'_collection/hl_smi.py': b'# edited\n'}),
        {},
        ['_collection/hl_smi.py'],
        [],
    ),
    (
        'purge removes a stale module and its pyc',
        dict(
            {k: v.encode() for k, v in FILES.items()},
            **{'_collection/old.py': b'O', '_collection/__pycache__/old.' + PYC: b'\x00'},
        ),
        {},
        [],
        ['_collection/__pycache__/old.' + PYC, '_collection/old.py'],
    ),
    (
        'purge=false leaves other files',
        dict({k: v.encode() for k, v in FILES.items()}, **{'_collection/old.py': b'O', 'notes.txt': b'n'}),
        {'purge': False},
        [],
        [],
    ),
    ('mode change', {k: v.encode() for k, v in FILES.items()}, {'mode': '0600'}, sorted(FILES), []),
    ('mode as a number', {k: v.encode() for k, v in FILES.items()}, {'mode': 0o644}, [], []),
]


@pytest.mark.parametrize('existing, args, changed, removed', [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_check_mode_then_run_then_rerun(tmp_path, capsys, existing, args, changed, removed):
    dest = tmp_path / 'pkg'
    if existing:
        write(dest, existing)
    args = dict(args, dest=str(dest), files=FILES)
    before = snapshot(tmp_path)

    code, checked = run_module(capsys, args, check=True, diff=True)
    assert code == 0, checked
    assert snapshot(tmp_path) == before, 'check mode wrote something'

    code, result = run_module(capsys, args, diff=True)
    assert code == 0, result
    for key in ('changed', 'changed_files', 'removed_files', 'removed_dirs', 'created_dirs', 'diff'):
        assert checked[key] == result[key], key
    assert result['changed_files'] == changed
    assert result['removed_files'] == removed
    assert result['files'] == sorted(FILES)
    assert result['dest'] == str(dest)
    assert result['changed'] is bool(changed or removed or not existing)
    assert 'diff' in result
    mode = int(str(args.get('mode', '0644')), 8) if isinstance(args.get('mode', '0644'), str) else args['mode']
    for relpath, text in FILES.items():
        path = dest / relpath
        assert path.read_bytes() == text.encode()
        assert stat.S_IMODE(path.stat().st_mode) == mode
    for relpath in removed:
        assert not (dest / relpath).exists()
    if args.get('purge') is False:
        for relpath in existing:
            assert (dest / relpath).exists()

    code, again = run_module(capsys, args)
    assert code == 0 and again['changed'] is False, again
    assert again['changed_files'] == [] and again['removed_files'] == []
    assert 'diff' not in again


def test_fresh_install_creates_dirs_with_directory_mode(tmp_path, capsys):
    dest = tmp_path / 'a' / 'pkg'
    code, result = run_module(capsys, dict(dest=str(dest), files=FILES, directory_mode='0750'))
    assert code == 0 and result['changed'] is True
    assert result['created_dirs'] == [str(tmp_path / 'a'), str(dest), str(dest / '_collection')]
    for path in result['created_dirs']:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o750


def test_diff_shows_the_edit(tmp_path, capsys):
    write(tmp_path, {'a.py': b'old\n'})
    code, result = run_module(capsys, dict(dest=str(tmp_path), files={'a.py': 'new\n'}), check=True, diff=True)
    assert code == 0 and result['changed'] is True
    assert result['diff'] == [
        dict(before_header=str(tmp_path / 'a.py'), after_header=str(tmp_path / 'a.py'), before='old\n', after='new\n')
    ]
    assert (tmp_path / 'a.py').read_bytes() == b'old\n'


def test_owner_and_group_of_the_running_user(tmp_path, capsys):
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    args = dict(dest=str(tmp_path), files={'a.py': 'A'}, owner=user, group=group)
    code, result = run_module(capsys, args)
    assert code == 0 and result['changed_files'] == ['a.py']
    assert (tmp_path / 'a.py').stat().st_uid == os.getuid()
    code, result = run_module(capsys, dict(args, owner=str(os.getuid()), group=str(os.getgid())))
    assert code == 0 and result['changed'] is False


def test_modes_give_single_files_their_own_mode(tmp_path, capsys):
    args = dict(dest=str(tmp_path), files={'tool': '#!/bin/sh\n', 'lib.py': 'x = 1\n'}, modes={'tool': '0755'})
    code, result = run_module(capsys, args)
    assert code == 0 and result['changed_files'] == ['lib.py', 'tool']
    assert stat.S_IMODE((tmp_path / 'tool').stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / 'lib.py').stat().st_mode) == 0o644
    code, result = run_module(capsys, args)
    assert code == 0 and result['changed'] is False
    # Someone drops the executable bit: only that file changes, in check mode and for real.
    (tmp_path / 'tool').chmod(0o644)
    code, result = run_module(capsys, args, check=True)
    assert code == 0 and result['changed_files'] == ['tool']
    assert stat.S_IMODE((tmp_path / 'tool').stat().st_mode) == 0o644
    code, result = run_module(capsys, args)
    assert code == 0 and result['changed_files'] == ['tool']
    assert stat.S_IMODE((tmp_path / 'tool').stat().st_mode) == 0o755


@pytest.mark.skipif(os.getuid() != 0, reason='chown to another user needs root')
def test_owner_change_counts(tmp_path, capsys):
    write(tmp_path, {'a.py': b'A'})
    code, result = run_module(capsys, dict(dest=str(tmp_path), files={'a.py': 'A'}, owner='65534'), diff=True)
    assert code == 0 and result['changed_files'] == ['a.py']
    assert (tmp_path / 'a.py').stat().st_uid == 65534
    assert result['diff'][0]['after'] == 'owner: 65534\n'


@pytest.mark.parametrize(
    'args, message',
    [
        (dict(files={'../up.py': 'x'}), "files path '../up.py' has a '..' component"),
        (dict(files={'/abs.py': 'x'}), "files path '/abs.py' is absolute"),
        (dict(files={'a//b.py': 'x'}), "files path 'a//b.py' is not normalized"),
        (dict(files={'a.py': 'x', 'a.py/b.py': 'y'}), "'a.py' is a file and also the directory of 'a.py/b.py'"),
        (dict(files={'a.py': 1}), r"files\['a.py'\] must be text, got int"),
        (dict(mode='u=rw'), "mode 'u=rw' is not an octal mode"),
        (dict(modes={'b.py': '0755'}), 'modes names b.py, which is not one of the files installed'),
        (dict(files={'a.py': 'x'}, modes={'a.py': 'rwx'}), r"modes\[a.py\] 'rwx' is not an octal mode"),
        (dict(directory_mode='07777x'), "directory_mode '07777x' is not an octal mode"),
        (dict(owner='no-such-user-python-package'), 'owner no-such-user-python-package: no such user'),
        (dict(group='no-such-group-python-package'), 'group no-such-group-python-package: no such group'),
        (dict(module_utils=['hl_smi']), 'module_utils: read on the control node by the python_package action plugin'),
        (dict(src='dir', module_utils_dir='x'), 'src, module_utils_dir: read on the control node'),
    ],
)
def test_module_refuses(tmp_path, capsys, args, message):
    before = snapshot(tmp_path)
    code, result = run_module(capsys, dict(dict(dest=str(tmp_path / 'pkg'), files={}), **args))
    assert code == 1 and result['failed'] is True
    assert re.search(message, result['msg']), result['msg']
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- the action plugin


@pytest.mark.parametrize('name', ['hl_smi', 'lmcache_hpu_patch', 'hpu_kv_transfer', 'lmcache_cpu_connector'])
def test_read_module_utils_returns_the_exact_bytes(name):
    with open(os.path.join(MODULE_UTILS, name + '.py'), 'rb') as f:
        assert action.read_module_utils(name) == f.read()


def test_read_module_utils_does_not_import_the_module():
    import sys

    fullname = action.MODULE_UTILS_PACKAGE + '.hpu_kv_transfer'
    was_imported = fullname in sys.modules
    action.read_module_utils('hpu_kv_transfer')
    assert (fullname in sys.modules) == was_imported


@pytest.mark.parametrize('name', ['no_such_module_here', '_no_such'])
def test_read_module_utils_unknown_name(name):
    with pytest.raises(PackageError, match='module_utils %s cannot be imported from gaudi.vllm_lmcache' % name):
        action.read_module_utils(name)


class _Shell:
    tmpdir = None


class _Connection:
    _shell = _Shell()


class _Task:
    def __init__(self, args):
        self.args = args
        self.async_val = 0
        self.check_mode = False
        self.diff = False


class _PlayContext:
    check_mode = False


def make_action(monkeypatch, args, src_dir=None):
    plugin = action.ActionModule.__new__(action.ActionModule)
    plugin._task = _Task(args)
    plugin._connection = _Connection()
    plugin._play_context = _PlayContext()
    calls = []

    def execute_module(module_name=None, module_args=None, task_vars=None, **kwargs):
        calls.append(dict(module_name=module_name, module_args=module_args))
        return dict(changed=True, files=sorted(module_args['files']), invocation=dict(module_args=module_args))

    monkeypatch.setattr(plugin, '_execute_module', execute_module, raising=False)
    monkeypatch.setattr(plugin, '_remove_tmp_path', lambda path: None, raising=False)
    monkeypatch.setattr(plugin, '_find_needle', lambda kind, name: os.path.join(src_dir, name), raising=False)
    # ActionBase.run reads only these.
    monkeypatch.setattr(action.ActionBase, 'run', lambda self, tmp=None, task_vars=None: {}, raising=True)
    return plugin, calls


def test_action_sends_everything_in_one_module_call_and_drops_invocation(tmp_path, monkeypatch):
    write(tmp_path / 'files' / 'pkgsrc', {'__init__.py': b'# from src\n', 'sub/x.py': b'X\n'})
    args = dict(
        dest='/opt/x/pkg',
        src='pkgsrc',
        module_utils=['hl_smi', 'lmcache_hpu_patch'],
        module_utils_dir='_collection',
        files={'VERSION': '1\n'},
        owner='vllm',
        mode='0640',
    )
    plugin, calls = make_action(monkeypatch, args, src_dir=str(tmp_path / 'files'))
    result = plugin.run(task_vars={})
    assert len(calls) == 1
    call = calls[0]
    assert call['module_name'] == 'gaudi.vllm_lmcache.python_package'
    sent = call['module_args']
    assert sorted(sent) == ['dest', 'directory_mode', 'files', 'mode', 'modes', 'owner', 'purge']
    assert (sent['dest'], sent['purge'], sent['mode'], sent['directory_mode'], sent['owner']) == (
        '/opt/x/pkg',
        True,
        '0640',
        '0755',
        'vllm',
    )
    with open(os.path.join(MODULE_UTILS, 'hl_smi.py'), 'rb') as f:
        hl_smi = f.read().decode('utf-8')
    assert sent['files'] == {
        '__init__.py': '# from src\n',
        'sub/x.py': 'X\n',
        'VERSION': '1\n',
        '_collection/__init__.py': INIT_TEXT,
        '_collection/hl_smi.py': hl_smi,
        '_collection/lmcache_hpu_patch.py': action.read_module_utils('lmcache_hpu_patch').decode('utf-8'),
    }
    assert 'invocation' not in result
    assert result['changed'] is True


@pytest.mark.parametrize(
    'args, message',
    [
        (dict(), 'missing required arguments: dest'),
        (dict(dest='/x', purge='maybe'), 'purge'),
        (dict(dest='/x', module_utils='hl_smi,nope'), 'module_utils nope cannot be imported'),
        (dict(dest='/x', module_utils=['hl_smi.py']), "module_utils entry 'hl_smi.py' is not a module name"),
        (dict(dest='/x', files={'a': 'x'}, module_utils=['hl_smi'], module_utils_dir='../m'), "'..' component"),
        (dict(dest='/x', files={'/a.py': 'x'}), "files path '/a.py' is absolute"),
        (dict(dest='/x', files={'a.py': 5}), r"files\['a.py'\] must be text, got int"),
        (dict(dest='/x', files={'a.py': 'x'}, src='pkgsrc'), 'a.py is given twice: by files and by src'),
        (dict(dest='/x', bogus=1), 'bogus'),
        (dict(dest=''), 'dest is empty'),
    ],
)
def test_action_refuses(tmp_path, monkeypatch, args, message):
    write(tmp_path / 'files' / 'pkgsrc', {'a.py': b'A\n'})
    plugin, calls = make_action(monkeypatch, args, src_dir=str(tmp_path / 'files'))
    with pytest.raises(AnsibleActionFail, match=message) as exc:
        plugin.run(task_vars={})
    assert str(exc.value).startswith('python_package: ')
    assert calls == []
