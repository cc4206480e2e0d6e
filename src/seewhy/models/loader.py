"""``load_model``: a model card or an arch string (+ checkpoint) to a ready :class:`Model`."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
import tomllib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import CheckpointError, ModelLoadError, did_you_mean
from seewhy.core.targets import TASKS
from seewhy.models import user_code
from seewhy.models.checkpoint import load_checkpoint
from seewhy.models.model import Model
from seewhy.models.preprocess import resolve_preprocess

if TYPE_CHECKING:
    from torch import Tensor, nn

    from seewhy.core.trees import TabularModel

CARD_KEYS = (
    "name",
    "arch",
    "checkpoint",
    "task",
    "labels",
    "num_classes",
    "layer",
    "preprocess",
    "inputs",
    "output",
    "columns",
)
TORCH_ONLY_KEYS = ("checkpoint", "num_classes", "layer", "preprocess", "inputs", "output")
"""Card keys a tabular tree model's card does not take."""
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def load_any(
    spec: str | Path,
    *,
    checkpoint: str | Path | None = None,
    labels: list[str] | None = None,
    trust_checkpoint: bool = False,
    name: str | None = None,
    **options: Any,
) -> Model | TabularModel:
    """A torch :class:`Model` (:func:`load_model`) or, for a card or arch string that names a
    tabular tree model (``lightgbm:FILE.txt``, ``xgboost:FILE.json``, ``sklearn:FILE.skops``),
    a :class:`~seewhy.core.trees.TabularModel` (:func:`~seewhy.models.tabular.load_tabular`).

    Raises:
        ModelLoadError: a tree model's card with a key only torch models take (checkpoint,
            layer, preprocess ...), ``checkpoint`` given for a tree model, or ``columns`` in
            a torch model's card.
    """
    from seewhy.models.tabular import is_tabular_arch, load_tabular

    card, base, default_name, is_card = _read_card(spec)
    arch = str(card.get("arch") or "") if is_card else str(spec)
    if not is_tabular_arch(arch):
        if "columns" in card:
            raise ModelLoadError(
                f'model card {spec}: columns is for tree models (arch = "lightgbm:FILE.txt" '
                "...); an image+tabular torch model lists its columns under [inputs] "
                "tabular = { arg = ..., columns = [...] }"
            )
        return load_model(
            spec,
            checkpoint=checkpoint,
            labels=labels,
            trust_checkpoint=trust_checkpoint,
            name=name,
            **options,
        )
    where = f"model card {spec}" if is_card else f"model {spec}"
    torch_only = [k for k in TORCH_ONLY_KEYS if k in card]
    if torch_only or checkpoint is not None:
        key = torch_only[0] if torch_only else "--checkpoint"
        raise ModelLoadError(
            f"{where}: {key} is for torch models; a tree model is its file (arch = "
            f'"{arch}"), with task, labels and columns in its card'
        )
    fields: dict[str, Any] = dict(card) if is_card else {"arch": arch}
    if labels:
        fields["labels"] = list(labels)
    return load_tabular(
        fields,
        base,
        trust_checkpoint=trust_checkpoint,
        name=name or card.get("name") or default_name,
    )


