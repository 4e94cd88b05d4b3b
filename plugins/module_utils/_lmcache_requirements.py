# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The requirement set of an LMCache wheel without its CUDA-only distributions.

LMCache's ``setup.py`` (sdist 0.4.5 to 0.4.7) always adds ``requirements/common.txt`` and a
vendor file to ``install_requires``: ``requirements/cuda13_core.txt`` (``cupy-cuda13x``,
``nixl-cu13``) by default, ``cuda12_core.txt`` (``cupy-cuda12x``, ``nixl``) with
``LMCACHE_CUDA_MAJOR=12``. ``NO_CUDA_EXT=1`` only drops the compiled extensions
(``lmcache.c_ops`` and the C++ storage backends), not these requirements, and
``common.txt`` itself lists ``cufile-python`` and ``nvtx`` (NVIDIA libraries) and an
unpinned ``torch`` (from PyPI a CUDA build that pulls ``nvidia-*`` and ``triton``).

So a wheel is installed with ``--no-deps`` and then the requirements this module keeps: every
``Requires-Dist`` of the wheel's ``METADATA`` whose distribution name matches none of the
exclusion patterns (``fnmatch`` on the PEP 503 normalised name), without those that only apply
to an extra that was not asked for. Pure functions over text, unit-tested table by table.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import re
import zipfile

# Distributions that are CUDA-only (or NVIDIA-only) and must never land on a Gaudi or CPU node.
CUDA_PATTERNS = (
    'nvidia-*',  # CUDA runtime, cuBLAS, cuDNN, NCCL, ... wheels and nvidia-ml-py
    'cupy-cuda*',  # cupy-cuda12x, cupy-cuda13x (LMCache requirements/cuda1*_core.txt)
    'cuda-*',  # cuda-python, cuda-bindings, cuda-pathfinder
    'cufile-python',  # GPUDirect Storage (cuFile) bindings (LMCache requirements/common.txt)
    'nvtx',  # NVIDIA Tools Extension (LMCache requirements/common.txt)
    'nixl',  # meta-package that pulls nixl-cu12 (LMCache requirements/cuda12_core.txt)
    'nixl-cu*',  # nixl-cu12, nixl-cu13 (LMCache requirements/cuda13_core.txt)
    'pynvml',
    'xformers',
    'triton',  # pulled by PyPI's CUDA torch builds
)
# Owned by the serving stack (the vllm role installs the platform's torch: the Gaudi build, or
# the CPU build), never resolved from LMCache's unpinned requirement.
STACK_OWNED = ('torch', 'torchvision', 'torchaudio')
DEFAULT_EXCLUDE = CUDA_PATTERNS + STACK_OWNED

_NAME_RE = re.compile(r'^\s*([A-Za-z0-9][A-Za-z0-9._-]*)')
_EXTRA_RE = re.compile(r'''\bextra\s*==\s*['"]([^'"]+)['"]''')


def normalize(name):
    """PEP 503 normalised distribution name: 'Cupy_Cuda13x' -> 'cupy-cuda13x'."""
    return re.sub(r'[-_.]+', '-', name).lower()


def requirement_name(requirement):
    """Distribution name of a requirement string ('nixl-cu13; python_version < "3.13"' -> 'nixl-cu13')."""
    match = _NAME_RE.match(requirement or '')
    if not match:
        raise ValueError('not a requirement: %r' % (requirement,))
    return normalize(match.group(1))


def requirement_extras(requirement):
    """Extras a requirement's marker restricts it to ('x; extra == "cli"' -> ['cli'])."""
    _req, _sep, marker = requirement.partition(';')
    return sorted(set(normalize(e) for e in _EXTRA_RE.findall(marker)))


def matches(name, patterns):
    """True when the normalised ``name`` matches one of the fnmatch ``patterns``."""
    name = normalize(name)
    return any(fnmatch.fnmatchcase(name, normalize(p)) for p in patterns)


def parse_metadata(text):
    """(name, version, [Requires-Dist values]) of a METADATA / PKG-INFO text (RFC 822 headers)."""
    name = version = None
    requires = []
    for line in text.splitlines():
        if not line.strip():
            break  # the description body follows the first blank line
        key, sep, value = line.partition(':')
        if not sep or line[:1] in (' ', '\t'):
            continue
        key = key.strip().lower()
        value = value.strip()
        if key == 'name':
            name = value
        elif key == 'version':
            version = value
        elif key == 'requires-dist':
            requires.append(value)
    return name, version, requires


def split_requirements(requires, exclude=DEFAULT_EXCLUDE, extras=()):
    """Split ``requires`` into (kept, excluded, skipped_extras), each a list of requirement strings.

    ``excluded``: the distribution matches ``exclude``. ``skipped_extras``: the requirement
    only applies to extras not in ``extras``. Everything else is kept, markers and all (pip
    evaluates environment markers itself).
    """
    wanted = set(normalize(e) for e in extras)
    kept, excluded, skipped = [], [], []
    for req in requires:
        name = requirement_name(req)
        req_extras = requirement_extras(req)
        if req_extras and not wanted.intersection(req_extras):
            skipped.append(req)
        elif matches(name, exclude):
            excluded.append(req)
        else:
            kept.append(req)
    return kept, excluded, skipped


def wheel_metadata(path):
    """METADATA text of a wheel file (the one ``*.dist-info/METADATA`` at the top level)."""
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if re.match(r'^[^/]+\.dist-info/METADATA$', n)]
        if len(names) != 1:
            raise ValueError('%s: expected one *.dist-info/METADATA, found %d' % (path, len(names)))
        return zf.read(names[0]).decode('utf-8')


def wheel_is_pure(path):
    """True when the wheel's WHEEL file says ``Root-Is-Purelib: true`` and carries no .so file."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        wheel = [n for n in names if re.match(r'^[^/]+\.dist-info/WHEEL$', n)]
        text = zf.read(wheel[0]).decode('utf-8') if wheel else ''
    purelib = re.search(r'^Root-Is-Purelib:\s*true\s*$', text, re.M | re.I) is not None
    return purelib and not any(n.endswith('.so') or '.so.' in n.rsplit('/', 1)[-1] for n in names)


def forbidden_distributions(names, patterns=CUDA_PATTERNS):
    """The distribution names (normalised, sorted) among ``names`` that match ``patterns``."""
    return sorted(set(normalize(n) for n in names if matches(n, patterns)))
