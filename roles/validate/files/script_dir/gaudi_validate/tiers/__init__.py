# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One module per tier; each tier_<name>(args, ctx) returns (status, reason, figures)."""
