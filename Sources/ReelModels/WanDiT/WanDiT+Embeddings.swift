import Foundation
import ReelCore

// The DiT's input and output layers: patch, text and time embeddings, and the head.

extension WanDiT {
    /// The tokens' grid of a pass: F latent frames of gh x gw patches.
    struct PatchGrid {
        let frames: Int
        let height: Int
        let width: Int
        var tokensPerFrame: Int { height * width }
        var tokens: Int { frames * tokensPerFrame }
    }

    /// Wan's `patch_embedding`, a Conv3d with kernel and stride (1, p, p), as a linear map over each
    /// p x p patch with input features in (kh, kw, c) order.
    struct PatchEmbedding {
        /// `[dim, p*p*C]` (permuted from Conv3d's `[dim, C, 1, p, p]`).
        let linear: Linear
        let patch: Int
        let channels: Int

        init(_ w: WanDiTBinder, _ name: String, _ c: WanDiTConfig) throws {
            let (d, p) = (c.dim, c.patch)
            // Conv3d [dim, C, 1, p, p] -> [dim, p, p, C] -> [dim, p*p*C].
            let conv = try w.tensor("\(name).weight", [d, c.inChannels, 1, p, p])
            let weight = try conv.backend.permute(try conv.reshaped([d, c.inChannels, p, p]), [0, 2, 3, 1])
                .reshaped([d, p * p * c.inChannels])
            linear = Linear(weight: weight, bias: try w.tensor("\(name).bias", [d]))
            patch = p
            channels = c.inChannels
        }

        /// Tokens `[1, F * gh * gw, dim]` of `latents` `[F, H, W, C]`, ordered (frame, row, column).
        func callAsFunction(_ latents: Tensor, grid g: PatchGrid) throws -> Tensor {
            let be = linear.weight.backend   // the model's (latents may come from elsewhere)
            var x = try be.cast(latents, to: linear.weight.dtype)
            x = try x.reshaped([g.frames, g.height, patch, g.width, patch, channels])
            x = try be.permute(x, [0, 1, 3, 2, 4, 5])                           // [F, gh, gw, p, p, C]
            x = try x.reshaped([1, g.tokens, patch * patch * channels])
            return try linear(x)                                                 // [1, L, dim]
        }
    }

    /// Wan's `text_embedding`: Linear, GELU (tanh), Linear, from the text encoder's width to dim.
    struct TextEmbedding {
        let linear1: Linear
        let linear2: Linear

        init(_ w: WanDiTBinder, _ name: String, _ c: WanDiTConfig) throws {
            linear1 = try Linear(w, "\(name).0", out: c.dim, in: c.textDim)
            linear2 = try Linear(w, "\(name).2", out: c.dim, in: c.dim)
        }

        /// `[tokens, textDim]` -> `[tokens, dim]`.
        func callAsFunction(_ x: Tensor) throws -> Tensor {
            let h = try x.backend.unary(.geluTanh, try linear1(x))
            return try linear2(h)
        }
    }

    /// Wan's timestep embedding: a sinusoid, `time_embedding` (Linear, SiLU, Linear) giving e, and
    /// `time_projection` (SiLU, Linear to 6 * dim) giving e0, the blocks' modulation.
    struct TimeEmbedding {
        let linear1: Linear
        let linear2: Linear
        let projection: Linear
        let frequencies: Int

        init(_ w: WanDiTBinder, _ c: WanDiTConfig) throws {
            linear1 = try Linear(w, "time_embedding.0", out: c.dim, in: c.freqDim)
            linear2 = try Linear(w, "time_embedding.2", out: c.dim, in: c.dim)
            projection = try Linear(w, "time_projection.1", out: 6 * c.dim, in: c.dim)
            frequencies = c.freqDim
        }

        /// e `[F, dim]` and e0 = projection `[6, F, dim]` for timestep t on every frame (the
        /// reference's `[F, 6, dim]` permuted once, so that every layer takes its six parts as views).
        func callAsFunction(_ t: Float, frames: Int) throws -> (e: Tensor, e0: Tensor) {
            try self(perFrame: [Float](repeating: t, count: frames))
        }

