# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests of the directories module: several directories with their attributes in one call."""

import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gaudi.vllm_lmcache.plugins.modules import directories


def run_module(capsys, dirs, check=False, diff=False):
    args = dict(directories=dirs, _ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            directories.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def tree(root):
    """relpath -> mode of every directory below root, and 'file' for anything else."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, str(root))] = '%04o' % stat.S_IMODE(os.stat(path).st_mode)
        for name in filenames:
            out[os.path.relpath(os.path.join(dirpath, name), str(root))] = 'file'
    return out


def d(tmp_path, rel, mode=None):
    entry = {'path': str(tmp_path / rel)}
    if mode is not None:
        entry['mode'] = mode
    return entry


CASES = [
    # id, existing directories (rel -> mode), wanted [(rel, mode)], changed (rel), created (rel), tree after
    ('all new, parents get the mode', {}, [('a/b', '0750')], ['a/b'], ['a', 'a/b'], {'a': '0750', 'a/b': '0750'}),
    ('nothing to do', {'a': 0o755}, [('a', '0755')], [], [], {'a': '0755'}),
    ('mode fixed', {'a': 0o700}, [('a', '0755')], ['a'], [], {'a': '0755'}),
    ('no mode given leaves it', {'a': 0o700}, [('a', None)], [], [], {'a': '0700'}),
    ('setgid mode', {'a': 0o770}, [('a', '2770')], ['a'], [], {'a': '2770'}),
    (
        'a listed parent keeps its own mode, whatever the order',
        {},
        [('p/child', '0700'), ('p', '0755')],
        ['p', 'p/child'],
        ['p', 'p/child'],
        {'p': '0755', 'p/child': '0700'},
    ),
    (
        'one new, one existing',
        {'x': 0o755},
        [('x', '0755'), ('x/y', '0711')],
        ['x/y'],
        ['x/y'],
        {'x': '0755', 'x/y': '0711'},
    ),
]


@pytest.mark.parametrize('existing,wanted,changed,created,after', [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_check_mode_and_real_run_agree_and_a_rerun_changes_nothing(
    tmp_path, capsys, existing, wanted, changed, created, after
):
    for rel, mode in sorted(existing.items()):
        os.makedirs(str(tmp_path / rel))
        os.chmod(str(tmp_path / rel), mode)
    before = tree(tmp_path)
    dirs = [d(tmp_path, rel, mode) for rel, mode in wanted]
    changed_abs = [str(tmp_path / rel) for rel in changed]
    created_abs = [str(tmp_path / rel) for rel in created]

    rc, checked = run_module(capsys, dirs, check=True, diff=True)
    assert rc == 0
    assert (checked['changed'], checked['changed_directories'], checked['created_dirs']) == (
        bool(changed),
        changed_abs,
        created_abs,
    )
    assert len(checked['diff']) == len(created) + len([r for r in changed if r not in created])
    assert tree(tmp_path) == before, 'check mode changed something'

    rc, real = run_module(capsys, dirs)
    assert rc == 0
    assert (real['changed'], real['changed_directories'], real['created_dirs']) == (
        bool(changed),
        changed_abs,
        created_abs,
    )
    assert tree(tmp_path) == after

    rc, again = run_module(capsys, dirs)
    assert (rc, again['changed'], again['changed_directories']) == (0, False, [])


def test_diff_names_the_attribute_that_changes(tmp_path, capsys):
    os.makedirs(str(tmp_path / 'a'))
    os.chmod(str(tmp_path / 'a'), 0o700)
    rc, result = run_module(capsys, [d(tmp_path, 'a', '0755'), d(tmp_path, 'new', '0750')], check=True, diff=True)
    assert rc == 0
    by_header = {entry['before_header']: entry for entry in result['diff']}
    assert by_header['%s (attributes)' % (tmp_path / 'a')]['before'] == 'mode: 0700\n'
    assert by_header['%s (attributes)' % (tmp_path / 'a')]['after'] == 'mode: 0755\n'
    new = by_header['%s (absent)' % (tmp_path / 'new')]
    assert (new['before'], new['after']) == ('state: absent\n', 'state: directory\nmode: 0750\n')


def test_the_same_directory_twice_with_the_same_attributes_counts_once(tmp_path, capsys):
    rc, result = run_module(capsys, [d(tmp_path, 'v', '0755'), d(tmp_path, 'v/', '0755')])
    assert (rc, result['directories'], result['changed_directories']) == (
        0,
        [str(tmp_path / 'v')],
        [str(tmp_path / 'v')],
    )


def test_owner_and_group_by_id(tmp_path, capsys):
    uid, gid = os.getuid(), os.getgid()
    dirs = [{'path': str(tmp_path / 'o'), 'owner': str(uid), 'group': str(gid), 'mode': '0755'}]
    rc, result = run_module(capsys, dirs)
    assert rc == 0 and result['changed']
    st = os.stat(str(tmp_path / 'o'))
    assert (st.st_uid, st.st_gid) == (uid, gid)
    rc, result = run_module(capsys, dirs)
    assert (rc, result['changed']) == (0, False)


def test_a_symlink_to_a_directory_is_followed(tmp_path, capsys):
    os.makedirs(str(tmp_path / 'real'))
    os.chmod(str(tmp_path / 'real'), 0o700)
    os.symlink(str(tmp_path / 'real'), str(tmp_path / 'link'))
    rc, result = run_module(capsys, [d(tmp_path, 'link', '0755')])
    assert (rc, result['changed']) == (0, True)
    assert stat.S_IMODE(os.stat(str(tmp_path / 'real')).st_mode) == 0o755


def bad_file_in_the_way(tmp_path):
    (tmp_path / 'f').write_text('x')
    return [d(tmp_path, 'ok', '0755'), d(tmp_path, 'f/sub', '0755')], '%s exists and is not a directory' % (
        tmp_path / 'f'
    )


BAD = [
    ('relative path', lambda t: ([{'path': 'rel/dir'}], "directories[0].path 'rel/dir' is not absolute")),
    (
        'listed twice with other modes',
        lambda t: (
            [d(t, 'a', '0755'), d(t, 'a/', '0700')],
            'directories[1].path %s is listed twice with other attributes' % (t / 'a'),
        ),
    ),
    (
        'symbolic mode',
        lambda t: (
            [d(t, 'a', 'u=rwx')],
            "directories[0].mode 'u=rwx' is not an octal mode such as '0644' (symbolic modes are not supported)",
        ),
    ),
    (
        'unknown owner',
        lambda t: (
            [dict(d(t, 'a'), owner='no-such-user-here')],
            'owner no-such-user-here: no such user (directories[0])',
        ),
    ),
    ('a file in the way', bad_file_in_the_way),
]


@pytest.mark.parametrize('make', [c[1] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_fails_naming_it_and_changes_nothing(tmp_path, capsys, make):
    dirs, message = make(tmp_path)
    before = tree(tmp_path)
    rc, result = run_module(capsys, dirs)
    assert rc == 1 and result['failed']
    assert result['msg'] == 'directories: ' + message
    assert tree(tmp_path) == before


def test_check_mode_counts_an_account_not_created_yet_as_a_change(tmp_path, capsys):
    """An earlier task of the run creates the group; check mode cannot see it yet."""
    os.makedirs(str(tmp_path / 'shared'))
    dirs = [dict(d(tmp_path, 'shared', '0755'), group='no-such-group-yet')]
    rc, result = run_module(capsys, dirs, check=True, diff=True)
    assert (rc, result['changed'], result['changed_directories']) == (0, True, [str(tmp_path / 'shared')])
    assert result['diff'][0]['after'] == 'group: no-such-group-yet\n'
    rc, result = run_module(capsys, dirs)
    assert rc == 1 and result['msg'] == 'directories: group no-such-group-yet: no such group (directories[0])'
