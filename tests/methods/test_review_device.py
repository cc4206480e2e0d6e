"""Review of the device paths (SPEC 5: "every method works on batches, on any device"), on a
machine without a GPU.

:class:`SimDevice` makes the CPU play a CUDA (or MPS) device: while it is active, tensors moved
``.to("cuda")`` (or made with ``device="cuda"``), the parameters of a tagged module and
everything computed from them report ``device.type == "cuda"``, and an operation that real
hardware would refuse is a violation: CUDA and CPU tensors mixed in one op (0-d CPU tensors and
CPU index tensors allowed, as CUDA allows them), ``.numpy()`` of a CUDA tensor, a CPU
``torch.Generator`` drawing a CUDA tensor, and on MPS any float64 tensor. It also counts the
host syncs (``.item()``, ``.tolist()``, ``bool()``/``float()`` of a device tensor) and the random
draws made ON the device (from its own generator, not a seeded CPU one).

The passing tests pin what holds: every method, ``seewhy.check`` and ``seewhy explain``/``check``
keep to the model's device and the same seed gives the same draws as on the CPU. Four were
defects, each failing before its fix: randomized weights drawn from the device's own generator
(other numbers than the CPU's for the same seed), a host sync per forward chunk from the NaN
check (the engine's and the gradient methods' loops now check once per call), and float64 on
the device in the dataset's weight fingerprint and the randomization noise scale (MPS has none).
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

import seewhy

T = torch.Tensor
SYNCS = (T.item, T.tolist, T.__float__, T.__int__, T.__bool__, T.__index__)
DEVICE_DRAWS = {
    "uniform_",
    "normal_",
    "bernoulli_",
    "random_",
    "exponential_",
    "geometric_",
    "log_normal_",
    "cauchy_",
    "rand",
    "randn",
    "randint",
    "randperm",
    "rand_like",
    "randn_like",
    "randint_like",
    "bernoulli",
    "multinomial",
    "normal",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "trunc_normal_",
    "orthogonal_",
}


class Violation(RuntimeError):
    """What real device hardware would refuse."""


def _tensors(x: Any, out: list[T]) -> list[T]:
    if isinstance(x, T):
        out.append(x)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _tensors(v, out)
    elif isinstance(x, dict):
        for v in x.values():
            _tensors(v, out)
    return out


class SimDevice(TorchFunctionMode):
    """The CPU playing device ``kind`` (``cuda`` or ``mps``); see the module docstring.

    A tensor is on the device when its storage is (views, ``.data`` and ``Parameter``s made
    from it included); the storages are kept alive, so an address is never reused.
    """

    def __init__(self, kind: str = "cuda", strict: bool = True) -> None:
        super().__init__()
        self.kind = kind
        self.device = torch.device(kind, 0)
        self.strict = strict
        self.storages: dict[int, Any] = {}
        self.empty = WeakIdKeyDictionary()
        self.violations: list[str] = []
        self.syncs: list[str] = []
        self.draws: list[str] = []

    # -- where a tensor is ----------------------------------------------------------------------
    def on(self, t: T) -> bool:
        if t.numel() == 0 or t.layout != torch.strided:
            return t in self.empty
        return t.untyped_storage().data_ptr() in self.storages

    def put(self, t: T) -> T:
        if t.numel() == 0 or t.layout != torch.strided:
            self.empty[t] = True
        else:
            s = t.untyped_storage()
            self.storages[s.data_ptr()] = s
        return t

    def module(self, module: nn.Module) -> nn.Module:
        """``module`` as if ``.to(device)``: its parameters and buffers on the device."""
        for t in [*module.parameters(), *module.buffers()]:
            self.put(t)
        return module

    def _wants(self, d: Any) -> bool:
        if isinstance(d, str):
            return d.split(":")[0] == self.kind
        return isinstance(d, torch.device) and d.type == self.kind

    def _where(self) -> str:
        frames = [f for f in traceback.extract_stack()[:-3] if "seewhy" in f.filename]
        return " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in frames[-3:][::-1])

    def _violate(self, what: str) -> None:
        message = f"{what} at {self._where()}"
        self.violations.append(message)
        if self.strict:
            raise Violation(message)

    # -- the mode -------------------------------------------------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", str(func))
        if func == T.device.__get__:
            return self.device if self.on(args[0]) else torch.device("cpu")
        if func == T.is_cuda.__get__:
            return self.kind == "cuda" and self.on(args[0])
        if func == T.is_mps.__get__:
            return self.kind == "mps" and self.on(args[0])
        tensors = _tensors(args, []) + _tensors(kwargs, [])
        on = [t for t in tensors if self.on(t)]
        off = [t for t in tensors if not self.on(t) and t.ndim > 0]
        if func in (T.numpy, T.__array__) and on:
            self._violate(f"{name}() of a {self.kind} tensor")
        if func in SYNCS and on:
            self.syncs.append(self._where())
        if func in (T.to, T.cuda, T.cpu):
            return self._move(func, args, kwargs)
        want = self._wants(kwargs.get("device"))
        if want:
            kwargs["device"] = torch.device("cpu")
            gen = kwargs.get("generator")
            if gen is not None and gen.device.type != self.kind:
                self._violate(
                    f"{name}(generator=<{gen.device.type} generator>, device={self.kind})"
                )
        if (want or on) and name in DEVICE_DRAWS and kwargs.get("generator") is None:
            self.draws.append(f"{name} at {self._where()}")
        passive = func in (T.copy_, torch._has_compatible_shallow_copy_type) or name == "__set__"
        if on and off and not passive and func is not T.__getitem__:
            if func is T.__setitem__ and self.on(args[0]):
                if [v for v in _tensors(args[2:], []) if not self.on(v) and v.ndim > 0]:
                    self._violate(f"{name}: cpu values into a {self.kind} tensor")
            else:
                shapes = [tuple(t.shape) for t in on][:2], [tuple(t.shape) for t in off][:2]
                self._violate(f"{name}: {self.kind} {shapes[0]} mixed with cpu {shapes[1]}")
        if func is T.__getitem__ and on and not self.on(args[0]) and args[0].ndim > 0:
            self._violate(f"{name}: a cpu tensor indexed with a {self.kind} index")
        with torch._C.DisableTorchFunction():
            out = func(*args, **kwargs)
        if on or want:
            for o in _tensors(out, []):
                self._check_dtype(o, name)
                self.put(o)
        return out

    def _check_dtype(self, t: T, name: str) -> None:
        if self.kind == "mps" and t.dtype in (torch.float64, torch.complex128):
            self._violate(f"{name}: a {t.dtype} tensor on mps (MPS has no float64)")

    def _move(self, func: Any, args: Any, kwargs: dict[str, Any]) -> T:
        src, rest = args[0], list(args[1:])
        on = self.on(src)
        if func is T.cpu:
            with torch._C.DisableTorchFunction():
                return src.clone() if on else src
        target: Any = self.device if func is T.cuda else kwargs.pop("device", None)
        for i, a in enumerate(rest):
            if isinstance(a, (str, torch.device)):
                target, rest[i] = a, torch.device("cpu")
            elif isinstance(a, T):
                target, rest[i] = (self.device if self.on(a) else torch.device("cpu")), a.dtype
        with torch._C.DisableTorchFunction():
            if target is None:  # a dtype change: stays where it is
                out = src.to(*rest, **kwargs)
                if on:
                    self._check_dtype(out, "to")
                    self.put(out)
                return out
            if self._wants(target):
                out = src.to(*rest, **kwargs) if on else src.to(*rest, **kwargs, copy=True)
                self._check_dtype(out, "to")
                return self.put(out)
            return src.to(*rest, **kwargs, copy=True) if on else src.to(*rest, **kwargs)


@contextlib.contextmanager
def pretend(kind: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """torch's device queries answering as a machine with one ``kind`` device would (for the
    loader's ``--device`` check and the randomization check's RNG fork)."""
    fork = torch.random.fork_rng

    @contextlib.contextmanager
    def fork_cpu(devices: Any = None, enabled: bool = True, **_: Any) -> Iterator[None]:
        with fork(devices=[], enabled=enabled):
            yield

    monkeypatch.setattr(torch.random, "fork_rng", fork_cpu)
    if kind == "cuda":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "default_generators", (torch.Generator(),), raising=False)
    else:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    yield


class Net(nn.Module):
    """A few-layer CNN with batch norms (so the forward engine folds them)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        )
        self.head = nn.Linear(8, classes)

    def forward(self, x: T) -> T:
        return self.head(self.features(x).mean(dim=(2, 3)))


