# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the python_package logic: path rules, the action's gathering, plan, apply, diff."""

import os
import stat

import pytest

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import _python_package as pp
from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils._python_package import (
    INIT_TEXT,
    PackageError,
    apply,
    changed_files,
    check_files,
    check_relpath,
    collect,
    diff,
    is_changed,
    parse_mode,
    plan,
)

PYC = 'cpython-311.pyc'


def make_tree(root, entries):
    """entries: relpath -> bytes (a file), None (a directory), or ('link', target)."""
    for relpath, value in sorted(entries.items()):
        path = os.path.join(str(root), *relpath.split('/'))
        if value is None:
            os.makedirs(path, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(value, tuple):
            os.symlink(value[1], path)
        else:
            with open(path, 'wb') as f:
                f.write(value)


def read_tree(root):
    """relpath -> bytes of every file, None for every directory (symlinks as ('link', target))."""
    out = {}
    root = str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, '/')
            if os.path.islink(path):
                out[rel] = ('link', os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = None
            else:
                with open(path, 'rb') as f:
                    out[rel] = f.read()
    return out


def run(dest, files, purge=True, mode=0o644, directory_mode=0o755):
    p = plan(str(dest), files, purge=purge, mode=mode, want_content=True)
    apply(str(dest), files, p, mode=mode, directory_mode=directory_mode)
    return p


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize('relpath', ['a.py', 'pkg/a.py', 'a/b/c.txt', '.hidden', 'a..b.py', '_collection/__init__.py'])
def test_good_relpaths(relpath):
    assert check_relpath(relpath) == relpath


@pytest.mark.parametrize(
    'relpath, message',
    [
        ('', 'is empty'),
        ('/etc/passwd', 'is absolute'),
        ('../a.py', "'..' component"),
        ('a/../b.py', "'..' component"),
        ('a/..', "'..' component"),
        ('./a.py', 'not normalized'),
        ('a//b.py', 'not normalized'),
        ('a/', 'not normalized'),
        ('a/./b.py', 'not normalized'),
        ('.', 'not normalized'),
        ('__pycache__/a.cpython-311.pyc', '__pycache__'),
        ('a/__pycache__/b.pyc', '__pycache__'),
        ('a\x00b', 'NUL'),
        (3, 'not a string'),
        (None, 'not a string'),
    ],
)
def test_bad_relpaths(relpath, message):
    with pytest.raises(PackageError, match=message) as exc:
        check_relpath(relpath)
    assert repr(relpath) in str(exc.value) or relpath == ''


@pytest.mark.parametrize(
    'files, message',
    [
        ({'a': 'x', 'a/b.py': 'y'}, "'a' is a file and also the directory of 'a/b.py'"),
        ({'a/b': 'x', 'a/b/c/d.py': 'y'}, "'a/b' is a file and also the directory of 'a/b/c/d.py'"),
        ({'a.py': 1}, r"files\['a.py'\] must be text, got int"),
        ({'a.py': b'x'}, 'must be text, got bytes'),
        ({'../a.py': 'x'}, "'..' component"),
        (['a.py'], 'must be a mapping'),
    ],
)
def test_bad_file_sets(files, message):
    with pytest.raises(PackageError, match=message):
        check_files(files)


@pytest.mark.parametrize(
    'value, expected',
    [('0644', 0o644), ('644', 0o644), ('0o755', 0o755), ('0600', 0o600), (0o640, 0o640), (420, 0o644), (None, None)],
)
def test_parse_mode(value, expected):
    assert parse_mode(value, 'mode') == expected


@pytest.mark.parametrize('value', ['u=rw,g=r', '0999', 'rw', '', True, 0o17777, '12345'])
def test_parse_mode_refuses(value):
    with pytest.raises(PackageError, match='^mode '):
        parse_mode(value, 'mode')


# ---------------------------------------------------------------- collect (the action plugin's gathering)


def fake_reader(sources):
    def read(name):
        if name not in sources:
            raise PackageError('module_utils %s cannot be imported from gaudi.vllm_lmcache' % name)
        return sources[name]

    return read


UTILS = {'a': b'# a\n', 'hl_smi': b'# hl_smi\n', 'hpu_kv_transfer': b'# kv \xc3\xa9\n', 'latin1': b'# \xe9\n'}


@pytest.fixture
def src_dir(tmp_path):
    root = tmp_path / 'src'
    make_tree(
        root,
        {
            '__init__.py': b'# src init\n',
            'b/z.py': b'Z\n',
            'b/a.py': b'A\n',
            'b/__pycache__/a.cpython-311.pyc': b'\x00\x01',
            '__pycache__/x.cpython-311.pyc': b'\x00',
            'stale.pyc': b'\x00',
            'data/table.txt': b't\n',
        },
    )
    return str(root)


COLLECT_CASES = [
    # id, kwargs (src=True means the src_dir fixture), expected merged map
    ('inline only', dict(files={'__init__.py': 'I\n', 'sub/m.py': 'M\n'}), {'__init__.py': 'I\n', 'sub/m.py': 'M\n'}),
    (
        'src keeps relative paths, skips caches',
        dict(src=True),
        {'__init__.py': '# src init\n', 'b/a.py': 'A\n', 'b/z.py': 'Z\n', 'data/table.txt': 't\n'},
    ),
    (
        'module_utils at dest with no __init__',
        dict(module_utils=['hl_smi']),
        {'hl_smi.py': '# hl_smi\n'},
    ),
    (
        'module_utils_dir gets an __init__',
        dict(module_utils=['hl_smi', 'hpu_kv_transfer'], module_utils_dir='_collection'),
        {
            '_collection/__init__.py': INIT_TEXT,
            '_collection/hl_smi.py': '# hl_smi\n',
            '_collection/hpu_kv_transfer.py': '# kv \u00e9\n',
        },
    ),
    (
        'nested module_utils_dir',
        dict(module_utils=['hl_smi'], module_utils_dir='vendor/gaudi'),
        {'vendor/gaudi/__init__.py': INIT_TEXT, 'vendor/gaudi/hl_smi.py': '# hl_smi\n'},
    ),
    (
        'an __init__ from files wins over the generated one',
        dict(module_utils=['hl_smi'], module_utils_dir='_c', files={'_c/__init__.py': 'from .hl_smi import *\n'}),
        {'_c/__init__.py': 'from .hl_smi import *\n', '_c/hl_smi.py': '# hl_smi\n'},
    ),
    (
        'an __init__ from src wins over the generated one',
        dict(src=True, module_utils=['hl_smi'], module_utils_dir='b'),
        {
            '__init__.py': '# src init\n',
            'b/a.py': 'A\n',
            'b/z.py': 'Z\n',
            'b/__init__.py': INIT_TEXT,
            'b/hl_smi.py': '# hl_smi\n',
            'data/table.txt': 't\n',
        },
    ),
    (
        'all three sources',
        dict(src=True, module_utils=['hl_smi'], module_utils_dir='_collection', files={'VERSION': '1\n'}),
        {
            '__init__.py': '# src init\n',
            'b/a.py': 'A\n',
            'b/z.py': 'Z\n',
            'data/table.txt': 't\n',
            'VERSION': '1\n',
            '_collection/__init__.py': INIT_TEXT,
            '_collection/hl_smi.py': '# hl_smi\n',
        },
    ),
    ('nothing', dict(), {}),
]


@pytest.mark.parametrize('kwargs, expected', [c[1:] for c in COLLECT_CASES], ids=[c[0] for c in COLLECT_CASES])
def test_collect(src_dir, kwargs, expected):
    kwargs = dict(kwargs)
    if kwargs.pop('src', False):
        kwargs['src_dir'] = src_dir
    assert collect(read_module_utils=fake_reader(UTILS), **kwargs) == expected


COLLECT_ERRORS = [
    ('src vs files', dict(src=True, files={'b/a.py': 'other'}), 'b/a.py is given twice: by files and by src'),
    (
        'module_utils vs files',
        dict(module_utils=['hl_smi'], module_utils_dir='m', files={'m/hl_smi.py': 'x'}),
        'm/hl_smi.py is given twice: by files and by module_utils hl_smi',
    ),
    (
        'module_utils vs src',
        dict(src=True, module_utils=['a'], module_utils_dir='b'),
        'b/a.py is given twice: by src',
    ),
    ('name with .py', dict(module_utils=['hl_smi.py']), "module_utils entry 'hl_smi.py' is not a module name"),
    ('name with a path', dict(module_utils=['../hl_smi']), "module_utils entry '../hl_smi' is not a module name"),
    ('dotted name', dict(module_utils=['a.b']), "module_utils entry 'a.b' is not a module name"),
    ('empty name', dict(module_utils=['']), "module_utils entry '' is not a module name"),
    ('listed twice', dict(module_utils=['hl_smi', 'hl_smi']), 'module_utils lists hl_smi twice'),
    ('unknown', dict(module_utils=['nope']), 'module_utils nope cannot be imported'),
    ('not UTF-8', dict(module_utils=['latin1']), 'module_utils latin1 is not UTF-8 text'),
    ('absolute module_utils_dir', dict(module_utils_dir='/abs'), "module_utils_dir '/abs' is absolute"),
    ('module_utils_dir up', dict(module_utils_dir='../up'), "module_utils_dir '../up' has a '..' component"),
    ('module_utils_dir trailing /', dict(module_utils_dir='m/'), "module_utils_dir 'm/' is not normalized"),
    ('bad inline path', dict(files={'/etc/x': 'x'}), "files path '/etc/x' is absolute"),
    ('inline not text', dict(files={'a.py': 3}), r"files\['a.py'\] must be text"),
]


@pytest.mark.parametrize('kwargs, message', [c[1:] for c in COLLECT_ERRORS], ids=[c[0] for c in COLLECT_ERRORS])
def test_collect_refuses(src_dir, kwargs, message):
    kwargs = dict(kwargs)
    if kwargs.pop('src', False):
        kwargs['src_dir'] = src_dir
    with pytest.raises(PackageError, match=message.replace('(', r'\(').replace(')', r'\)')):
        collect(read_module_utils=fake_reader(UTILS), **kwargs)


def test_collect_refuses_non_utf8_src_file(tmp_path):
    make_tree(tmp_path / 'src', {'ok.py': b'x\n', 'sub/bad.py': b'\xff\xfe'})
    with pytest.raises(PackageError, match=r'src file .*sub/bad\.py is not UTF-8 text'):
        collect(src_dir=str(tmp_path / 'src'))


def test_collect_refuses_src_that_is_not_a_directory(tmp_path):
    (tmp_path / 'f').write_text('x')
    with pytest.raises(PackageError, match='src .*/f is not a directory'):
        collect(src_dir=str(tmp_path / 'f'))


# ---------------------------------------------------------------- plan and apply

PLAN_CASES = [
    # id, existing tree, files, purge, mode, expected: create, update, attributes (relpaths), remove, remove_dirs
    (
        'fresh install creates files and dirs',
        None,
        {'__init__.py': '', 'sub/a.py': 'A\n', 'sub/deep/b.py': 'B\n'},
        True,
        0o644,
        (['__init__.py', 'sub/a.py', 'sub/deep/b.py'], [], [], [], []),
    ),
    (
        'same content: nothing to do',
        {'__init__.py': b'', 'sub/a.py': b'A\n'},
        {'__init__.py': '', 'sub/a.py': 'A\n'},
        True,
        None,
        ([], [], [], [], []),
    ),
    (
        'content change is an update',
        {'a.py': b'old\n', 'b.py': b'B\n'},
        {'a.py': 'new\n', 'b.py': 'B\n'},
        True,
        None,
        ([], ['a.py'], [], [], []),
    ),
    (
        'a byte of difference (newline) is an update',
        {'a.py': b'A\r\n'},
        {'a.py': 'A\n'},
        True,
        None,
        ([], ['a.py'], [], [], []),
    ),
    (
        'purge removes a stale module and its pyc, keeps the pyc of a listed one',
        {
            'a.py': b'A\n',
            'stale.py': b'S\n',
            'notes.txt': b'n\n',
            '__pycache__/a.' + PYC: b'\x00',
            '__pycache__/stale.' + PYC: b'\x00',
            '__pycache__/stale.cpython-310.opt-1.pyc': b'\x00',
            '__pycache__/stale_other.' + PYC: b'\x00',
        },
        {'a.py': 'A\n'},
        True,
        None,
        (
            [],
            [],
            [],
            ['__pycache__/stale.cpython-310.opt-1.pyc', '__pycache__/stale.' + PYC, 'notes.txt', 'stale.py'],
            [],
        ),
    ),
    (
        'purge=false leaves other files',
        {'a.py': b'A\n', 'stale.py': b'S\n', '__pycache__/stale.' + PYC: b'\x00'},
        {'a.py': 'A\n'},
        False,
        None,
        ([], [], [], [], []),
    ),
    (
        'purge removes the directories it empties, deepest first',
        {'a.py': b'A\n', 'old/x.py': b'X\n', 'old/__pycache__/x.' + PYC: b'\x00', 'old/deeper/y.txt': b'y'},
        {'a.py': 'A\n'},
        True,
        None,
        (
            [],
            [],
            [],
            ['old/__pycache__/x.' + PYC, 'old/deeper/y.txt', 'old/x.py'],
            ['old/__pycache__', 'old/deeper', 'old'],
        ),
    ),
    (
        'purge keeps directories that were empty already and caches it did not empty',
        {'a.py': b'A\n', 'empty': None, 'keep/__pycache__/gone.' + PYC: b'\x00', 'keep/x.py': b'X'},
        {'a.py': 'A\n'},
        True,
        None,
        ([], [], [], ['keep/x.py'], []),
    ),
    (
        'a file where a directory goes is purged',
        {'sub': b'not a dir'},
        {'sub/a.py': 'A\n'},
        True,
        None,
        (['sub/a.py'], [], [], ['sub'], []),
    ),
    (
        'mode change counts',
        {'a.py': b'A\n', 'b.py': b'B\n'},
        {'a.py': 'A\n', 'b.py': 'B\n'},
        True,
        0o600,
        ([], [], ['a.py', 'b.py'], [], []),
    ),
    (
        'a symlink where a file goes is replaced',
        {'target.txt': b'A\n', 'a.py': ('link', 'target.txt')},
        {'a.py': 'A\n', 'target.txt': 'A\n'},
        True,
        None,
        ([], ['a.py'], [], [], []),
    ),
    (
        'a stale symlink is purged, its target is not followed',
        {'a.py': b'A\n', 'elsewhere': ('link', '/')},
        {'a.py': 'A\n'},
        True,
        None,
        ([], [], [], ['elsewhere'], []),
    ),
]


@pytest.mark.parametrize(
    'existing, files, purge, mode, expected', [c[1:] for c in PLAN_CASES], ids=[c[0] for c in PLAN_CASES]
)
def test_plan_apply_and_rerun(tmp_path, existing, files, purge, mode, expected):
    dest = tmp_path / 'pkg'
    if existing is not None:
        make_tree(dest, existing)
        for relpath, value in existing.items():
            if isinstance(value, bytes):
                os.chmod(os.path.join(str(dest), relpath), 0o644)
    p = plan(str(dest), files, purge=purge, mode=mode, want_content=True)
    create, update, attributes, remove, remove_dirs = expected
    assert p['create'] == create
    assert p['update'] == update
    assert sorted(p['attributes']) == attributes
    assert p['remove'] == remove
    assert p['remove_dirs'] == remove_dirs
    assert p['files'] == sorted(files)
    assert changed_files(p) == sorted(set(create) | set(update) | set(attributes))
    assert is_changed(p) == bool(create or update or attributes or remove or remove_dirs or existing is None)

    before = read_tree(dest) if existing is not None else {}
    apply(str(dest), files, p, mode=mode, directory_mode=0o755)
    after = read_tree(dest)
    for relpath, text in files.items():
        assert after[relpath] == text.encode('utf-8')
        if mode is not None:
            assert stat.S_IMODE(os.stat(os.path.join(str(dest), relpath)).st_mode) == mode
    for relpath in remove + remove_dirs:
        # Gone, or (a file where a directory goes) a directory now.
        assert relpath not in after or (after[relpath] is None and before[relpath] is not None)
    # Nothing else changed: what was neither listed nor removed is as it was.
    for relpath, value in before.items():
        if relpath not in files and relpath not in remove and relpath not in remove_dirs:
            assert after.get(relpath, 'missing') == value, relpath

    again = plan(str(dest), files, purge=purge, mode=mode)
    assert not is_changed(again), again


def test_fresh_install_creates_dest_with_parents_and_directory_mode(tmp_path):
    dest = tmp_path / 'a' / 'b' / 'pkg'
    p = run(dest, {'sub/x.py': 'X\n'}, directory_mode=0o750)
    assert p['create_dirs'] == [str(tmp_path / 'a'), str(tmp_path / 'a' / 'b'), str(dest), str(dest / 'sub')]
    for path in p['create_dirs']:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(str(dest / 'sub' / 'x.py')).st_mode) == 0o644


