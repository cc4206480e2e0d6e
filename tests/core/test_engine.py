"""The forward engine (core/engine.py): chunked == unchunked, the user's model untouched,
folded == unfolded, bfloat16 only where native, several named inputs."""

from __future__ import annotations

import copy
import threading
from typing import TypeVar

import pytest
import torch
from torch import nn

import seewhy.core.engine as engine_module
from seewhy.core.engine import ForwardEngine, bf16_native, fold_batch_norm
from seewhy.core.errors import UsageError
from seewhy.core.inputs import Inputs
from seewhy.core.model import Model

M = TypeVar("M", bound=nn.Module)


# Channels-last and a different chunking change the order of float sums: "equal" below is
# equal up to float32 rounding (the differences seen are ~3e-8 on outputs of size ~1).
def assert_same(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


class Recorder(list[object]):
    """A list shared by a model and its deep copies (so the copy's forwards are seen)."""

    def __deepcopy__(self, memo: dict[int, object]) -> Recorder:
        return self


class Counting(nn.Module):
    """A small conv net that records the number of rows of every forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(6, 4)
        self.rows = Recorder()
        self.channels_last = Recorder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(int(x.shape[0]))
        self.channels_last.append(x.is_contiguous(memory_format=torch.channels_last))
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class ConvBN(nn.Module):
    """Conv -> BatchNorm -> ReLU, twice, then dropout and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        )
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x).mean(dim=(2, 3))))


class Untraceable(ConvBN):
    """ConvBN with data-dependent control flow: ``torch.fx`` cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if out.sum() > 1e9:  # a Python branch on a tensor value
            out = out * 0
        return out


class TwoInputs(nn.Module):
    """An image branch (conv -> batch norm) and a tabular branch, joined: forward(image, extra)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.tab = nn.Linear(6, 4)
        self.head = nn.Linear(8, 3)

    def forward(self, image: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.bn(self.conv(image))).mean(dim=(2, 3))
        return self.head(torch.cat([a, torch.tanh(self.tab(extra))], dim=1))


