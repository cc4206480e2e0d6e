#!/usr/bin/env bash
# One-shot check of seewhy's CUDA path, for a session that gets a GPU (one call, ~10 minutes).
#
#   bash scripts/gpu_check.sh            # logs and tables under $OUT, else ./gpu-out
#   SKIP_INSTALL=1 bash scripts/gpu_check.sh   # reuse an existing .venv
#   BENCH_MORE=1 ...                     # also the perturbation benchmark (RISE 2000 masks)
#
# Steps (each logged to $OUT/NN-name.log, its exit code and seconds in $OUT/summary.txt; a
# failing step does not stop the later ones; the script exits 1 if any step failed):
#   00 install      python3 -m venv .venv && pip install -e '.[dev]' (the Makefile's install-dev)
#   01 facts        nvidia-smi, torch/CUDA facts (device, capability, bf16, TF32 flags); exits 2
#                   here, with a message, when torch.cuda.is_available() is False
#   02 tf32         how far a float32 conv on CUDA is from the CPU's, TF32 on (torch's default
#                   for cuDNN) and off
#   03 methods      every method on CUDA against CPU (float32), bf16 precisions, RISE/IG
#                   repeatability, randomization check CPU vs CUDA
#   04 pytest       the tests that exercise cuda + tests/methods/test_review_device.py
#   05 cli-explain  seewhy explain --device cuda, 3 generated images, 7 methods; maps vs --device cpu
#   06 cli-check    seewhy check --device cuda
#   07 bench        benchmarks/gradients.py --device cuda --cases gradients --reps 2 (bfloat16
#                   rows included where native)
#   08 bench-perturbation (BENCH_MORE=1 only)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/gpu-out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="$ROOT/.venv/bin/python"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
FAILED=0
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

log() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }

# step NAME SECONDS CMD...: run CMD under a time limit, tee its output to $OUT/NAME.log, record
# its exit code and wall time; never stops the script.
step() {
    local name="$1" limit="$2"
    shift 2
    local start rc
    start=$(date +%s)
    echo "=== $name (limit ${limit}s): $*" | tee "$OUT/$name.log"
    set +e
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    set -e
    log "$name: rc=$rc, $(($(date +%s) - start))s"
    if [ "$rc" -ne 0 ]; then FAILED=1; fi
    return 0
}

# -- 00 install --------------------------------------------------------------------------------
# The lent GPU machine reaches no package index, and its python3 already holds torch (with
# CUDA), torchvision, timm, transformers, typer, rich, jinja2, matplotlib, pillow, pytest and
# pytest-xdist: seewhy runs there from src/ on that python3 (USE_SYSTEM_PYTHON=1 forces it,
# USE_SYSTEM_PYTHON=0 forces a .venv). Elsewhere a .venv is made with the Makefile's install.
NEEDED="import torch, torchvision, timm, typer, rich, jinja2, matplotlib, PIL, pytest"
if [ "${USE_SYSTEM_PYTHON:-}" = 1 ] || { [ "${USE_SYSTEM_PYTHON:-}" != 0 ] &&
    [ ! -x "$PY" ] && python3 -c "$NEEDED" >/dev/null 2>&1 &&
    python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        >/dev/null 2>&1; }; then
    PY="$(command -v python3)"
    export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
    log "gpu_check: using $PY (its own torch) with PYTHONPATH=$ROOT/src; nothing installed"
elif [ -z "${SKIP_INSTALL:-}" ] || [ ! -x "$PY" ]; then
    step 00-install 420 bash -c '[ -x .venv/bin/python ] || python3 -m venv .venv
        .venv/bin/pip --disable-pip-version-check install -q -e ".[dev]"'
fi
if [ ! -x "$PY" ] || ! "$PY" -c "import seewhy, torch" >/dev/null 2>&1; then
    log "gpu_check: no python with seewhy and torch (see $OUT/00-install.log); nothing else can run"
    exit 2
fi
SEEWHY="$PY -m seewhy.cli"

# -- 01 facts ----------------------------------------------------------------------------------
{
    echo "=== 01-facts"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi || echo "nvidia-smi failed (rc $?)"
    else
        echo "nvidia-smi: not found"
    fi
    nproc | sed 's/^/cpu cores: /'
} 2>&1 | tee "$OUT/01-facts.log"
set +e
"$PY" - <<'EOF' 2>&1 | tee -a "$OUT/01-facts.log"
import sys

import torch

print(f"torch {torch.__version__}, built for CUDA {torch.version.cuda}, cudnn "
      f"{torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}")
if not torch.cuda.is_available():
    print("gpu_check: torch.cuda.is_available() is False on this machine (no GPU, no driver, or "
          "a CPU-only torch): the CUDA checks cannot run here. Nothing was checked.")
    sys.exit(2)
from seewhy.core.engine import bf16_native

for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
          f"{p.multi_processor_count} SMs")
dev = torch.device("cuda")
print(f"torch.cuda.is_bf16_supported(): {torch.cuda.is_bf16_supported()}; "
      f"seewhy bf16_native(cuda): {bf16_native(dev)}; bf16_native(cpu): "
      f"{bf16_native(torch.device('cpu'))}")