def test_empty_set_creates_dest_only(tmp_path):
    dest = tmp_path / 'pkg'
    p = run(dest, {})
    assert p['create_dirs'] == [str(dest)] and is_changed(p)
    assert os.path.isdir(str(dest)) and os.listdir(str(dest)) == []
    assert not is_changed(plan(str(dest), {}))


def test_update_without_mode_keeps_the_existing_mode(tmp_path):
    make_tree(tmp_path, {'a.py': b'old'})
    os.chmod(str(tmp_path / 'a.py'), 0o640)
    p = run(tmp_path, {'a.py': 'new'}, mode=None)
    assert p['update'] == ['a.py']
    assert stat.S_IMODE(os.stat(str(tmp_path / 'a.py')).st_mode) == 0o640


def test_writes_leave_no_temporary_files(tmp_path):
    run(tmp_path, {'a.py': 'A', 'sub/b.py': 'B'})
    run(tmp_path, {'a.py': 'A2', 'sub/b.py': 'B2'})
    assert sorted(read_tree(tmp_path)) == ['a.py', 'sub', 'sub/b.py']


def test_write_is_atomic_rename(tmp_path, monkeypatch):
    make_tree(tmp_path, {'a.py': b'old'})
    inode = os.stat(str(tmp_path / 'a.py')).st_ino
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(pp.os, 'replace', lambda a, b: (replaced.append((a, b)), real_replace(a, b)))
    run(tmp_path, {'a.py': 'new'})
    ((tmp, target),) = replaced
    assert os.path.dirname(tmp) == str(tmp_path) and target == str(tmp_path / 'a.py')
    assert os.stat(str(tmp_path / 'a.py')).st_ino != inode


