"""FP8 feasibility on the GPU machine: library rates and errors at the 1.3B DiT's shapes.

Prints, for the DiT's GEMMs (4680 rows) and its self-attention (4680 queries x 18720 keys, 12 heads
of 128): bf16 time, FP8 (e4m3) time, and the FP8 result's normalized error against an fp32
reference. Attention goes through cuDNN (the frontend's Python module, carried as a wheel); the
bf16 attention is also timed with the keys split in two halves as a batch of 2, to see whether
cuDNN's kernel loses time to wave quantization (444 tiles on 132 SMs).

    python3 tools/gpu/fp8_probe.py            # tables
    python3 tools/gpu/fp8_probe.py fp8-graph  # builds only the FP8 SDPA graph (run with cuDNN's
                                              # backend log on, to read the graph it is given)
"""
import math
import sys

import torch
import cudnn

torch.manual_seed(0)
dev = "cuda"
e4m3 = torch.float8_e4m3fn


def timed(fn, iters=20, warm=5):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(iters):
        fn()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / iters


def nmse(x, ref):
    x, ref = x.float(), ref.float()
    return ((x - ref).pow(2).sum() / ref.pow(2).sum()).item()


def quantize(x):
    """Per-tensor e4m3 with the amax mapped to 448; returns (fp8, descale as a [1,1,1,1] fp32 tensor)."""
    amax = x.abs().max().float().clamp(min=1e-12)
    scale = 448.0 / amax
    return (x.float() * scale).to(e4m3), (1.0 / scale).reshape(1, 1, 1, 1)


def gemms():
    print("GEMM (M x N x K)        bf16 ms  TFLOP/s | fp8 tensor ms TFLOP/s nmse   | fp8 rowwise ms TFLOP/s nmse")
    for m, n, k in [(4680, 1536, 1536), (4680, 8960, 1536), (4680, 1536, 8960), (14040, 1536, 1536)]:
        a = torch.randn(m, k, device=dev).bfloat16()
        w = (torch.randn(n, k, device=dev) / math.sqrt(k)).bfloat16()
        ref = a.float() @ w.float().t()
        flop = 2 * m * n * k
        t16 = timed(lambda: a @ w.t())
        e16 = nmse(a @ w.t(), ref)
        a8, da = quantize(a)
        w8, dw = quantize(w)
        da1, dw1 = da.reshape(()), dw.reshape(())
        f = lambda: torch._scaled_mm(a8, w8.t(), scale_a=da1, scale_b=dw1, out_dtype=torch.bfloat16)
        t8 = timed(f)
        e8 = nmse(f(), ref)
        # rowwise: one scale per row of a and per output column
        sa = a.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 448.0
        sw = w.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 448.0
        ar = (a.float() / sa).to(e4m3)
        wr = (w.float() / sw).to(e4m3)
        try:
            g = lambda: torch._scaled_mm(ar, wr.t(), scale_a=sa, scale_b=sw.t().contiguous(), out_dtype=torch.bfloat16)
            tr = timed(g)
            er = nmse(g(), ref)
            row = f"{tr:8.3f} {flop / tr / 1e9:6.0f} {er:.1e}"
        except Exception as ex:  # noqa: BLE001
            row = f"n/a ({str(ex)[:60]})"
        print(f"{m:5d} x {n:4d} x {k:4d}   {t16:7.3f} {flop / t16 / 1e9:7.0f}  (bf16 nmse {e16:.1e}) | "
              f"{t8:7.3f} {flop / t8 / 1e9:6.0f} {e8:.1e} | {row}")


def qkv(b, sq, skv, h=12, d=128):
    """Reel's [B, L, H, D] memory; q and k RMS-normalized over H*D and scaled by 1.5 like the DiT's q/k norm."""
    def normed(s):
        x = torch.randn(b, s, h * d, device=dev)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * 1.5
        return x.reshape(b, s, h, d)
    return normed(sq), normed(skv), torch.randn(b, skv, h, d, device=dev)


def as_bhsd(x):
    return x.permute(0, 2, 1, 3)  # a view: dims [B, H, S, D] over [B, S, H, D] memory


def reference(q, k, v, scale):
    out = []
    for i in range(q.shape[2]):  # per head, fp32
        qi, ki, vi = q[:, :, i].float(), k[:, :, i].float(), v[:, :, i].float()
        p = torch.softmax(qi @ ki.transpose(-1, -2) * scale, dim=-1)
        out.append(p @ vi)
    return torch.stack(out, dim=2)


handle = cudnn.create_handle()


