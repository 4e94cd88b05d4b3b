# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logic of gaudi.vllm_lmcache.directories: several directories, each with its owner, group
and mode, in one call, idempotently.

:func:`check` turns the module's ``directories`` option into a list of wanted entries,
:func:`plan` reads the node and says what to create and what attributes to fix, :func:`apply`
carries a plan out and :func:`diff` renders it for ``--diff``.

Imports nothing from ansible, so the functions run (and are tested) as plain Python.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils._python_package import (
    PackageError,
    attribute_changes,
    parse_mode,
    resolve_owner,
)

KEYS = ('path', 'owner', 'group', 'mode')


class DirectoryError(PackageError):
    """A problem with the arguments or the node; the message names the option, path or value."""


def check(directories, missing_ok=False):
    """[{path, mode, uid, gid}] from the ``directories`` option (a list of mappings).

    ``path`` must be absolute; a path listed again with the same attributes counts once; ``mode`` is an octal string or number (None
    leaves the mode alone); ``owner`` and ``group`` are names or numeric ids. With
    ``missing_ok`` (check mode) an unknown name counts as a change, see
    :func:`~._python_package.resolve_owner`.
    """
    if not isinstance(directories, list):
        raise DirectoryError('directories must be a list of mappings, got %s' % type(directories).__name__)
    wanted = []
    seen = {}
    for index, entry in enumerate(directories):
        where = 'directories[%d]' % index
        if not isinstance(entry, dict):
            raise DirectoryError('%s must be a mapping with path, owner, group and mode, got %r' % (where, entry))
        unknown = sorted(set(entry) - set(KEYS), key=str)
        if unknown:
            raise DirectoryError(
                '%s has unknown key(s) %s (known: %s)' % (where, ', '.join(map(str, unknown)), ', '.join(KEYS))
            )
        path = entry.get('path')
        if not isinstance(path, str) or not path:
            raise DirectoryError('%s.path must be a non-empty string, got %r' % (where, path))
        if not path.startswith('/'):
            raise DirectoryError('%s.path %r is not absolute' % (where, path))
        path = os.path.normpath(path)
        try:
            mode = parse_mode(entry.get('mode'), '%s.mode' % where)
            uid, gid = resolve_owner(entry.get('owner'), entry.get('group'), missing_ok=missing_ok)
        except PackageError as exc:
            raise DirectoryError('%s (%s)' % (exc, where) if where not in str(exc) else str(exc))
        want = dict(path=path, mode=mode, uid=uid, gid=gid)
        if path in seen:
            # The same directory twice (for example /opt/venv and /opt/venv/) is one entry when
            # the attributes agree.
            if seen[path] != want:
                raise DirectoryError('%s.path %s is listed twice with other attributes' % (where, path))
            continue
        seen[path] = want
        wanted.append(want)
    # Parents first (a stable sort): a listed directory gets its own attributes, never those of
    # a listed subdirectory that would otherwise create it as a missing parent.
    return sorted(wanted, key=lambda want: want['path'].rstrip('/').count('/'))


def plan(wanted):
    """What :func:`apply` has to do, in the order of ``wanted`` (parents first, see :func:`check`).

    Returns a list with one dict per wanted directory: ``path``, ``create`` (its missing
    parents and itself, parents first, which get the entry's attributes as with
    ``ansible.builtin.file`` and ``state=directory``) and ``attributes`` (attr -> (before,
    after) for an existing directory; symbolic links to directories are followed). Reads only;
    raises :class:`DirectoryError` where something that is not a directory is in the way.
    """
    planned = []
    creating = set()
    for want in wanted:
        missing = []
        probe = want['path']
        while probe not in creating and not os.path.isdir(probe):
            if os.path.lexists(probe):
                raise DirectoryError('%s exists and is not a directory' % probe)
            missing.append(probe)
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        missing.reverse()
        creating.update(missing)
        changes = {} if missing else attribute_changes(os.stat(want['path']), want['mode'], want['uid'], want['gid'])
        planned.append(dict(path=want['path'], create=missing, attributes=changes))
    return planned


def is_changed(p):
    return any(entry['create'] or entry['attributes'] for entry in p)


def changed_paths(p):
    """The wanted directories that are created or whose attributes change, in order."""
    return [entry['path'] for entry in p if entry['create'] or entry['attributes']]


def created_paths(p):
    """Every directory created (parents first)."""
    return [path for entry in p for path in entry['create']]


def _set(path, want):
    if want['mode'] is not None:
        os.chmod(path, want['mode'])
    if want['uid'] is not None or want['gid'] is not None:
        os.chown(path, -1 if want['uid'] is None else want['uid'], -1 if want['gid'] is None else want['gid'])


def apply(wanted, p):
    """Carry out plan ``p`` of ``wanted``: create, then fix attributes, one directory at a time."""
    for want, entry in zip(wanted, p):
        for path in entry['create']:
            try:
                os.mkdir(path)
            except OSError as exc:
                if exc.errno != errno.EEXIST or not os.path.isdir(path):
                    raise
            _set(path, want)
        if entry['attributes']:
            _set(want['path'], want)


def _describe(want):
    lines = ['state: directory\n']
    if want['mode'] is not None:
        lines.append('mode: %04o\n' % want['mode'])
    if want['uid'] is not None:
        lines.append('owner: %s\n' % want['uid'])
    if want['gid'] is not None:
        lines.append('group: %s\n' % want['gid'])
    return ''.join(lines)


def diff(wanted, p):
    """``--diff`` entries: one per created directory (``before`` ``state: absent``) and one per
    existing directory whose mode, owner or group changes (the attributes before and after)."""
    entries = []
    for want, entry in zip(wanted, p):
        for path in entry['create']:
            entries.append(
                dict(
                    before_header='%s (absent)' % path,
                    after_header=path,
                    before='state: absent\n',
                    after=_describe(want),
                )
            )
        if entry['attributes']:
            changes = entry['attributes']
            entries.append(
                dict(
                    before_header='%s (attributes)' % want['path'],
                    after_header='%s (attributes)' % want['path'],
                    before=''.join('%s: %s\n' % (k, changes[k][0]) for k in sorted(changes)),
                    after=''.join('%s: %s\n' % (k, changes[k][1]) for k in sorted(changes)),
                )
            )
    return entries