METHODS = [
    "gradcam",
    "gradcam++",
    "hirescam",
    "xgradcam",
    "layercam",
    "eigencam",
    "scorecam(precision=float32)",
    "saliency",
    "inputxgrad",
    "ig(steps=4)",
    "smoothgrad(samples=4)",
    "expected-gradients(samples=4)",
    "occlusion(window=8,stride=4)",
    "rise(masks=8)",
]


def _images(n: int = 3, side: int = 32) -> T:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(1))


# -- the simulator itself ---------------------------------------------------------------------
def test_the_simulated_device_refuses_what_cuda_refuses() -> None:
    sim = SimDevice(strict=False)
    with sim:
        a = torch.ones(2, 3).to("cuda")
        assert a.device.type == "cuda" and a.is_cuda and (a + 1).device.type == "cuda"
        assert torch.ones(2).device.type == "cpu"
        _ = a + torch.tensor(2.0)  # a 0-d CPU tensor is allowed
        _ = a[torch.tensor([1, 0])]  # so is a CPU index
        assert not sim.violations
        _ = a + torch.zeros(2, 3)
        _ = torch.randn(3, generator=torch.Generator().manual_seed(0), device="cuda")
        _ = a.numpy()
        _ = a.cpu().numpy()  # fine
    assert len(sim.violations) == 3, sim.violations
    mps = SimDevice("mps", strict=False)
    with mps:
        _ = torch.ones(2).to("mps").double()
    assert len(mps.violations) == 1 and "float64" in mps.violations[0]


