import Foundation
import ReelCore
import ReelModels
import ReelPipeline

extension Bench {
    /// `reel bench --pipeline block-pipeline --devices 0,1`: StreamDiffusionV2's block pipelining of the
    /// video-to-video stream batch (random weights of --model, DiT only: no encoder or decoder). Measures each
    /// layer's time on the first device, picks the ranges (balanced, or --layer-ranges), then times the
    /// one-device stream batch against the pipeline over the devices, per call (one block in, one out).
    func benchBlockPipeline() throws {
        guard let devices = try backendOptions.makeBlockPipelineBackends() else { return }
        guard folderPath == nil, let config = model.config, !model.isLongLive2 else {
            throw ReelError.input("reel bench --pipeline block-pipeline runs random weights of --model 1.3b, 14b or small")
        }
        let dtype = backendOptions.storageType
        let geometry = try size.geometry(folderSize: nil)
        let (lh, lw) = (geometry.latentHeight, geometry.latentWidth)
        let schedule = try StreamV2VSchedule.streamDiffusionV2(steps: steps, noiseScale: 0.8)
        guard schedule.levels > 1 else {
            throw ReelError.input("the block pipeline pipelines the stream batch: give --steps 2 or more")
        }
        print("reel bench, block pipeline (StreamDiffusionV2's multi-GPU): DiT \(model.name) (\(config.layers) layers, "
              + "dim \(config.dim)) over " + devices.map(\.device.name).joined(separator: ", ")
              + ", \(geometry.width)x\(geometry.height), \(schedule.levels) levels, \(blocks) calls after \(warmup) warm-up")
        if backendOptions.backend == .cpu {
            print("note: CPU devices are threads sharing this machine's cores: these numbers say nothing about GPUs")
        }
        let weights = try WanDiT.randomWeights(config, on: devices[0], seed: 1, dtype: dtype)
        let embedding = try devices[0].randomNormal([32, config.textDim], seed: 1, offset: 0, dtype: dtype)
        let be = devices[0]
        let chunk = try be.cast(try be.randomNormal([2, lh, lw, config.inChannels], seed: 2, offset: 0, dtype: .f32), to: dtype)
        let frames = try (0..<(warmup + blocks)).map {
            try be.cast(try be.randomNormal([1, lh, lw, config.inChannels], seed: 10 + UInt64($0), offset: 0, dtype: .f32), to: dtype)
        }

        // One device: each layer's time, then the stream batch's time per call.
        let ranges: [Range<Int>], single: Double
        do {
            let whole = try WanDiT.load(from: weights, backend: be, dtype: dtype)
            let prompt = try whole.encodePrompt(embedding)
            let seconds = try BlockPipelineRanges.measuredLayerSeconds(model: whole, prompt: prompt, latentHeight: lh,
                                                                       latentWidth: lw, schedule: schedule)
            print(String(format: "layer time on %@ (ms): min %.3f, median %.3f, max %.3f, all %.2f", be.device.name,
                         seconds.min()! * 1000, median(seconds) * 1000, seconds.max()! * 1000, seconds.reduce(0, +) * 1000))
            if let text = layerRanges {
                ranges = try Self.parseRanges(text)
            } else {
                ranges = try BlockPipelineRanges.balanced(layerSeconds: seconds, stages: devices.count)
            }
            if let problem = BlockPipelineRanges.problem(ranges, layers: config.layers, devices: devices.count) {
                throw ReelError.input("--layer-ranges: \(problem)")
            }
            for (r, d) in zip(ranges, devices) {
                print(String(format: "  %@: layers %d..<%d, %.2f ms measured", d.device.name, r.lowerBound, r.upperBound,
                             seconds[r].reduce(0, +) * 1000))
            }
            let g = try StreamBatchGenerator(model: whole, prompt: prompt, latentHeight: lh, latentWidth: lw,
                                             schedule: schedule, noise: PhiloxStreamNoise(seed: 3))
            _ = try g.start(latents: chunk)
            var t0 = Date()
            for (k, f) in frames.enumerated() {
                if k == warmup { try be.synchronize(); t0 = Date() }
                _ = try g.push(latent: f, motion: 0)
            }
            try be.synchronize()
            single = Date().timeIntervalSince(t0) / Double(blocks)
        }

        // The pipeline: each device holds only its layers.
        let (stages, _) = try BlockPipelinedStreamBatch.loadStages(from: weights, devices: devices, ranges: ranges, dtype: dtype)
        let pipe = try BlockPipelinedStreamBatch(stages: stages, ranges: ranges, promptEmbedding: embedding,
                                                 latentHeight: lh, latentWidth: lw, schedule: schedule,
                                                 noise: PhiloxStreamNoise(seed: 3))
        defer { pipe.stop() }
        _ = try pipe.start(latents: chunk)
        var t0 = Date(), out = 0
        for (k, f) in frames.enumerated() {
            if k == warmup { for d in devices { try d.synchronize() }; t0 = Date() }
            out += try pipe.push(latent: f, motion: 0).count
        }
        out += try pipe.flush().count
        for d in devices { try d.synchronize() }
        let piped = Date().timeIntervalSince(t0) / Double(blocks)
        print("")
        print(String(format: "one device (%@): %.2f ms a call", be.device.name, single * 1000))
        print(String(format: "block pipeline over %d devices: %.2f ms a call (the pipeline drained at the end), %.2fx; "
                     + "%d blocks out; a block leaves %d calls after it went in (one device: %d)",
                     devices.count, piped * 1000, single / piped, out, (schedule.levels - 1) * devices.count,
                     schedule.levels - 1))
        for d in devices {
            if let m = (d as? MemoryReporting)?.memoryStatistics() {
                print(String(format: "%@: peak device memory %.2f GB", d.device.name, Double(m.peak) / 1e9))
            }
        }
    }

    /// `0-15,15-30`: half-open layer ranges.
    static func parseRanges(_ text: String) throws -> [Range<Int>] {
        try text.split(separator: ",").map { part in
            let ends = part.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard ends.count == 2, let a = ends[0], let b = ends[1], a >= 0, b > a else {
                throw ReelError.input("--layer-ranges takes start-end pairs separated by commas (end excluded), e.g. 0-15,15-30; got '\(text)'")
            }
            return a..<b
        }
    }
}
