"""On CUDA: the ``spconv`` backend against the ``torch`` backend, and bf16 autocast against float32.

Run on a GPU machine (part of benchmarks/gpu_throughput.sh). Same weights on both backends; values
and gradients (input features and weights) compared as relative norms ``|a - b| / |b|``:

* single convolutions (submanifold 3³ and 5³, strided 2³ and 3³, transposed 2³) on two random
  scenes in a 48³ grid: float32 to 1e-5 (the backends only sum in different orders), float64 to
  1e-12 where spconv runs in float64 (it reports so when it does not);
* MinkUNet14A through ``PointNetwork`` on a 40 k-point room, eval mode: float32 output to 1e-4,
  weight gradients to 1e-3 (26 layers of different summation orders);
* bf16 autocast (both backends) against float32 torch, same network: output 2e-2, weight gradients
  2e-1 (the tolerances of tests/nn/test_amp.py, where the reason is given);
* the ``torch`` backend's other algorithms (profile_torch_conv.py's variants ``fused``,
  ``grouped``, ``table-all``) against its default on the same network: float32 to 1e-5 (output) and 1e-4 (weight gradients),
  bf16 autocast against the default's float32 with the bf16 tolerances. On a GPU of compute
  capability 9.x or 10.x, grouped bf16 runs CUTLASS's grouped GEMM kernels: their first check.

Prints one line per check; exits 1 when any fails, 2 when spconv is not installed (the torch bf16
checks still run). ``--device cpu`` rehearses the script on a machine without a GPU: only the torch
checks run there (spconv's CPU backward needs CUDA, see ENVIRONMENT.md), and it exits 0 when that
check passes.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

import torch
from profile_torch_conv import variants

from hiclr.nn import PointNetwork
from hiclr.nn.sparse import SparseTensor, conv3d
from hiclr.nn.sparse.backends import torch_backend

DEVICE = "cuda"  # set from --device in main()
ALGORITHMS = ("fused", "grouped", "table-all")  # profile_torch_conv.py's variants checked against the default

CONVS = {
    "subm k3": {"kernel_size": 3},
    "subm k5": {"kernel_size": 5},
    "down k2": {"kernel_size": 2, "stride": 2},
    "down k3": {"kernel_size": 3, "stride": 2},
    "up k2": {"kernel_size": 2, "stride": 2, "transposed": True},
}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp(min=1e-300))


def conv_case(backend: str, kw: dict, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    coords = (torch.rand(2, 48, 48, 48, generator=g) < 0.05).nonzero().to(torch.int32)
    feats = torch.randn(coords.shape[0], 32, generator=g, dtype=torch.float64)
    w = torch.randn(kw["kernel_size"] ** 3, 32, 48, generator=g, dtype=torch.float64) * 0.1
    x = SparseTensor.from_coords(coords.to(DEVICE), feats.to(DEVICE, dtype), backend=backend)
    if kw.get("transposed"):  # from the stride-2 level of the same context
        down = conv3d(x, torch.randn(8, 32, 32, generator=g, dtype=torch.float64).to(DEVICE, dtype) * 0.2,
                      kernel_size=2, stride=2)
        x = down
    x = x.replace(x.feats.detach().requires_grad_(True))
    w = w.to(DEVICE, dtype).requires_grad_(True)
    out = conv3d(x, w, **kw)
    r = torch.randn(out.feats.shape, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    gx, gw = torch.autograd.grad((out.feats * r).sum(), [x.feats, w])
    return out.feats, gx, gw


def room(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    floor = torch.rand(n // 2, 3, generator=g) * torch.tensor([6.0, 5.0, 0.0])
    box = torch.rand(n - n // 2, 3, generator=g) * torch.tensor([1.5, 1.0, 1.0]) + torch.tensor([2.0, 2.0, 0.0])
    return torch.cat([floor, box]).to(DEVICE), (torch.rand(n, 3, generator=g) * 2 - 1).to(DEVICE)


def network_case(net: PointNetwork, amp: bool, points: int) -> tuple[torch.Tensor, torch.Tensor]:
    pts, fts = room(points)
    net.zero_grad(set_to_none=True)
    with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=amp):
        rows, _, _ = net.forward_rows([pts], [fts])
    r = torch.randn(rows.shape, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    (rows.float() * r).sum().backward()
    return rows.detach().float(), torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])


def report(name: str, diffs: dict[str, float], tol: float) -> bool:
    ok = all(d < tol for d in diffs.values())
    text = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
    print(f"{name:40s} {text} (tol {tol:g}) -> {'OK' if ok else 'FAIL'}")
    return ok


def main() -> int:
    global DEVICE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: a rehearsal without a GPU (the torch bf16 check only)")
    ap.add_argument("--points", type=int, default=40_000, help="points of the room for the network checks")
    args = ap.parse_args()
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device (use --device cpu to rehearse the torch bf16 check)")
    has_spconv = DEVICE == "cuda" and importlib.util.find_spec("spconv") is not None
    results = []
    if has_spconv:
        for name, kw in CONVS.items():
            for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
                try:
                    a = conv_case("spconv", kw, dtype)
                except Exception as exc:  # noqa: BLE001 - spconv may not run this dtype
                    print(f"spconv {name} {dtype}: not supported ({type(exc).__name__}: {str(exc)[:80]})")
                    continue
                b = conv_case("torch", kw, dtype)
                results.append(report(f"spconv vs torch {name} {str(dtype)[6:]}",
                                      {"out": rel(a[0], b[0]), "grad x": rel(a[1], b[1]), "grad w": rel(a[2], b[2])}, tol))
    torch.manual_seed(0)
    ref = PointNetwork("MinkUNet14A", 3, 64, voxel_size=0.05, backend="torch").to(DEVICE).eval()
    out32, g32 = network_case(ref, amp=False, points=args.points)
    o, g = network_case(ref, amp=True, points=args.points)
    results.append(report("torch bf16 vs fp32 MinkUNet14A", {"out": rel(o, out32)}, 2e-2)
                   and report("torch bf16 vs fp32 MinkUNet14A", {"weight grads": rel(g, g32)}, 2e-1))
    for name in ALGORITHMS:
        with torch_backend.settings(**variants(torch.device(DEVICE))[name]):
            o32, g32_ = network_case(ref, amp=False, points=args.points)
            o16, g16 = network_case(ref, amp=True, points=args.points)
        results.append(report(f"torch {name} vs default fp32", {"out": rel(o32, out32)}, 1e-5)
                       and report(f"torch {name} vs default fp32", {"weight grads": rel(g32_, g32)}, 1e-4))
        results.append(report(f"torch {name} bf16 vs default fp32", {"out": rel(o16, out32)}, 2e-2)
                       and report(f"torch {name} bf16 vs default fp32", {"weight grads": rel(g16, g32)}, 2e-1))
    if has_spconv:
        sp = PointNetwork("MinkUNet14A", 3, 64, voxel_size=0.05, backend="spconv").to(DEVICE).eval()
        sp.load_state_dict(ref.state_dict())
        o, g = network_case(sp, amp=False, points=args.points)
        results.append(report("spconv vs torch MinkUNet14A fp32", {"out": rel(o, out32)}, 1e-4)
                       and report("spconv vs torch MinkUNet14A fp32", {"weight grads": rel(g, g32)}, 1e-3))
        try:
            o, g = network_case(sp, amp=True, points=args.points)
            results.append(report("spconv bf16 vs torch fp32", {"out": rel(o, out32)}, 2e-2)
                           and report("spconv bf16 vs torch fp32", {"weight grads": rel(g, g32)}, 2e-1))
        except Exception as exc:  # noqa: BLE001
            print(f"spconv under bf16 autocast: failed ({type(exc).__name__}: {str(exc)[:100]})")
            results.append(False)
    elif DEVICE == "cuda":
        print("spconv is not installed: pip install spconv-cu126 (see README), then rerun")
    if not all(results):
        return 1
    return 0 if has_spconv or DEVICE == "cpu" else 2


if __name__ == "__main__":
    sys.exit(main())