def load_model(
    spec: str | Path,
    *,
    checkpoint: str | Path | None = None,
    labels: list[str] | None = None,
    num_classes: int | None = None,
    task: str | None = None,
    layer: str | None = None,
    name: str | None = None,
    preprocess: dict[str, Any] | None = None,
    trust_checkpoint: bool = False,
    device: str | None = None,
) -> Model:
    """Build the model a card or arch string describes and load its checkpoint.

    Args:
        spec: a model card (``.toml``, SPEC section 3), an arch string: ``timm:NAME``,
            ``torchvision:NAME``, ``FILE.py:FACTORY``, ``package.module:FACTORY``,
            ``torchscript:FILE``, or a checkpoint that records its architecture
            (``model_name``/``arch`` beside the weights, or in a ``.safetensors`` header).
        checkpoint: weights to load (overrides the card's); ``.pt/.pth/.bin`` or
            ``.safetensors``. Not with a checkpoint as ``spec``.
        labels, num_classes, task, layer, name, preprocess: override the card's values.
        trust_checkpoint: allow checkpoints that need full unpickling (runs code).
        device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``; default cuda when available.

    The number of outputs comes from, in order: ``num_classes``, the card, the labels, the
    checkpoint's metadata (``num_classes``, ``class_names``), the shape of the checkpoint's
    classifier head (timm: ``get_classifier()``; otherwise the last ``nn.Linear``), the
    architecture's default. Labels: ``labels``, the card, the checkpoint's ``class_names``.
    A classifier with a single output is binary (SPEC section 3): two labels are
    ``[negative, positive]``, one label ``L`` becomes ``["not L", L]``, and two class names
    (labels, ``class_names``, ``num_classes = 2`` in the checkpoint) beside a checkpoint whose
    head has one output keep that one output; ``num_outputs`` stays 1.
    Name: ``name``, the card's ``name``, the card's or checkpoint's file stem, the arch's NAME
    part. With no ``arch`` in the card (or a checkpoint as ``spec``), the checkpoint's
    ``arch``/``model_name`` is used (a bare name is timm's if timm knows it, a pretrained tag
    such as ``convnextv2_base.fcmae_ft_in22k_in1k`` included, else torchvision's). Relative
    paths in a card are relative to its folder.

    Returns:
        The model, in eval mode on ``device``, with its preprocessing (see
        :func:`~seewhy.models.preprocess.resolve_preprocess`) and the checkpoint's metadata.

    Raises:
        ModelLoadError: a bad card, arch string, factory, task, device or override.
        CheckpointError: a missing/unreadable checkpoint, or one that does not fit the
            architecture (missing/unexpected keys and shape conflicts are listed). What torch's
            ``load_state_dict(strict=True)`` accepts fits (e.g. no ``num_batches_tracked``).
        UnsafeCheckpointError: the checkpoint needs full unpickling and ``trust_checkpoint``
            is False.
    """
    card, base, default_name, is_card = _read_card(spec)
    arch = card.get("arch") if is_card else str(spec)
    spec_is_checkpoint = not is_card and _is_checkpoint_path(str(spec))
    if spec_is_checkpoint:
        if checkpoint is not None:
            raise ModelLoadError(
                f"{spec} is a checkpoint that is the model, and checkpoint={checkpoint} was given "
                "too: pass one of them, not both (CLI: -m FILE alone, or -m timm:NAME "
                "--checkpoint FILE)"
            )
        arch, default_name = None, Path(str(spec)).stem
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ModelLoadError(f"num_classes={num_classes!r}: expected a positive integer")
    if labels is not None and not (
        isinstance(labels, (list, tuple)) and all(isinstance(v, str) for v in labels)
    ):
        raise ModelLoadError(
            f"labels={labels!r}: expected a list of class names (CLI: --labels a,b,c)"
        )
    where = "task" if task else f"model card {spec}"
    task = task or card.get("task") or "classification"
    if task not in TASKS:
        raise ModelLoadError(f"{where}: unknown task '{task}'; expected one of {', '.join(TASKS)}")
    dev = _device(device)
    ckpt_value = spec if spec_is_checkpoint else checkpoint
    ckpt_value = ckpt_value if ckpt_value is not None else card.get("checkpoint")
    ckpt = None
    if ckpt_value:
        from_card = checkpoint is None and not spec_is_checkpoint
        ckpt = _relative(base, str(ckpt_value)) if from_card else Path(ckpt_value)
    weights: dict[str, Tensor] = {}
    meta: dict[str, Any] = {}
    if ckpt is not None:
        weights, meta = load_checkpoint(ckpt, trust_checkpoint=trust_checkpoint)
    if not arch:
        arch = _arch_from_metadata(meta)
        if not arch and spec_is_checkpoint:
            raise ModelLoadError(
                f"checkpoint {spec} names no architecture, so it cannot be the model on its "
                f"own; pass the architecture and this file (-m timm:NAME --checkpoint {spec}, "
                "or load_model('timm:NAME', checkpoint=...)), or save it with "
                "model_name = 'NAME' beside the weights"
            )
        if not arch:
            which = "its checkpoint does not name one" if ckpt else "it names no checkpoint"
            raise ModelLoadError(
                f"model card {spec} has no 'arch' and {which}; add e.g. "
                'arch = "timm:convnext_tiny"'
            )
    arch = str(arch)
    labels = list(labels or card.get("labels") or _meta_labels(meta) or []) or None
    explicit = num_classes or card.get("num_classes")
    n = explicit or (len(labels) if labels else None) or _int(meta.get("num_classes"))
    module = _build(arch, n, base)
    if arch.startswith("hf:"):
        hf_width = getattr(getattr(module, "config", None), "num_labels", None)
        if explicit and hf_width is not None and explicit != hf_width:
            raise ModelLoadError(
                f"'{arch}' has {hf_width} outputs (config.json num_labels) but num_classes = "
                f"{explicit} was asked for; fix the card, or save the fine-tuned model with its "
                "head"
            )
        if not labels:
            from seewhy.models.hf import hf_labels

            labels = hf_labels(module)
    if weights and not explicit:
        head = _head_outputs(module, weights)
        binary = head == 1 and task == "classification" and n == 2
        if head is not None and head != _out_features(module) and (n is None or binary):
            n = head
            module = _build(arch, n, base)
    if weights:
        _fit(module, weights, ckpt, arch)
    module = module.to(dev).eval()
    overrides = {**(card.get("preprocess") or {}), **(preprocess or {})}
    width = _out_features(module)
    outputs = len(labels) if labels else (n or width)
    if labels and task == "classification" and len(labels) <= 2 and width in (None, 1):
        # a single output is binary: labels are [negative, positive] or the positive one
        if len(labels) == 1:
            labels = [f"not {labels[0]}", labels[0]]
            outputs = 1
        elif width == 1:
            outputs = 1
    picked = card.get("output") is not None  # a head of a tuple/dict: the last Linear may be
    # another head's, so its width says nothing (the forward checks the picked head's width)
    if labels and outputs and width not in (None, outputs) and not picked:
        raise ModelLoadError(
            f"{len(labels)} labels given but {arch} has {width} outputs; fix labels or num_classes"
        )
    inputs = _card_inputs(card, base, spec)
    return Model(
        module=module,
        name=str(name or card.get("name") or default_name or _short(arch)),
        arch=arch,
        task=task,
        labels=[str(v) for v in labels] if labels else None,
        num_outputs=outputs,
        layer=str(layer or card.get("layer") or "auto"),
        checkpoint=str(ckpt) if ckpt is not None else None,
        metadata=meta,
        preprocess=resolve_preprocess(module, arch, overrides),
        inputs=inputs,
        output=card.get("output"),
    )