def _stats(model: M) -> M:
    """Non-trivial batch-norm running statistics and affine parameters."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for stat, low, span in (("running_mean", -1.0, 2.0), ("running_var", 0.3, 2.0)):
                    getattr(m, stat).copy_(torch.rand(m.num_features, generator=g) * span + low)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


def _images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def net() -> ConvBN:
    torch.manual_seed(0)
    return _stats(ConvBN()).eval()


def _reference(module: nn.Module, x: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return module(**x) if isinstance(x, dict) else module(x)


# -- chunked == unchunked -----------------------------------------------------------------------
def test_chunked_equals_unchunked_and_the_original(net: ConvBN) -> None:
    x = _images(10)
    ref = _reference(net, x)
    outs = {}
    for fold in (False, True):
        for bs in (1, 3, 64):
            engine = ForwardEngine(
                Model(net), Inputs.of(x), batch_size=bs, precision="float32", fold=fold
            )
            assert engine.folded is fold and engine.batch_size == bs
            outs[fold, bs] = engine(x)
    for out in outs.values():
        assert out.dtype == torch.float32 and out.shape == (10, 5)
        assert not out.is_inference()  # usable outside the engine, in autograd too
        assert_same(out, ref)
        assert_same(out, outs[False, 64])
    # the outputs are not all the same value (the comparison above is not vacuous)
    assert float(ref.std(dim=0).min()) > 1e-3


def test_no_forward_gets_more_than_batch_size_rows() -> None:
    torch.manual_seed(0)
    model = Counting().eval()
    x = _images(7)
    engine = ForwardEngine(Model(model), Inputs.of(x), batch_size=3, precision="float32")
    copy = engine.model.module
    assert isinstance(copy, Counting) and copy is not model
    model.rows.clear()
    out = engine(x)
    assert model.rows == [3, 3, 1]
    # image batches go channels-last, into a copy whose weights are channels-last
    assert model.channels_last == [True, True, True]
    assert copy.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.conv.weight.is_contiguous()  # the user's weights keep their layout
    assert_same(out, _reference(model, x))

    # map: the inputs are built chunk by chunk, and a build that returns more rows than the
    # batch size is still run batch_size rows at a time
    model.rows.clear()
    engine.map(4, lambda start, stop: Inputs.of(x[: 2 * (stop - start)]))
    assert model.rows == [3, 3, 2]


def test_map_builds_and_reads_chunk_by_chunk(net: ConvBN) -> None:
    x = _images(3)
    masks = torch.rand(7, 1, 12, 12, generator=torch.Generator().manual_seed(5))
    rows = torch.tensor([0, 2, 1, 1, 0, 2, 2])  # the image each mask applies to
    columns = torch.tensor([4, 0, 3])  # the column explained on each image
    calls: list[tuple[str, int, int, int]] = []

    def build(start: int, stop: int) -> Inputs:
        calls.append(("build", start, stop, 0))
        return Inputs.of(x[rows[start:stop]] * masks[start:stop])

    def read(out: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        calls.append(("read", start, stop, out.shape[0]))
        assert out.dtype == torch.float32
        return out.gather(1, columns[rows[start:stop], None])[:, 0]

    engine = ForwardEngine(Model(net), Inputs.of(x), batch_size=3, precision="float32")
    got = engine.map(7, build, read)
    assert calls == [
        ("build", 0, 3, 0),
        ("read", 0, 3, 3),
        ("build", 3, 6, 0),
        ("read", 3, 6, 3),
        ("build", 6, 7, 0),
        ("read", 6, 7, 1),
    ]
    every = _reference(net, x[rows] * masks)  # all at once, on the original model
    want = every[torch.arange(7), columns[rows]]
    assert got.shape == (7,) and got.dtype == torch.float32
    assert_same(got, want)
    # without a read: the outputs themselves
    assert_same(engine.map(7, build), every)
    # nothing to run: empty results, build never called
    calls.clear()
    assert engine.map(0, build, read).shape == (0,)
    assert engine.map(0, build).shape == (0, 5)
    assert engine(x[:0]).shape == (0, 5)
    assert calls == []


def test_count_must_be_a_natural_number(net: ConvBN) -> None:
    engine = ForwardEngine(Model(net), Inputs.of(_images(2)), batch_size=2)
    for bad in (-1, 1.5, True):
        with pytest.raises(UsageError, match="count"):
            engine.map(bad, lambda a, b: Inputs.of(_images(b - a)))  # type: ignore[arg-type]


# -- the user's model stays as it was ------------------------------------------------------------
def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {k: (v.clone(), v.stride(), v.dtype) for k, v in model.state_dict().items()},
        "training": [(n, m.training) for n, m in model.named_modules()],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "grad": [
            (n, None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()
        ],
        "params": [(n, id(p)) for n, p in model.named_parameters()],
        "modules": [(n, id(m), type(m)) for n, m in model.named_modules()],
    }


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b, strict=True))
    return a == b


def test_the_copy_leaves_the_users_model_untouched(net: ConvBN) -> None:
    net.train()  # a model handed over in train mode, trainable, with a gradient set
    first = net.get_submodule("features.0")
    assert isinstance(first, nn.Conv2d)
    first.weight.grad = torch.full_like(first.weight, 0.25)
    net.features[4].requires_grad_(False)  # a mix of frozen and trainable parameters
    before = _snapshot(net)
    twin = copy.deepcopy(net).eval()
    x = _images(6)
    # float32: under auto a CPU that computes bfloat16 natively (avx512_bf16) runs bfloat16
    engine = ForwardEngine(Model(net), Inputs.of(x), batch_size=4, precision="float32")
    out = engine(x)
    engine.map(6, lambda a, b: Inputs.of(x[a:b] * 0.5))
    assert _same(_snapshot(net), before)
    assert engine.folded  # the fusion ran, on the copy only
    private = engine.model.module
    assert private is not net
    assert not any(p is q for p in private.parameters() for q in net.parameters())
    assert not private.training and not any(p.requires_grad for p in private.parameters())
    # the engine ran in eval mode (dropout off, running statistics) though the model trains
    torch.testing.assert_close(out, _reference(twin, x), rtol=1e-5, atol=1e-5)
    assert net.training


class Locked(ConvBN):
    """A module that cannot be deep-copied (it holds a lock)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


