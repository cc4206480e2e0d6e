"""Perturbation methods: occlusion and RISE, batched forwards on the forward engine.

Both methods explain by running the model on altered copies of the image (a patch replaced by a
baseline, the image multiplied by a random smooth mask) and reading how the target changes.
:meth:`PerturbationMethod.run_many` shares what they have in common:

- ONE clean forward per batch: the model's own output on the inputs as given (on the user's
  module, in eval mode with frozen parameters, flags restored after, ``batch_size`` rows at a
  time). The target is resolved there, once (``Target.resolve``): ``pred`` is the class picked
  on the clean input, and every occluded or masked input reads that class's column with that
  sign (never a class re-decided on a perturbed input). ``Explanation.output`` is this output.
- ONE :class:`~seewhy.core.engine.ForwardEngine` per call and precision: a private copy of the
  model (the user's model is never changed), batch norms folded, channels-last, at most
  ``batch_size`` rows per forward, the perturbed inputs built chunk by chunk (never all at
  once). ``precision="float32"`` (default) keeps the model's own precision (exact, the same on
  every machine); ``"auto"`` runs the perturbed forwards under bfloat16 autocast where the
  hardware computes it natively. ``params["forward_dtype"]`` records what ran. bfloat16 keeps
  about 3 significant digits of each score, and occlusion subtracts nearly equal scores: its
  maps are the less exact of the two (on resnet18, random weights, 96 px: Pearson r 0.997
  against float32, largest difference 10% of the peak; RISE, averaging 500 masks, r 1.000),
  and worse where windows move the score by under 1%.
- Inputs other than the image (text ids, tabular features) go to every forward unchanged, each
  perturbed row with its own sample's entries.

Forwards per image (``params["forwards_per_image"]``, the rows sent to the model): one clean row
(shared by every method of the call) plus one per window (occlusion) or mask (RISE); occlusion
under bfloat16 adds one clean row through the engine, so that the clean and occluded scores
it subtracts come out of the same precision. The engine itself may run each row once more,
once per call, to check that its batch-norm-folded copy reproduces the model (only for models
with batch norms).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from seewhy.core.engine import ForwardEngine, check_precision
from seewhy.core.errors import MethodNotApplicableError, UsageError
from seewhy.core.explanation import Explanation
from seewhy.core.inputs import DEFAULT_BATCH_SIZE, Inputs, check_batch_size
from seewhy.core.modalities import TABULAR, TEXT, token_records
from seewhy.core.model import Model
from seewhy.core.state import explaining
from seewhy.core.targets import ResolvedTarget, Target
from seewhy.methods.base import Method, check_seeds
from seewhy.methods.registry import register

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["RISE", "CleanPass", "Occlusion", "PerturbationMethod", "rise_masks"]


def _check_int(value: Any, name: str, method: str, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{method} {name} must be an integer >= {low}, got {value!r}")


def _check_precision(value: Any, method: str) -> None:
    check_precision(value, f"{method} precision")


@dataclass
class CleanPass:
    """What every perturbation method of one call shares.

    Attributes:
        model: the model (its module is the user's; forwards on perturbed inputs go through
            ``engine``).
        inputs: the batch as the model takes it (device, dtype).
        output: ``[B, C]`` float32, the model's output on ``inputs`` (eval mode).
        target: the target resolved on ``output``.
        seeds: one seed per row (``Method`` docs).
        batch_size: the largest number of rows any forward gets.
        engines: the forward engine of each precision, made when first needed.
    """

    model: Model
    inputs: Inputs
    output: Tensor
    target: ResolvedTarget
    seeds: list[int]
    batch_size: int
    engines: dict[str, ForwardEngine] = dataclasses.field(default_factory=dict)

    def explanation(
        self,
        method: Method,
        attribution: Tensor,
        signed: bool,
        params: dict[str, Any],
        others: dict[str, Tensor] | None = None,
    ) -> Explanation:
        """A method's explanation of this batch from its map ``[B, H, W]``; ``raw`` holds the
        map repeated over the image's channels (every channel of a pixel is perturbed alike).
        ``others``: per-token ``text`` ``[B, T]`` and per-feature ``tabular`` ``[B, F]``
        scores (their raw form too); tokens and words go to ``per_sample``."""
        b, c, h, w = self.inputs.image.shape
        others = others or {}
        per_sample: dict[str, Any] = {}
        if TEXT in others and self.model.text is not None:
            tokens, words = token_records(
                self.model.text,
                self.inputs["input_ids"],
                self.inputs.get("attention_mask"),
                others[TEXT],
                others[TEXT].abs(),
            )
            per_sample = {"tokens": tokens, "words": words}
        return Explanation(
            method=method.name,
            attributions={"image": attribution, **others},
            target=self.target.name,
            params=method.params() | params,
            output=self.output,
            target_indices=self.target.class_indices,
            signed=signed,
            raw={"image": attribution[:, None].expand(b, c, h, w).contiguous(), **others},
            input_signed={"image": signed, **{k: signed for k in others}},
            per_sample=per_sample,
        )

    def units(self) -> dict[str, Tensor]:
        """What is perturbed besides the image, per row: ``text`` ``[B, T]`` (the non-special
        token positions, True where a token may be removed) and ``tabular`` ``[B, F]`` (every
        feature); only the inputs the model takes."""
        import torch

        out: dict[str, Tensor] = {}
        x = self.inputs
        if self.model.text is not None and "input_ids" in x:
            out[TEXT] = ~self.model.text.special_mask(x["input_ids"], x.get("attention_mask"))
        if TABULAR in x and x[TABULAR].is_floating_point():
            out[TABULAR] = torch.ones(x[TABULAR].shape, dtype=torch.bool, device=x[TABULAR].device)
        return out

    def removed(self, rows: Inputs, keep: dict[str, Tensor]) -> Inputs:
        """``rows`` with the tokens and features not in ``keep``
        (``[n, T]``, ``[n, F]`` bool) removed: a token becomes [PAD] (its position and
        attention kept: the gradient methods' text baseline), a feature 0 (the mean in the
        model's normalised space)."""
        import torch

        entries: dict[str, Tensor] = {}
        if TEXT in keep and self.model.text is not None:
            entries["input_ids"] = self.model.text.padded(rows["input_ids"], ~keep[TEXT])
        if TABULAR in keep:
            t = rows[TABULAR]
            entries[TABULAR] = torch.where(keep[TABULAR].to(t.device), t, torch.zeros_like(t))
        return rows.replace(**entries) if entries else rows

    def engine(self, precision: str) -> ForwardEngine:
        """The forward engine for ``precision`` (one private model copy per call and
        precision), with the clean output as the output its folded copy must reproduce."""
        if precision not in self.engines:
            self.engines[precision] = ForwardEngine(
                self.model,
                self.inputs,
                batch_size=self.batch_size,
                precision=precision,
                expected=self.output,
            )
        return self.engines[precision]


def clean_pass(
    model: Model,
    inputs: Inputs,
    target: Target,
    *,
    batch_size: int,
    seeds: Sequence[int] | None = None,
) -> CleanPass:
    """The model's output on the clean batch (``batch_size`` rows at a time, eval mode, no
    gradients, the module's flags restored after) and the target resolved on it."""
    import torch

    step = check_batch_size(batch_size)
    x = model.to_input(inputs)
    with explaining(model.module), torch.no_grad():
        out = torch.cat([model.forward(chunk) for chunk in x.chunks(step)]).detach()
    return CleanPass(
        model=model,
        inputs=x,
        output=out.float(),
        target=target.resolve(out),
        seeds=check_seeds(seeds, x.batch_size),
        batch_size=step,
    )


@dataclass(frozen=True)
class PerturbationMethod(Method):
    """Base of the perturbation family: methods that run the model on perturbed copies of the
    image. ``precision`` (keyword-only, every method of the family): the engine's precision,
    ``float32`` (default) or ``auto``."""

    precision: str = dataclasses.field(default="float32", kw_only=True)

    def attribute(self, run: CleanPass) -> Explanation:
        """This method's explanation of the batch of ``run``."""
        raise NotImplementedError

    @classmethod
    def run_many(
        cls,
        methods: Sequence[Method],
        model: Model,
        inputs: Inputs,
        target: Target,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        seeds: Sequence[int] | None = None,
        background: Inputs | None = None,
    ) -> list[Explanation]:
        """One clean forward and one forward engine per precision serve every method given;
        ``seeds`` seed RISE's masks (one per row); ``background`` is not used (the baselines
        are fixed: zeros, or each image's mean)."""
        ours = [m for m in methods if isinstance(m, PerturbationMethod)]
        for m in ours:
            m.check_applicable(model.module)
        if inputs.image_size is None:
            raise MethodNotApplicableError(
                f"perturbation methods explain an image batch [B, C, H, W]; got {inputs!r}"
            )
        run = clean_pass(model, inputs, target, batch_size=batch_size, seeds=seeds)
        return [m.attribute(run) for m in ours]


def _starts(size: int, window: int, stride: int, device: Any) -> Tensor:
    """Window starts along one side, as captum's Occlusion: ``0, s, 2s, ...``, as many as
    ``ceil((size - window) / stride) + 1`` (the last window may be cut off by the edge)."""
    import torch

    count = math.ceil((size - window) / stride) + 1
    return torch.arange(count, device=device) * stride


@register("occlusion")
@dataclass(frozen=True)
class Occlusion(PerturbationMethod):
    """Occlusion (Zeiler & Fergus, 2014), as captum's ``Occlusion``.

    A square window slides over the image (all channels at once); each position is replaced by
    the baseline and the model run on it. A pixel's attribution is the mean, over the windows
    that cover it, of ``f(x) - f(x_occluded)`` for the target (its signed raw score: a logit,
    the negated logit of a binary classifier's negative class, the regression output, negated
    for ``-value``). The map is signed: positive where occluding lowers the target.

    Windows start at ``0, stride, 2 * stride, ...`` along each side, ``ceil((H - window) /
    stride) + 1`` of them (the last one may be cut off by the edge), so every pixel is covered:
    at the same ``sliding_window_shapes=(C, window, window)``, ``strides=(C, stride, stride)``
    and ``baselines=0`` the map equals captum's.

    Args:
        window: the window's side in pixels. ``None``: ``max(1, min(H, W) // 7)`` (32 at 224
            px, as the paper's grey squares cover about 1/7 of the image's side). Clipped to
            the image's shorter side.
        stride: the step between windows. ``None``: ``max(1, window // 2)`` (16 at 224 px),
            so that each pixel is covered by up to four windows. Clipped to the window (a
            larger step would leave pixels never occluded, which captum refuses too).
        baseline: what replaces the window: ``zeros`` (the dataset mean colour in the model's
            normalised input space; captum's ``baselines=0``) or ``mean`` (each image's own
            per-channel mean).
        precision: the forward engine's precision (``float32`` or ``auto``).

    ``raw["image"]`` is ``[B, C, H, W]`` with the same value in every channel, as captum's;
    the displayed map is ``[B, H, W]``. ``params`` holds the effective ``window`` and
    ``stride``, the number of ``windows`` per image and the ``forwards_per_image``:
    ``windows + 1`` (one clean forward; ``windows + 2`` under bfloat16), which is the minimum:
    each window needs its own forward.
    """

    window: int | None = None
    stride: int | None = None
    baseline: str = "zeros"

    signed = True

    def __post_init__(self) -> None:
        if self.window is not None:
            _check_int(self.window, "window", "occlusion")
        if self.stride is not None:
            _check_int(self.stride, "stride", "occlusion")
        if self.window is not None and self.stride is not None and self.stride > self.window:
            raise UsageError(
                f"occlusion stride {self.stride} is larger than the window {self.window}: the "
                "pixels between windows would never be occluded; use stride <= window"
            )
        if self.baseline not in ("zeros", "mean"):
            raise UsageError(
                f"occlusion baseline '{self.baseline}': use zeros (the dataset mean colour in "
                "the model's normalised input) or mean (each image's own channel means)"
            )
        _check_precision(self.precision, "occlusion")

    def geometry(self, height: int, width: int) -> tuple[int, int]:
        """The effective ``(window, stride)`` for an image of ``height x width``."""
        side = min(height, width)
        window = max(1, side // 7) if self.window is None else self.window
        window = min(window, side)
        stride = max(1, window // 2) if self.stride is None else self.stride
        return window, min(stride, window)

    def attribute(self, run: CleanPass) -> Explanation:
        import torch

        x = run.inputs
        image = x.image
        device = image.device
        b, _, h, w = (int(v) for v in image.shape)
        window, stride = self.geometry(h, w)
        tops = _starts(h, window, stride, device)
        lefts = _starts(w, window, stride, device)
        n_top, n_left = len(tops), len(lefts)
        windows = n_top * n_left
        # cover_rows[i, y]: window row i covers pixel row y (cover_cols likewise).
        ys = torch.arange(h, device=device)
        xs = torch.arange(w, device=device)
        cover_rows = (ys[None] >= tops[:, None]) & (ys[None] < tops[:, None] + window)
        cover_cols = (xs[None] >= lefts[:, None]) & (xs[None] < lefts[:, None] + window)
        if self.baseline == "mean":
            fill = image.mean(dim=(2, 3), keepdim=True)
        else:
            fill = torch.zeros((b, 1, 1, 1), dtype=image.dtype, device=device)
        columns = run.target.output_columns.to(device)
        signs = run.target.output_signs.to(device)

        def occluded(start: int, stop: int) -> Inputs:
            rows = torch.arange(start, stop, device=device)
            sample, k = rows // windows, rows % windows
            mask = cover_rows[k // n_left][:, :, None] & cover_cols[k % n_left][:, None, :]
            return x.take(sample).replace(
                image=torch.where(mask[:, None], fill[sample], image[sample])
            )

        def score(out: Tensor, start: int, stop: int) -> Tensor:
            sample = torch.arange(start, stop, device=device) // windows
            return signs[sample] * out.gather(1, columns[sample, None])[:, 0]

        engine = run.engine(self.precision)
        copies = torch.arange(b * windows, device=device) // windows
        scores = engine.map(b * windows, occluded, score, samples=copies).view(b, n_top, n_left)
        clean = run.target.values.to(device)
        extra = 0
        if engine.low_precision:  # subtract scores of one precision
            out = engine(x)
            clean = signs * out.gather(1, columns[:, None])[:, 0]
            extra = 1
        change = clean[:, None, None] - scores
        total = torch.einsum("bij,iy,jx->byx", change, cover_rows.float(), cover_cols.float())
        counts = cover_rows.sum(0).float()[:, None] * cover_cols.sum(0).float()[None, :]
        attribution = (total / counts).float()
        others, _ = self.remove_one_at_a_time(run, engine, clean, columns, signs)
        params = {
            "window": window,
            "stride": stride,
            "windows": windows,
            "forwards_per_image": windows + 1 + extra,
            "forward_dtype": engine.forward_dtype,
        }
        if others:  # plus one forward per token and per feature
            params["removed_one_at_a_time"] = sorted(others)
        return run.explanation(self, attribution, True, params, others)

    @staticmethod
    def remove_one_at_a_time(
        run: CleanPass, engine: ForwardEngine, clean: Tensor, columns: Tensor, signs: Tensor
    ) -> tuple[dict[str, Tensor], int]:
        """Text and tabular inputs: each token (to [PAD]) and each feature (to 0) removed
        alone, one forward each; the score is ``f(x) - f(x without it)``, like a window's.
        Special tokens and padding are never removed (score 0). Returns the scores per input
        and the number of forwards."""
        import torch

        others: dict[str, Tensor] = {}
        count = 0
        for name, allowed in run.units().items():
            where = allowed.nonzero()  # [n, 2]: (sample, position)
            n = int(where.shape[0])
            result = torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device)
            if n:
                pos = where.to(clean.device)

                width = int(allowed.shape[1])

                def build(
                    start: int, stop: int, pos: Tensor = pos, name: str = name, width: int = width
                ) -> Inputs:
                    sample, k = pos[start:stop, 0], pos[start:stop, 1]
                    keep = torch.ones((stop - start, width), dtype=torch.bool, device=clean.device)
                    keep[torch.arange(stop - start, device=clean.device), k] = False
                    return run.removed(run.inputs.take(sample), {name: keep})

                def read(out: Tensor, start: int, stop: int, pos: Tensor = pos) -> Tensor:
                    sample = pos[start:stop, 0]
                    return signs[sample] * out.gather(1, columns[sample, None])[:, 0]

                scores = engine.map(n, build, read, samples=pos[:, 0])
                result[where[:, 0], where[:, 1]] = (clean[pos[:, 0]] - scores).float()
            others[name] = result
            count += n
        return others, count


def rise_masks(
    grids: Tensor, shifts: Tensor, size: tuple[int, int], cell: tuple[int, int]
) -> Tensor:
    """RISE masks ``[n, H, W]`` (float32) from binary grids ``[n, g, g]`` and shifts ``[n, 2]``
    (``(dy, dx)``, ``0 <= dy < cell[0]``, ``0 <= dx < cell[1]``).

    Each grid is upsampled bilinearly (half-pixel centres) to ``((g + 1) * cell[0], (g + 1) *
    cell[1])`` and cropped to ``size`` at its shift, as in the paper's code.
    """
    import torch
    import torch.nn.functional as F

    n, g = int(grids.shape[0]), int(grids.shape[-1])
    up = F.interpolate(
        grids[:, None].float(),
        size=((g + 1) * cell[0], (g + 1) * cell[1]),
        mode="bilinear",
        align_corners=False,
    )[:, 0]
    device = up.device
    rows = shifts[:, :1].to(device) + torch.arange(size[0], device=device)[None]
    cols = shifts[:, 1:].to(device) + torch.arange(size[1], device=device)[None]
    index = torch.arange(n, device=device)[:, None, None]
    return up[index, rows[:, :, None], cols[:, None, :]]


@register("rise")
@dataclass(frozen=True)
class RISE(PerturbationMethod):
    """RISE (Petsiuk et al., 2018): randomized input sampling.

    ``masks`` random binary ``grid x grid`` grids (each cell kept with probability ``p``) are
    upsampled bilinearly to ``(grid + 1) * cell`` per side (``cell = ceil(H / grid)``, and
    likewise for ``W``; ``H + cell`` when ``grid`` divides ``H``) and cropped to ``H x W`` at a
    random shift in ``[0, cell)`` per side: the paper's construction. The model runs on
    ``x * M_k`` and the saliency is ``sum_k s_k M_k / sum_k M_k`` (see the deviations below).

    The score ``s_k`` of the target (the column and sign resolved on the clean input):

    - multi-class classifier: the softmax probability of the class (as the paper); a negated
      class (``ResolvedTarget.opposite``) reads ``1 - p``;
    - single-logit binary classifier and multilabel models: the sigmoid of the signed logit
      (the negative class of a binary classifier is ``sigmoid(-logit)``);
    - regression (deviation from the paper, which has probabilities only): the signed raw
      output, centred on its mean over the sample's masks: ``sum_k (s_k - mean(s)) M_k /
      sum_k M_k = E[s | pixel kept] - E[s]``. The map is then signed (positive:
      keeping the pixel raises the target), independent of the output's offset (a price in
      the hundreds of thousands does not swamp it), and the map of ``-value`` is exactly the
      negation of ``value``'s: no ``extras["opposite"]`` is needed, figures draw it diverging.

    Classification maps are unsigned (``signed=False``: means of probabilities), regression
    maps signed (``Explanation.signed`` says which).

    Randomness: row ``i``'s masks come from a CPU ``torch.Generator().manual_seed(seeds[i])``
    alone (``Method`` docs): ``torch.rand((masks, grid, grid)) < p`` for the grids, then
    ``torch.randint(0, cell_h, (masks,))`` and ``torch.randint(0, cell_w, (masks,))`` for the
    shifts, so a sample's map does not depend on its batch (each sample has its own masks,
    which costs nothing extra: every mask is one forward either way). Only the grids and
    shifts are kept (``masks x grid^2`` booleans per sample); the masks themselves are made
    chunk by chunk, when their forward runs.

    Deviations from the paper's code: the upsampling clamps at the grid's edge (the paper's
    ``skimage.transform.resize(mode="reflect")`` mirrors), and the masks multiply the image in
    the model's normalised input space (the paper's code does the same), so a removed pixel is
    zero there: the dataset mean colour. And the weighted sum is divided by each pixel's own
    coverage ``sum_k M_k`` (the paper: by ``masks * p``, its expectation), so the map is
    ``E[s | pixel kept]`` exactly: a model that ignores its input gets a flat map, where the
    paper's estimate draws the masks' random coverage pattern, and two models explained with
    the same seeds would "agree" through that pattern alone.

    Args:
        masks: the number of random masks per image (the paper: 4000 for ResNet-50, 8000 for
            VGG16; 2000 keeps a CPU run in reach, and the map's noise falls as
            ``1 / sqrt(masks)``).
        grid: the cells per side of the binary grid (the paper: 7 for 224 px).
        p: the probability that a cell is kept (the paper: 0.5), in ``(0, 1]``.
        precision: the forward engine's precision (``float32`` or ``auto``).

    ``params`` adds the ``cell`` size, the ``score`` read (``softmax``, ``sigmoid`` or
    ``value``) and ``forwards_per_image`` (``masks + 1``: one clean forward, one per mask).
    """

    masks: int = 2000
    grid: int = 7
    p: float = 0.5

    draws_at_random: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_int(self.masks, "masks", "rise")
        _check_int(self.grid, "grid", "rise")
        p = self.p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise UsageError(
                f"rise p (the probability a grid cell is kept) must be in (0, 1], got {p!r}; "
                "the paper uses 0.5"
            )
        _check_precision(self.precision, "rise")

    def draws(
        self, seed: int, cell: tuple[int, int], units: dict[str, int] | None = None
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """One sample's grids ``[masks, grid, grid]`` (bool), shifts ``[masks, 2]`` and, for
        each other input in ``units`` (name -> tokens or features), which of them each mask
        keeps ``[masks, n]`` (bool, each kept with probability ``p``, drawn after the image's,
        so an image model's masks are the same as before), on the CPU, from a generator seeded
        with ``seed`` alone."""
        import torch

        gen = torch.Generator().manual_seed(int(seed))
        grids = torch.rand((self.masks, self.grid, self.grid), generator=gen) < self.p
        dy = torch.randint(0, cell[0], (self.masks,), generator=gen)
        dx = torch.randint(0, cell[1], (self.masks,), generator=gen)
        keeps = {
            name: torch.rand((self.masks, count), generator=gen) < self.p
            for name, count in (units or {}).items()
        }
        return grids, torch.stack([dy, dx], dim=1), keeps

    def score_kind(self, run: CleanPass) -> str:
        """``value`` (regression), ``sigmoid`` (binary or multilabel) or ``softmax``."""
        if run.target.regression:
            return "value"
        multilabel = run.model.task == "multilabel" or bool(
            getattr(run.target.source, "multilabel", False)
        )
        return "sigmoid" if multilabel or run.output.shape[1] == 1 else "softmax"

    def attribute(self, run: CleanPass) -> Explanation:
        import torch

        x = run.inputs
        image = x.image
        device = image.device
        b, _, h, w = (int(v) for v in image.shape)
        n = self.masks
        cell = (math.ceil(h / self.grid), math.ceil(w / self.grid))
        units = run.units()  # text tokens and tabular features, masked alongside
        widths = {name: int(allowed.shape[1]) for name, allowed in units.items()}  # T or F
        drawn = [self.draws(seed, cell, widths) for seed in run.seeds]
        grids = torch.stack([d[0] for d in drawn]).to(device)  # [B, N, g, g]
        shifts = torch.stack([d[1] for d in drawn]).to(device)  # [B, N, 2]
        keeps = {  # name -> [B, N, T or F]: kept (special tokens always)
            name: torch.stack([d[2][name] for d in drawn]).to(device) | ~allowed[:, None].to(device)
            for name, allowed in units.items()
        }
        sums = {n: torch.zeros(k.shape[0], k.shape[2], device=device) for n, k in keeps.items()}
        covers = {n: torch.zeros_like(v) for n, v in sums.items()}
        columns = run.target.output_columns.to(device)
        signs = run.target.output_signs.to(device)
        kind = self.score_kind(run)
        # Regression: accumulate (s - clean) M and sum M, centred on the masks' mean at the end
        # (the clean value only keeps the float32 sums small; it cancels out exactly).
        shift = run.target.values.to(device) if kind == "value" else torch.zeros(b, device=device)
        saliency = torch.zeros((b, h, w), dtype=torch.float32, device=device)
        coverage = torch.zeros((b, h, w), dtype=torch.float32, device=device)
        made: dict[int, Tensor] = {}

        def masked(start: int, stop: int) -> Inputs:
            rows = torch.arange(start, stop, device=device)
            sample, k = rows // n, rows % n
            m = rise_masks(grids[sample, k], shifts[sample, k], (h, w), cell)
            made[start] = m
            rows_in = x.take(sample).replace(image=image[sample] * m[:, None].to(image.dtype))
            return run.removed(rows_in, {n: v[sample, k] for n, v in keeps.items()})

        def accumulate(out: Tensor, start: int, stop: int) -> Tensor:
            sample = torch.arange(start, stop, device=device) // n
            s = _score(out, columns[sample], signs[sample], kind)
            m = made.pop(start)
            saliency.index_add_(0, sample, (s - shift[sample])[:, None, None] * m)
            coverage.index_add_(0, sample, m)
            k = torch.arange(start, stop, device=device) % n
            for name, keep in keeps.items():
                kept = keep[sample, k].float()
                sums[name].index_add_(0, sample, (s - shift[sample])[:, None] * kept)
                covers[name].index_add_(0, sample, kept)
            return s

        engine = run.engine(self.precision)
        copies = torch.arange(b * n) // n
        scores = engine.map(b * n, masked, accumulate, samples=copies).view(b, n)
        if kind == "value":
            saliency = saliency - (scores.mean(dim=1) - shift)[:, None, None] * coverage
        # E[s | pixel kept]: each pixel's weighted sum over the masks that kept it, divided by
        # how much they kept it (the paper divides by masks * p, the expected coverage).
        saliency = (saliency / coverage.clamp_min(torch.finfo(torch.float32).tiny)).float()
        others = {}
        for name, allowed in units.items():  # likewise E[s | token / feature kept]
            total = sums[name]
            if kind == "value":
                total = total - (scores.mean(dim=1) - shift)[:, None] * covers[name]
            value = total / covers[name].clamp_min(torch.finfo(torch.float32).tiny)
            others[name] = torch.where(allowed.to(device), value, 0.0).float()
        signed = kind == "value"
        params = {
            "cell": list(cell),
            "score": kind,
            "forwards_per_image": n + 1,
            "forward_dtype": engine.forward_dtype,
        }
        return run.explanation(self, saliency, signed, params, others)


def _score(out: Tensor, columns: Tensor, signs: Tensor, kind: str) -> Tensor:
    """The target's score per row ``[n]`` from outputs ``[n, C]`` (float32)."""
    import torch

    logit = out.gather(1, columns[:, None])[:, 0]
    if kind == "value":
        return signs * logit
    if kind == "sigmoid":
        return torch.sigmoid(signs * logit)
    prob = torch.softmax(out, dim=1).gather(1, columns[:, None])[:, 0]
    return torch.where(signs < 0, 1 - prob, prob)
