import Foundation
import ReelCore
import ReelCPU
import ReelCUDA
import ReelModels
import ReelPipeline

extension Bench {
    /// `reel bench --pipeline timestep-forcing --devices 0,1,2,3`: LiveAvatar's pipeline over LongLive's schedule
    /// (a random DiT replica per device, device i running step i), with the decoder on `--decode-device` or a
    /// stream of the first device. Prints each stage's time per block and the throughput against its floor: a
    /// block leaves every step's time, so the slowest stage bounds it (and one forward's compute bounds that).
    func benchTimestepForcing() async throws {
        guard let stages = try backendOptions.makeStageBackends() else { return }
        guard folderPath == nil, let config = model.config, !model.isLongLive2 else {
            throw ReelError.input("reel bench --pipeline timestep-forcing runs random weights of --model 1.3b, 14b or small "
                                  + "(a model folder: reel generate --pipeline timestep-forcing)")
        }
        let dtype = backendOptions.storageType
        let geometry = try size.geometry(folderSize: nil)
        let (lh, lw) = (geometry.latentHeight, geometry.latentWidth)
        let rate = try Rates.matmul(stages[0], dtype: dtype)
        print(String(format: "matmul rate measured on %@: %.2f TFLOP/s (the compute floors below use it)", stages[0].name, rate / 1e12))
        print("reel bench, timestep forcing (LiveAvatar's pipeline over LongLive's 4 steps; an approximation of the exact "
              + "schedule): DiT \(model.name) (\(config.layers) layers, dim \(config.dim)), step i on "
              + stages.map(\.device.name).joined(separator: ", ") + ", decoder \(decoder.rawValue), "
              + "\(geometry.width)x\(geometry.height), \(blocks) blocks, switch at block \(switchBlock)")
        if backendOptions.backend == .cpu {
            print("note: CPU devices are threads sharing this machine's cores: these numbers say nothing about GPUs")
        }
        let t0 = Date()
        let replicas = try TimestepForcingReplicas.random(config, on: stages, dtype: dtype, quantization: quantization,
                                                          kvCache: kvCache)
        let decodeStream = try backendOptions.makeDecodeBackend() ?? stages[0].makeStream()
        let (newDecoder, decodeLatentFLOPs) = try decoder.random(on: decodeStream, dtype: dtype, lh: lh, lw: lw)
        let dit = replicas[0]
        let first = try dit.encodePrompt(try stages[0].randomNormal([32, config.textDim], seed: 1, offset: 0, dtype: dtype))
        let second = try dit.encodePrompt(try stages[0].randomNormal([32, config.textDim], seed: 2, offset: 0, dtype: dtype))
        print(String(format: "random weights built on %d devices in %.1f s", stages.count, Date().timeIntervalSince(t0)))

        let parts = ModelParts(dit: dit, newDecoder: newDecoder, decodeStream: decodeStream)
        let block = geometry.latentFramesPerBlock
        // A warm-up stream past the sink's refresh with a switch: kernels and plans made on every device.
        do {
            let request = PipelineRequest(geometry: geometry, latentFrames: 6 * block, granularity: .latentFrame,
                                          decode: decoder != .none)
            let warm = try Pipeline(model: parts, request: request, prompt: first, noise: PhiloxNoise(seed: 9),
                                    script: { $0 == 5 * block ? second : nil }, timestepForcing: replicas)
            for try await _ in warm.chunks() {}
        }
        for s in stages { try s.synchronize() }
        try decodeStream.synchronize()
        let request = PipelineRequest(geometry: geometry, latentFrames: blocks * block, granularity: .latentFrame,
                                      decode: decoder != .none)
        let switchFrame = switchBlock * block
        let pipeline = try Pipeline(model: parts, request: request, prompt: first, noise: PhiloxNoise(seed: 0),
                                    script: { switchBlock > 0 && $0 == switchFrame ? second : nil }, timestepForcing: replicas)
        guard let generator = pipeline.generator as? TimestepForcingGenerator else { return }
        let (arrivals, _, recache, decodeSeconds, frames, firstFrame) = try await measure(pipeline, geometry: geometry,
                                                                                          backend: stages[0])
        let perStage = try generator.stageSeconds()

        // Steady state: blocks after the warm-up; the switch block and the sink's refresh (block N) left out of medians.
        let steady = Array(warmup..<blocks)
        let fps = steadyFPS(arrivals: arrivals, frames: frames, warmup: warmup)
        let plain = steady.filter { $0 != switchBlock && $0 != stages.count }
        let stageMedians = perStage.map { times in median(plain.filter { $0 < times.count }.map { times[$0] }) }
        let slowest = stageMedians.max() ?? .nan
        let tokensPerFrame = (lh / config.patch) * (lw / config.patch)
        let schedule = StreamingSchedule.longLive
        let forward = ComputeCost.ditForward(config, queries: block * tokensPerFrame, keys: schedule.attentionFrames * tokensPerFrame)
        let stepFloor = forward / rate
        let vaeFloor = 3 * decodeLatentFLOPs / rate

        print("")
        print("stage (device)                  ms/block      floor (one forward)   measured/floor")
        for (i, m) in stageMedians.enumerated() {
            row("step \(i) (\(stages[i].device.name))", m * 1000, stepFloor * 1000, unit: "ms", higherIsBetter: false)
        }
        if decoder != .none {
            let decodeMedian = median(plain.map { decodeSeconds[$0] })
            row("decode (\(decodeStream.name))", decodeMedian * 1000, vaeFloor * 1000, unit: "ms", higherIsBetter: false)
            printDecoderPlacement(stepSeconds: stageMedians, decodeSeconds: decodeMedian, stages: stages,
                                  decodeDevice: decodeStream.device.name)
        }
        print("")
        print("figure                          measured      floor         measured/floor")
        row("FPS vs the slowest stage", fps, 12 / slowest, unit: "fps", higherIsBetter: true)
        row("FPS vs one forward's compute", fps, 12 / max(stepFloor, vaeFloor), unit: "fps", higherIsBetter: true)
        let end = steadyWindowEnd(blocks: blocks, warmup: warmup)
        row("block interval", (arrivals[end] - arrivals[warmup]) / Double(end - warmup) * 1000, slowest * 1000,
            unit: "ms", higherIsBetter: false)
        row("time to first frame", (firstFrame ?? arrivals[0]) * 1000,
            (Double(stages.count) * ComputeCost.ditForward(config, queries: block * tokensPerFrame, keys: block * tokensPerFrame)
             + decodeLatentFLOPs * 0.25) / rate * 1000, unit: "ms", higherIsBetter: false)
        if switchBlock > 0 { print(String(format: "recaches on the last stage: %.0f ms in all", recache * 1000)) }
        print(String(format: "KV caches %.2f GB in all (one per step)", Double(generator.cacheBytes) / 1e9))
        for s in stages {
            if let m = (s as? MemoryReporting)?.memoryStatistics() {
                print(String(format: "%@: peak device memory %.2f GB", s.device.name, Double(m.peak) / 1e9))
            }
        }
    }

