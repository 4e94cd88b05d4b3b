# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""python -m gaudi_validate"""

from __future__ import absolute_import, division, print_function

import sys

from .cli import main

sys.exit(main())