@pytest.mark.parametrize(
    'existing, files, purge, message',
    [
        ({'a.py': None}, {'a.py': 'x'}, True, 'is a directory; it cannot be replaced by the file a.py'),
        ({'sub': b'file'}, {'sub/a.py': 'x'}, False, 'sub exists and is not a directory'),
        ({}, {'../x.py': 'x'}, True, "'..' component"),
        ({}, {'/x.py': 'x'}, True, 'is absolute'),
    ],
)
def test_plan_refuses(tmp_path, existing, files, purge, message):
    make_tree(tmp_path, existing)
    with pytest.raises(PackageError, match=message):
        plan(str(tmp_path), files, purge=purge)


def test_plan_refuses_a_dest_that_is_a_file(tmp_path):
    (tmp_path / 'pkg').write_text('x')
    with pytest.raises(PackageError, match='pkg exists and is not a directory'):
        plan(str(tmp_path / 'pkg' / 'sub'), {'a.py': 'x'})


def test_plan_only_reads(tmp_path):
    make_tree(tmp_path, {'a.py': b'old', 'stale.py': b'S', '__pycache__/stale.' + PYC: b'\x00'})
    before = read_tree(tmp_path)
    p = plan(str(tmp_path / 'new'), {'a.py': 'A'})
    p = plan(str(tmp_path), {'a.py': 'new', 'b/c.py': 'C'}, mode=0o600, want_content=True)
    assert is_changed(p)
    assert read_tree(tmp_path) == before


