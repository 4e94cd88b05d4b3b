"""STAND-IN for vllm-gaudi (test double): registers a platform name, nothing else."""

__version__ = "0.17.1"
STANDIN = True


def register():
    """Return the platform class path the way the real plugin's entry point does."""
    return "vllm_gaudi.platform.HpuPlatform"
