"""STAND-IN for vLLM (test double). See vllm.standin_cli."""

__version__ = "0.17.1+empty"
STANDIN = True