def _card_inputs(card: dict[str, Any], base: Path, spec: str | Path) -> dict[str, Any]:
    """The card's ``[inputs]`` table checked (one-line errors naming the card), with a
    tokenizer path relative to the card's folder made absolute."""
    from seewhy.core.errors import UsageError
    from seewhy.core.modalities import Modalities

    inputs = dict(card.get("inputs") or {})
    text = inputs.get("text")
    if isinstance(text, dict) and isinstance(text.get("tokenizer"), str):
        local = base / text["tokenizer"]
        if not Path(text["tokenizer"]).is_absolute() and local.exists():
            inputs["text"] = {**text, "tokenizer": str(local)}
    try:
        Modalities.parse(inputs, f"model card {spec}")
    except UsageError as exc:
        raise ModelLoadError(str(exc)) from None
    out = card.get("output")
    if out is not None and (isinstance(out, bool) or not isinstance(out, str | int)):
        raise ModelLoadError(
            f"model card {spec}: output = {out!r} should be an index or a name, e.g. "
            'output = "logits" or output = 0'
        )
    return inputs


def _is_checkpoint_path(text: str) -> bool:
    """Whether an arch string is a checkpoint file (``best.pth``), not ``torchscript:m.pt``."""
    if Path(text).suffix.lower() not in CHECKPOINT_SUFFIXES:
        return False
    return ":" not in text or bool(re.match(r"[A-Za-z]:[\\/]", text)) or Path(text).is_file()


