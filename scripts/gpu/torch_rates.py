"""PyTorch's rates for the shapes `reel bench-ops --backend cuda` measures, on the same GPU and in
the same call, so Reel's figures can be read against the libraries PyTorch uses (cuBLAS, SDPA)."""
import torch
import torch.nn.functional as F

def bench(fn, reps=20):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record(); fn(); end.record(); torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2] / 1e3

dev = "cuda"
print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
for m, n, k in [(8192, 8192, 8192), (4680, 1536, 1536), (4680, 8960, 1536), (4680, 1536, 8960)]:
    a = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
    w = torch.randn(n, k, device=dev, dtype=torch.bfloat16)
    t = bench(lambda: a @ w.t())
    print(f"torch gemm {m}x{n}x{k} (M x N x K): {t*1e3:.3f} ms {2*m*n*k/t/1e12:.0f} TFLOP/s")
for lq, lk, h, d, name in [(4680, 18720, 12, 128, "self"), (4680, 512, 12, 128, "cross"), (6240, 6240, 1, 384, "vae")]:
    q = torch.randn(1, h, lq, d, device=dev, dtype=torch.bfloat16)
    k = torch.randn(1, h, lk, d, device=dev, dtype=torch.bfloat16)
    v = torch.randn(1, h, lk, d, device=dev, dtype=torch.bfloat16)
    for backend in ["FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION"]:
        try:
            with torch.nn.attention.sdpa_kernel(getattr(torch.nn.attention.SDPBackend, backend)):
                t = bench(lambda: F.scaled_dot_product_attention(q, k, v))
            print(f"torch sdpa {name} q{lq} k{lk} h{h} d{d} {backend}: {t*1e3:.3f} ms {4*lq*lk*d*h/t/1e12:.0f} TFLOP/s")
        except Exception as e:
            print(f"torch sdpa {name} {backend}: unavailable ({type(e).__name__})")
x = torch.empty(1 << 30, device=dev, dtype=torch.uint8); y = torch.empty_like(x)
t = bench(lambda: y.copy_(x))
print(f"torch device copy 1 GiB: {2 * (1 << 30) / t / 1e12:.2f} TB/s (read + write)")
