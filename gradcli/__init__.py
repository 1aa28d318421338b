"""gradcli: compute and check the gradients of neural-network layers."""

__version__ = "0.1.0"