def _read_card(spec: str | Path) -> tuple[dict[str, Any], Path, str | None, bool]:
    """(card, folder its relative paths start from, default name, whether spec is a card)."""
    text = str(spec)
    if not text.lower().endswith(".toml"):
        return {}, Path.cwd(), None, False
    path = Path(text)
    if not path.is_file():
        raise ModelLoadError(f"model card {path} does not exist")
    try:
        card = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"model card {path} is not valid TOML: {exc}") from None
    for key in card:
        if key not in CARD_KEYS:
            raise ModelLoadError(
                f"model card {path}: unknown key '{key}'{did_you_mean(key, CARD_KEYS)} "
                f"Known keys: {', '.join(CARD_KEYS)}"
            )
    _check_card_types(card, path)
    return card, path.parent, path.stem, True


def _check_card_types(card: dict[str, Any], path: Path) -> None:
    """One-line errors for card values of the wrong type (``labels = "a,b"`` ...)."""
    for key in ("name", "arch", "checkpoint", "task", "layer"):
        if key in card and not isinstance(card[key], str):
            raise ModelLoadError(
                f'model card {path}: {key} = {card[key]!r} should be a string, e.g. {key} = "..."'
            )
    if "labels" in card and not (
        isinstance(card["labels"], list)
        and card["labels"]
        and all(isinstance(v, str) for v in card["labels"])
    ):
        raise ModelLoadError(
            f"model card {path}: labels = {card['labels']!r} should be a list of class names, "
            'e.g. labels = ["cat", "dog"]'
        )
    n = card.get("num_classes")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ModelLoadError(f"model card {path}: num_classes = {n!r} should be a positive integer")
    for key in ("preprocess", "inputs"):
        if key in card and not isinstance(card[key], dict):
            raise ModelLoadError(
                f"model card {path}: '{key}' should be a table ([{key}] followed by its keys)"
            )


