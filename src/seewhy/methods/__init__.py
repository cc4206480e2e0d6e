"""Attribution methods, one file per family; importing this package registers them all."""

from seewhy.methods import cam as cam

__all__ = ["cam"]
