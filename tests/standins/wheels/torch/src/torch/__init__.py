"""STAND-IN for the Intel Gaudi build of PyTorch. Test double only: no tensors, no HPU."""

__version__ = "2.10.0+hpu.1.24.0"
STANDIN = True