def _relative(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else base / p


def _meta_labels(meta: dict[str, Any]) -> list[str] | None:
    """Class names a checkpoint recorded (``class_names`` or ``labels``), if they are a list."""
    for key in ("class_names", "labels"):
        value = meta.get(key)
        if isinstance(value, list) and value and all(isinstance(v, (str, int)) for v in value):
            return [str(v) for v in value]
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _short(arch: str) -> str:
    """The NAME part of an arch string: ``timm:NAME``, ``torchscript:DIR/NAME.pt``,
    ``FILE.py:NAME``, ``package.module:NAME``."""
    kind, _, rest = arch.partition(":")
    if kind in ("timm", "torchvision"):
        return rest
    if kind in ("torchscript", "hf"):
        return Path(rest).stem or rest
    return arch.rpartition(":")[2] or arch


def _arch_from_metadata(meta: dict[str, Any]) -> str | None:
    """``timm:NAME`` / ``torchvision:NAME`` for the architecture a checkpoint names.

    A bare name is timm's if timm knows it, a pretrained tag included
    (``convnextv2_base.fcmae_ft_in22k_in1k``; so is a ``hf_hub:timm/NAME`` id), else
    torchvision's.
    """
    name = meta.get("arch") or meta.get("model_name")
    if not isinstance(name, str) or not name.strip():
        return None
    name = name.strip()
    hub = re.fullmatch(r"hf[_-]hub:timm/([\w.\-]+)", name)
    if hub:
        name = hub.group(1)
    if ":" in name:
        return name
    import timm

    if timm.is_model(name.partition(".")[0]):
        return f"timm:{name}"
    import torchvision

    if name in torchvision.models.list_models():
        return f"torchvision:{name}"
    raise ModelLoadError(
        f"the checkpoint names the architecture '{name}', which neither timm nor torchvision "
        "knows; set arch in a model card, or pass -m ARCH --checkpoint FILE"
    )


def _timm_name(rest: str) -> str:
    """The name to give ``timm.create_model``: ``NAME.TAG`` when timm knows the pretrained tag
    (its data config then comes with the model, weights are never fetched), else ``NAME``."""
    import timm

    base, _, tag = rest.partition(".")
    if not timm.is_model(base):
        raise ModelLoadError(f"timm has no model '{rest}'{did_you_mean(base, timm.list_models())}")
    if tag and rest in timm.list_pretrained(rest):
        return rest
    return base


def _build(arch: str, n: int | None, base: Path) -> nn.Module:
    from torch import nn

    kind, _, rest = arch.partition(":")
    if kind == "timm":
        import timm

        kwargs: dict[str, Any] = {"num_classes": n} if n is not None else {}
        module = timm.create_model(_timm_name(rest), pretrained=False, **kwargs)
    elif kind == "torchvision":
        import torchvision

        names = torchvision.models.list_models()
        if rest not in names:
            raise ModelLoadError(f"torchvision has no model '{rest}'{did_you_mean(rest, names)}")
        tv_kwargs: dict[str, Any] = {"num_classes": n} if n is not None else {}
        module = torchvision.models.get_model(rest, weights=None, **tv_kwargs)
    elif kind == "torchscript":
        import torch

        path = _relative(base, rest)
        if not path.is_file():
            raise ModelLoadError(f"torchscript file {path} does not exist")
        try:
            with warnings.catch_warnings():
                # torch deprecates TorchScript loudly; the user asked for this file, and a
                # warning on stderr would break the one-line errors that may follow.
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as exc:
            raise ModelLoadError(
                f"{path} is not a TorchScript file: {str(exc).splitlines()[0]}"
            ) from None
    elif kind == "hf":
        from seewhy.models.hf import build_hf

        # its head is saved with it: load_model checks num_classes and the labels against it
        module = build_hf(_relative(base, rest), arch)
    elif ":" in arch:
        module = _from_factory(arch, n, base)
    elif Path(arch).suffix.lower() in CHECKPOINT_SUFFIXES:
        raise ModelLoadError(
            f"arch '{arch}' is a checkpoint, not an architecture: set arch to e.g. "
            f'"timm:resnet50" and checkpoint = "{arch}" in the card'
        )
    else:
        raise ModelLoadError(
            f"cannot read the arch '{arch}': use timm:NAME, torchvision:NAME, FILE.py:FACTORY, "
            "package.module:FACTORY or torchscript:FILE (or a .toml model card)"
        )
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"'{arch}' returned {type(module).__name__}, not a torch nn.Module")
    return module


