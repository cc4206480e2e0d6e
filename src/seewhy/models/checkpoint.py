"""Safe checkpoint loading (SPEC section 3).

``.pt``/``.pth``/``.bin`` load with ``torch.load(weights_only=True)``: tensors and plain
containers only, so a checkpoint cannot run code. One that needs full unpickling is refused
unless the user says ``trust_checkpoint=True`` (CLI: ``--trust-checkpoint``).
``.safetensors`` never runs code.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import CheckpointError, UnsafeCheckpointError

if TYPE_CHECKING:
    from torch import Tensor

# Where training scripts put the weights, in the order they are looked for.
WEIGHT_KEYS = ("state_dict", "model_state_dict", "model", "ema", "state_dict_ema", "model_ema")
PREFIXES = ("module.", "_orig_mod.")
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")


def load_checkpoint(
    path: str | Path, *, trust_checkpoint: bool = False
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The weights and the metadata recorded beside them.

    Args:
        path: a ``.pt``/``.pth``/``.bin`` (pickle) or ``.safetensors`` file.
        trust_checkpoint: allow full unpickling (runs code from the file: only for files you
            trust).

    Returns:
        (state_dict with ``module.``/``_orig_mod.`` prefixes stripped, metadata): metadata holds
        the scalar/string/list entries of a dict checkpoint (``model_name``, ``arch``,
        ``num_classes``, ``class_names``, ``accuracy`` ...) or a safetensors header's metadata.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(
            f"checkpoint {p} does not exist; check the path (relative paths in "
            "a model card are relative to the card's folder)"
        )
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        return _load_safetensors(p)
    if suffix not in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"checkpoint {p} has an unknown extension '{p.suffix}'; expected .pt, .pth, .bin "
            "or .safetensors"
        )
    obj = _load_pickle(p, trust_checkpoint)
    return split_checkpoint(obj, p)


def _load_safetensors(p: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    try:
        from safetensors import safe_open
        from safetensors.torch import load_file

        weights = load_file(str(p), device="cpu")
        with safe_open(str(p), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"checkpoint {p} is not a readable safetensors file: {exc}") from exc
    meta: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            meta[k] = v
    return strip_prefixes(weights), meta


def _load_pickle(p: Path, trust: bool) -> Any:
    import torch

    try:
        return torch.load(p, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if trust:
            raise CheckpointError(f"checkpoint {p} could not be unpickled: {exc}") from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise UnsafeCheckpointError(
            f"checkpoint {p} holds more than weights and would run code when loaded "
            f"({first[:160]}); re-save it as a state_dict or .safetensors, or, only if you trust "
            "the file, pass trust_checkpoint=True (CLI: --trust-checkpoint)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {p} is not a readable PyTorch file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); is it truncated?"
        ) from exc


def _is_weights(obj: Any) -> bool:
    import torch

    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def split_checkpoint(obj: Any, p: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(weights, metadata) from whatever ``torch.load`` returned."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return strip_prefixes(obj.state_dict()), {}
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"checkpoint {p} holds a {type(obj).__name__}, not a state_dict; save "
            "model.state_dict() (or a dict with it under 'state_dict')"
        )
    if _is_weights(obj):
        return strip_prefixes(obj), {}
    weights = None
    for key in WEIGHT_KEYS:
        value = obj.get(key)
        if isinstance(value, torch.nn.Module):
            value = value.state_dict()
        if isinstance(value, dict) and "module" in value and _is_weights(value["module"]):
            value = value["module"]
        if _is_weights(value):
            weights = value
            break
    if weights is None:
        # Some checkpoints mix weights and metadata at the top level.
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if not tensors:
            raise CheckpointError(
                f"checkpoint {p} has no weights: looked for a state_dict under "
                f"{', '.join(WEIGHT_KEYS)} and for tensors at the top level; keys: "
                f"{', '.join(map(str, list(obj)[:10]))}"
            )
        weights = tensors
    return strip_prefixes(weights), _metadata(obj)


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    def plain(v: Any) -> bool:
        if isinstance(v, (str, int, float, bool)) or v is None:
            return True
        if isinstance(v, (list, tuple)):
            return all(isinstance(x, (str, int, float, bool)) for x in v)
        return False

    out: dict[str, Any] = {}
    for k, v in obj.items():
        if k in WEIGHT_KEYS or not isinstance(k, str):
            continue
        if hasattr(v, "item") and getattr(v, "numel", lambda: 2)() == 1:
            v = v.item()
        if plain(v):
            out[k] = list(v) if isinstance(v, tuple) else v
    return out


def strip_prefixes(weights: dict[str, Any]) -> dict[str, Any]:
    """Remove ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes."""
    out = {}
    for key, value in weights.items():
        k = key
        changed = True
        while changed:
            changed = False
            for prefix in PREFIXES:
                if k.startswith(prefix):
                    k = k[len(prefix) :]
                    changed = True
        out[k] = value
    return out
