"""STAND-IN for habana_frameworks.torch.core: counts mark_step() calls (test double)."""

MARK_STEPS = []


def mark_step():
    MARK_STEPS.append(1)