# ---------------------------------------------------------------- diff


def test_diff_entries(tmp_path):
    make_tree(tmp_path, {'a.py': b'old\n', 'gone.py': b'G\n', 'empty.py': b'', '__pycache__/gone.' + PYC: b'\x00'})
    os.chmod(str(tmp_path / 'a.py'), 0o644)
    files = {'a.py': 'new\n', 'b.py': 'B\n', 'c.py': ''}
    p = plan(str(tmp_path), files, mode=0o644, want_content=True)
    entries = diff(str(tmp_path), files, p)
    root = str(tmp_path)
    assert entries == [
        dict(before_header=root + '/a.py', after_header=root + '/a.py', before='old\n', after='new\n'),
        dict(before_header=root + '/b.py (absent)', after_header=root + '/b.py', before='', after='B\n'),
        dict(
            before_header=root + '/c.py (absent)',
            after_header=root + '/c.py',
            before='',
            after='',
            prepared='%s/c.py (absent) -> %s/c.py\n' % (root, root),
        ),
        dict(
            before_header=root + '/empty.py',
            after_header=root + '/empty.py (removed)',
            before='',
            after='',
            prepared='%s/empty.py -> %s/empty.py (removed)\n' % (root, root),
        ),
        dict(before_header=root + '/gone.py', after_header=root + '/gone.py (removed)', before='G\n', after=''),
    ]


def test_diff_of_attributes_and_binary(tmp_path):
    make_tree(tmp_path, {'a.py': b'A', 'blob.bin': b'\xff\x00'})
    os.chmod(str(tmp_path / 'a.py'), 0o600)
    p = plan(str(tmp_path), {'a.py': 'A'}, mode=0o644, want_content=True)
    entries = diff(str(tmp_path), {'a.py': 'A'}, p)
    assert entries[0]['before'] == '(not UTF-8 text, 2 bytes)\n'
    assert entries[1] == dict(
        before_header=str(tmp_path / 'a.py') + ' (attributes)',
        after_header=str(tmp_path / 'a.py') + ' (attributes)',
        before='mode: 0600\n',
        after='mode: 0644\n',
    )