print(f"TF32: cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
      f"cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
      f"float32_matmul_precision={torch.get_float32_matmul_precision()}; "
      f"cudnn.deterministic={torch.backends.cudnn.deterministic}, "
      f"cudnn.benchmark={torch.backends.cudnn.benchmark}")
EOF
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
    log "01-facts: rc=$rc: no usable CUDA device; stopping (see $OUT/01-facts.log)"
    exit 2
fi
log "01-facts: rc=0"

# -- 02 tf32 -----------------------------------------------------------------------------------
step 02-tf32 60 "$PY" - <<'EOF'
import torch
import torch.nn.functional as F

g = torch.Generator().manual_seed(0)
x, w = torch.randn(8, 64, 56, 56, generator=g), torch.randn(64, 64, 3, 3, generator=g) / 24
ref = F.conv2d(x.double(), w.double(), padding=1)
cpu = F.conv2d(x, w, padding=1)
print(f"cpu float32 conv: max |err| / max |ref| = {float((cpu - ref).abs().max() / ref.abs().max()):.2e}")
for tf32 in (True, False):
    torch.backends.cudnn.allow_tf32 = tf32
    got = F.conv2d(x.cuda(), w.cuda(), padding=1).cpu()
    rel = float((got.double() - ref).abs().max() / ref.abs().max())
    print(f"cuda float32 conv, cudnn.allow_tf32={tf32}: max |err| / max |ref| = {rel:.2e}")
torch.backends.cudnn.allow_tf32 = True
EOF

# -- 03 methods --------------------------------------------------------------------------------
step 03-methods 240 "$PY" - <<'EOF'
import copy
import time

import torch
from torch import nn

import seewhy

torch.manual_seed(0)
net = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 5),
).eval()
x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
gpu = copy.deepcopy(net).cuda()
methods = [
    "gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam",
    "scorecam(precision=float32)", "saliency", "inputxgrad", "ig(steps=32)",
    "smoothgrad(samples=16)", "expected-gradients(samples=16)", "occlusion", "rise(masks=256)",
]
bad = 0


def compare(name: str, a: torch.Tensor, b: torch.Tensor, tol: float, counts: bool = True) -> None:
    """Print how far map b is from map a; a FAIL counts toward the exit code when ``counts``."""
    global bad
    a, b = a.float().flatten(1), b.float().cpu().flatten(1)
    scale = a.abs().amax(dim=1).clamp_min(1e-12)
    rel = float(((a - b).abs().amax(dim=1) / scale).max())
    r = float(min(torch.corrcoef(torch.stack([p, q]))[0, 1] for p, q in zip(a, b)))
    ok = rel <= tol
    bad += counts and not ok
    word = ("ok  " if ok else "FAIL") if counts else "info"
    print(f"{word} {name:32s} max diff {rel:.1e} of the map's peak "
          f"(tol {tol:g}), min Pearson r {r:.6f}")


print("-- every method, float32, CUDA vs CPU (same seed, same draws)")
for m in methods:
    t = time.perf_counter()
    (c,) = seewhy.explain(net, x, [m], seed=3)
    (g,) = seewhy.explain(gpu, x.cuda(), [m], seed=3)
    torch.cuda.synchronize()
    assert g.map.device.type == "cuda" and g.map.dtype == torch.float32, m
    compare(m, c.map, g.map, 1e-2)
    print(f"     ({time.perf_counter() - t:.2f}s for both)")

print("-- bfloat16 on CUDA against float32 on CUDA (info: bfloat16 maps are not exact)")
pairs = [
    ("ig(steps=32,precision=bfloat16)", "ig(steps=32)"),
    ("smoothgrad(samples=16,precision=bfloat16)", "smoothgrad(samples=16)"),
    ("expected-gradients(samples=16,precision=bfloat16)", "expected-gradients(samples=16)"),
    ("scorecam", "scorecam(precision=float32)"),  # auto, the default: bfloat16 where native
    ("occlusion(precision=auto)", "occlusion"),
    ("rise(masks=256,precision=auto)", "rise(masks=256)"),
]
for m, f32 in pairs:
    (a,) = seewhy.explain(gpu, x.cuda(), [f32], seed=3)
    (b,) = seewhy.explain(gpu, x.cuda(), [m], seed=3)
    print(f"     {m}: params forward_dtype={b.params.get('forward_dtype')}")
    compare(m, a.map.cpu(), b.map, 0.1, counts=False)  # bfloat16: how close, for the record

print("-- repeatability on CUDA: the same call twice (RISE accumulates with index_add_)")
for m in ["rise(masks=256)", "ig(steps=32)", "occlusion"]:
    (a,) = seewhy.explain(gpu, x.cuda(), [m], seed=3)
    (b,) = seewhy.explain(gpu, x.cuda(), [m], seed=3)
    same = torch.equal(a.map, b.map)
    print(f"     {m}: bitwise equal: {same}, max |diff| {float((a.map - b.map).abs().max()):.1e}")