def test_an_uncopyable_module_runs_as_it_is_and_is_restored() -> None:
    torch.manual_seed(0)
    model = _stats(Locked()).train()
    before = _snapshot(model)
    x = _images(5)
    engine = ForwardEngine(Model(model), Inputs.of(x), batch_size=2, precision="float32")
    assert engine.model.module is model and not engine.folded
    out = engine(x)
    assert model.training and _same(_snapshot(model), before)  # flags back, weights as they were
    with torch.no_grad():
        want = model.eval()(x)
    assert_same(out, want)  # run in eval mode: dropout off


# -- folding -------------------------------------------------------------------------------------
def test_folded_equals_unfolded_within_float32_rounding(net: ConvBN) -> None:
    x = _images(8)
    ref = _reference(net, x)
    engine = ForwardEngine(Model(net), Inputs.of(x), batch_size=3, precision="float32")
    assert engine.folded
    assert not any(isinstance(m, nn.BatchNorm2d) for m in engine.model.module.modules())
    scale = float(ref.abs().max())
    torch.testing.assert_close(engine(x), ref, rtol=1e-5, atol=1e-5 * scale)
    # the statistics matter: the same weights with default statistics give other outputs
    fresh = ConvBN().eval()
    fresh.load_state_dict(
        {k: v for k, v in net.state_dict().items() if "running" not in k}, strict=False
    )
    assert float((_reference(fresh, x) - ref).abs().max()) > 0.05 * scale

    # fold=False keeps the batch norms
    unfolded = ForwardEngine(Model(net), Inputs.of(x), batch_size=3, fold=False)
    assert not unfolded.folded
    assert sum(isinstance(m, nn.BatchNorm2d) for m in unfolded.model.module.modules()) == 2


def test_fold_batch_norm_folds_conv_batch_norm_pairs_only(net: ConvBN) -> None:
    clone = copy.deepcopy(net)
    folded = fold_batch_norm(clone)
    assert folded is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = _images(4)
    torch.testing.assert_close(_reference(folded, x), _reference(net, x), rtol=1e-5, atol=1e-5)
    assert fold_batch_norm(Counting().eval()) is None  # no batch norm: nothing to fold
    assert fold_batch_norm(_stats(Untraceable()).eval()) is None  # cannot be traced
    bn_first = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1)).eval()
    assert fold_batch_norm(bn_first) is None  # traced, but no batch norm follows a conv


def test_an_untraceable_model_is_not_folded_and_exact() -> None:
    torch.manual_seed(0)
    model = _stats(Untraceable()).eval()
    x = _images(6)
    engine = ForwardEngine(Model(model), Inputs.of(x), batch_size=6, precision="float32")
    assert not engine.folded
    assert sum(isinstance(m, nn.BatchNorm2d) for m in engine.model.module.modules()) == 2
    assert_same(engine(x), _reference(model, x))


