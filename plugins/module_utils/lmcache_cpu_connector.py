# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vLLM KV connector that lets real LMCache cache KV on a vLLM CPU node.

This is the ``gaudi.vllm_lmcache`` collection's own addition: no LMCache release
supports vLLM's CPU KV-cache layout. LMCache's connector factory
(``CreateGPUConnector`` in ``lmcache/v1/gpu_connector/__init__.py``, 0.5.x) picks a
connector for ``cuda``, ``xpu``, ``musa`` and ``hpu`` and otherwise raises
``RuntimeError("No supported cpu connector found.")``; LMCache's manager
(``lmcache/v1/manager.py``) catches that, logs "System will operate in degraded
mode (recompute)" and vLLM then serves without any KV caching.

What this module does, without editing LMCache or vLLM on disk:

* :func:`install` wraps ``lmcache.v1.gpu_connector.CreateGPUConnector`` in the
  running process. LMCache's vLLM service factory imports that name at call time
  (``from lmcache.v1.gpu_connector import CreateGPUConnector`` inside
  ``VllmServiceFactory.get_or_create_lmcache_engine`` in
  ``lmcache/integration/vllm/vllm_service_factory.py``), so it gets the wrapper.
  For the vLLM engine on a ``cpu`` device the wrapper returns the collection's
  pure-PyTorch connector :class:`VLLMPagedMemHPUConnectorV2` (module
  ``hpu_kv_transfer``), which moves KV between LMCache's ``KV_2LTD`` memory
  objects and vLLM's CPU cache (one tensor per layer,
  ``[num_blocks, num_kv_heads, block_size, 2 * head_size]``) with ``index_select``
  / ``index_copy_``. Every other device and engine goes to LMCache's own factory.
* :class:`LMCacheCPUConnectorV1` is a subclass of vLLM's ``LMCacheConnectorV1``
  (``vllm/distributed/kv_transfer/kv_connector/v1/lmcache_connector.py``) that
  calls :func:`install` before LMCache's adapter is built. vLLM loads it by name
  from ``kv_connector_module_path`` in ``--kv-transfer-config``
  (``KVConnectorFactory`` in ``vllm/distributed/kv_transfer/kv_connector/factory.py``
  imports the module and takes the class named ``kv_connector``); it is created
  in the scheduler and in every worker process, so each process is wrapped.

Install: copy this file and ``hpu_kv_transfer.py`` into one package on the serving
virtualenv's ``sys.path`` (e.g. ``site-packages/gaudi_vllm_lmcache_kv/`` with an
``__init__.py``) and start vLLM with :func:`kv_transfer_config`'s JSON::

    {"kv_connector": "LMCacheCPUConnectorV1",
     "kv_connector_module_path": "gaudi_vllm_lmcache_kv.lmcache_cpu_connector",
     "kv_role": "kv_both"}

Not supported on CPU (refused with an error naming the setting): LMCache's
layerwise mode (``use_layerwise``), blending and the v3 GPU connector.

Imports: PyTorch; vLLM and LMCache only when present (the module stays importable
and testable without them).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

try:  # installed next to it as a package, or as the collection's module_utils
    from .hpu_kv_transfer import VLLMPagedMemHPUConnectorV2
except ImportError:  # pragma: no cover - a flat copy on sys.path
    from hpu_kv_transfer import VLLMPagedMemHPUConnectorV2

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

CONNECTOR_NAME = "LMCacheCPUConnectorV1"
DEFAULT_PACKAGE = "gaudi_vllm_lmcache_kv"
DEFAULT_MODULE_PATH = DEFAULT_PACKAGE + ".lmcache_cpu_connector"
_MARK = "_gaudi_vllm_lmcache_cpu"

__all__ = [
    "CONNECTOR_NAME",
    "DEFAULT_MODULE_PATH",
    "install",
    "uninstall",
    "wrap_factory",
    "create_cpu_connector",
    "kv_transfer_config",
]


def _name(value):
    """Enum member or string -> its name (``EngineType.VLLM`` -> ``"VLLM"``)."""
    return getattr(value, "name", value)


