"""STAND-IN namespace for habana_frameworks (test double)."""

STANDIN = True
