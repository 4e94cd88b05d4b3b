"""STAND-IN for the habana_frameworks namespace (test double, no device code)."""
