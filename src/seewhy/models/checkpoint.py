"""Safe checkpoint loading (SPEC section 3).

``.pt``/``.pth``/``.bin`` load with ``torch.load(weights_only=True)``: tensors and plain
containers only, so a checkpoint cannot run code. One that needs full unpickling is refused
unless the user says ``trust_checkpoint=True`` (CLI: ``--trust-checkpoint``).
``.safetensors`` never runs code.
"""

from __future__ import annotations

import json
import pickle
import re
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
        ``num_classes``, ``class_names``, ``accuracy`` ...) or a safetensors header's metadata
        (values that parse as JSON are decoded).

    A dict checkpoint's weights are taken from the first of these keys that holds a
    state_dict: ``state_dict``, ``model_state_dict``, ``model``, ``ema``, ``state_dict_ema``,
    ``model_ema`` (so the raw weights win over an EMA copy saved beside them); a dict of tensors
    is a state_dict itself. A pickled ``nn.Module`` (trusted only) gives its ``state_dict()``.

    Raises:
        UnsafeCheckpointError: the pickle needs more than tensors and plain containers and
            ``trust_checkpoint`` is False.
        CheckpointError: a missing, corrupt or truncated file, an unknown extension, or no
            weights inside.
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

    if trust:
        try:
            return torch.load(p, map_location="cpu", weights_only=False)
        except Exception as exc:  # unpickling runs the file's code: anything can fail
            raise CheckpointError(
                f"checkpoint {p} could not be loaded even with trust_checkpoint=True "
                f"({_one_line(exc)}); the classes it pickles must be importable here"
            ) from exc
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _parses_as_pickle(p):
            raise CheckpointError(
                f"checkpoint {p} is not a PyTorch checkpoint (its pickle data is corrupt or "
                "it is another kind of file); re-save it with torch.save(model.state_dict(), ...)"
            ) from exc
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        needs = f"it needs {found.group(1)}" if found else "it uses unsupported pickle content"
        raise UnsafeCheckpointError(
            f"checkpoint {p} holds more than weights and could run code when loaded ({needs}); "
            "re-save it as a state_dict or .safetensors, or, only if you trust the file, pass "
            "trust_checkpoint=True (CLI: --trust-checkpoint)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {p} is not a readable PyTorch file ({_one_line(exc)}); is it "
            "truncated or still being written?"
        ) from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0].split(". ")[0] if text else ""
    return f"{type(exc).__name__}: {first[:160]}" if first else type(exc).__name__


def _parses_as_pickle(p: Path) -> bool:
    """Whether the file's pickle stream is well formed: read opcode by opcode, never executed.

    Tells a checkpoint that holds more than weights (well formed, refused by the weights-only
    unpickler) from a corrupt file or a file of another kind.
    """
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(p):  # torch.save's format: <name>/data.pkl inside a zip
            with zipfile.ZipFile(p) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                if not names:
                    return False
                data = archive.read(names[0])
        else:  # the legacy format (and plain pickle.dump) starts with a pickle
            data = p.read_bytes()
        for _ in pickletools.genops(data):
            pass
    except (ValueError, EOFError, OSError, zipfile.BadZipFile):  # not a well-formed pickle
        return False
    return True


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
        rest = {k: v for k, v in obj.items() if k not in tensors}
        return strip_prefixes(tensors), _metadata(rest)
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
