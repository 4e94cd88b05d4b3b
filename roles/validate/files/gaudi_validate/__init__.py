# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gaudi_validate: validate one vLLM + LMCache serving node (see gaudi_validate.cli).

One module per tier (devices, stack with patch, storage, kv_offload, serving), report
(assembles the JSON report) and cli (settings file and options). Run it as
``python3 -m gaudi_validate`` from the directory that holds the package.
"""

from .common import TIERS, __version__  # noqa: F401
