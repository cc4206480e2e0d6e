"""Attribution methods, one file per family; importing this package registers them all."""

from seewhy.methods import cam as cam

__all__ = ["cam"]

try:  # families added one at a time: each registers its methods on import
    from seewhy.methods import gradients as gradients

    __all__.append("gradients")
except ImportError:  # pragma: no cover - not written yet
    pass
try:
    from seewhy.methods import perturbation as perturbation

    __all__.append("perturbation")
except ImportError:  # pragma: no cover - not written yet
    pass