def test_a_fold_that_changes_the_output_is_thrown_away(
    net: ConvBN, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(module: nn.Module) -> nn.Module:
        with torch.no_grad():  # a fusion that rewrote the copy, and got it wrong
            conv = module.get_submodule("features.0")
            assert isinstance(conv, nn.Conv2d)
            conv.weight.mul_(3.0)
        return module

    monkeypatch.setattr(engine_module, "fold_batch_norm", broken)
    x = _images(4)
    ref = _reference(net, x)
    engine = ForwardEngine(Model(net), Inputs.of(x), batch_size=2, precision="float32")
    assert not engine.folded
    # a fresh copy replaced the rewritten one
    assert_same(engine(x), ref)


def test_the_fold_is_checked_against_the_callers_expected_output(net: ConvBN) -> None:
    x = _images(4)
    ref = _reference(net, x)
    run = {"batch_size": 2, "precision": "float32"}
    assert ForwardEngine(Model(net), Inputs.of(x), expected=ref, **run).folded  # type: ignore[arg-type]
    wrong = ref + 0.01 * float(ref.abs().max())  # beyond the 1e-3 tolerance
    assert not ForwardEngine(Model(net), Inputs.of(x), expected=wrong, **run).folded  # type: ignore[arg-type]


# -- precision -----------------------------------------------------------------------------------
def test_bf16_native_is_a_bool_and_no_on_unknown_devices() -> None:
    assert isinstance(bf16_native(torch.device("cpu")), bool)
    assert bf16_native(torch.device("meta")) is False


def _native(monkeypatch: pytest.MonkeyPatch, value: bool) -> list[object]:
    asked: list[object] = []

    def fake(device: object) -> bool:
        asked.append(device)
        return value

    monkeypatch.setattr(engine_module, "bf16_native", fake)
    return asked


def test_bfloat16_only_where_native(net: ConvBN, monkeypatch: pytest.MonkeyPatch) -> None:
    x = _images(16)
    exact = ForwardEngine(Model(net), Inputs.of(x), batch_size=8, precision="float32")(x)

    asked = _native(monkeypatch, False)
    engine = ForwardEngine(Model(net), Inputs.of(x), batch_size=8)
    assert asked == [torch.device("cpu")]
    assert not engine.low_precision and engine.forward_dtype == "float32"
    assert_same(engine(x), exact)

    _native(monkeypatch, True)
    engine = ForwardEngine(Model(net), Inputs.of(x), batch_size=8)
    assert engine.low_precision and engine.forward_dtype == "bfloat16"
    low = engine(x)
    assert low.dtype == torch.float32
    assert not torch.equal(low, exact)  # the forwards did run in bfloat16 ...
    r = torch.corrcoef(torch.stack([low.flatten(), exact.flatten()]))[0, 1]
    assert float(r) >= 0.99  # ... and agree with float32
    got = engine.map(16, lambda a, b: Inputs.of(x[a:b]))
    torch.testing.assert_close(got, low, rtol=0, atol=0)

    # float32 asked for, or a model that is not float32: never bfloat16
    engine = ForwardEngine(Model(net), Inputs.of(x), batch_size=8, precision="float32")
    assert not engine.low_precision and engine.forward_dtype == "float32"
    wide = ConvBN().double().eval()
    engine = ForwardEngine(Model(wide), Inputs.of(x.double()), batch_size=8)
    assert not engine.low_precision and engine.forward_dtype == "float64"
    out = engine(x.double())
    assert out.dtype == torch.float32
    assert_same(out, _reference(wide, x.double()).float())


def test_bad_settings_are_usage_errors(net: ConvBN) -> None:
    x = Inputs.of(_images(2))
    with pytest.raises(UsageError, match=r"auto .*float32") as err:
        ForwardEngine(Model(net), x, batch_size=2, precision="bf16")
    assert "\n" not in str(err.value)
    for bad in (0, -3, True, 2.5, "4"):
        with pytest.raises(UsageError, match="batch_size must be an integer >= 1"):
            ForwardEngine(Model(net), x, batch_size=bad)  # type: ignore[arg-type]


# -- several named inputs ------------------------------------------------------------------------
def test_two_named_inputs_reach_forward_by_keyword() -> None:
    torch.manual_seed(0)
    module = _stats(TwoInputs()).eval()
    model = Model(module, inputs={"features": {"arg": "extra"}})
    g = torch.Generator().manual_seed(7)
    batch = Inputs({"image": _images(5), "features": torch.randn(5, 6, generator=g)})
    ref = _reference(module, {"image": batch["image"], "extra": batch["features"]})
    for fold in (True, False):
        engine = ForwardEngine(model, batch, batch_size=2, precision="float32", fold=fold)
        assert engine.folded is fold
        torch.testing.assert_close(engine(batch), ref, rtol=1e-5, atol=1e-5)
    # each entry matters: changing the tabular one changes the output
    other = batch.replace(features=batch["features"] + 1)
    assert float((engine(other) - ref).abs().max()) > 1e-3
    # map over rows of both entries
    got = engine.map(5, lambda a, b: batch[a:b], lambda out, a, b: out[:, 2])
    torch.testing.assert_close(got, ref[:, 2], rtol=1e-5, atol=1e-5)
