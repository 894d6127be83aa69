import Foundation
import ReelCore
import ReelCUDA
import ReelModels
import ReelPipeline

/// The Wan DiT (random weights, bf16) spread over the communicator's GPUs against the same weights on one GPU,
/// by each scheme asked for (sequence: Ulysses; tensor: Megatron): a block's velocity, its clean pass (cache
/// only), the next block's velocity, then the time per forward of each, side by side. Each differs from one GPU
/// by bf16 rounding only (sequence: the GEMMs see fewer rows, q and k are normed before the exchange and rotated
/// after it where one GPU fuses the two; tensor: partial sums added by NCCL, the q/k norms' sums of squares by
/// rank, the norm and rotation in float32).
struct ParallelDiTCheck {
    let gpus: NCCLCommunicator
    let config: WanDiTConfig
    let geometry: BlockGeometry
    let iterations: Int
    let schemes: [DiTParallelScheme]
    /// nmse of the velocities: bf16 rounding through the layers stays far below it, a wrong exchange (a head
    /// or a row out of place, a missing sum) gives about 1.
    static let tolerance = 1e-3

    func run() throws -> [String] {
        let n = gpus.ranks, dtype = DType.bf16
        let single = try gpus.streams[0].makeStream()               // one GPU: rank 0's device, a stream of its own
        let weights = try WanDiT.randomWeights(config, on: single, dtype: dtype)
        let one = try WanDiT.load(from: weights, heads: config.heads, backend: single, dtype: dtype)
        let (lh, lw) = (geometry.latentHeight, geometry.latentWidth)
        let tokensPerFrame = (lh / config.patch) * (lw / config.patch)
        let shards = TokenShards(tokensPerFrame: tokensPerFrame, ranks: n)
        let padding = shards.padded > tokensPerFrame ? ", \(shards.padded - tokensPerFrame) padding" : ""
        print("DiT: \(config.layers) layers, dim \(config.dim), \(config.heads) heads, ffn \(config.ffnDim), "
              + "\(geometry.width)x\(geometry.height) (\(tokensPerFrame) tokens a frame; sequence: "
              + "\(shards.perRank) rows a rank\(padding)), \(dtype), "
              + "cuda:\(gpus.gpus[0].cudaDevice.info.ordinal) alone against \(gpus.name)")

        let embedding = try single.randomNormal([32, config.textDim], seed: 1, offset: 0, dtype: dtype)
        let block = try single.randomNormal([3, lh, lw, config.inChannels], seed: 2, offset: 0, dtype: dtype)
        let next = try single.randomNormal([3, lh, lw, config.inChannels], seed: 3, offset: 0, dtype: dtype)
        let p1 = try one.encodePrompt(embedding)
        let c1 = try one.makeCache(tokensPerFrame: tokensPerFrame, sinkFrames: 3, windowFrames: 9)
        // (latents, timestep, start frame, needs output): a block, its clean pass, the next block.
        let passes: [(Tensor, Float, Int, Bool)] = [(block, 1000, 0, true), (block, 0, 0, false), (next, 750, 3, true)]
        var reference: [[Float]] = []
        for (x, t, start, needsOutput) in passes {
            let access = WanDiT.CacheAccess(startFrame: start, needsOutput: needsOutput)
            let a = try one.forward(x, timestep: t, prompt: p1, cache: c1, access: access)
            reference.append(try a?.toFloats() ?? [])
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
        let t1 = try time(one, p1, c1)
        var failures: [String] = [], rows: [String] = []
        /// The scheme's model checked pass by pass against one GPU; its time per forward.
        func check(_ scheme: DiTParallelScheme) throws -> Double {
            let spread = try WanDiT.loadParallel(scheme, from: weights, heads: config.heads, communicator: gpus,
                                                 dtype: dtype)
            let live = gpus.gpus.map { Double($0.cudaDevice.allocatorStats.live) / Double(1 << 30) }
            print("\(scheme.name): memory held after loading (weights, one GPU's model on cuda:0 besides): "
                  + live.map { String(format: "%.2f GiB", $0) }.joined(separator: ", "))
            let pN = try spread.encodePrompt(embedding)
            let cN = try spread.makeCache(tokensPerFrame: tokensPerFrame, sinkFrames: 3, windowFrames: 9)
            for ((x, t, start, needsOutput), a) in zip(passes, reference) {
                let access = WanDiT.CacheAccess(startFrame: start, needsOutput: needsOutput)
                guard let b = try spread.forward(x, timestep: t, prompt: pN, cache: cN, access: access) else {
                    print("  pass at frame \(start), t = \(Int(t)): cache only")
                    continue
                }
                let e = OpCase.nmse(try b.toFloats(), a)
                let ok = e <= Self.tolerance
                if !ok { failures.append("\(scheme.rawValue)-parallel DiT pass at frame \(start)") }
                print(String(format: "  pass at frame %d, t = %d: velocity nmse %.2e (tolerance %.0e)  %@", start,
                             Int(t), e, Self.tolerance, ok ? "ok" : "FAIL"))
            }
            return try time(spread, pN, cN)
        }
        for scheme in schemes {
            let problem = scheme == .sequence
                ? SequenceParallelism.headSplitProblem(heads: config.heads, ranks: n)
                : TensorParallelism.splitProblem(heads: config.heads, ffnDim: config.ffnDim, ranks: n)
            if let problem {
                print("\(scheme.name): skipped: \(problem)")
                continue
            }
            for g in gpus.gpus { g.resetPeakMemory() }
            let tN = try check(scheme)      // the spread model and its cache are released on return
            let peaks = gpus.gpus.map {
                String(format: "%.2f", Double($0.cudaDevice.allocatorStats.peak) / Double(1 << 30))
            }
            rows.append("  " + Column.left(scheme.name, 34)
                        + String(format: "%8.1f ms  %5.2fx  %4.0f%% of %dx   peak GiB per GPU: %@", tN * 1e3, t1 / tN,
                                 100 * t1 / tN / Double(n), n, peaks.joined(separator: ", ")))
        }
        print(String(format: "forward of a block (3 frames over a %d-frame cache), %d GPUs against one:", 6, n))
        print("  " + Column.left("one GPU", 34) + String(format: "%8.1f ms", t1 * 1e3))
        rows.forEach { print($0) }
        return failures
    }
}