def create_cpu_connector(config, metadata):
    """The collection's connector for LMCache ``metadata`` on the host CPU.

    ``metadata.kv_shape`` is ``(num_layers, 2 or 1, chunk_size, num_kv_heads,
    head_size)`` (``LMCacheMetadata`` in ``lmcache/v1/metadata.py``).
    """
    for attr, what in (
        ("use_layerwise", "layerwise KV transfer"),
        ("enable_blending", "KV blending"),
        ("use_gpu_connector_v3", "the v3 GPU connector"),
    ):
        if getattr(config, attr, False):
            raise ValueError(
                "LMCache setting %s=True (%s) is not supported by the CPU KV connector; "
                "set %s to false for a vLLM CPU node" % (attr, what, attr)
            )
    device = torch.device("cpu") if torch is not None else "cpu"
    return VLLMPagedMemHPUConnectorV2.from_metadata(metadata, use_gpu=False, device=device)


def wrap_factory(original, device_type):
    """Return a ``CreateGPUConnector`` that serves vLLM on CPU and delegates the rest.

    ``device_type`` is a string or a callable returning one (LMCache's
    ``lmcache.torch_device_type``).
    """
    if getattr(original, _MARK, False):
        return original

    def create_gpu_connector(config, metadata, engine, *args, **kwargs):
        dev = device_type() if callable(device_type) else device_type
        if dev == "cpu" and _name(engine) == "VLLM":
            return create_cpu_connector(config, metadata)
        return original(config, metadata, engine, *args, **kwargs)

    setattr(create_gpu_connector, _MARK, True)
    create_gpu_connector.__wrapped__ = original
    create_gpu_connector.__doc__ = original.__doc__
    return create_gpu_connector


def install(module=None, device_type=None):
    """Wrap ``CreateGPUConnector`` of ``module`` (default: ``lmcache.v1.gpu_connector``).

    Idempotent. Returns True when the wrapper is (now) in place.
    """
    if module is None:
        import lmcache.v1.gpu_connector as module  # pylint: disable=import-outside-toplevel
    if device_type is None:

        def device_type():
            import lmcache  # pylint: disable=import-outside-toplevel

            return getattr(lmcache, "torch_device_type", "cpu") or "cpu"

    current = module.CreateGPUConnector
    module.CreateGPUConnector = wrap_factory(current, device_type)
    return True


def uninstall(module=None):
    """Undo :func:`install` (tests, or to hand back LMCache's own factory)."""
    if module is None:
        import lmcache.v1.gpu_connector as module  # pylint: disable=import-outside-toplevel
    current = module.CreateGPUConnector
    if getattr(current, _MARK, False):
        module.CreateGPUConnector = current.__wrapped__
        return True
    return False


def kv_transfer_config(module_path=DEFAULT_MODULE_PATH, kv_role="kv_both", extra=None):
    """The ``--kv-transfer-config`` object for vLLM (``json.dumps`` it for the CLI)."""
    if kv_role not in ("kv_both", "kv_producer", "kv_consumer"):
        raise ValueError("kv_role must be kv_both, kv_producer or kv_consumer, got %r" % (kv_role,))
    cfg = {
        "kv_connector": CONNECTOR_NAME,
        "kv_connector_module_path": module_path,
        "kv_role": kv_role,
    }
    if extra:
        cfg["kv_connector_extra_config"] = dict(extra)
    return cfg


def kv_transfer_config_json(**kwargs):
    return json.dumps(kv_transfer_config(**kwargs), sort_keys=True)


try:  # the class vLLM loads; only where vLLM and LMCache are installed
    from vllm.distributed.kv_transfer.kv_connector.v1.lmcache_connector import (
        LMCacheConnectorV1 as _LMCacheConnectorV1,
    )
except ImportError:
    _LMCacheConnectorV1 = None

if _LMCacheConnectorV1 is not None:

    class LMCacheCPUConnectorV1(_LMCacheConnectorV1):
        """vLLM's LMCache connector with LMCache's factory wrapped for the CPU layout."""

        def __init__(self, *args, **kwargs):
            install()
            super(LMCacheCPUConnectorV1, self).__init__(*args, **kwargs)

    __all__.append(CONNECTOR_NAME)
