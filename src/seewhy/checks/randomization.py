"""The model-parameter randomization test (Adebayo et al. 2018, "Sanity Checks for Saliency
Maps").

An explanation that means something depends on what the model learned: re-initialise the
weights and the map should change. :func:`randomization` compares the maps of the trained model
with the maps of the same architecture whose weights are re-initialised, either cascading from
the head (output end) down to the input, one block more at each step (the paper's cascading
randomization, the default), or one block at a time with every other block trained (the
paper's independent randomization). Each step gives, per sample, Spearman's rank correlation
and SSIM with the trained model's map (:mod:`seewhy.checks.similarity`); a map that stays
similar after the weights are gone does not explain the model (an edge detector would pass
such a "test" with similarity 1 at every step).

The user's model is never touched (STYLE rule 3): the steps randomize a deep copy.

Conventions:
    - Maps are compared as absolute values, as Adebayo et al. report their rank correlations
      on absolute maps: a signed map's sign flip is not counted as a change. Unsigned maps are
      non-negative, so this leaves them as they are.
    - A sample whose map is NaN (in the trained or the randomized model) gets NaN similarity.
    - Block ``name`` is re-initialised from a generator seeded with ``crc32("<seed>:<name>")``,
      so a block gets the same random weights in both modes and whatever else is randomized
      (the first cascade step and the first independent step are the same model), and the
      figures are bit-for-bit reproducible for one seed (on one device).
"""

from __future__ import annotations

import copy as _copy
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from seewhy.core.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from seewhy.core.model import Model

GRANULARITIES = ("blocks", "layers")
MODES = ("cascade", "independent")
STAGES = 3
"""This many sibling containers at the top level already are the model's stages (kept whole)."""


def _has_params(module: nn.Module, recurse: bool = True) -> bool:
    return next(iter(module.parameters(recurse=recurse)), None) is not None


def _is_trunk(module: nn.Module) -> bool:
    """A container (``nn.Sequential`` / ``nn.ModuleList`` / ``nn.ModuleDict``, subclasses
    included) with two or more children that hold parameters."""
    from torch import nn

    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    return isinstance(module, containers) and sum(map(_has_params, module.children())) >= 2


def randomizable_blocks(module: nn.Module, granularity: str = "blocks") -> list[str]:
    """The module names to randomize, in cascade order: from the head (output end) down.

    Order is the reverse of registration order: this assumes modules are registered in the
    order the forward runs them, as torchvision and timm models (and most others) do.

    ``"blocks"``: the top-level children that hold parameters, with the model's trunk expanded
    one level. A top-level child is a trunk when it is a container (``nn.Sequential``,
    ``nn.ModuleList``, ``nn.ModuleDict``) with two or more children that hold parameters, and
    there are fewer than three such containers: then each is expanded into its children that
    hold parameters (timm's ``stages`` / ``blocks`` / ``layers``, torchvision's ``features``
    and ``trunk_output``, a small CNN's ``features`` of convolutions). Three or more are the
    stages themselves and stay whole (torchvision / timm ResNet's ``layer1`` .. ``layer4``).
    Parameters registered on the model itself (a ViT's ``cls_token`` and ``pos_embed``) are one
    more block, named ``""``, at the input end (last).

    ``"layers"``: every module with parameters of its own (``parameters(recurse=False)``),
    reversed, the model's own (``""``) included; each step re-initialises that module's own
    parameters only (the granularity of quantus's MPRT).

    Args:
        module: the model.
        granularity: ``"blocks"`` or ``"layers"``.

    Returns:
        Module names for ``module.get_submodule``, head first.

    Raises:
        UsageError: an unknown granularity.
    """
    if granularity not in GRANULARITIES:
        raise UsageError(
            f"unknown randomization granularity '{granularity}'; choose 'blocks' or 'layers'"
        )
    if granularity == "layers":
        return [n for n, m in module.named_modules() if _has_params(m, recurse=False)][::-1]
    children = [(n, c) for n, c in module.named_children() if _has_params(c)]
    trunks = [n for n, c in children if _is_trunk(c)]
    expand = set(trunks) if len(trunks) < STAGES else set()
    names = [""] if _has_params(module, recurse=False) else []
    for name, child in children:
        if name in expand:
            names += [f"{name}.{n}" for n, c in child.named_children() if _has_params(c)]
        else:
            names.append(name)
    return names[::-1]


@contextmanager
def _seeded(seed: int, module: nn.Module) -> Iterator[None]:
    """Torch's global RNG (CPU, and the CUDA devices ``module`` lives on) seeded with ``seed``
    inside the block, and restored after it."""
    import torch

    cuda = sorted(
        {
            p.device.index if p.device.index is not None else torch.cuda.current_device()
            for p in module.parameters()
            if p.device.type == "cuda"
        }
    )
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def _reset_on_cpu(m: nn.Module, reset: Callable[[], object], seed: int) -> None:
    """``reset()`` (``m.reset_parameters``) under torch's CPU RNG seeded with ``seed``, with
    ``m`` on the CPU for the call: a module on a GPU is moved there and back, so its new weights
    are the CPU's draws, the same on every device for the same ``--seed`` (a GPU's own generator
    draws other numbers). A module spread over several devices is reset where it is, its
    devices' generators seeded."""
    import torch

    devices = {t.device for t in [*m.parameters(), *m.buffers()]}
    away = {d for d in devices if d.type != "cpu"}
    if len(away) == 1:
        (device,) = away
        m.to("cpu")
        try:
            with _seeded(seed, m), torch.no_grad():
                reset()
        finally:
            m.to(device)
        return
    with _seeded(seed, m), torch.no_grad():
        reset()


