"""The forward engine: many batched forwards of one model, fast, on a private copy of it.

Methods and checks that run the model on many perturbed inputs (Score-CAM's masked inputs,
occlusion, RISE, deletion/insertion, randomization checks) share this one piece:

- the forwards go through a private copy of the model (the user's model is never changed): in
  eval mode with frozen parameters, each batch norm folded into the convolution (or linear
  layer) before it (``torch.fx``; kept only if it reproduces the model's output, else the plain
  copy), and, for image batches, channels-last weights and inputs. A module that cannot be
  deep-copied (locks or file handles inside) is used as it is, under
  :func:`seewhy.core.state.explaining` so its flags are restored;
- at most ``batch_size`` rows go to any forward (STYLE rule 7): :meth:`ForwardEngine.map`
  builds the inputs of each chunk when it runs it, never all at once;
- every forward runs under ``torch.inference_mode``, and under bfloat16 autocast where that
  is fast (``precision="auto"``: a float32 model on hardware that computes bfloat16 natively,
  see :func:`bf16_native`).

The copy holds a second set of weights for the engine's lifetime. On a 2-core AVX-512 CPU
(``benchmarks/RESULTS.md``; resnet18, 224 px, batch 32) the fold and channels-last make each
float32 forward 1.35x (one thread) to 1.6x (two threads) cheaper than the plain model's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import UsageError
from seewhy.core.inputs import IMAGE, Inputs, check_batch_size
from seewhy.core.model import check_output, check_rows, nonfinite_rows
from seewhy.core.state import explaining
from seewhy.core.targets import output_tensor

if TYPE_CHECKING:
    from torch import Tensor, nn

    from seewhy.core.model import Model

PRECISIONS = ("auto", "float32")
"""The forward precisions: ``auto`` (bfloat16 autocast where native) or ``float32`` (exact)."""


def check_precision(precision: Any, name: str = "precision") -> None:
    """Refuse a forward precision that is not one of :data:`PRECISIONS`, naming the flag or
    setting (``--precision``, ``scorecam precision``, ``faithfulness_precision``)."""
    if precision not in PRECISIONS:
        shown = precision if name.startswith("--") else repr(precision)
        raise UsageError(
            f"{name} {shown}: use float32 (exact) or auto (bfloat16 forwards where the "
            "hardware computes it natively, float32 elsewhere)"
        )


def bf16_native(device: Any) -> bool:
    """Whether bfloat16 convolutions and matmuls run in hardware here (faster than float32).

    CUDA: compute capability 8.0 or newer (Ampere on; older GPUs only emulate bfloat16). CPU:
    AVX-512 BF16 or AMX instructions. oneDNN also "supports" bfloat16 on plain AVX-512 CPUs,
    by conversion, which is slower than float32 there, so that does not count. Unsure = no
    (any other device, e.g. ``meta`` or ``mps``, is no).
    """
    import torch

    try:
        if device.type == "cuda":
            return torch.cuda.get_device_capability(device) >= (8, 0)
        if device.type == "cpu":
            cpu = torch.cpu
            return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError, AssertionError):
        return False
    return False


def batch_norms(module: nn.Module) -> int:
    """How many exact ``BatchNorm1d/2d/3d`` modules ``module`` holds (subclasses not counted)."""
    from torch import nn

    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    return sum(type(m) in norms for m in module.modules())


def fold_batch_norm(module: nn.Module) -> nn.Module | None:
    """``module`` (an eval-mode copy) with each batch norm folded into the layer before it
    (``torch.fx`` symbolic tracing and ``torch.fx.experimental.optimization.fuse``), or
    ``None`` when it has no batch norm, cannot be traced, or none of its batch norms could be
    folded.

    Only exact ``Conv{1,2,3}d -> BatchNorm{1,2,3}d`` pairs (and, as torch's ``fuse`` does,
    ``Linear -> BatchNorm1d``) whose first layer feeds nothing else are folded; batch-norm
    subclasses that carry an activation, as timm's ``BatchNormAct2d``, and batch norms without
    running statistics are left alone. The fusion rewrites ``module``'s submodules in place, so
    after any call that was not kept (``None`` included: a trace runs ``forward``) ``module``
    must be thrown away. Never call it on the user's model.
    """
    from torch.fx.experimental.optimization import fuse

    before = batch_norms(module)
    if not before:
        return None  # nothing to fold: spare the trace
    try:
        fused = fuse(module, inplace=True)
    except Exception:  # untraceable forward (control flow, asserts): no folding
        return None
    return fused if batch_norms(fused) < before else None


def _floating(inputs: Inputs) -> Tensor | None:
    """The image entry if it is floating, else the first floating entry (``None``: none)."""
    order = [inputs[IMAGE]] if IMAGE in inputs else []
    order += list(inputs.values())
    return next((t for t in order if t.is_floating_point()), None)


def _channels_last(inputs: Inputs) -> Inputs:
    """``inputs`` with every 4-d floating entry (an image batch) in channels-last layout."""
    import torch

    images = {
        k: v.contiguous(memory_format=torch.channels_last)
        for k, v in inputs.items()
        if v.ndim == 4 and v.is_floating_point()
    }
    return inputs.replace(**images) if images else inputs


class ForwardEngine:
    """Many batched forwards of one model, on a private copy of it.

    Args:
        model: the model; its module is copied, never changed (flags, ``requires_grad``,
            ``.grad``, submodules, weights and their layout all stay as they were).
        example: a batch on the model's device and dtype (e.g. the clean batch being
            explained): it decides the layout (channels-last when it has a 4-d image entry),
            the forward dtype, and is the batch on which a folded copy must reproduce the model.
        batch_size: the largest number of rows any forward gets (an int >= 1).
        precision: ``auto`` runs the forwards under bfloat16 autocast where the model and the
            example are float32 and the hardware computes bfloat16 natively
            (:func:`bf16_native`); elsewhere, and with ``float32``, they run in the model's own
            dtype (exact up to float rounding, the same on every machine).
        expected: the original model's ``[B, C]`` output on ``example``, if the caller already
            has it; else it is computed once (only when there are batch norms to fold), with
            the original module in eval mode (:func:`seewhy.core.state.explaining`), without
            gradients, ``batch_size`` rows at a time.
        fold: fold batch norms into the layers before them (:func:`fold_batch_norm`). The
            folded copy is kept only if it reproduces ``expected`` on ``example`` (checked
            ``batch_size`` rows at a time; tolerance ``1e-3`` of the output's largest magnitude,
            ``5e-2`` for float16/bfloat16 batches), so a trace that specialised on something
            it should not have falls back to the plain copy.
        finite: refuse NaN/inf outputs (:func:`seewhy.core.model.check_output`); ``False``
            returns them, for callers that make a perturbed copy's NaN score undefined
            (deletion/insertion) rather than fatal.

    Attributes:
        model: the copy as a :class:`~seewhy.core.model.Model` (the original's fields, the
            copy's module; the original module itself when it cannot be deep-copied).
        batch_size: the largest number of rows any forward gets.
        low_precision: whether the forwards run under bfloat16 autocast.
        forward_dtype: ``"bfloat16"`` when ``low_precision``, else the example's floating
            dtype (``"float32"``, ``"float16"`` ...), for ``params["forward_dtype"]``.
        folded: whether batch norms were folded into the copy.

    Outputs are float32 ``[N, C]`` (``output_tensor`` of the module's output, checked finite
    by :meth:`Model.forward`), ordinary tensors (not inference tensors), on the inputs' device.
    """

    model: Model
    batch_size: int
    low_precision: bool
    forward_dtype: str
    folded: bool

    def __init__(
        self,
        model: Model,
        example: Inputs,
        *,
        batch_size: int,
        precision: str = "auto",
        expected: Tensor | None = None,
        fold: bool = True,
        finite: bool = True,
    ) -> None:
        import torch

        self.batch_size = check_batch_size(batch_size)
        self._finite = finite
        check_precision(precision)
        example = Inputs.of(example)
        first = _floating(example)
        dtype = first.dtype if first is not None else model.dtype
        self._device = (first if first is not None else next(iter(example.values()))).device
        self._dtype = dtype
        self.low_precision = (
            precision == "auto"
            and model.dtype == torch.float32
            and dtype == torch.float32
            and bf16_native(self._device)
        )
        self.forward_dtype = "bfloat16" if self.low_precision else str(dtype).removeprefix("torch.")
        self._width = None if expected is None else int(expected.shape[-1])
        self._probe = _first_row(example)
        images = any(v.ndim == 4 and v.is_floating_point() for v in example.values())
        self._layout = torch.channels_last if images else torch.contiguous_format
        module, self.folded = self._private_copy(model, example, expected, fold)
        self._owns_copy = module is not model.module
        self.model = dataclasses.replace(model, module=module)

    # -- the copy ---------------------------------------------------------------------------
    def _fresh_copy(self, module: nn.Module) -> nn.Module:
        import copy

        clone = copy.deepcopy(module)
        clone.eval().requires_grad_(False)
        return clone

    def _private_copy(
        self, model: Model, example: Inputs, expected: Tensor | None, fold: bool
    ) -> tuple[nn.Module, bool]:
        """The module the forwards run on, and whether its batch norms were folded."""
        try:
            clone = self._fresh_copy(model.module)
        except Exception:  # an uncopyable module: run the original as it is
            return model.module, False
        if fold and batch_norms(clone):
            folded = fold_batch_norm(clone)
            if folded is not None:
                folded = folded.to(memory_format=self._layout)
                if self._reproduces(model, folded, example, expected):
                    return folded, True
            # The fusion (or the trace's run of forward) may have rewritten ``clone``.
            del clone, folded
            clone = self._fresh_copy(model.module)
        return clone.to(memory_format=self._layout), False

    def _reproduces(
        self, model: Model, candidate: nn.Module, example: Inputs, expected: Tensor | None
    ) -> bool:
        """Whether ``candidate`` gives the original model's output on ``example``."""
        import torch

        if example.batch_size == 0:
            return False  # nothing to check it on
        want = self._expected(model, example) if expected is None else expected.detach().float()
        try:  # torch.fx prints the failing line of a traced module to stderr: not the user's
            with torch.inference_mode(), contextlib.redirect_stderr(io.StringIO()):
                got = torch.cat(
                    [
                        output_tensor(
                            model.call(_channels_last(chunk), candidate), model.output
                        ).float()
                        for chunk in example.chunks(self.batch_size)
                    ]
                )
        except Exception:  # the traced copy fails where the model runs: keep the plain copy
            return False
        loose = self._dtype in (torch.float16, torch.bfloat16)
        tol = (5e-2 if loose else 1e-3) * float(want.abs().max().clamp_min(1e-6))
        return got.shape == want.shape and bool(((got - want.to(got.device)).abs() <= tol).all())

    def _expected(self, model: Model, example: Inputs) -> Tensor:
        """The original model's output on ``example``, float32, in eval mode."""
        import torch

        with explaining(model.module), torch.no_grad():
            out = torch.cat(
                [model.forward(chunk).float() for chunk in example.chunks(self.batch_size)]
            )
        self._width = int(out.shape[-1])
        return out

    # -- the forwards -----------------------------------------------------------------------
    @contextmanager
    def _running(self) -> Iterator[None]:
        """Inference mode, and the module's flags restored after (the uncopyable original)."""
        import torch

        with explaining(self.model.module), torch.inference_mode():
            yield

    def _forward(self, chunk: Inputs) -> Tensor:
        """The copy's float32 output on ``chunk`` (at most ``batch_size`` rows), in
        ``_running``."""

        import torch

        autocast: contextlib.AbstractContextManager[Any] = (
            torch.autocast(self._device.type, dtype=torch.bfloat16)
            if self.low_precision
            else contextlib.nullcontext()
        )
        with autocast:
            if self._layout != torch.channels_last:
                out = self.model.forward(chunk, module=self.model.module, finite=False)
            else:
                try:
                    out = self.model.forward(
                        _channels_last(chunk), module=self.model.module, finite=False
                    )
                except RuntimeError:
                    # A forward that needs contiguous tensors (``x.view(B, -1)`` on a conv
                    # output) fails on channels-last ones: run the copy in the default layout
                    # from here on (a genuine error then raises again, below).
                    self._layout = torch.contiguous_format
                    if self._owns_copy:  # never re-lay the user's own (uncopyable) module
                        self.model.module.to(memory_format=torch.contiguous_format)
                    out = self.model.forward(chunk, module=self.model.module, finite=False)
        self._width = int(out.shape[-1])
        return out.float()

    def _run(self, batch: Inputs) -> list[Tensor]:
        """The outputs of ``batch``, ``batch_size`` rows at a time, in ``_running``."""
        return [self._forward(chunk) for chunk in batch.chunks(self.batch_size)]

    def _check(self, out: Tensor) -> Tensor:
        """``out`` (one call's outputs, every chunk) refused if a row is NaN or infinite and
        the engine is ``finite``: checked once per call, not per chunk, so on a GPU the host
        queues the next chunk while this one runs instead of waiting for each result."""
        if self._finite:
            check_output(out)
        return out

    def _empty(self, *shape: int) -> Tensor:
        import torch

        return torch.empty(shape, dtype=torch.float32, device=self._device)

    def _outputs(self) -> int:
        """The model's output width ``C`` (one forward of one row if no output was seen)."""
        if self._width is None:
            with self._running():
                self._forward(self._probe)
        return int(self._width or 0)

    def __call__(self, inputs: Inputs | Tensor) -> Tensor:
        """The copy's outputs ``[N, C]`` (float32) on ``inputs``, at most ``batch_size`` rows
        per forward."""
        import torch

        batch = Inputs.of(inputs)
        if batch.batch_size == 0:
            return self._empty(0, self._outputs())
        with self._running():
            outs = self._run(batch)
        return self._check(torch.cat(outs))  # outside inference mode: an ordinary tensor

    def map(
        self,
        count: int,
        build: Callable[[int, int], Inputs],
        read: Callable[[Tensor, int, int], Tensor] | None = None,
        *,
        samples: Tensor | None = None,
    ) -> Tensor:
        """Rows ``0 .. count - 1`` built, run and read chunk by chunk; their concatenation.

        For each chunk ``[start, stop)`` of at most ``batch_size`` rows, ``build(start, stop)``
        makes its inputs (when the chunk runs: the rows are never all in memory at once), the
        copy runs them, and ``read(out, start, stop)`` reduces the float32 output ``[n, C]``
        (default: the output itself), e.g. to the explained column. ``build`` and ``read`` run
        under ``torch.inference_mode`` (outside autocast). A ``build`` that returns more rows
        than ``batch_size`` is still run ``batch_size`` rows at a time. ``samples``: the batch
        row each of the ``count`` rows copies (``[count]``), for a NaN/inf error to name those
        (checked once, after the last chunk).

        Returns:
            The reads concatenated along the first dimension, float32. ``count == 0`` gives an
            empty ``[0, C]`` (``[0]`` with a ``read``) without calling ``build``.
        """
        import operator

        import torch

        try:
            n = operator.index(count)
        except TypeError:
            n = -1
        if isinstance(count, bool) or n < 0:
            raise UsageError(f"count must be an integer >= 0, got {count!r}")
        if n == 0:
            return self._empty(0) if read is not None else self._empty(0, self._outputs())
        parts = []
        bad = []  # per chunk, on the device: which rows were NaN or infinite
        with self._running():
            for start in range(0, n, self.batch_size):
                stop = min(start + self.batch_size, n)
                outs = self._run(Inputs.of(build(start, stop)))
                out = outs[0] if len(outs) == 1 else torch.cat(outs)
                if self._finite:
                    bad.append(nonfinite_rows(out))
                parts.append(out if read is None else read(out, start, stop))
        if bad:
            check_rows(torch.cat(bad), " on perturbed copies", samples)
        return torch.cat(parts).float()  # outside inference mode: an ordinary tensor


def _first_row(example: Inputs) -> Inputs:
    """A copy of the example's first row (to learn the output width of an empty call)."""
    return Inputs({k: v[:1].clone() for k, v in example.items()})


__all__ = ["PRECISIONS", "ForwardEngine", "bf16_native", "fold_batch_norm"]