def _from_factory(arch: str, n: int | None, base: Path) -> Any:
    target, _, factory = arch.rpartition(":")
    if target.endswith(".py"):
        path = _relative(base, target)
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist (arch '{arch}')")
        mod_name = _user_module_name(path)
        spec = user_code.spec_for(mod_name, path)  # puts the file's folder on sys.path
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's file: any error in it is reported, not hidden
            del sys.modules[mod_name]
            raise ModelLoadError(
                f"importing {path} (arch '{arch}') failed: {type(exc).__name__}: {exc}"
            ) from exc
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ModelLoadError(
                f"cannot import '{target}' (arch '{arch}'): {exc}; is the package installed, or "
                "did you mean a file (FILE.py:FACTORY)?"
            ) from None
        except Exception as exc:  # an error inside the user's module
            raise ModelLoadError(
                f"importing '{target}' (arch '{arch}') failed: {type(exc).__name__}: {exc}"
            ) from exc
    fn = getattr(module, factory, None)
    if not callable(fn):
        names = [k for k in dir(module) if not k.startswith("_")]
        raise ModelLoadError(f"'{target}' has no factory '{factory}'{did_you_mean(factory, names)}")
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        params = []
    takes = any(p.name == "num_classes" or p.kind == p.VAR_KEYWORD for p in params)
    try:
        return fn(num_classes=n) if (n is not None and takes) else fn()
    except Exception as exc:  # the user's factory
        raise ModelLoadError(
            f"calling {factory}() from '{target}' (arch '{arch}') failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _user_module_name(path: Path) -> str:
    """The module name a model file is imported under: the same in every process, and one that
    any process can import (``seewhy.models.user_code.m_<hex of the absolute path>``, see
    :mod:`seewhy.models.user_code`), so pickles of its classes load in spawn/DataLoader workers
    and Ray tasks that never called ``load_model``."""
    return user_code.module_name(path)


def _head_name(module: nn.Module) -> str | None:
    from torch import nn

    get = getattr(module, "get_classifier", None)
    if callable(get):
        head = get()
        for name, m in module.named_modules():
            if m is head and isinstance(m, nn.Module) and hasattr(m, "weight"):
                return name
    linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _out_features(module: nn.Module) -> int | None:
    name = _head_name(module)
    if name is None:
        return None
    weight = getattr(dict(module.named_modules())[name], "weight", None)
    return int(weight.shape[0]) if weight is not None else None


def _head_outputs(module: nn.Module, weights: dict[str, Tensor]) -> int | None:
    name = _head_name(module)
    w = weights.get(f"{name}.weight") if name else None
    return int(w.shape[0]) if w is not None and w.ndim >= 1 else None


def _fit(module: nn.Module, weights: dict[str, Tensor], ckpt: Path | None, arch: str) -> None:
    """Load ``weights`` into ``module`` when torch's ``load_state_dict(strict=True)`` would
    accept them (so buffers torch fills in itself, such as batch-norm's
    ``num_batches_tracked``, may be absent); otherwise list what does not fit."""
    own = module.state_dict()
    conflicting = [
        k for k in own if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)
    ]
    shapes = [f"{k} {list(weights[k].shape)} vs {list(own[k].shape)}" for k in conflicting]
    skip = set(conflicting)
    fitting = {k: v for k, v in weights.items() if k not in skip}
    try:
        result = module.load_state_dict(fitting, strict=False)
    except RuntimeError as exc:  # e.g. a tensor torch cannot copy into the parameter
        text = str(exc).strip()
        last = text.splitlines()[-1].strip() if text else type(exc).__name__  # torch's reason
        raise CheckpointError(
            f"checkpoint {ckpt} does not fit {arch}: {last[:300]}. Is "
            "this the right --model / arch?"
        ) from None
    missing = [k for k in result.missing_keys if k not in skip]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected or shapes:
        parts = []
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape conflicts (checkpoint vs model)", shapes),
        ):
            if items:
                more = f", ... {len(items) - 5} more" if len(items) > 5 else ""
                parts.append(f"{len(items)} {label} ({', '.join(items[:5])}{more})")
        raise CheckpointError(
            f"checkpoint {ckpt} does not fit {arch}: {'; '.join(parts)}. Is this the right "
            "--model / arch, and num_classes or labels?"
        )


def _device(device: str | None) -> Any:
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ModelLoadError(f"--device {device}: expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device}: CUDA is not available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ModelLoadError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
            f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"--device {device}: MPS is not available here; use --device cpu")
    return dev
