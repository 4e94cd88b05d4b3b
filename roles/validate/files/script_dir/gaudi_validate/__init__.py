# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate one vLLM + LMCache serving node and write a JSON report.

Tiers (each reports pass, fail or skip with a reason and its figures):

  devices     accelerator type and count (HPU through hl-smi or habana_frameworks,
              CUDA and ROCm through torch), driver and firmware versions
  stack       torch / vllm / vllm-gaudi / lmcache versions read from the service
              virtualenv's metadata (nothing is imported) and the LMCache HPU patch state
  storage     Mode B shared cache directory: mount options, fsync'd write and read
              throughput of KV-chunk-sized files, cross-node visibility marker
  kv_offload  host<->device copy bandwidth of chunk-sized pinned tensors (needs torch)
  serving     OpenAI-compatible endpoint: health, models, cold vs warm streamed time
              to first token of one long prompt sent again, the same text both times,
              KV hit tokens from /metrics (LMCache's counter, else vLLM's connector
              counter), LMCache's degraded (recompute) mode, and in Mode B a hit for a
              prompt another node stored on the shared tier (--cross-node-expect)

One module per tier (gaudi_validate/tiers/). hl-smi output is parsed and the LMCache HPU
patch state classified by the collection's own module_utils (hl_smi, lmcache_hpu_patch), which
the validate role installs with this package as gaudi_validate/_collection/ (module
gaudi.vllm_lmcache.python_package). Settings come from a JSON file (--settings, rendered by the
role) and from flags, which win.

Only the Python standard library is required (Python 3.8+); torch is imported only by
the devices (CUDA/ROCm/HPU through torch) and kv_offload tiers, and only when present.

Exit status: 0 when no required tier failed, 1 when a required tier failed,
2 on bad arguments, 3 on an internal error of the script itself.
"""

from __future__ import absolute_import, division, print_function

__version__ = "0.2.0"
