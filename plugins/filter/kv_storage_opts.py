# -*- coding: utf-8 -*-
# Copyright: contributors to gaudi.vllm_lmcache
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that build and read NFS mount option strings for the kv_storage role."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Documentation: kv_storage_opts.yml, kv_storage_parse_opts.yml, kv_storage_proc_mount.yml
# and kv_storage_opts_diff.yml next to this file (one per filter).

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.six import string_types

# The fixed part of the canonical order. Options not listed here follow, sorted by name.
CANONICAL_ORDER = (
    'rw',
    'ro',
    'vers',
    'nfsvers',
    'minorversion',
    'proto',
    'port',
    'mountproto',
    'mountport',
    'nconnect',
    'max_connect',
    'pconnect',
    'mdconnect',
    'rsize',
    'wsize',
    'bsize',
    'hard',
    'soft',
    'softerr',
    'intr',
    'timeo',
    'retrans',
    'retry',
    'ac',
    'noac',
    'actimeo',
    'acregmin',
    'acregmax',
    'acdirmin',
    'acdirmax',
    'lookupcache',
    'cto',
    'nocto',
    'lock',
    'nolock',
    'local_lock',
    'sec',
    'sharecache',
    'nosharecache',
    'resvport',
    'noresvport',
    'fsc',
    'nofsc',
    'atime',
    'noatime',
    'relatime',
    'diratime',
    'nodiratime',
    'suid',
    'nosuid',
    'dev',
    'nodev',
    'exec',
    'noexec',
    'remoteports',
    'localports',
    'localports_failover',
    'spread_reads',
    'spread_writes',
    'noextend',
    'forcerdirplus',
    'relmtime',
    'optlockflush',
    'noidlexprt',
    'nosharetransport',
    'sharetransport',
    'bg',
    'fg',
    'nofail',
    'noauto',
    'x-systemd.automount',
    'x-systemd.mount-timeout',
    '_netdev',
)
_RANK = dict((name, index) for index, name in enumerate(CANONICAL_ORDER))


def _merge(options):
    if options is None:
        return {}
    if isinstance(options, dict):
        return dict(options)
    if isinstance(options, (list, tuple)):
        merged = {}
        for item in options:
            if item is None:
                continue
            if isinstance(item, dict):
                merged.update(item)
            elif isinstance(item, string_types):
                merged.update(parse_opts(item))
            else:
                raise AnsibleFilterError(
                    'kv_storage_opts: list items must be dictionaries or option strings, got %r' % (item,)
                )
        return merged
    if isinstance(options, string_types):
        return parse_opts(options)
    raise AnsibleFilterError(
        'kv_storage_opts: expected a dictionary or a list of dictionaries, got %s' % type(options).__name__
    )


def _sort_key(name):
    return (0, _RANK[name], '') if name in _RANK else (1, 0, name)


def canonical_opts(options):
    """Return the canonical comma separated option string for ``options``."""
    merged = _merge(options)
    parts = []
    for name in sorted(merged, key=_sort_key):
        value = merged[name]
        name = to_text(name).strip()
        if not name or ',' in name or '=' in name:
            raise AnsibleFilterError('kv_storage_opts: invalid option name %r' % (name,))
        if value is True:
            parts.append(name)
        elif value is False or value is None or (isinstance(value, string_types) and value == ''):
            continue
        else:
            text = to_text(value)
            if ',' in text or any(ch.isspace() for ch in text):
                raise AnsibleFilterError(
                    'kv_storage_opts: value of option %s must not contain commas or spaces: %r' % (name, text)
                )
            parts.append('%s=%s' % (name, text))
    return ','.join(parts) if parts else 'defaults'


def parse_opts(text):
    """Parse ``a,b=c`` into ``{'a': True, 'b': 'c'}`` (values stay strings)."""
    result = {}
    for part in to_text(text or '').split(','):
        part = part.strip()
        if not part or part == 'defaults':
            continue
        if '=' in part:
            name, value = part.split('=', 1)
            result[name] = value
        else:
            result[part] = True
    return result


def _unescape(field):
    # /proc/mounts escapes space, tab, newline and backslash as octal (\040 ...).
    out = []
    i = 0
    while i < len(field):
        if field[i] == '\\' and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return ''.join(out)


def proc_mount(proc_mounts, path, exact=True):
    """Return the /proc/mounts (or fstab) entry for ``path`` as a dictionary (the last one wins).

    With ``exact=False`` the entry of the file system that holds ``path`` (longest
    mount point prefix) is returned. An empty dictionary means no entry matched.
    Keys: src, path, fstype, opts (string), options (dictionary), vers, proto, port,
    nconnect, rsize, wsize (the last six are None when absent).
    """
    path = to_text(path).rstrip('/') or '/'
    best = None
    for line in to_text(proc_mounts or '').splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[0].startswith('#'):
            continue
        mnt = _unescape(fields[1]).rstrip('/') or '/'
        if exact:
            if mnt != path:
                continue
        elif not (path == mnt or mnt == '/' or path.startswith(mnt + '/')):
            continue
        if best is None or exact or len(mnt) >= len(best[1]):
            best = (fields, mnt)
    if best is None:
        return {}
    fields, mnt = best
    options = parse_opts(fields[3])

    def _int(name):
        value = options.get(name)
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    nconnect = _int('nconnect')
    if nconnect is None and fields[2] in ('nfs', 'nfs4'):
        nconnect = 1  # the kernel lists nconnect only when it is above 1
    return {
        'src': _unescape(fields[0]),
        'path': mnt,
        'fstype': fields[2],
        'opts': fields[3],
        'options': options,
        'vers': options.get('vers'),
        'proto': options.get('proto'),
        'port': _int('port'),
        'nconnect': nconnect,
        'rsize': _int('rsize'),
        'wsize': _int('wsize'),
    }


def opts_diff(desired, actual, keys=None, ignore_unset=False):
    """Names of options whose values differ between two option sets.

    Both sides may be strings or dictionaries. With ``keys`` only those names are compared.
    With ``ignore_unset`` names the desired side does not set are skipped (the kernel lists
    defaults such as ``proto=tcp`` that nobody asked for).
    ``vers`` compares by major version when the desired value has no minor part (a
    requested ``vers=4`` may negotiate 4.2).
    """
    want = _merge(desired)
    have = _merge(actual)
    names = keys if keys is not None else sorted(set(want) | set(have), key=_sort_key)
    changed = []
    for name in names:
        a = want.get(name)
        b = have.get(name)
        if ignore_unset and (a is None or a is False):
            continue
        if a is False:
            a = None
        if b is False:
            b = None
        a = None if a is None else (a if a is True else to_text(a))
        b = None if b is None else (b if b is True else to_text(b))
        if name in ('vers', 'nfsvers') and a is not None and b is not None and a is not True and b is not True:
            if '.' not in a and b.split('.')[0] == a:
                continue
        if a != b:
            changed.append(name)
    return changed


class FilterModule(object):
    """kv_storage option filters."""

    def filters(self):
        return {
            'kv_storage_opts': canonical_opts,
            'kv_storage_parse_opts': parse_opts,
            'kv_storage_proc_mount': proc_mount,
            'kv_storage_opts_diff': opts_diff,
        }
