# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""python3 -m gaudi_validate (with the directory that holds this package on sys.path)."""

import sys

from gaudi_validate.cli import main

sys.exit(main())