def _scale(p: Tensor) -> float:
    """The standard deviation of the noise replacing ``p``: ``p``'s own std, else its mean
    absolute value (one element, or a constant tensor), else 1."""
    import torch

    t = p.detach().to("cpu", torch.float64)  # MPS has no float64
    for s in (float(t.std()) if t.numel() > 1 else math.nan, float(t.abs().mean())):
        if math.isfinite(s) and s > 0:
            return s
    return 1.0


def randomize_(module: nn.Module, generator: torch.Generator, *, recurse: bool = True) -> None:
    """Re-initialise ``module``'s parameters in place, and its submodules' (``recurse``).

    A module with ``reset_parameters()`` (``nn.Conv2d``, ``nn.Linear``, the norm layers ...)
    is reset by it, under torch's global RNG forked and seeded from ``generator`` (so the result
    is reproducible and the caller's RNG state is left as it was); with ``recurse=False`` only
    a module without children is reset so (a parent's ``reset_parameters`` may reset its
    children too). Other parameters are replaced by normal noise with the tensor's own
    standard deviation (its mean absolute value when that is 0, else 1), drawn from
    ``generator``. Running statistics of norm layers (``reset_running_stats``) are reset.
    Non-floating parameters and other buffers are left as they are.

    This works in place: it is only ever called on the randomization check's copy of a model,
    never on the user's module.

    Args:
        module: the module to re-initialise.
        generator: the source of randomness (any device).
        recurse: also re-initialise the submodules' parameters.
    """
    import torch

    for m in module.modules() if recurse else [module]:
        reset = getattr(m, "reset_parameters", None)
        if callable(reset) and (recurse or next(m.children(), None) is None):
            seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
            _reset_on_cpu(m, reset, seed)
        else:
            with torch.no_grad():
                for p in m.parameters(recurse=False):
                    if p.is_floating_point():
                        noise = torch.randn(
                            p.shape,
                            generator=generator,
                            device=generator.device,
                            dtype=torch.float64,
                        )
                        p.copy_((noise * _scale(p)).to(p.dtype))
        stats = getattr(m, "reset_running_stats", None)
        if callable(stats):
            stats()


@dataclass(frozen=True)
class RandomizationResult:
    """One method's maps, trained against randomized, step by step.

    Attributes:
        layers: the randomization steps, in order: the block randomized at each step (cascade:
            head first, each step adding one more block; independent: the one block
            randomized alone).
        rank_correlation: ``[steps, B]`` Spearman's rho between the randomized and the trained
            model's absolute maps (float64; NaN for a NaN map).
        ssim: ``[steps, B]`` SSIM of the same maps, each min-max normalised.
        mode: ``"cascade"`` or ``"independent"``.
    """

    layers: list[str]
    rank_correlation: Tensor
    ssim: Tensor
    mode: str

    def similarity(self) -> Tensor:
        """``[B]``: the rank correlation at the last step (cascade: with every block
        randomized, the figure SPEC section 6 reports as ``randomization_similarity``;
        independent: with the input-end block alone randomized)."""
        return self.rank_correlation[-1]

    def collapse_layer(self, threshold: float = 0.5) -> str | None:
        """The first step whose mean rank correlation over the samples (NaN skipped) is below
        ``threshold``: in a cascade, the block at which the map stops resembling the trained
        model's; ``None`` if it never does (or every sample is NaN)."""
        import torch

        means = torch.nanmean(self.rank_correlation, dim=1).tolist()
        return next((n for n, m in zip(self.layers, means, strict=True) if m < threshold), None)


def _generator(seed: int, name: str) -> torch.Generator:
    """Block ``name``'s generator: seeded with ``crc32("<seed>:<name>")`` (as ``row_seeds``)."""
    import zlib

    import torch

    return torch.Generator().manual_seed(zlib.crc32(f"{int(seed)}:{name}".encode()))


def _copy_of(model: Model) -> nn.Module:
    """A deep copy of the model's module (no ``.grad``), or a UsageError saying why not."""
    try:
        module = _copy.deepcopy(model.module)
    except Exception as exc:
        reason = (str(exc).splitlines() or [""])[0]
        raise UsageError(
            f"model '{model.name}' ({type(model.module).__name__}) cannot be deep-copied "
            f"({type(exc).__name__}: {reason}); the randomization check re-initialises a copy, "
            "never your model: keep no open files, locks or non-leaf tensors as module attributes"
        ) from exc
    for p in module.parameters():
        p.grad = None
    return module


