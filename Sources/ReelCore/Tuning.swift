import Foundation

/// A device's performance choices, given when its streams are made (`CUDABackend(device:tuning:)`); models
/// read them from their backend. The defaults are the measured best (docs/perf-notes.md); each switch exists
/// to measure the alternative again. Library code never reads the environment for these: the command-line
/// tool does, once (`fromEnvironment`).
public struct Tuning: Sendable, Equatable {
    /// `linearGELU` through cuBLASLt's GELU epilogue (off: a GEMM, then a GELU pass). `REEL_GELU_EPILOGUE=0`.
    public var geluEpilogue = true
    /// FP8 GEMMs accumulate without cuBLASLt's periodic promotion to float32 (its error is a thousandth of
    /// FP8's own rounding, its gain measured in docs/perf-notes.md, session 6). `REEL_FP8_FAST_ACCUM=0`.
    public var fp8FastAccumulation = true
    /// Split-key attention: nil picks the number of key parts by the SMs' wave fill; a number forces it
    /// (1: never split). `REEL_ATTN_SPLITS`.
    public var attentionSplits: Int?
    /// Attention through Reel's Hopper kernel (wgmma and TMA, `attention_sm90.cu`) where it applies (an sm_90 GPU,
    /// bf16, D = Dv = 128, no bias) and the keys number at least `hopperAttentionMinKeys`, instead of cuDNN's.
    /// Measured on an H100 (session 17): 642 TFLOP/s against cuDNN's 588 at the DiT's 4680 x 18720 x 12 heads, 285
    /// against 433 at the cross-attention's 512 keys. `REEL_ATTN_HOPPER=0` turns it off.
    public var hopperAttention = true
    /// The fewest keys for which `hopperAttention` takes a call (shorter ones stay on cuDNN: at 512 keys it is 1.5x
    /// slower; between 512 and 18720 keys it has not been measured, and every self-attention of the DiTs at their
    /// sizes has at least 4680). `REEL_ATTN_HOPPER_MIN_KEYS`.
    public var hopperAttentionMinKeys = 8192
    /// The Hopper kernel's calls (one batch) cut into key parts only the query tiles that would leave the last wave
    /// part-empty, chosen by a model of the SMs' waves (`HopperAttentionSchedule.filled`); off: every tile in the
    /// parts of cuDNN's wave-fill rule. H100, session 18 (bench-ops, the same call): 674 against 650 TFLOP/s at the
    /// 1.3B's 4680 x 18720 x 12 heads, 623 against 628 at the 14B's 40 heads (within the run-to-run spread of ~2%),
    /// the 5B's shape the same schedule either way; `reel bench` 1.3B end to end 34.2 against 33.5 FPS.
    /// `REEL_ATTN_HOPPER_FILL=0` turns it off.
    public var hopperFillLastWave = true
    /// FP8 attention (`--attention fp8`) through Reel's Hopper FP8 kernel (`attn_sm90_d128_e4m3`) instead of cuDNN's FP8
    /// graph where it applies (an sm_90 GPU, bf16, D = 128): as fast (514 against 519 TFLOP/s, H100, session 17) and
    /// closer to bf16 (LongLive parity at head dim 128: 7.2e-2 against 1.3e-1). `REEL_ATTN_FP8_HOPPER=0` turns it off.
    public var hopperFP8Attention = true
    /// Row ops (LayerNorm, RMSNorm, adaLN, adaLN to FP8/INT8 rows, q/k RMSNorm + RoPE) on rows of 2049 to 8192 values
    /// held in registers by a block of 128 threads a row (the 14B's 5120, the 5B's 3072, where the three scalar passes
    /// took 34% of the 14B's DiT time in session 18's profile); off: those three passes. Session 19, H100: check-ops
    /// 207/207, the 14B (every linear FP8) DiT 1530.9 -> 1248.5 ms a block, the 5B 2200.6 -> 1894.5 ms.
    /// `REEL_WIDE_ROWS=0` turns it off.
    public var wideRowKernels = true
    /// cuDNN convolution engines timed at each new shape (the rest are not tried). `REEL_CUDNN_CANDIDATES`.
    public var cudnnConvolutionCandidates = 8
    /// The Wan VAE decoder's full-resolution causal convs as a 2-frame pair + the new frame
    /// (`CausalConv3d.withTimeTaps`) instead of joining the cached frames by a copy. `REEL_VAE_TIME_TAPS=0`.
    public var vaeTimeTaps = true
    /// Frames per slice of the Wan VAE decoder's layers after its last time upsampling (0: the whole chunk).
    /// `REEL_VAE_SLICE_FRAMES`.
    public var vaeSliceFrames = 1

    public init() {}

    /// The defaults.
    public static let standard = Tuning()

    /// The defaults with the switches set in `environment` (the variables named on each property); a value
    /// that does not parse leaves the default.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Tuning {
        var t = Tuning()
        if environment["REEL_GELU_EPILOGUE"] == "0" { t.geluEpilogue = false }
        if environment["REEL_FP8_FAST_ACCUM"] == "0" { t.fp8FastAccumulation = false }
        if let s = environment["REEL_ATTN_SPLITS"].flatMap(Int.init), s >= 1 { t.attentionSplits = s }
        if let v = environment["REEL_ATTN_HOPPER"], v == "0" || v == "1" { t.hopperAttention = v == "1" }
        if let n = environment["REEL_ATTN_HOPPER_MIN_KEYS"].flatMap(Int.init), n >= 1 { t.hopperAttentionMinKeys = n }
        if let v = environment["REEL_ATTN_HOPPER_FILL"], v == "0" || v == "1" { t.hopperFillLastWave = v == "1" }
        if let v = environment["REEL_ATTN_FP8_HOPPER"], v == "0" || v == "1" { t.hopperFP8Attention = v == "1" }
        if let c = environment["REEL_CUDNN_CANDIDATES"].flatMap(Int.init), c >= 1 { t.cudnnConvolutionCandidates = c }
        if environment["REEL_VAE_TIME_TAPS"] == "0" { t.vaeTimeTaps = false }
        if let v = environment["REEL_WIDE_ROWS"], v == "0" || v == "1" { t.wideRowKernels = v == "1" }
        if let s = environment["REEL_VAE_SLICE_FRAMES"].flatMap(Int.init), s >= 0 { t.vaeSliceFrames = s }
        return t
    }
}
