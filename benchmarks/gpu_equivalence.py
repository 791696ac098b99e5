"""CUDA against CPU: the same networks and the same point↔pixel pairing give the same answers.

Run on a machine with a GPU (part of benchmarks/gpu_check.sh). MinkUNet14A and SPVCNN are built
once, their state dict copied to the GPU, and outputs and weight gradients compared in float64 (in
float32 the devices' different summation orders alone give ~1e-4 relative gradient differences),
outputs relative to the largest magnitude, all weight gradients by their relative norm. Measured on
an H100: MinkUNet14A 1e-15. SPVCNN 3e-6, because voxelisation keeps point coordinates (and so its
trilinear interpolation weights) in float32 on purpose, and the GPU rounds those with fused
multiply-adds; its tolerance is set to match.
Prints the differences; exits 1 when any exceeds its tolerance.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from hiclr.geometry import pair_points_with_view
from hiclr.nn import PointNetwork


def scene(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    floor = torch.rand(n // 2, 3, generator=g) * torch.tensor([4.0, 3.0, 0.0])
    box = torch.rand(n - n // 2, 3, generator=g) * torch.tensor([1.0, 1.0, 0.8]) + torch.tensor([1.0, 1.0, 0.0])
    return torch.cat([floor, box]), torch.rand(n, 3, generator=g) * 2 - 1


def network_check(arch: str, tol: float) -> bool:
    torch.manual_seed(0)
    cpu = PointNetwork(arch, 3, 64, voxel_size=0.05, backend="torch").double().eval()
    gpu = PointNetwork(arch, 3, 64, voxel_size=0.05, backend="torch").double().eval().cuda()
    gpu.load_state_dict(cpu.state_dict())
    data = [scene(20000, 1), scene(12000, 2)]
    outs = []
    for net, dev in ((cpu, "cpu"), (gpu, "cuda")):
        pts = [p.double().to(dev) for p, _ in data]
        fts = [f.double().to(dev) for _, f in data]
        out = torch.cat(net(pts, fts))
        net.zero_grad()
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=dev).view_as(out)).sum().backward()
        grads = [p.grad.detach().cpu() for p in net.parameters() if p.grad is not None]
        outs.append((out.detach().cpu(), grads))
    d_out = ((outs[0][0] - outs[1][0]).abs().max() / outs[0][0].abs().max()).item()
    # all weight gradients as one vector: ||g_cpu - g_cuda|| / ||g_cpu|| (per tensor would divide noise by
    # noise for biases in front of batch norm, whose true gradient is zero)
    ga, gb = torch.cat([g.flatten() for g in outs[0][1]]), torch.cat([g.flatten() for g in outs[1][1]])
    d_grad = ((ga - gb).norm() / ga.norm()).item()
    ok = d_out < tol and d_grad < tol
    print(f"{arch}: max |cpu - cuda| / max |cpu|: output {d_out:.2e}, weight grads (relative norm) {d_grad:.2e} (tol {tol:g}) -> {'OK' if ok else 'FAIL'}")
    return ok


def pairing_check() -> bool:
    rng = np.random.default_rng(0)
    pts = rng.uniform([-2, -2, 0.5], [2, 2, 5], (150000, 3)).astype(np.float32)
    K = np.array([[577.87, 0, 319.5], [0, 577.87, 239.5], [0, 0, 1]], np.float32)
    depth = rng.uniform(0.5, 5, (480, 640)).astype(np.float32)
    res = []
    for dev in ("cpu", "cuda"):
        out = pair_points_with_view(torch.as_tensor(pts, device=dev), torch.as_tensor(K, device=dev),
                                    torch.eye(4, device=dev), torch.as_tensor(depth, device=dev), 640, 480,
                                    mode="relative", rel=0.25)
        res.append([o.cpu() for o in out])
    ok = all(torch.equal(a, b) for a, b in zip(*res))
    print(f"pairing: cpu and cuda pairs identical ({len(res[0][0]):,} pairs) -> {'OK' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    results = [network_check("MinkUNet14A", 1e-9), network_check("SPVCNN", 1e-5), pairing_check()]
    sys.exit(0 if all(results) else 1)