def cudnn_bf16(q, k, v, scale):
    g = cudnn.pygraph(io_data_type=cudnn.data_type.BFLOAT16, intermediate_data_type=cudnn.data_type.FLOAT,
                      compute_data_type=cudnn.data_type.FLOAT, handle=handle)
    qb, kb, vb = (as_bhsd(x.bfloat16().contiguous()) for x in (q, k, v))
    o = torch.empty_like(qb.permute(0, 2, 1, 3).contiguous())
    ob = as_bhsd(o)
    tq, tk, tv = g.tensor_like(qb), g.tensor_like(kb), g.tensor_like(vb)
    to, _ = g.sdpa(q=tq, k=tk, v=tv, attn_scale=scale, generate_stats=False, name="sdpa")
    to.set_output(True).set_dim(list(ob.shape)).set_stride(list(ob.stride()))
    g.validate(); g.build_operation_graph(); g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    g.check_support(); g.build_plans()
    ws = torch.empty(g.get_workspace_size(), device=dev, dtype=torch.uint8)
    pack = {tq: qb, tk: kb, tv: vb, to: ob}
    return (lambda: g.execute(pack, ws, handle=handle)), o


def cudnn_fp8(q, k, v, scale):
    f32, f8 = cudnn.data_type.FLOAT, cudnn.data_type.FP8_E4M3
    g = cudnn.pygraph(io_data_type=f8, intermediate_data_type=f32, compute_data_type=f32, handle=handle)
    (q8, dq), (k8, dk), (v8, dv) = quantize(q), quantize(k), quantize(v)
    qb, kb, vb = as_bhsd(q8), as_bhsd(k8), as_bhsd(v8)
    o8 = torch.empty(q.shape, device=dev, dtype=e4m3)
    ob = as_bhsd(o8)
    # P in [0, 1]: scale_s maps 1 to 448. O is a convex mix of V's rows: V's scale fits it.
    ss = torch.full((1, 1, 1, 1), 448.0, device=dev)
    ds = 1.0 / ss
    so = 1.0 / dv
    amax_s = torch.zeros(1, 1, 1, 1, device=dev)
    amax_o = torch.zeros(1, 1, 1, 1, device=dev)
    tq, tk, tv = (g.tensor(dim=list(x.shape), stride=list(x.stride()), data_type=f8) for x in (qb, kb, vb))
    sc = [g.tensor(dim=[1, 1, 1, 1], stride=[1, 1, 1, 1], data_type=f32) for _ in range(6)]
    to, _, tas, tao = g.sdpa_fp8(q=tq, k=tk, v=tv, descale_q=sc[0], descale_k=sc[1], descale_v=sc[2],
                                 descale_s=sc[3], scale_s=sc[4], scale_o=sc[5], is_inference=True,
                                 attn_scale=scale, use_causal_mask=False, name="sdpa_fp8")
    to.set_output(True).set_dim(list(ob.shape)).set_stride(list(ob.stride())).set_data_type(f8)
    for t in (tas, tao):
        t.set_output(True).set_dim([1, 1, 1, 1]).set_stride([1, 1, 1, 1]).set_data_type(f32)
    g.validate(); g.build_operation_graph(); g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    g.check_support(); g.build_plans()
    ws = torch.empty(max(g.get_workspace_size(), 1), device=dev, dtype=torch.uint8)
    pack = {tq: qb, tk: kb, tv: vb, to: ob, sc[0]: dq, sc[1]: dk, sc[2]: dv, sc[3]: ds, sc[4]: ss, sc[5]: so,
            tas: amax_s, tao: amax_o}
    return (lambda: g.execute(pack, ws, handle=handle)), (lambda: o8.float() * dv.reshape(()))


def attention():
    d = 128
    scale = 1 / math.sqrt(d)
    print("\nattention (B, Lq, Lk, 12 heads of 128)  bf16 ms TFLOP/s nmse  | fp8 ms TFLOP/s nmse")
    for b, sq, skv in [(1, 4680, 18720), (2, 4680, 9360), (1, 9360, 18720), (1, 4680, 9360), (1, 4680, 14040)]:
        q, k, v = qkv(b, sq, skv)
        flop = 4 * b * 12 * sq * skv * d
        run16, o16 = cudnn_bf16(q, k, v, scale)
        t16 = timed(run16)
        ref = reference(q, k, v, scale) if b == 1 and skv == 18720 and sq == 4680 else None
        e16 = nmse(o16, ref) if ref is not None else float("nan")
        try:
            run8, o8 = cudnn_fp8(q, k, v, scale)
            t8 = timed(run8)
            run8()
            torch.cuda.synchronize()
            e8 = nmse(o8(), ref) if ref is not None else float("nan")
            row8 = f"{t8:7.3f} {flop / t8 / 1e9:6.0f} {e8:.1e}"
        except Exception as ex:  # noqa: BLE001
            row8 = f"n/a: {str(ex)[:300]}"
        print(f"{b} x {sq:5d} x {skv:5d}                  {t16:7.3f} {flop / t16 / 1e9:6.0f} {e16:.1e} | {row8}")
        del q, k, v
        torch.cuda.empty_cache()


if __name__ == "__main__":
    print("torch", torch.__version__, "cudnn backend", cudnn.backend_version(), torch.cuda.get_device_name())
    if sys.argv[1:] == ["fp8-graph"]:
        q, k, v = qkv(1, 4680, 18720)
        run8, _ = cudnn_fp8(q, k, v, 1 / math.sqrt(128))
        run8()
        torch.cuda.synchronize()
        print("fp8 graph built and ran")
    else:
        gemms()
        attention()