# -- what holds: every method and check keeps to the model's device ---------------------------
@pytest.mark.parametrize("method", METHODS)
def test_every_method_keeps_to_the_model_device(method: str) -> None:
    x = _images()
    cpu = seewhy.explain(Net().eval(), x, [method], seed=3)[0]
    sim = SimDevice()  # strict: the first violation raises, with where it happened
    model = sim.module(Net().eval())
    with sim:
        (e,) = seewhy.explain(model, x.to("cuda"), [method], seed=3)
        assert e.map.device.type == "cuda" and e.map.dtype == torch.float32
        got = e.map.cpu()
    assert not sim.draws, sim.draws  # every draw from a seeded CPU generator, then moved
    torch.testing.assert_close(got, cpu.map, atol=1e-5, rtol=1e-4)  # the same seeded draws


def test_check_keeps_to_the_model_device(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = SimDevice()
    model = sim.module(Net().eval())
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)  # masks given on the CPU
    masks[:, 8:20, 8:20] = True
    with pretend("cuda", monkeypatch), sim:
        results = seewhy.check(
            model, _images().to("cuda"), ["gradcam", "saliency"], masks=masks, steps=4
        )
    assert results and all(r.verdict in ("pass", "warn", "fail") for r in results)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    from PIL import Image

    (tmp_path / "models.py").write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "def small(num_classes=2):\n"
        "    torch.manual_seed(1)\n"
        "    return nn.Sequential(\n"
        "        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),\n"
        "        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)\n"
        "    )\n"
    )
    (tmp_path / "small.toml").write_text(
        'name = "small"\narch = "models.py:small"\ntask = "classification"\n'
        'labels = ["a", "b"]\nlayer = "2"\n\n[preprocess]\nsize = 32\n'
        "mean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\n"
    )
    gen = torch.Generator().manual_seed(0)
    for i in range(2):
        pixels = (torch.rand(40, 48, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(tmp_path / f"img{i}.png")
    return tmp_path


def _cli(cwd: Path, *args: str) -> tuple[int, str]:
    import os

    from typer.testing import CliRunner

    from seewhy.cli import app

    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args))
    finally:
        os.chdir(old)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_cli_explain_and_check_with_device_cuda(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    methods = "gradcam,ig(steps=4),smoothgrad(samples=4),expected-gradients(samples=4)"
    methods += ",occlusion,rise(masks=8)"
    sim = SimDevice(strict=False)
    with pretend("cuda", monkeypatch), sim:
        code, out = _cli(project, "explain", "img0.png", "img1.png", "-m", "small.toml")
        assert code == 0, out
        code, out = _cli(
            project, "explain", "img0.png", "img1.png", "-m", "small.toml", "--quiet",
            "--device", "cuda", "--method", methods, "--out", "gpu",
        )  # fmt: skip
        assert code == 0, out
        code, out = _cli(
            project, "check", "img0.png", "img1.png", "-m", "small.toml", "--quiet",
            "--device", "cuda", "--method", "gradcam,saliency", "--out", "chk",
        )  # fmt: skip
        assert code == 0, out
    assert not sim.violations, sim.violations
    import numpy as np

    for name in ("gradcam", "ig", "smoothgrad", "expected-gradients", "occlusion", "rise"):
        a = np.load(project / "seewhy-out" / "maps" / "img0" / "small__gradcam.npy")
        b = np.load(project / "gpu" / "maps" / "img0" / f"small__{name}.npy")
        assert b.dtype == np.float32 and b.shape == a.shape, name


# -- defects ----------------------------------------------------------------------------------
def test_randomization_draws_the_new_weights_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from seewhy.checks.randomization import _generator, randomize_

    sim = SimDevice()
    module = sim.module(Net())
    with pretend("cuda", monkeypatch), sim:
        randomize_(module, _generator(0, ""), recurse=True)
        assert next(module.parameters()).device.type == "cuda"
    assert not sim.draws, f"{len(sim.draws)} draws on the device, e.g. {sim.draws[:2]}"


@pytest.mark.parametrize(
    "method", ["rise(masks=64)", "ig(steps=32)", "occlusion(window=8,stride=4)"]
)
def test_many_forwards_do_not_stop_the_host_once_per_chunk(method: str) -> None:
    syncs = {}
    for batch_size in (4, 64):
        sim = SimDevice()
        model = sim.module(Net().eval())
        with sim:
            seewhy.explain(model, _images(1).to("cuda"), [method], batch_size=batch_size)
        syncs[batch_size] = len(sim.syncs)
    # 1 image x 64 masks (32 steps): 16 (8) chunks of 4 against one of 64
    assert syncs[4] <= syncs[64] + 4, syncs


def test_dataset_fingerprint_needs_no_float64_on_the_device() -> None:
    from seewhy.core.model import Model
    from seewhy.jobs.dataset import _weights

    sim = SimDevice("mps")
    model = Model.of(sim.module(Net().eval()))
    with sim:
        _weights(model)


def test_randomization_noise_scale_needs_no_float64_on_the_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from seewhy.checks.randomization import _generator, randomize_

    class WithToken(Net):
        def __init__(self) -> None:
            super().__init__()
            self.token = nn.Parameter(torch.randn(1, 8))

    sim = SimDevice("mps")
    module = sim.module(WithToken())
    with pretend("mps", monkeypatch), sim:
        randomize_(module, _generator(0, ""), recurse=False)


class _RecordsPrecision(nn.Module):
    """A small CNN that records the TF32 switches each forward runs under."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Net()
        self.seen: list[tuple[str, str]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = torch.backends
        self.seen.append((b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision))
        return self.net(x)


@pytest.mark.parametrize("method", ["gradcam", "ig(steps=4)", "occlusion(window=8,stride=8)"])
def test_float32_runs_without_tf32_and_the_users_switches_come_back(method: str) -> None:
    """Ampere+ GPUs run float32 convolutions in TF32 by default (cudnn.conv "tf32"): a
    "float32, exact" map would differ from the CPU's by ~1e-3 of its scale. Inside a method on
    a CUDA model the switches are "ieee"; the user's own settings are back afterwards, also
    after an error. On the CPU they are not touched (a forward reading torch's legacy
    allow_tf32 flag would otherwise meet the new API's settings and raise)."""
    b = torch.backends
    before = (b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision)
    try:
        b.cudnn.conv.fp32_precision = "tf32"
        b.cuda.matmul.fp32_precision = "tf32"
        cpu = _RecordsPrecision().eval()
        seewhy.explain(cpu, _images(2), [method], batch_size=8, precision="float32")
        assert cpu.seen and set(cpu.seen) == {("tf32", "tf32")}, set(cpu.seen)
        sim = SimDevice()
        model = sim.module(_RecordsPrecision().eval())
        with sim:
            images = _images(2).to("cuda")
            seewhy.explain(model, images, [method], batch_size=8, precision="float32")
            assert model.seen and set(model.seen) == {("ieee", "ieee")}, set(model.seen)
            assert (b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision) == ("tf32",) * 2
            with pytest.raises(Exception, match="outputs"):
                seewhy.explain(model, images, [method], target=7)
        assert (b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision) == ("tf32", "tf32")
    finally:
        b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision = before
