# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logic of gaudi.vllm_lmcache.python_package: install a tree of text files (a Python package
directory) in one call, idempotently.

* :func:`collect` runs on the control node (the action plugin): it merges the files of a role
  directory, the collection's module_utils and inline files into one ``relpath -> text`` map.
* :func:`plan` reads the managed node's tree and says what to create, update and remove;
  :func:`apply` carries a plan out; :func:`diff` renders it for ``--diff``.

Imports nothing from ansible, so the functions run (and are tested) as plain Python.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import posixpath
import re
import stat
import tempfile

PYCACHE = '__pycache__'


def argument_spec(dest_type='path'):
    """The options of gaudi.vllm_lmcache.python_package, for the module and its action plugin.

    The action plugin checks ``dest`` as a plain string (``dest_type='str'``): the path is the
    managed node's, expanded there by the module.
    """
    return dict(
        dest=dict(type=dest_type, required=True),
        src=dict(type='str'),
        module_utils=dict(type='list', elements='str', default=[]),
        module_utils_dir=dict(type='str', default=''),
        files=dict(type='dict', default={}),
        purge=dict(type='bool', default=True),
        owner=dict(type='str'),
        group=dict(type='str'),
        mode=dict(type='raw', default='0644'),
        modes=dict(type='dict', default={}),
        directory_mode=dict(type='raw', default='0755'),
    )


MODULE_NAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
INIT_TEXT = (
    "# Copies of the gaudi.vllm_lmcache collection's module_utils, installed by gaudi.vllm_lmcache.python_package.\n"
)
_OCTAL_MODE_RE = re.compile(r'^(0o|0)?([0-7]{1,4})$')


class PackageError(Exception):
    """A problem with the arguments or the tree; the message names the option, path or value."""


def check_relpath(relpath, what='path'):
    """Return ``relpath`` when it is a normalized relative POSIX path below the package directory.

    Refused: non-strings, the empty string, absolute paths, ``..`` components, paths that
    :func:`posixpath.normpath` would change (``./a``, ``a/``, ``a//b``, ``.``) and
    ``__pycache__`` components (the interpreter's caches are never managed files).
    """
    if not isinstance(relpath, str):
        raise PackageError('%s %r is not a string' % (what, relpath))
    if not relpath:
        raise PackageError('%s is empty' % what)
    if '\x00' in relpath:
        raise PackageError('%s %r contains a NUL character' % (what, relpath))
    if relpath.startswith('/'):
        raise PackageError('%s %r is absolute; it must be relative to dest' % (what, relpath))
    parts = relpath.split('/')
    if '..' in parts:
        raise PackageError("%s %r has a '..' component" % (what, relpath))
    if '.' in parts or posixpath.normpath(relpath) != relpath:
        raise PackageError('%s %r is not normalized (expected %r)' % (what, relpath, posixpath.normpath(relpath)))
    if PYCACHE in parts:
        raise PackageError('%s %r is inside a %s directory' % (what, relpath, PYCACHE))
    return relpath


def check_files(files, what='files'):
    """Check a ``relpath -> text`` map: valid paths, text values, no file below another file."""
    if not isinstance(files, dict):
        raise PackageError('%s must be a mapping of relative path to text, got %s' % (what, type(files).__name__))
    for relpath in sorted(files, key=str):
        check_relpath(relpath, '%s path' % what)
        if not isinstance(files[relpath], str):
            raise PackageError('%s[%r] must be text, got %s' % (what, relpath, type(files[relpath]).__name__))
    paths = set(files)
    for relpath in sorted(paths):
        parent = posixpath.dirname(relpath)
        while parent:
            if parent in paths:
                raise PackageError('%s: %r is a file and also the directory of %r' % (what, parent, relpath))
            parent = posixpath.dirname(parent)
    return files