    /// The decoder's place chosen from this run's measured times (`TimestepForcingPlacement`): each place's predicted
    /// block interval, a shared device taking the sum of its step's and the decoder's times, and the option that
    /// gives the best.
    private func printDecoderPlacement(stepSeconds: [Double], decodeSeconds: Double, stages: [any Backend],
                                       decodeDevice: String) {
        guard stepSeconds.allSatisfy({ $0.isFinite }), decodeSeconds.isFinite else { return }
        let ordinals = backendOptions.devices?.ordinals ?? []
        func describe(_ place: TimestepForcingPlacement.DecoderPlace) -> String {
            switch place {
            case .ownDevice: "a device of its own (--decode-device: a GPU no step uses)"
            case .besideStep(let i):
                "beside step \(i) (\(stages[i].device.name)\(i < ordinals.count ? ", --decode-device \(ordinals[i])" : ""))"
            }
        }
        print("")
        print("decoder placement by measured latency (times above, decoder measured on \(decodeDevice); a shared device "
              + "is taken to need the sum of its step's and the decoder's times):")
        for c in TimestepForcingPlacement.candidates(stepSeconds: stepSeconds, decodeSeconds: decodeSeconds, spareDevice: true) {
            print("  " + describe(c.decoder).padding(toLength: 64, withPad: " ", startingAt: 0)
                  + String(format: "%8.1f ms a block (%.2f FPS)", c.interval * 1000, 12 / c.interval))
        }
        let shared = TimestepForcingPlacement.best(stepSeconds: stepSeconds, decodeSeconds: decodeSeconds, spareDevice: false)
        let any = TimestepForcingPlacement.best(stepSeconds: stepSeconds, decodeSeconds: decodeSeconds, spareDevice: true)
        print("  best on the steps' devices: \(describe(shared.decoder))"
              + (any == shared ? "" : "; best with a spare GPU: \(describe(any.decoder))"))
    }
}
