import ReelCore

/// The shape of a causal Wan DiT (LongLive `CausalWanModel`): Wan2.1 T2V (LongLive 1.0) or Wan2.2 TI2V-5B
/// (LongLive 2.0, whose blocks are the same layers with 48 latent channels; docs/longlive2.md).
public struct WanDiTConfig: Codable, Sendable, Equatable {
    public var dim: Int
    public var ffnDim: Int
    public var heads: Int
    public var layers: Int
    public var inChannels: Int
    public var outChannels: Int
    /// Sinusoidal timestep embedding width.
    public var freqDim: Int
    /// Width of the text encoder's output (umT5-XXL: 4096).
    public var textDim: Int
    /// Prompt embeddings are zero-padded to this many tokens; cross-attention sees all of them.
    public var textLength: Int
    /// Spatial patch (the temporal patch is 1).
    public var patch: Int
    public var eps: Float
    /// LayerNorm with affine before cross-attention (`norm3`); on for every released Wan2.1 T2V model.
    public var crossAttentionNorm: Bool

    public init(dim: Int, ffnDim: Int, heads: Int, layers: Int, inChannels: Int = 16, outChannels: Int = 16,
                freqDim: Int = 256, textDim: Int = 4096, textLength: Int = 512, patch: Int = 2,
                eps: Float = 1e-6, crossAttentionNorm: Bool = true) {
        self.dim = dim; self.ffnDim = ffnDim; self.heads = heads; self.layers = layers
        self.inChannels = inChannels; self.outChannels = outChannels; self.freqDim = freqDim
        self.textDim = textDim; self.textLength = textLength; self.patch = patch; self.eps = eps
        self.crossAttentionNorm = crossAttentionNorm
    }

    public var headDim: Int { dim / heads }

    /// Wan2.1-T2V-1.3B (LongLive's base model).
    public static let wan1_3B = WanDiTConfig(dim: 1536, ffnDim: 8960, heads: 12, layers: 30)
    /// Wan2.1-T2V-14B.
    public static let wan14B = WanDiTConfig(dim: 5120, ffnDim: 13824, heads: 40, layers: 40)
    /// Wan2.2-TI2V-5B (LongLive 2.0's base model; NVlabs/LongLive `wan_5b/configs/wan_ti2v_5B.py`): the Wan2.2
    /// VAE's 48 latent channels in and out, heads of 128.
    public static let wan5B = WanDiTConfig(dim: 3072, ffnDim: 14336, heads: 24, layers: 30, inChannels: 48, outChannels: 48)

    /// Checks the invariants the model code relies on.
    public func validate() throws {
        guard dim > 0, heads > 0, dim % heads == 0 else {
            throw ReelError.weights(message: "dim \(dim) is not divisible by \(heads) heads")
        }
        guard headDim % 2 == 0, headDim >= 6 else {
            throw ReelError.weights(message: "head dim \(headDim) must be even and >= 6 for 3D RoPE")
        }
        guard layers > 0, ffnDim > 0, patch > 0, inChannels > 0, outChannels > 0, freqDim % 2 == 0 else {
            throw ReelError.weights(message: "invalid DiT configuration \(self)")
        }
    }
}

/// Scalars of LongLive's streaming schedule (REFERENCE.md section 2).
public struct StreamingSchedule: Codable, Sendable, Equatable {
    /// Latent frames generated together (LongLive: 3).
    public var framesPerBlock: Int
    /// Frames of the first block kept forever as the attention sink (LongLive: 3).
    public var sinkFrames: Int
    /// Frames the self-attention sees, sink included (LongLive `local_attn_size`: 12).
    public var attentionFrames: Int
    /// Denoising steps on the 1000-step grid before warping (LongLive: [1000, 750, 500, 250]).
    public var denoisingSteps: [Int]
    public var warpDenoisingSteps: Bool
    /// Flow-matching timestep shift (LongLive: 5).
    public var shift: Double
    /// Timestep of the clean pass that refreshes the cache (LongLive `context_noise`: 0).
    public var contextNoise: Float

    public init(framesPerBlock: Int = 3, sinkFrames: Int = 3, attentionFrames: Int = 12,
                denoisingSteps: [Int] = [1000, 750, 500, 250], warpDenoisingSteps: Bool = true,
                shift: Double = 5, contextNoise: Float = 0) {
        self.framesPerBlock = framesPerBlock; self.sinkFrames = sinkFrames
        self.attentionFrames = attentionFrames; self.denoisingSteps = denoisingSteps
        self.warpDenoisingSteps = warpDenoisingSteps; self.shift = shift; self.contextNoise = contextNoise
    }

    public static let longLive = StreamingSchedule()

    /// Window frames besides the sink.
    public var windowFrames: Int { attentionFrames - sinkFrames }

    public func validate() throws {
        guard framesPerBlock > 0 else { throw ReelError.input("frames per block must be positive") }
        guard sinkFrames >= 0, attentionFrames > sinkFrames else {
            throw ReelError.input("attention window (\(attentionFrames) frames) must exceed the sink (\(sinkFrames))")
        }
        guard windowFrames >= framesPerBlock else {
            throw ReelError.input("the window besides the sink (\(windowFrames) frames) must hold a block (\(framesPerBlock))")
        }
        guard !denoisingSteps.isEmpty, denoisingSteps.allSatisfy({ (1...1000).contains($0) }) else {
            throw ReelError.input("denoising steps must lie in 1...1000, got \(denoisingSteps)")
        }
        guard shift > 0 else { throw ReelError.input("shift must be positive") }
    }
}
