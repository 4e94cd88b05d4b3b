"""STAND-IN for habana_frameworks.torch (test double, no device code)."""