def _walk_sorted(top):
    """(dirpath, filenames) of a tree in sorted order, without __pycache__ and symlinked dirs."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d != PYCACHE)
        yield dirpath, sorted(filenames)


def collect(src_dir=None, module_utils=(), module_utils_dir='', files=None, read_module_utils=None):
    """Merge the sources of the action plugin into one ``relpath -> text`` map.

    ``files``: inline ``relpath -> text``. ``src_dir``: a local directory copied recursively
    (relative paths kept; ``__pycache__`` directories and ``*.pyc`` files skipped; symlinked
    directories not followed). ``module_utils``: names read with ``read_module_utils(name)``
    (bytes) and written as ``<module_utils_dir>/<name>.py``; a non-empty ``module_utils_dir``
    also gets an ``__init__.py`` (:data:`INIT_TEXT`) unless another source provides one.
    The same path from two sources is an error.
    """
    merged = {}
    origin = {}

    def add(relpath, text, source):
        check_relpath(relpath, 'path from %s' % source)
        if relpath in merged:
            raise PackageError('%s is given twice: by %s and by %s' % (relpath, origin[relpath], source))
        merged[relpath] = text
        origin[relpath] = source

    files = {} if files is None else files
    check_files(files)
    for relpath in sorted(files):
        add(relpath, files[relpath], 'files')

    if src_dir:
        if not os.path.isdir(src_dir):
            raise PackageError('src %s is not a directory' % src_dir)
        for dirpath, filenames in _walk_sorted(src_dir):
            for name in filenames:
                if name.endswith('.pyc'):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, 'rb') as f:
                    data = f.read()
                try:
                    text = data.decode('utf-8')
                except UnicodeDecodeError as exc:
                    raise PackageError('src file %s is not UTF-8 text (%s)' % (path, exc))
                relpath = os.path.relpath(path, src_dir).replace(os.sep, '/')
                add(relpath, text, 'src (%s)' % path)

    if module_utils_dir:
        check_relpath(module_utils_dir, 'module_utils_dir')
    seen = set()
    for name in module_utils:
        if not isinstance(name, str) or not MODULE_NAME_RE.match(name):
            raise PackageError(
                'module_utils entry %r is not a module name (letters, digits and _, no .py suffix)' % (name,)
            )
        if name in seen:
            raise PackageError('module_utils lists %s twice' % name)
        seen.add(name)
        data = read_module_utils(name)
        try:
            text = data.decode('utf-8')
        except UnicodeDecodeError as exc:
            raise PackageError('module_utils %s is not UTF-8 text (%s)' % (name, exc))
        add(posixpath.join(module_utils_dir, name + '.py'), text, 'module_utils %s' % name)
    if module_utils_dir:
        init = posixpath.join(module_utils_dir, '__init__.py')
        if init not in merged:
            add(init, INIT_TEXT, 'module_utils_dir')
    return merged


def parse_modes(modes, files, option='modes'):
    """{relpath: mode} for the files that get another mode than ``mode``; each must be in ``files``."""
    result = {}
    for relpath, value in sorted((modes or {}).items()):
        if relpath not in files:
            raise PackageError('%s names %s, which is not one of the files installed' % (option, relpath))
        result[relpath] = parse_mode(value, '%s[%s]' % (option, relpath))
    return result


def parse_mode(value, option):
    """A file mode from an int or an octal string (``'0644'``, ``'644'``, ``'0o644'``); None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise PackageError('%s %r is not a mode' % (option, value))
    if isinstance(value, int):
        mode = value
    else:
        match = _OCTAL_MODE_RE.match(str(value).strip())
        if not match:
            raise PackageError(
                "%s %r is not an octal mode such as '0644' (symbolic modes are not supported)" % (option, value)
            )
        mode = int(match.group(2), 8)
    if mode < 0 or mode > 0o7777:
        raise PackageError('%s %r is out of range' % (option, value))
    return mode


