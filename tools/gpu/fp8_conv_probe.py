"""FP8 convolutions and FP8 attention through cuDNN, at the Wan VAE decoder's and the 1.3B DiT's shapes.

Prints, per shape: the bf16 convolution (cuDNN through the frontend, every engine config timed, the best
kept; and PyTorch's conv2d in channels-last for comparison), the FP8 E4M3 convolution with its descales
(per tensor for the input, per output channel for the weight) and a bf16 output, with and without bias and
residual in the same graph, and each result's normalized error against a float32 convolution. Then cuDNN's
FP8 attention at the DiT's self-attention shape with O in bf16 and in FP8. The cuDNN graphs that ran are
written to $OUT (or /tmp) as JSON, to rebuild them through the backend API.

    python3 tools/gpu/fp8_conv_probe.py        # needs torch and the nvidia-cudnn-frontend wheel
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
import cudnn

from fp8_probe import nmse, timed  # (same folder: the probe this one extends)

torch.manual_seed(0)
dev = "cuda"
e4m3 = torch.float8_e4m3fn
out_dir = os.environ.get("OUT", "/tmp")
handle = cudnn.create_handle()
f32, bf16, f8 = cudnn.data_type.FLOAT, cudnn.data_type.BFLOAT16, cudnn.data_type.FP8_E4M3


def nhwc_dims(t):
    """dims [N, C, H, W] and strides of a channels-last tensor given as [N, H, W, C] memory."""
    n, h, w, c = t.shape
    return [n, c, h, w], [h * w * c, 1, w * c, c]


def best_plan(g, pack, ws_bytes_cap=1 << 30):
    """Builds every engine config, times each; returns (best ms, its index, config count, its workspace,
    best ms among the heuristics' first 8 configs: what Reel's `CuDNNPlan.choosePlan` times)."""
    try:
        g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.B, cudnn.heur_mode.FALLBACK])
    except Exception:  # noqa: BLE001 (mode B is not offered for every graph)
        g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    g.check_support()
    try:
        g.build_plans(cudnn.build_plan_policy.ALL)
    except Exception:  # noqa: BLE001 (some configs do not build; those that did are counted below)
        pass
    count = g.get_execution_plan_count()
    best = (float("inf"), -1, count, 0)
    first8 = float("inf")
    for i in range(count):
        try:
            ws_n = g.get_workspace_size_plan_at_index(i)
            if ws_n > ws_bytes_cap:
                continue
            ws = torch.empty(max(ws_n, 1), device=dev, dtype=torch.uint8)
            t = timed(lambda: g.execute_plan_at_index(pack, ws, i, handle=handle), iters=10, warm=2)
            if t < best[0]:
                best = (t, i, count, ws_n)
            if i < 8:
                first8 = min(first8, t)
        except Exception:  # noqa: BLE001 (a config that does not build or run is skipped)
            continue
    return best + (first8,)


def conv_graph(x, w, fp8, bias=None, residual=None, descales=None):
    """cuDNN graph: conv (3x3, padding 1) of channels-last x [N, H, W, C] with w [K, 3, 3, C],
    then (fp8) * descale_x * descale_w[k], + bias[k], + residual; bf16 output."""
    g = cudnn.pygraph(io_data_type=bf16, intermediate_data_type=f32, compute_data_type=f32, handle=handle)
    xd, xs = nhwc_dims(x)
    k, r, s, c = w.shape
    tx = g.tensor(name="x", dim=xd, stride=xs, data_type=f8 if fp8 else bf16)
    tw = g.tensor(name="w", dim=[k, c, r, s], stride=[c * r * s, 1, c * s, c], data_type=f8 if fp8 else bf16)
    y = g.conv_fprop(image=tx, weight=tw, padding=[1, 1], stride=[1, 1], dilation=[1, 1], compute_data_type=f32)
    pack = {tx: x, tw: w}
    if fp8:
        dx, dw = descales
        tdx = g.tensor(name="descale_x", dim=[1, 1, 1, 1], stride=[1, 1, 1, 1], data_type=f32)
        tdw = g.tensor(name="descale_w", dim=[1, k, 1, 1], stride=[k, 1, 1, 1], data_type=f32)
        y = g.mul(a=y, b=tdx, compute_data_type=f32)
        y = g.mul(a=y, b=tdw, compute_data_type=f32)
        pack.update({tdx: dx, tdw: dw})
    if bias is not None:
        tb = g.tensor(name="bias", dim=[1, k, 1, 1], stride=[k, 1, 1, 1], data_type=f32)
        y = g.add(a=y, b=tb, compute_data_type=f32)
        pack[tb] = bias
    if residual is not None:
        rd, rs = nhwc_dims(residual)
        tr = g.tensor(name="residual", dim=rd, stride=rs, data_type=bf16)
        y = g.add(a=y, b=tr, compute_data_type=f32)
        pack[tr] = residual
    n, h, wd, _ = x.shape
    out = torch.empty(n, h, wd, k, device=dev, dtype=torch.bfloat16)
    od, os_ = nhwc_dims(out)
    y.set_output(True).set_dim(od).set_stride(os_).set_data_type(bf16)
    pack[y] = out
    g.validate()
    g.build_operation_graph()
    return g, pack, out


def quantize_per_tensor(x):
    amax = x.abs().max().float().clamp(min=1e-12)
    return (x.float() * (448.0 / amax)).to(e4m3), (amax / 448.0).reshape(1, 1, 1, 1)


def quantize_per_channel(w):
    amax = w.float().abs().flatten(1).amax(dim=1).clamp(min=1e-12)
    return (w.float() / (amax / 448.0).reshape(-1, 1, 1, 1)).to(e4m3), (amax / 448.0).reshape(1, -1, 1, 1).contiguous()


def convolutions(saved):
    print("conv 3x3 (one frame, channels-last)      torch bf16 | cuDNN bf16 best (cfgs) | FP8 best (cfgs) nmse | FP8 +bias+res | bf16 nmse")
    for h, w_, c, k in [(480, 832, 96, 96), (480, 832, 288, 96), (240, 416, 192, 192), (240, 416, 576, 192),
                        (480, 832, 192, 96), (120, 208, 384, 384)]:
        flop = 2 * h * w_ * c * k * 9
        # the decoder's conv inputs are RMS-normalized and SiLU'd: roughly unit scale
        x = F.silu(torch.randn(1, h, w_, c, device=dev) * 1.5)
        wt = torch.randn(k, 3, 3, c, device=dev) / math.sqrt(9 * c)
        bias = torch.randn(1, k, 1, 1, device=dev) * 0.1
        res = torch.randn(1, h, w_, k, device=dev).bfloat16()
        ref = F.conv2d(x.permute(0, 3, 1, 2), wt.permute(0, 3, 1, 2), padding=1).permute(0, 2, 3, 1)
        xb, wb = x.bfloat16(), wt.bfloat16()
        xc = xb.permute(0, 3, 1, 2)  # channels-last view
        wc = wb.permute(0, 3, 1, 2)
        tt = timed(lambda: F.conv2d(xc, wc, padding=1))
        row = f"{h}x{w_}x{c} -> {k}  {flop / 1e9:6.1f} GFLOP  {tt:6.3f} ({flop / tt / 1e9:4.0f}) | "
        try:
            g, pack, out = conv_graph(xb, wb, fp8=False)
            t16, i16, n16, _, _ = best_plan(g, pack)
            g.execute_plan_at_index(pack, torch.empty(max(g.get_workspace_size_plan_at_index(i16), 1), device=dev, dtype=torch.uint8), i16, handle=handle)
            torch.cuda.synchronize()
            e16 = nmse(out, ref)
            row += f"{t16:6.3f} ({flop / t16 / 1e9:4.0f}, {n16}) | "
        except Exception as ex:  # noqa: BLE001
            row += f"bf16 n/a {str(ex)[:120]} | "
            e16 = float("nan")
        try:
            x8, dx = quantize_per_tensor(x)
            w8, dw = quantize_per_channel(wt)
            g, pack, out = conv_graph(x8, w8, fp8=True, descales=(dx, dw))
            t8, i8, n8, _, _ = best_plan(g, pack)
            g.execute_plan_at_index(pack, torch.empty(max(g.get_workspace_size_plan_at_index(i8), 1), device=dev, dtype=torch.uint8), i8, handle=handle)
            torch.cuda.synchronize()
            e8 = nmse(out, ref)
            row += f"{t8:6.3f} ({flop / t8 / 1e9:4.0f}, {n8}) {e8:.1e} | "
            if not saved:
                with open(os.path.join(out_dir, "fp8_conv_graph.json"), "w") as f:
                    f.write(str(g))
                saved.append(1)
            g, pack, out = conv_graph(x8, w8, fp8=True, descales=(dx, dw), bias=bias, residual=res)
            t8r, _, n8r, _, _ = best_plan(g, pack)
            row += f"{t8r:6.3f} ({n8r}) | "
        except Exception as ex:  # noqa: BLE001
            row += f"FP8 n/a {str(ex)[:300]} | "
        print(row + f"{e16:.1e}", flush=True)
        del x, wt, res, ref, xb, wb
        torch.cuda.empty_cache()


def attention(o_fp8):
    b, sq, skv, h, d = 2, 4680, 9360, 12, 128  # the DiT's 4680 x 18720 as its 2 key halves
    scale = 1 / math.sqrt(d)
    q = torch.randn(1, sq, h, d, device=dev).expand(b, sq, h, d).contiguous()
    k = torch.randn(b, skv, h, d, device=dev)
    v = torch.randn(b, skv, h, d, device=dev)
    g = cudnn.pygraph(io_data_type=f8, intermediate_data_type=f32, compute_data_type=f32, handle=handle)
    (q8, dq), (k8, dk), (v8, dv) = quantize_per_tensor(q), quantize_per_tensor(k), quantize_per_tensor(v)
    perm = lambda t: t.permute(0, 2, 1, 3)  # noqa: E731
    qb, kb, vb = perm(q8), perm(k8), perm(v8)
    o = torch.empty(b, sq, h, d, device=dev, dtype=e4m3 if o_fp8 else torch.bfloat16)
    ob = perm(o)
    ss = torch.full((1, 1, 1, 1), 448.0, device=dev)
    scalars = [dq, dk, dv, 1.0 / ss, ss, (1.0 / dv) if o_fp8 else torch.ones(1, 1, 1, 1, device=dev)]
    tq, tk, tv = (g.tensor(dim=list(t.shape), stride=list(t.stride()), data_type=f8) for t in (qb, kb, vb))
    sc = [g.tensor(dim=[1, 1, 1, 1], stride=[1, 1, 1, 1], data_type=f32) for _ in range(6)]
    to, stats, tas, tao = g.sdpa_fp8(q=tq, k=tk, v=tv, descale_q=sc[0], descale_k=sc[1], descale_v=sc[2],
                                     descale_s=sc[3], scale_s=sc[4], scale_o=sc[5], is_inference=False,
                                     attn_scale=scale, use_causal_mask=False, name="sdpa_fp8")
    to.set_output(True).set_dim(list(ob.shape)).set_stride(list(ob.stride())).set_data_type(f8 if o_fp8 else bf16)
    st = torch.empty(b, h, sq, 1, device=dev)
    stats.set_output(True).set_data_type(f32).set_dim(list(st.shape)).set_stride(list(st.stride()))
    for t in (tas, tao):
        t.set_output(True).set_dim([1, 1, 1, 1]).set_stride([1, 1, 1, 1]).set_data_type(f32)
    g.validate()
    g.build_operation_graph()
    amax = [torch.zeros(1, 1, 1, 1, device=dev) for _ in range(2)]
    pack = {tq: qb, tk: kb, tv: vb, to: ob, stats: st, tas: amax[0], tao: amax[1]}
    pack.update(dict(zip(sc, scalars)))
    t, i, n, _, _ = best_plan(g, pack)
    g.execute_plan_at_index(pack, torch.empty(max(g.get_workspace_size_plan_at_index(i), 1), device=dev, dtype=torch.uint8), i, handle=handle)
    torch.cuda.synchronize()
    ref = torch.nn.functional.scaled_dot_product_attention(perm(q), perm(k), perm(v))
    got = perm(o.float() * (dv.reshape(()) if o_fp8 else 1.0))
    flop = 4 * b * h * sq * skv * d
    print(f"attention FP8, O in {'FP8' if o_fp8 else 'bf16'}, split 2 of 4680x18720: {t:.3f} ms ({flop / t / 1e9:.0f} TFLOP/s, "
          f"{n} configs) nmse {nmse(got, ref):.1e}", flush=True)
    with open(os.path.join(out_dir, f"fp8_sdpa_graph_{'o8' if o_fp8 else 'obf16'}.json"), "w") as f:
        f.write(str(g))


def conv_nd(x, w, kt, t, bias=False, residual=False, two_d=False):
    """bf16 cuDNN conv of channels-last frames x [1, T, H, W, C] with w [K, kt, 3, 3, C] (no time padding,
    so T - kt + 1 output frames), as 5-D descriptors, or (two_d, T = kt = 1) as 4-D ones."""
    g = cudnn.pygraph(io_data_type=bf16, intermediate_data_type=f32, compute_data_type=f32, handle=handle)
    _, _, h, wd, c = x.shape
    k = w.shape[0]
    to = t - kt + 1
    if two_d:
        tx = g.tensor(name="x", dim=[1, c, h, wd], stride=[h * wd * c, 1, wd * c, c], data_type=bf16)
        tw = g.tensor(name="w", dim=[k, c, 3, 3], stride=[9 * c, 1, 3 * c, c], data_type=bf16)
        y = g.conv_fprop(image=tx, weight=tw, padding=[1, 1], stride=[1, 1], dilation=[1, 1], compute_data_type=f32)
        od, ost = [1, k, h, wd], [h * wd * k, 1, wd * k, k]
        bd = [1, k, 1, 1]
    else:
        tx = g.tensor(name="x", dim=[1, c, t, h, wd], stride=[t * h * wd * c, 1, h * wd * c, wd * c, c], data_type=bf16)
        tw = g.tensor(name="w", dim=[k, c, kt, 3, 3], stride=[kt * 9 * c, 1, 9 * c, 3 * c, c], data_type=bf16)
        y = g.conv_fprop(image=tx, weight=tw, padding=[0, 1, 1], stride=[1, 1, 1], dilation=[1, 1, 1], compute_data_type=f32)
        od, ost = [1, k, to, h, wd], [to * h * wd * k, 1, h * wd * k, wd * k, k]
        bd = [1, k, 1, 1, 1]
    out = torch.empty(to * h * wd * k, device=dev, dtype=torch.bfloat16)
    pack = {tx: x, tw: w}
    if bias:
        tb = g.tensor(name="bias", dim=bd, stride=[k] + [1] * (len(bd) - 1), data_type=bf16)
        y = g.add(a=y, b=tb, compute_data_type=f32)
        pack[tb] = torch.randn(k, device=dev).bfloat16()
    if residual:
        tr = g.tensor(name="residual", dim=od, stride=ost, data_type=bf16)
        y = g.add(a=y, b=tr, compute_data_type=f32)
        pack[tr] = torch.randn(to * h * wd * k, device=dev).bfloat16()
    y.set_output(True).set_dim(od).set_stride(ost).set_data_type(bf16)
    pack[y] = out
    g.validate()
    g.build_operation_graph()
    return best_plan(g, pack)


def layouts():
    print("bf16 conv forms (one output frame), best of all configs / best of the first 8 (configs):")
    for h, w_, c in [(480, 832, 96), (240, 416, 192)]:
        for name, kt, t, cin, two_d in [("2-D 1 tap", 1, 1, c, True), ("3-D T=1 k1", 1, 1, c, False),
                                         ("2-D taps as channels 2C", 1, 1, 2 * c, True), ("3-D T=2 k2 (pair)", 2, 2, c, False),
                                         ("2-D taps as channels 3C", 1, 1, 3 * c, True), ("3-D T=3 k3 (joined)", 3, 3, c, False)]:
            x = torch.randn(1, t, h, w_, cin, device=dev).bfloat16()
            w = (torch.randn(c, kt, 3, 3, cin, device=dev) / math.sqrt(9 * kt * cin)).bfloat16()
            flop = 2 * h * w_ * c * cin * 9 * kt
            cells = []
            for bias, res in [(False, False), (True, True)]:
                try:
                    t_best, _, n, _, first8 = conv_nd(x, w, kt, t, bias, res, two_d)
                    cells.append(f"{t_best:.3f}/{first8:.3f} ({flop / t_best / 1e9:.0f} TFLOP/s, {n})")
                except Exception as ex:  # noqa: BLE001
                    cells.append(f"n/a {str(ex)[:100]}")
            print(f"  {h}x{w_}x{c} {name:26s} plain {cells[0]} | +bias+residual {cells[1]}", flush=True)
            del x, w
            torch.cuda.empty_cache()


if __name__ == "__main__" and sys.argv[1:] == ["layouts"]:
    print("torch", torch.__version__, "cudnn backend", cudnn.backend_version(), torch.cuda.get_device_name(), flush=True)
    layouts()
    sys.exit(0)

if __name__ == "__main__":
    print("torch", torch.__version__, "cudnn backend", cudnn.backend_version(), torch.cuda.get_device_name(), flush=True)
    convolutions([])
    for o_fp8 in (False, True):
        try:
            attention(o_fp8)
        except Exception as ex:  # noqa: BLE001
            print(f"attention FP8 (O {'FP8' if o_fp8 else 'bf16'}) n/a: {str(ex)[:400]}", flush=True)
    sys.exit(0)