        /// e `[F, dim]` and e0 `[6, F, dim]` for a timestep per frame (StreamDiffusionV2's stream
        /// batch: one per denoising level).
        func callAsFunction(perFrame timesteps: [Float]) throws -> (e: Tensor, e0: Tensor) {
            let be = linear1.weight.backend
            let half = frequencies / 2, frames = timesteps.count
            func row(_ t: Float) -> [Float] {
                var row = [Float](repeating: 0, count: frequencies)
                for i in 0..<half {
                    // Reference sinusoidal_embedding_1d: float64, cos first.
                    let arg = Double(t) * pow(10_000, -Double(i) / Double(half))
                    row[i] = Float(cos(arg))
                    row[half + i] = Float(sin(arg))
                }
                return row
            }
            // One row per distinct timestep (a LongLive block has one for all its frames).
            var rows: [Float: [Float]] = [:]
            for t in timesteps where rows[t] == nil { rows[t] = row(t) }
            let sinusoid = try be.tensor(timesteps.flatMap { rows[$0]! }, shape: [frames, frequencies],
                                         dtype: linear1.weight.dtype)
            var e = try linear1(sinusoid)
            e = try be.unary(.silu, e)
            e = try linear2(e)                                                   // [F, dim]
            let e0 = try projection(try be.unary(.silu, e))
            let dim = e.shape[1]
            return (e, try be.permute(try e0.reshaped([frames, 6, dim]), [1, 0, 2]))
        }
    }

    /// Wan's `Head`: adaLN with its own `[2, dim]` modulation (shift, scale) added to e, a Linear to
    /// p*p*C, then unpatchify.
    struct Head {
        /// `[2, dim]`: shift, scale.
        let modulation: Tensor
        let linear: Linear
        let patch: Int
        let channels: Int
        let eps: Float

        init(_ w: WanDiTBinder, _ name: String, _ c: WanDiTConfig) throws {
            modulation = try w.tensor("\(name).modulation", [2, c.dim])
            linear = try Linear(w, "\(name).head", out: c.patch * c.patch * c.outChannels, in: c.dim)
            patch = c.patch
            channels = c.outChannels
            eps = c.eps
        }

        /// The flow velocity `[F, H, W, C]` from the last block's output `x` `[1, L, dim]` and the
        /// un-projected time embedding `e` `[F, dim]`.
        func callAsFunction(_ x: Tensor, timeEmbedding e: Tensor, grid g: PatchGrid) throws -> Tensor {
            let h = try projected(try x.reshaped([g.frames, g.tokensPerFrame, modulation.shape[1]]), timeEmbedding: e)
            return try unpatchified(h, grid: g)
        }

        /// The adaLN and Linear of the head, token by token: `x` `[F, R, dim]` (any R rows of each frame)
        /// -> `[F, R, p*p*C]`.
        func projected(_ x: Tensor, timeEmbedding e: Tensor) throws -> Tensor {
            let be = x.backend, dim = modulation.shape[1]
            let perFrame = try e.reshaped([x.shape[0], 1, dim])
            let shift = try be.add(perFrame, try be.slice(modulation, axis: 0, start: 0, length: 1))
            let scale = try be.add(perFrame, try be.slice(modulation, axis: 0, start: 1, length: 1))
            return try linear(try be.modulatedLayerNorm(x, scale: scale, shift: shift, eps: eps))
        }

        /// The velocity `[F, H, W, C]` from the head's projection `h` `[F, gh*gw, p*p*C]`.
        func unpatchified(_ h: Tensor, grid g: PatchGrid) throws -> Tensor {
            let be = h.backend
            // Unpatchify: output channel (q*p + r)*C + c -> pixel (row*p + q, col*p + r).
            var h = try h.reshaped([g.frames, g.height, g.width, patch, patch, channels])
            h = try be.permute(h, [0, 1, 3, 2, 4, 5])                            // [F, gh, p, gw, p, C]
            return try h.reshaped([g.frames, g.height * patch, g.width * patch, channels])
        }
    }
}