def resolve_owner(owner, group, missing_ok=False):
    """(uid, gid) for user and group names or numeric ids; None where not given.

    With ``missing_ok`` (check mode, where an earlier task of the run would create the account)
    an unknown name is returned as the name itself: it differs from every file's owner, so the
    plan reports the change a real run would make, and :func:`apply` is never given it.
    """
    import grp
    import pwd

    uid = gid = None
    if owner not in (None, ''):
        try:
            uid = pwd.getpwnam(owner).pw_uid
        except KeyError:
            if str(owner).isdigit():
                uid = int(owner)
            elif missing_ok:
                uid = str(owner)
            else:
                raise PackageError('owner %s: no such user' % owner)
    if group not in (None, ''):
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            if str(group).isdigit():
                gid = int(group)
            elif missing_ok:
                gid = str(group)
            else:
                raise PackageError('group %s: no such group' % group)
    return uid, gid


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


def attribute_changes(st, mode, uid, gid):
    changes = {}
    if mode is not None and stat.S_IMODE(st.st_mode) != mode:
        changes['mode'] = ('%04o' % stat.S_IMODE(st.st_mode), '%04o' % mode)
    if uid is not None and st.st_uid != uid:
        changes['owner'] = (st.st_uid, uid)
    if gid is not None and st.st_gid != gid:
        changes['group'] = (st.st_gid, gid)
    return changes