def _maps(out: Sequence[Tensor], count: int | None, step: str) -> list[Tensor]:
    """``maps_of``'s maps as detached float64 absolute values, checked: a sequence of ``count``
    maps ``[B, H, W]``."""
    from torch import Tensor as T

    maps = list(out) if isinstance(out, Sequence) else []
    ok = maps and all(isinstance(m, T) and m.ndim == 3 for m in maps)
    if not ok or (count is not None and len(maps) != count):
        got = f"{len(maps)} maps" if ok else f"a {type(out).__name__}"
        want = "" if count is None else f"{count} "
        raise UsageError(
            f"maps_of returned {got} {step}, not a sequence of {want}maps [B, H, W]; "
            "return one map tensor per method, in the same order at every step"
        )
    return [m.detach().double().abs() for m in maps]


def randomization(
    model: Model,
    maps_of: Callable[[Model], Sequence[Tensor]],
    *,
    granularity: str = "blocks",
    mode: str = "cascade",
    seed: int = 0,
    trained: Sequence[Tensor] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[RandomizationResult]:
    """The model-parameter randomization test (Adebayo et al. 2018, "Sanity Checks for
    Saliency Maps", sections 3.1 and 4).

    One deep copy of ``model.module`` is made; the steps re-initialise its blocks
    (:func:`randomizable_blocks`, head first) with :func:`randomize_`, and ``maps_of`` is
    called on the copy (``dataclasses.replace(model, module=copy)``) after each step. Cascade:
    the blocks stay randomized, so the last step has every block re-initialised. Independent:
    each block is restored from its saved ``state_dict`` after its step, so each step differs
    from the trained model by that block only. Deviation from the paper: a block is
    re-initialised as at construction (``reset_parameters``: a norm layer's weight back to 1,
    its bias to 0 and running statistics reset), not drawn from a truncated normal.

    Args:
        model: the trained model; never modified (the steps work on a copy).
        maps_of: ``maps_of(m)`` returns one map ``[B, H, W]`` per method for model ``m`` on
            the same samples and targets each time (e.g. every gradient CAM from one forward
            and backward), so the copy is run once per step.
        granularity: ``"blocks"`` or ``"layers"`` (:func:`randomizable_blocks`).
        mode: ``"cascade"`` (from the head down) or ``"independent"`` (one block at a time).
        seed: the seed of the re-initialisations (see the module's conventions).
        trained: the trained model's maps, if already computed; else ``maps_of(model)``.
        progress: called with a line before each step (``"randomization cascade 2/7:
            layer4"``).

    Returns:
        One :class:`RandomizationResult` per map that ``maps_of`` returns, in its order.

    Raises:
        UsageError: an unknown granularity or mode, a model without parameters, a TorchScript
            module, a module that cannot be deep-copied, or ``maps_of`` returning something
            other than the same number of maps ``[B, H, W]`` at each step.
    """
    if mode not in MODES:
        raise UsageError(f"unknown randomization mode '{mode}'; choose 'cascade' or 'independent'")
    import torch

    if isinstance(model.module, torch.jit.ScriptModule):
        raise UsageError(
            f"model '{model.name}' is TorchScript: its layers cannot be re-initialised from "
            "Python; check the model it was exported from"
        )
    steps = randomizable_blocks(model.module, granularity)
    if not steps:
        raise UsageError(
            f"model '{model.name}' has no parameters to randomize; the randomization check "
            "needs a model with trained weights"
        )
    from seewhy.checks.similarity import Reference

    reference = _maps(maps_of(model) if trained is None else trained, None, "for the trained model")
    compared = [Reference(r) for r in reference]  # its ranks and SSIM statistics, once
    module = _copy_of(model)
    randomized = dataclasses.replace(model, module=module)
    ranks: list[list[Tensor]] = [[] for _ in reference]
    ssims: list[list[Tensor]] = [[] for _ in reference]
    for i, name in enumerate(steps, 1):
        if progress is not None:
            progress(f"randomization {mode} {i}/{len(steps)}: {name or '(own parameters)'}")
        block = module.get_submodule(name)
        recurse = granularity == "blocks" and name != ""
        saved = None
        if mode == "independent":
            saved = {
                k: v.detach().clone()
                for k, v in block.state_dict().items()
                if recurse or "." not in k
            }
        randomize_(block, _generator(seed, name), recurse=recurse)
        maps = _maps(maps_of(randomized), len(reference), f"after randomizing '{name}'")
        for j, (before, after) in enumerate(zip(compared, maps, strict=True)):
            ranks[j].append(before.rank_correlations(after).cpu())
            ssims[j].append(before.ssim(after).cpu())
        if saved is not None:
            block.load_state_dict(saved, strict=recurse)
    import torch

    return [
        RandomizationResult(
            layers=list(steps),
            rank_correlation=torch.stack(r),
            ssim=torch.stack(s),
            mode=mode,
        )
        for r, s in zip(ranks, ssims, strict=True)
    ]
