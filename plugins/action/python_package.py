# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of gaudi.vllm_lmcache.python_package: gathers the files on the control node
(the role's src directory, the collection's own module_utils, inline files) and installs them
with one call of the module of the same name.

The module_utils are found through the collection's import machinery (the loader of
``ansible_collections.gaudi.vllm_lmcache.plugins.module_utils.<name>``), never by a path
relative to a role, and read as bytes without being executed."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils._python_package import (
    PackageError,
    argument_spec,
    collect,
)

MODULE_NAME = 'gaudi.vllm_lmcache.python_package'
MODULE_UTILS_PACKAGE = 'ansible_collections.gaudi.vllm_lmcache.plugins.module_utils'

# dest is checked as a plain string: the path is the managed node's, expanded there by the module.
ARGUMENT_SPEC = argument_spec(dest_type='str')


def read_module_utils(name):
    """The bytes of this collection's ``plugins/module_utils/<name>.py``, found by its import name.

    Uses :func:`importlib.util.find_spec`, so the module is located by whichever finder serves
    ``ansible_collections`` (Ansible's collection loader under ansible-playbook, plain
    ``sys.path`` in the tests) but not executed (some of them import torch).
    """
    fullname = '%s.%s' % (MODULE_UTILS_PACKAGE, name)
    try:
        spec = importlib.util.find_spec(fullname)
    except (ImportError, ValueError) as exc:
        raise PackageError(
            'module_utils %s cannot be imported from gaudi.vllm_lmcache (%s): %s' % (name, fullname, exc)
        )
    if spec is None or spec.loader is None or not spec.origin:
        raise PackageError(
            'module_utils %s cannot be imported from gaudi.vllm_lmcache (no module %s)' % (name, fullname)
        )
    if spec.submodule_search_locations is not None:
        raise PackageError('module_utils %s is a package, not a module (%s)' % (name, fullname))
    if not spec.origin.endswith('.py'):
        raise PackageError('module_utils %s is not a Python source file (%s)' % (name, spec.origin))
    get_data = getattr(spec.loader, 'get_data', None)
    data = None
    if get_data is not None:
        data = get_data(spec.origin)
    if data is None:
        with open(spec.origin, 'rb') as f:
            data = f.read()
    if not isinstance(data, bytes):
        data = data.encode('utf-8')
    return data


def _check(validated, params):
    if validated.error_messages:
        raise AnsibleActionFail('python_package: %s' % '; '.join(validated.error_messages))
    if not params['dest']:
        raise AnsibleActionFail('python_package: dest is empty')


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        validated = ArgumentSpecValidator(ARGUMENT_SPEC).validate(self._task.args)
        params = validated.validated_parameters
        _check(validated, params)

        src_dir = None
        if params['src']:
            try:
                src_dir = self._find_needle('files', params['src'])
            except AnsibleError as exc:
                raise AnsibleActionFail('python_package: src %s: %s' % (params['src'], to_native(exc)))
        try:
            files = collect(
                src_dir=src_dir,
                module_utils=params['module_utils'],
                module_utils_dir=params['module_utils_dir'],
                files=params['files'],
                read_module_utils=read_module_utils,
            )
        except PackageError as exc:
            raise AnsibleActionFail('python_package: %s' % to_native(exc))
        except (IOError, OSError) as exc:
            raise AnsibleActionFail('python_package: reading the files failed: %s' % to_native(exc))

        module_args = dict(
            dest=params['dest'],
            files=files,
            purge=params['purge'],
            mode=params['mode'],
            modes=params['modes'],
            directory_mode=params['directory_mode'],
        )
        for name in ('owner', 'group'):
            if params[name] is not None:
                module_args[name] = params[name]
        try:
            result.update(self._execute_module(module_name=MODULE_NAME, module_args=module_args, task_vars=task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        # The invocation would echo every file's content back; the result keeps paths only.
        result.pop('invocation', None)
        return result