def plan(dest, files, purge=True, mode=None, uid=None, gid=None, want_content=False, modes=None):
    """What :func:`apply` has to do so that ``dest`` holds exactly ``files``.

    Returns a dict: ``files`` (sorted relpaths), ``create`` and ``update`` (relpaths whose
    content is new or differs, byte for byte), ``attributes`` (relpath -> {attr: (before,
    after)} for existing files whose mode, owner or group differs), ``remove`` (files under
    dest that are not in ``files``, with purge; the ``__pycache__/<stem>.*.pyc`` of each
    removed ``<stem>.py``; nothing else in ``__pycache__``), ``remove_dirs`` (directories
    below dest that the removals leave empty), ``create_dirs`` (absolute paths, parents
    first: dest and its missing parents, then missing directories below dest), ``before``
    (relpath -> bytes of updated files, and of removed files when ``want_content``).
    ``modes`` (relpath -> mode) overrides ``mode`` for the files it names.
    Reads only; raises :class:`PackageError` for a tree that the files cannot be put into.
    """
    check_files(files)
    modes = modes or {}
    dest = os.path.abspath(dest)
    result = dict(
        files=sorted(files),
        create=[],
        update=[],
        attributes={},
        remove=[],
        remove_dirs=[],
        create_dirs=[],
        before={},
    )

    # dest and its parents
    missing = []
    probe = dest
    while not os.path.isdir(probe):
        if os.path.lexists(probe):
            raise PackageError('%s exists and is not a directory' % probe)
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    result['create_dirs'].extend(reversed(missing))
    dest_exists = not missing

    # Directories that the wanted files need below dest.
    needed_dirs = set()
    for relpath in files:
        parent = posixpath.dirname(relpath)
        while parent:
            needed_dirs.add(parent)
            parent = posixpath.dirname(parent)

    # The tree as it is: real directories (reldir -> entry names) and everything else. Only
    # purge needs it; without purge the wanted paths are looked at one by one.
    tree_dirs = {}
    others = set()  # files, symlinks (to anything) and special files, as relpaths
    if dest_exists and purge:
        for dirpath, dirnames, filenames in os.walk(dest):
            reldir = os.path.relpath(dirpath, dest).replace(os.sep, '/')
            reldir = '' if reldir == '.' else reldir
            tree_dirs[reldir] = set(dirnames) | set(filenames)
            for name in list(dirnames):
                if os.path.islink(os.path.join(dirpath, name)):
                    others.add(posixpath.join(reldir, name))
            dirnames.sort()
            for name in filenames:
                others.add(posixpath.join(reldir, name))

    def in_pycache(relpath):
        return PYCACHE in relpath.split('/')[:-1]

    def abspath(relpath):
        return os.path.join(dest, *relpath.split('/'))

    # Removals (purge): stale entries that are not a wanted file nor a symlinked directory that
    # the wanted files go through.
    remove = set()
    if purge:
        for relpath in others:
            if relpath in files or in_pycache(relpath):
                continue
            if relpath in needed_dirs and os.path.isdir(abspath(relpath)):
                continue
            remove.add(relpath)
        for relpath in sorted(remove):
            if relpath.endswith('.py'):
                cache = posixpath.join(posixpath.dirname(relpath), PYCACHE)
                stem = posixpath.basename(relpath)[:-3]
                for name in sorted(tree_dirs.get(cache, ())):
                    if name.startswith(stem + '.') and name.endswith('.pyc') and posixpath.join(cache, name) in others:
                        remove.add(posixpath.join(cache, name))
    result['remove'] = sorted(remove)

    # Directories that the removals leave empty (deepest first), never dest itself; directories
    # that were empty already are left alone.
    gone = set(remove)
    for reldir in sorted(tree_dirs, key=lambda d: (-d.count('/'), d)):
        if not reldir or reldir in needed_dirs or not tree_dirs[reldir]:
            continue
        if all(posixpath.join(reldir, name) in gone for name in tree_dirs[reldir]):
            gone.add(reldir)
            result['remove_dirs'].append(reldir)

    def stays_dir(reldir):
        """Whether reldir is a directory (or a symlink to one) after the removals."""
        parts = reldir.split('/')
        for i in range(1, len(parts) + 1):
            if '/'.join(parts[:i]) in remove:
                return False
        return dest_exists and os.path.isdir(abspath(reldir))

    # Directories to create below dest.
    for reldir in sorted(needed_dirs):
        if stays_dir(reldir):
            continue
        if dest_exists and os.path.lexists(abspath(reldir)) and reldir not in remove:
            raise PackageError('%s exists and is not a directory (purge=false keeps it)' % abspath(reldir))
        result['create_dirs'].append(abspath(reldir))

    # Files to create or update.
    for relpath in sorted(files):
        path = abspath(relpath)
        want = files[relpath].encode('utf-8')
        parent = posixpath.dirname(relpath)
        st = None
        if dest_exists and (not parent or stays_dir(parent)):
            try:
                st = os.lstat(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
        if st is None:
            result['create'].append(relpath)
            continue
        if stat.S_ISDIR(st.st_mode):
            raise PackageError('%s is a directory; it cannot be replaced by the file %s' % (path, relpath))
        if not stat.S_ISREG(st.st_mode):
            # A symlink or special file is replaced by a regular file.
            result['update'].append(relpath)
            if stat.S_ISLNK(st.st_mode):
                what = '(symbolic link to %s)\n' % os.readlink(path)
            else:
                what = '(not a regular file)\n'
            result['before'][relpath] = what.encode('utf-8', 'replace')
            continue
        have = _read(path)
        if have != want:
            result['update'].append(relpath)
            result['before'][relpath] = have
        changes = attribute_changes(st, modes.get(relpath, mode), uid, gid)
        if changes:
            result['attributes'][relpath] = changes

    if want_content:
        for relpath in result['remove']:
            path = abspath(relpath)
            if not relpath.endswith('.pyc') and not os.path.islink(path) and os.path.isfile(path):
                result['before'][relpath] = _read(path)
    return result


def changed_files(p):
    """Sorted relpaths whose content or attributes change (created, updated, re-moded, re-owned)."""
    return sorted(set(p['create']) | set(p['update']) | set(p['attributes']))


def is_changed(p):
    return bool(p['create'] or p['update'] or p['attributes'] or p['remove'] or p['remove_dirs'] or p['create_dirs'])


def _chown(path, uid, gid):
    if uid is None and gid is None:
        return
    os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)


