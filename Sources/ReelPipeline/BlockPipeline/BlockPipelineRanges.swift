import Foundation
import ReelCore
import ReelModels

/// Which contiguous range of the DiT's layers each device of a block pipeline holds
/// (StreamDiffusionV2 `streamv2v/inference_pipe.py` `compute_default_block_distribution`, `block_num` per rank).
public enum BlockPipelineRanges {
    /// `layers` split into `stages` contiguous ranges as evenly as counts allow, the first ranges one layer
    /// longer when they do not divide (the reference's default split).
    public static func even(layers: Int, stages: Int) throws -> [Range<Int>] {
        guard stages >= 1, layers >= stages else {
            throw ReelError.input("the block pipeline needs at least one layer per device: \(layers) layers over \(stages) devices")
        }
        let (base, extra) = (layers / stages, layers % stages)
        var start = 0
        return (0..<stages).map { s in
            let end = start + base + (s < extra ? 1 : 0)
            defer { start = end }
            return start..<end
        }
    }

    /// The contiguous split of layers (each with its measured seconds) over `stages` devices whose slowest
    /// stage is fastest; `stageExtra[s]` is time stage s spends besides its layers (the first stage's patch
    /// embedding and the noise mixing, the last's head and re-noising), zero when not given. Ties go to the
    /// split whose earlier stages are shorter. Exact (dynamic programming over split points), unlike the
    /// reference's `compute_balanced_split`, which moves block counts by time differences once.
    public static func balanced(layerSeconds: [Double], stages: Int, stageExtra: [Double]? = nil) throws -> [Range<Int>] {
        let n = layerSeconds.count
        _ = try even(layers: n, stages: stages)
        guard layerSeconds.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw ReelError.input("per-layer seconds must be finite and non-negative, got \(layerSeconds)")
        }
        let extra = stageExtra ?? Array(repeating: 0, count: stages)
        guard extra.count == stages else { throw ReelError.input("\(extra.count) stage extras for \(stages) stages") }
        var prefix = [0.0]
        for t in layerSeconds { prefix.append(prefix.last! + t) }
        // best[s][i]: the least slowest-stage time of the first i layers over stages 0 ... s; cut[s][i]: where stage s starts.
        var best = Array(repeating: Array(repeating: Double.infinity, count: n + 1), count: stages)
        var cut = Array(repeating: Array(repeating: 0, count: n + 1), count: stages)
        for i in 1...n { best[0][i] = prefix[i] + extra[0] }
        for s in 1..<max(stages, 1) {
            for i in (s + 1)...n {
                for j in s..<i {
                    let t = max(best[s - 1][j], prefix[i] - prefix[j] + extra[s])
                    if t < best[s][i] { best[s][i] = t; cut[s][i] = j }
                }
            }
        }
        var ranges: [Range<Int>] = []
        var end = n
        for s in stride(from: stages - 1, through: 1, by: -1) {
            let start = cut[s][end]
            ranges.insert(start..<end, at: 0)
            end = start
        }
        ranges.insert(0..<end, at: 0)
        return ranges
    }

    /// Why `ranges` cannot split `layers` layers over `devices` devices (nil: they can): one non-empty range per
    /// device, contiguous, in order, covering every layer.
    public static func problem(_ ranges: [Range<Int>], layers: Int, devices: Int) -> String? {
        let text = ranges.map { "\($0.lowerBound)..<\($0.upperBound)" }.joined(separator: ", ")
        if ranges.count != devices { return "\(ranges.count) layer ranges (\(text)) for \(devices) devices: give one per device" }
        var next = 0
        for r in ranges {
            if r.isEmpty { return "layer ranges \(text): every device needs at least one layer" }
            if r.lowerBound != next {
                return "layer ranges \(text) are not contiguous: a range starts at \(r.lowerBound), expected \(next)"
            }
            next = r.upperBound
        }
        if next != layers { return "layer ranges \(text) cover layers 0..<\(next), the model has \(layers)" }
        return nil
    }

    /// Seconds of each layer of `model` in a stream-batch pass (every level of `schedule`, one latent frame
    /// each, at `latentHeight` x `latentWidth`), the fastest of `repeats` passes after one warm-up: the
    /// stream waits after each layer (`synchronize`), so the figures include no overlap. What `balanced` takes.
    public static func measuredLayerSeconds(model: WanDiT, prompt: WanDiT.PromptContext, latentHeight: Int,
                                            latentWidth: Int, schedule: StreamV2VSchedule = .streamDiffusionV2,
                                            repeats: Int = 3) throws -> [Double] {
        let c = model.config, be = model.backend
        let levels = schedule.levels
        let cache = try SinkRefreshKVCache(
            backend: be, layers: c.layers, rows: levels, tokensPerFrame: (latentHeight / c.patch) * (latentWidth / c.patch),
            heads: c.heads, headDim: c.headDim, slots: schedule.cacheFrames, sinkFrames: schedule.sinkFrames,
            threshold: nil, totalSteps: levels, dtype: model.dtype)
        try cache.replicateFirstRow()
        let x = try be.cast(try be.randomNormal([levels, latentHeight, latentWidth, c.inChannels], seed: 5, offset: 0,
                                                dtype: .f32), to: model.dtype)
        var best = Array(repeating: Double.infinity, count: c.layers)
        for pass in 0...max(repeats, 1) {
            let segments = (0..<levels).map {
                WanDiT.LevelSegment(frames: 1, startFrame: schedule.sinkFrames + pass % 2, timestep: Float(schedule.denoisingSteps[$0]), row: $0)
            }
            try be.synchronize()
            var last = Date()
            _ = try model.forwardStage(levels: x, latentHeight: latentHeight, latentWidth: latentWidth, segments: segments,
                                       prompt: prompt, cache: cache, embeds: true, head: true) { layer in
                try be.synchronize()
                let now = Date()
                if pass > 0 { best[layer] = min(best[layer], now.timeIntervalSince(last)) }
                last = now
            }
        }
        return best
    }
}
