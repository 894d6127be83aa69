import Foundation
import ReelCore
import ReelCUDA
import ReelModels
import ReelPipeline

/// The Wan DiT (random weights, bf16) spread over the communicator's GPUs against the same weights on one GPU:
/// a block's velocity, its clean pass (cache only), the next block's velocity, then the time per forward of
/// each. The two differ by bf16 rounding only (the GEMMs see fewer rows and may pick other kernels; q and k
/// are normed before the exchange and rotated after it, where one GPU fuses the two).
struct SequenceParallelCheck {
    let gpus: NCCLCommunicator
    let config: WanDiTConfig
    let geometry: BlockGeometry
    let iterations: Int
    /// nmse of the velocities: bf16 rounding through the layers stays far below it, a wrong exchange (a head
    /// or a row out of place) gives about 1.
    static let tolerance = 1e-3

    func run() throws -> [String] {
        let n = gpus.ranks, dtype = DType.bf16
        if let problem = SequenceParallelism.headSplitProblem(heads: config.heads, ranks: n) { throw ReelError.input(problem) }
        let single = try gpus.streams[0].makeStream()               // one GPU: rank 0's device, a stream of its own
        let weights = try WanDiT.randomWeights(config, on: single, dtype: dtype)
        let one = try WanDiT.load(from: weights, heads: config.heads, backend: single, dtype: dtype)
        let spread = try WanDiT.loadSequenceParallel(from: weights, heads: config.heads, communicator: gpus, dtype: dtype)
        let (lh, lw) = (geometry.latentHeight, geometry.latentWidth)
        let tokensPerFrame = (lh / config.patch) * (lw / config.patch)
        let shards = TokenShards(tokensPerFrame: tokensPerFrame, ranks: n)
        let padding = shards.padded > tokensPerFrame ? ", \(shards.padded - tokensPerFrame) padding" : ""
        print("DiT: \(config.layers) layers, dim \(config.dim), \(config.heads) heads, \(geometry.width)x\(geometry.height) "
              + "(\(tokensPerFrame) tokens a frame: \(shards.perRank) rows a rank\(padding)), "
              + "\(dtype), cuda:\(gpus.gpus[0].cudaDevice.info.ordinal) alone against \(gpus.name)")

        let embedding = try single.randomNormal([32, config.textDim], seed: 1, offset: 0, dtype: dtype)
        let (p1, pN) = (try one.encodePrompt(embedding), try spread.encodePrompt(embedding))
        let c1 = try one.makeCache(tokensPerFrame: tokensPerFrame, sinkFrames: 3, windowFrames: 9)
        let cN = try spread.makeCache(tokensPerFrame: tokensPerFrame, sinkFrames: 3, windowFrames: 9)
        let block = try single.randomNormal([3, lh, lw, config.inChannels], seed: 2, offset: 0, dtype: dtype)
        let next = try single.randomNormal([3, lh, lw, config.inChannels], seed: 3, offset: 0, dtype: dtype)
        // (latents, timestep, start frame, needs output): a block, its clean pass, the next block.
        let passes: [(Tensor, Float, Int, Bool)] = [(block, 1000, 0, true), (block, 0, 0, false), (next, 750, 3, true)]
        var failures: [String] = []
        for (x, t, start, needsOutput) in passes {
            let access = WanDiT.CacheAccess(startFrame: start, needsOutput: needsOutput)
            let a = try one.forward(x, timestep: t, prompt: p1, cache: c1, access: access)
            let b = try spread.forward(x, timestep: t, prompt: pN, cache: cN, access: access)
            guard let a, let b else { print("  pass at frame \(start), t = \(Int(t)): cache only"); continue }
            let e = OpCase.nmse(try b.toFloats(), try a.toFloats())
            let ok = e <= Self.tolerance
            if !ok { failures.append("DiT pass at frame \(start)") }
            print(String(format: "  pass at frame %d, t = %d: velocity nmse %.2e (tolerance %.0e)  %@", start, Int(t), e,
                         Self.tolerance, ok ? "ok" : "FAIL"))
        }

        func time(_ model: WanDiT, _ prompt: WanDiT.PromptContext, _ cache: WanKVCache) throws -> Double {
            let be = model.backend
            _ = try model.forward(next, timestep: 750, prompt: prompt, cache: cache, access: .init(startFrame: 3))
            try be.synchronize()
            let start = try be.recordTimedEvent()
            for _ in 0..<iterations {
                _ = try model.forward(next, timestep: 750, prompt: prompt, cache: cache, access: .init(startFrame: 3))
            }
            return try be.recordTimedEvent().seconds(since: start) / Double(iterations)
        }
        let t1 = try time(one, p1, c1), tN = try time(spread, pN, cN)
        print(String(format: "  forward of a block (3 frames over a %d-frame cache): one GPU %.1f ms, %d GPUs %.1f ms: "
                     + "%.2fx faster, %.0f%% of the %dx of perfect scaling", 6, t1 * 1e3, n, tN * 1e3, t1 / tN,
                     100 * t1 / tN / Double(n), n))
        for g in gpus.gpus {
            let peak = g.cudaDevice.allocatorStats.peak
            print(String(format: "  %@ peak memory %.2f GiB", g.name, Double(peak) / Double(1 << 30)))
        }
        return failures
    }
}
