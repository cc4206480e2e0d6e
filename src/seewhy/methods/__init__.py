"""Attribution methods, one file per family; importing this package registers them all."""

from seewhy.methods import cam as cam
from seewhy.methods import gradients as gradients
from seewhy.methods import perturbation as perturbation
from seewhy.methods import tabular as tabular

__all__ = ["cam", "gradients", "perturbation", "tabular"]