def _write_atomic(path, data, mode, uid, gid):
    """Write data to path through a temporary file in the same directory and os.replace."""
    directory, name = os.path.split(path)
    old = None
    try:
        old = os.lstat(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
    if old is not None and not stat.S_ISREG(old.st_mode):
        old = None
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % name, suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        if mode is not None:
            new_mode = mode
        elif old is not None:
            new_mode = stat.S_IMODE(old.st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            new_mode = 0o666 & ~umask
        os.chmod(tmp, new_mode)
        if uid is not None or gid is not None:
            _chown(tmp, uid, gid)
        elif old is not None:
            # Keep the owner of the file that is replaced where the user may set it.
            try:
                _chown(tmp, old.st_uid, old.st_gid)
            except OSError:
                pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def apply(dest, files, p, mode=None, directory_mode=None, uid=None, gid=None, modes=None):
    """Carry out plan ``p``: removals, then new directories, then writes and attribute fixes."""
    dest = os.path.abspath(dest)
    modes = modes or {}

    def abspath(relpath):
        return os.path.join(dest, *relpath.split('/'))

    for relpath in p['remove']:
        try:
            os.unlink(abspath(relpath))
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
    for reldir in p['remove_dirs']:
        try:
            os.rmdir(abspath(reldir))
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
                raise
    for path in p['create_dirs']:
        try:
            os.mkdir(path)
        except OSError as exc:
            if exc.errno != errno.EEXIST or not os.path.isdir(path):
                raise
            continue
        if directory_mode is not None:
            os.chmod(path, directory_mode)
        _chown(path, uid, gid)
    for relpath in sorted(set(p['create']) | set(p['update'])):
        _write_atomic(abspath(relpath), files[relpath].encode('utf-8'), modes.get(relpath, mode), uid, gid)
    for relpath in sorted(set(p['attributes']) - set(p['create']) - set(p['update'])):
        path = abspath(relpath)
        if modes.get(relpath, mode) is not None:
            os.chmod(path, modes.get(relpath, mode))
        _chown(path, uid, gid)


def _as_text(data):
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        return '(not UTF-8 text, %d bytes)\n' % len(data)


def diff(dest, files, p):
    """``--diff`` entries: one per created, updated or removed file (``before`` is '' for a new
    file, whose ``before_header`` ends with ``(absent)``; ``after`` is '' for a removed one,
    whose ``after_header`` ends with ``(removed)``; removed ``*.pyc`` caches get none), then one
    per file whose mode, owner or group changes (``before``/``after`` list the attributes).
    Where before and after are the same text (an empty file), ``prepared`` says what happens."""
    dest = os.path.abspath(dest)
    entries = []
    content = set(p['create']) | set(p['update'])
    for relpath in sorted(content | set(p['remove'])):
        if relpath in p['remove'] and relpath.endswith('.pyc'):
            continue
        path = os.path.join(dest, *relpath.split('/'))
        before = _as_text(p['before'].get(relpath, b''))
        if relpath in content:
            entry = dict(
                before_header=path if relpath in p['update'] else '%s (absent)' % path,
                after_header=path,
                before=before,
                after=files[relpath],
            )
        else:
            entry = dict(before_header=path, after_header='%s (removed)' % path, before=before, after='')
        if entry['before'] == entry['after']:
            # An empty file created or removed (or a symlink replaced): no line to diff.
            entry['prepared'] = '%s -> %s\n' % (entry['before_header'], entry['after_header'])
        entries.append(entry)
    for relpath in sorted(p['attributes']):
        path = os.path.join(dest, *relpath.split('/'))
        changes = p['attributes'][relpath]
        entries.append(
            dict(
                before_header='%s (attributes)' % path,
                after_header='%s (attributes)' % path,
                before=''.join('%s: %s\n' % (k, changes[k][0]) for k in sorted(changes)),
                after=''.join('%s: %s\n' % (k, changes[k][1]) for k in sorted(changes)),
            )
        )
    return entries
