import Foundation
import ReelCore
import ReelCUDA
import ReelModels
import ReelPipeline

/// `reel bench --model 5b` (or `5b-small`): LongLive 2.0's schedule (docs/longlive2.md) on random weights of the
/// Wan2.2-TI2V-5B architecture through `Pipeline`, as the 1.3B's bench: blocks of 8 latent frames (4 UniPC steps and
/// the previous block's clean pass each, over the 32-frame buffer), a scene cut at --switch-block, and with
/// --decoder vae a random Wan2.2 VAE of the real size (tiny: TAEHV as taew2_2) decoding each block on its own stream
/// (or --decode-device) while the DiT makes the next one, ordered by the block's event (the reference's "async decoding").
extension Bench {
    func benchLongLive2(_ config: WanDiTConfig) async throws {
        let backend = try backendOptions.make()
        let dtype = backendOptions.storageType
        let schedule = LongLive2Schedule.longLive2
        let geometry = try (size.size ?? BlockGeometry(width: 1280, height: 704)).matching(config, longLive2: schedule)
        let (width, height) = (geometry.width, geometry.height)
        let (lh, lw) = (geometry.latentHeight, geometry.latentWidth)
        let rate = try Rates.matmul(backend, dtype: dtype)
        print(String(format: "matmul rate measured on this backend: %.2f TFLOP/s (the compute floors below use it)",
                     rate / 1e12))
        let note = quantizationNote(allLinears: "every block linear (LongLive 2.0's W8A8 PTQ)")
        let decoderName = switch decoder { case .vae: "Wan2.2 VAE"; case .tiny: "TAEHV (taew2_2)"; case .none: "none" }
        print("reel bench on \(backend.name) (\(dtype)\(note)): DiT \(model.name) (\(config.layers) layers, dim \(config.dim), "
              + "\(config.inChannels) channels), LongLive 2.0 schedule, decoder \(decoderName), "
              + "\(width)x\(height), \(blocks) blocks, scene cut at block \(switchBlock)")
        let t0 = Date()
        let dit: WanDiT = try {     // the bf16 weights are released once quantized
            let plain = try WanDiT.load(from: WanDiT.randomWeights(config, on: backend, dtype: dtype), heads: config.heads,
                                        backend: backend, dtype: dtype)
            return try quantization.map { try plain.quantized($0) } ?? plain
        }()
        func prompt(_ seed: UInt64) throws -> WanDiT.PromptContext {
            try dit.encodePrompt(try backend.randomNormal([32, config.textDim], seed: seed, offset: 0, dtype: dtype))
        }
        // The second prompt opens a shot, as one starting with "The scene transitions. " does.
        let (first, second) = (try prompt(1), try prompt(2).startingShot())
        // The decoder's own stream, as LoadedModel makes one: decode runs beside the DiT on the device.
        let decodeStream = try backendOptions.makeDecodeBackend() ?? backend.makeStream()
        let random = try decoder.random(on: decodeStream, dtype: dtype, lh: lh, lw: lw, wan22: true)
        let newDecoder = random.newDecoder
        print(String(format: "random weights built in %.1f s", Date().timeIntervalSince(t0)))
        (backend as? MemoryReporting)?.resetPeakMemory()

        // A warm engine, as for the 1.3B: each model alone (EngineWarmUp: 2 decoded blocks, 6 DiT blocks with a
        // scene cut at block 5), then a throwaway stream of one block with both, released before the measured one.
        try await EngineWarmUp.run(dit: dit, prompt: first, switchTo: second, decoder: newDecoder(),
                                   decodeStream: decodeStream, geometry: geometry)
        let parts = ModelParts(dit: dit, newDecoder: newDecoder, decodeStream: decodeStream)
        let n = geometry.latentFramesPerBlock
        let request = PipelineRequest(geometry: geometry, latentFrames: n, granularity: .latentFrame,
                                      decode: decoder != .none)
        do {
            let warm = try Pipeline(model: parts, request: request, prompt: first, noise: PhiloxNoise(seed: 9))
            for try await _ in warm.chunks() {}
        }
        try backend.synchronize()
        try decodeStream.synchronize()
        let twoDevices = !decodeStream.device.isSame(as: backend.device)
        (backend as? MemoryReporting)?.resetPeakMemory()
        if twoDevices { (decodeStream as? MemoryReporting)?.resetPeakMemory() }
        if let gpu = backend as? CUDABackend, let profiler = gpu.profiler {  // REEL_PROFILE: the measured stream only
            profiler.reset()
            if let d = decodeStream as? CUDABackend, d !== gpu { profiler.name("DiT", for: gpu); profiler.name("decoder", for: d) }
        }
        var measured = request
        measured.latentFrames = blocks * n
        let pipeline = try Pipeline(model: parts, request: measured, prompt: first, noise: PhiloxNoise(seed: 0)) { frame in
            switchBlock > 0 && frame == switchBlock * n ? second : nil
        }
        let times = try await measure(pipeline, geometry: geometry, backend: backend)

        // Floors: a steady block is 5 forwards (the previous block's clean pass and 4 steps) of 8 frames of queries
        // over the full 32-frame buffer (blocks before the buffer fills can beat it); the VAE decodes 8 latent frames.
        let tokensPerFrame = (lh / config.patch) * (lw / config.patch)
        let forward = ComputeCost.ditForward(config, queries: n * tokensPerFrame,
                                             keys: schedule.attentionFrames * tokensPerFrame)
        let ditFloor = Double(schedule.steps + 1) * forward / rate
        let decodeLatentFLOPs = random.latentFLOPs
        let vaeFloor = Double(n) * decodeLatentFLOPs / rate
        let videoFrames = Double(geometry.videoFrames(ofBlock: 1))      // 32 a block after the first
        // Both models' compute per block on one device; the slower of the two on two (--decode-device).
        let e2eFloorFPS = videoFrames / (twoDevices ? max(ditFloor, vaeFloor) : ditFloor + vaeFloor)
        let steady = Array(warmup..<blocks)
        let fps = steadyFPS(arrivals: times.arrivals, frames: times.frames, warmup: warmup)
        let plainBlocks = steady.filter { $0 != switchBlock }
        let ditMedian = median(plainBlocks.map { times.ditSeconds[$0] })
        let decodeMedian = median(plainBlocks.map { times.decodeSeconds[$0] })

        print("")
        print("figure                          measured      floor         measured/floor")
        if steady.count > 1 {
            row("end-to-end FPS (steady state)", fps, e2eFloorFPS, unit: "fps", higherIsBetter: true)
        } else {
            print("end-to-end FPS: needs 2 blocks after --warmup")
        }
        row("DiT-only FPS (24 fps video)", videoFrames / ditMedian, videoFrames / ditFloor, unit: "fps", higherIsBetter: true)
        row("DiT per block (8 latent frames)", ditMedian * 1000, ditFloor * 1000, unit: "ms", higherIsBetter: false)
        if decoder != .none {
            row("decode per block (32 frames)", decodeMedian * 1000, vaeFloor * 1000, unit: "ms", higherIsBetter: false)
        }
        // The first frame needs the first block's 4 steps (the buffer holds only the block; its clean pass runs
        // with the next block) and a quarter of one latent frame's decode (its first latent frame gives 1 frame).
        let firstForward = ComputeCost.ditForward(config, queries: n * tokensPerFrame, keys: n * tokensPerFrame)
        let firstFloor = Double(schedule.steps) * firstForward / rate + decodeLatentFLOPs * 0.25 / rate
        row("time to first frame", (times.firstFrame ?? times.arrivals[0]) * 1000, firstFloor * 1000, unit: "ms",
            higherIsBetter: false)
        if switchBlock > 0 {
            // 2.0 recaches nothing: a scene cut shifts RoPE and pins the block after its clean pass.
            let extra = times.ditSeconds[switchBlock] - ditMedian
            print(String(format: "scene cut adds %.0f ms to its block's DiT time (%.2f of a block; floor 0: no recache)",
                         extra * 1000, extra / ditMedian))
        }
        if let memory = (backend as? MemoryReporting)?.memoryStatistics() {
            print(String(format: "peak device memory %.2f GB (in use at the end %.2f GB, reserved %.2f GB)",
                         Double(memory.peak) / 1e9, Double(memory.inUse) / 1e9, Double(memory.reserved) / 1e9))
        }
        if twoDevices, let memory = (decodeStream as? MemoryReporting)?.memoryStatistics() {
            print(String(format: "decoder's device (%@): peak %.2f GB (in use at the end %.2f GB)", decodeStream.name,
                         Double(memory.peak) / 1e9, Double(memory.inUse) / 1e9))
        }
        print(String(format: "KV cache %.2f GB; blocks %@ ms (DiT)", Double(pipeline.generator.cacheBytes) / 1e9,
                     Self.blockTimes(times.ditSeconds)) + (decoder == .none ? "" : ", \(Self.blockTimes(times.decodeSeconds)) ms (decode)"))
        if let profiler = (backend as? CUDABackend)?.profiler { print("\n" + (try profiler.report()), terminator: "") }
        if let vae = newDecoder() {
            try decoderAlone(vae, stream: decodeStream, latentHeight: lh, latentWidth: lw, latentFrames: n, warm: 1, timed: 2,
                             floor: vaeFloor)
        }
    }
}
