"""``Inputs``: a batch as named input tensors (``image``, and later text and tabular entries).

Every method, the forward engine and ``Model.forward`` speak this one type. Today's single
image tensor is the one-entry case, ``Inputs.of(tensor)`` -> ``{"image": tensor}``; a
multimodal model's batch has one entry per input (``image``, ``input_ids``,
``attention_mask``, ``features`` ...), all with the same batch size in their first dimension.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import UsageError

if TYPE_CHECKING:
    from torch import Tensor

IMAGE = "image"
"""The name of the image input."""


class Inputs(Mapping[str, "Tensor"]):
    """An immutable mapping input name -> tensor ``[B, ...]``, one batch.

    Slicing (``inputs[2:5]``, ``inputs.take(index)``), repeating (``repeat``), moving
    (``to``) and joining (``Inputs.cat``) act on every entry alike, so a method written for
    images works unchanged on a multimodal batch.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Tensor]) -> None:
        import torch

        items = dict(data)
        if not items:
            raise UsageError("no inputs: a batch needs at least one named tensor")
        sizes = set()
        for name, value in items.items():
            if not isinstance(value, torch.Tensor):
                raise UsageError(
                    f"input '{name}' is a {type(value).__name__}; expected a torch tensor"
                )
            if value.ndim == 0:
                raise UsageError(f"input '{name}' is a scalar; expected a batch [B, ...]")
            sizes.add(int(value.shape[0]))
        if len(sizes) > 1:
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in items.items())
            raise UsageError(f"the inputs disagree on the batch size: {shapes}")
        self._data = items

    @classmethod
    def of(cls, value: Inputs | Mapping[str, Tensor] | Tensor) -> Inputs:
        """``Inputs`` from a ready one, a mapping, or one image tensor (``[B, C, H, W]``)."""
        if isinstance(value, Inputs):
            return value
        if isinstance(value, Mapping):
            return cls(value)
        return cls({IMAGE: value})

    # -- the mapping ------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:  # name -> tensor; a slice -> Inputs
        if isinstance(key, slice):
            return Inputs({k: v[key] for k, v in self._data.items()})
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self._data.items())
        return f"Inputs({shapes})"

    # -- batch facts ------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return int(next(iter(self._data.values())).shape[0])

    @property
    def image(self) -> Tensor:
        """The image entry ``[B, C, H, W]``."""
        if IMAGE not in self._data:
            raise UsageError(f"this batch has no image input (it has {', '.join(self._data)})")
        return self._data[IMAGE]

    @property
    def image_size(self) -> tuple[int, int] | None:
        """``(H, W)`` of the image entry, or ``None`` without a 4-d image."""
        x = self._data.get(IMAGE)
        if x is None or x.ndim != 4:
            return None
        return int(x.shape[-2]), int(x.shape[-1])

    # -- batch operations -------------------------------------------------------------------
    def take(self, index: Tensor | Sequence[int]) -> Inputs:
        """The rows ``index`` (a long tensor or a list), in that order, repeats allowed."""
        import torch

        out = {}
        for k, v in self._data.items():
            idx = torch.as_tensor(index, dtype=torch.long, device=v.device)
            out[k] = v.index_select(0, idx)
        return Inputs(out)

    def repeat(self, times: int) -> Inputs:
        """Each row ``times`` times in a row (``repeat_interleave``): ``[a, a, b, b]``."""
        return Inputs({k: v.repeat_interleave(times, dim=0) for k, v in self._data.items()})

    def replace(self, **entries: Tensor) -> Inputs:
        """The same batch with some entries replaced (e.g. a masked image)."""
        return Inputs({**self._data, **entries})

    def to(self, device: Any = None, dtype: Any = None) -> Inputs:
        """Moved to ``device``; floating entries cast to ``dtype`` (token ids stay integers)."""
        out = {}
        for k, v in self._data.items():
            if dtype is not None and v.is_floating_point():
                out[k] = v.to(device=device, dtype=dtype)
            else:
                out[k] = v.to(device=device)
        return Inputs(out)

    def detach(self) -> Inputs:
        return Inputs({k: v.detach() for k, v in self._data.items()})

    def chunks(self, size: int) -> Iterator[Inputs]:
        """Consecutive batches of at most ``size`` rows."""
        for start in range(0, self.batch_size, size):
            yield self[start : start + size]

    @staticmethod
    def cat(parts: Sequence[Inputs]) -> Inputs:
        """Consecutive batches joined into one."""
        import torch

        if len(parts) == 1:
            return parts[0]
        return Inputs({k: torch.cat([p[k] for p in parts]) for k in parts[0]})


DEFAULT_BATCH_SIZE = 32
"""The largest batch a forward sends to the model when the caller does not say."""


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` as an int >= 1, or a :class:`UsageError` that says so."""
    import operator

    try:
        n = operator.index(batch_size)
    except TypeError:
        n = 0
    if isinstance(batch_size, bool) or n < 1:
        raise UsageError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return n