print("-- batch_size does not change the maps on CUDA")
for m in ["rise(masks=256)", "smoothgrad(samples=16)", "expected-gradients(samples=16)"]:
    (a,) = seewhy.explain(gpu, x.cuda(), [m], seed=3, batch_size=3)
    (b,) = seewhy.explain(gpu, x.cuda(), [m], seed=3, batch_size=64)
    compare(f"{m} bs 3 vs 64", a.map.cpu(), b.map, 1e-3)

print("-- randomization check: same seed on CPU and CUDA (reset_parameters draws on CUDA's RNG)")
from seewhy.checks.randomization import _generator, randomize_

a, b = copy.deepcopy(net), copy.deepcopy(net).cuda()
randomize_(a, _generator(0, ""), recurse=True)
randomize_(b, _generator(0, ""), recurse=True)
w_a, w_b = a[0].weight.detach(), b[0].weight.detach().cpu()
print(f"     randomized conv weights equal on CPU and CUDA: {torch.allclose(w_a, w_b)} "
      f"(max |diff| {float((w_a - w_b).abs().max()):.2e}; a known defect if False)")
results = seewhy.check(gpu, x.cuda(), ["gradcam", "saliency"], steps=8)
for r in results:
    print(f"     check on cuda: {r.model}/{r.method}: {r.verdict}")
print("-- memory: peak allocated", f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
raise SystemExit(1 if bad else 0)
EOF

# -- 04 pytest ---------------------------------------------------------------------------------
step 04-pytest 300 "$PY" -m pytest -q -p no:warnings -p no:cacheprovider -rfEsxX \
    tests/methods/test_review_device.py \
    tests/methods/test_cam_contract.py \
    tests/methods/test_scorecam_precision.py \
    tests/methods/test_gradient_precision.py \
    "tests/jobs/test_cli_flags.py::test_device_flag" \
    "tests/models/test_loader.py::test_devices"

# -- 05/06 CLI ---------------------------------------------------------------------------------
WORK="$OUT/cli"
mkdir -p "$WORK"
"$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

out = Path(sys.argv[1])
rng = np.random.default_rng(0)
for i in range(3):
    a = (rng.random((180, 200, 3)) * 60).astype(np.uint8)
    a[40 + 20 * i : 110 + 20 * i, 50:140] = (200, 180 - 40 * i, 60)
    Image.fromarray(a).save(out / f"img{i}.png")
EOF
METHODS='gradcam,ig(steps=32),smoothgrad(samples=16),expected-gradients(samples=16),occlusion,rise(masks=500),scorecam'
step 05-cli-explain 240 bash -c "
    set -e
    cd '$WORK'
    $SEEWHY explain img0.png img1.png img2.png -m timm:test_resnet \
        --device cuda --method '$METHODS' --out explain-cuda --seed 3
    $SEEWHY explain img0.png img1.png img2.png -m timm:test_resnet \
        --device cpu --method '$METHODS' --out explain-cpu --seed 3 --quiet
    '$PY' - <<'PYEOF'
import numpy as np
from pathlib import Path
bad = 0
for f in sorted(Path('explain-cuda/maps').rglob('*.npy')):
    a, b = np.load(f), np.load(Path('explain-cpu/maps') / f.relative_to('explain-cuda/maps'))
    rel = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
    r = float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) if a.std() and b.std() else float('nan')
    # scorecam defaults to precision=auto: bfloat16 on the GPU, so it differs more
    tol = 0.1 if 'scorecam' in f.name else 1e-2
    ok = rel <= tol
    bad += not ok
    print(f\"{'ok  ' if ok else 'FAIL'} {f.relative_to('explain-cuda/maps')}: cuda vs cpu max diff {rel:.1e} of peak, r {r:.5f}\")
raise SystemExit(1 if bad else 0)
PYEOF
"
step 06-cli-check 180 bash -c "
    cd '$WORK'
    $SEEWHY check img0.png img1.png img2.png -m timm:test_resnet \
        --device cuda --method 'gradcam,ig(steps=16)' --out check-cuda --seed 3
"

# -- 07/08 benchmarks --------------------------------------------------------------------------
step 07-bench-gradients 300 "$PY" benchmarks/gradients.py --device cuda --cases gradients --reps 2
if [ -n "${BENCH_MORE:-}" ]; then
    step 08-bench-perturbation 300 "$PY" benchmarks/gradients.py --device cuda \
        --cases perturbation --reps 2
fi
# the tables (markdown) on their own
for f in "$OUT"/07-*.log "$OUT"/08-*.log; do
    [ -f "$f" ] && sed -n '/^<!-- gradients-cuda/,/^<!-- gradients-cuda.*:end -->/p' "$f" \
        >"${f%.log}.md"
done
rm -rf "$WORK"/explain-cpu/figures "$WORK"/explain-cuda/figures  # keep maps, summaries, logs

log "gpu_check: done; $([ "$FAILED" = 0 ] && echo "every step passed" || echo "SOME STEPS FAILED") (logs in $OUT)"
exit "$FAILED"
