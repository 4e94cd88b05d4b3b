"""STAND-IN for vLLM (test double). See vllm.standin_cli (tests/standins/openai_server.py)."""

__version__ = "0.17.1+empty"
STANDIN = True
