"""STAND-IN for habana_frameworks.torch (test double: no device code)."""

__version__ = "1.24.0"
STANDIN = True
