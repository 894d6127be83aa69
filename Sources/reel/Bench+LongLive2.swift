import Foundation
import ReelCore
import ReelModels
import ReelPipeline

/// `reel bench --model 5b` (or `5b-small`): LongLive 2.0's schedule (docs/longlive2.md) on random weights of the
/// Wan2.2-TI2V-5B architecture: blocks of 8 latent frames, 4 UniPC steps and a clean pass each over the 32-frame
/// buffer, a scene cut at --switch-block; with --decoder vae each block is then decoded by a random Wan2.2 VAE of the
/// real size on the same stream (one after the other: LongLive2Generator is not yet behind `Pipeline`).
extension Bench {
    func benchLongLive2(_ config: WanDiTConfig) throws {
        let backend = try backendOptions.make()
        let dtype = backendOptions.storageType
        let schedule = LongLive2Schedule.longLive2
        // The Wan2.2 VAE's stride: 16 pixels a latent, 4 video frames a latent frame (the first latent gives 1).
        let (width, height) = size.size.map { ($0.width, $0.height) } ?? (1280, 704)
        guard width % 32 == 0, height % 32 == 0 else {
            throw ReelError.input("--size for the 5B must be multiples of 32 (16-pixel latents, 2x2 patches), "
                                  + "got \(width)x\(height)")
        }
        let (lh, lw) = (height / 16, width / 16)
        let rate = try Rates.matmul(backend, dtype: dtype)
        print(String(format: "matmul rate measured on this backend: %.2f TFLOP/s (the compute floors below use it)",
                     rate / 1e12))
        let note = quantizationNote(allLinears: "every block linear (LongLive 2.0's W8A8 PTQ)")
        print("reel bench on \(backend.name) (\(dtype)\(note)): DiT \(model.name) (\(config.layers) layers, dim \(config.dim), "
              + "\(config.inChannels) channels), LongLive 2.0 schedule, decoder \(decoder == .vae ? "Wan2.2 VAE" : "none"), "
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
        let (first, second) = (try prompt(1), try prompt(2))
        let vae = decoder == .vae ? StreamingVAEDecoder(model: try WanVAEDecoder.load(
            from: WanVAEDecoder.randomWeights(.wan22, on: backend, dtype: dtype), on: backend, dtype: dtype)) : nil
        print(String(format: "random weights built in %.1f s", Date().timeIntervalSince(t0)))
        (backend as? MemoryReporting)?.resetPeakMemory()

        let generator = try LongLive2Generator(model: dit, latentHeight: lh, latentWidth: lw, schedule: schedule,
                                               noise: PhiloxNoise(seed: 0))
        var seconds: [Double] = [], decodeSeconds: [Double] = []
        for b in 0..<blocks {
            try backend.synchronize()
            let start = ContinuousClock.now
            let cut = switchBlock > 0 && b == switchBlock
            let latents = try generator.nextBlock(prompt: b >= switchBlock && switchBlock > 0 ? second : first, sceneCut: cut)
            try backend.synchronize()
            seconds.append((ContinuousClock.now - start).seconds)
            if let vae {
                let t0 = ContinuousClock.now
                _ = try vae.decode(try latents.reshaped([1] + latents.shape.dims))
                try backend.synchronize()
                decodeSeconds.append((ContinuousClock.now - t0).seconds)
            }
        }

        let tokensPerFrame = (lh / config.patch) * (lw / config.patch)
        let frames = schedule.framesPerBlock
        let forward = ComputeCost.ditForward(config, queries: frames * tokensPerFrame,
                                             keys: schedule.attentionFrames * tokensPerFrame)
        let floor = Double(schedule.steps + 1) * forward / rate
        let steady = Array(min(warmup, blocks - 1)..<blocks).filter { $0 != switchBlock }
        let perBlock = median(steady.map { seconds[$0] })
        let videoFrames = Double(4 * frames)
        print("")
        print("figure                          measured      floor         measured/floor")
        row("DiT-only FPS (24 fps video)", videoFrames / perBlock, videoFrames / floor, unit: "fps", higherIsBetter: true)
        row("DiT per block (8 latent frames)", perBlock * 1000, floor * 1000, unit: "ms", higherIsBetter: false)
        if vae != nil {
            let decode = median(steady.map { decodeSeconds[$0] })
            let decodeFloor = Double(frames) * ComputeCost.vaeDecodeLatentFrame(.wan22, height: lh, width: lw) / rate
            row("end-to-end FPS (in sequence)", videoFrames / (perBlock + decode), videoFrames / (floor + decodeFloor),
                unit: "fps", higherIsBetter: true)
            row("decode per block (32 frames)", decode * 1000, decodeFloor * 1000, unit: "ms", higherIsBetter: false)
        }
        if let memory = (backend as? MemoryReporting)?.memoryStatistics() {
            print(String(format: "peak device memory %.2f GB (in use at the end %.2f GB)", Double(memory.peak) / 1e9,
                         Double(memory.inUse) / 1e9))
        }
        print(String(format: "KV cache %.2f GB; blocks %@", Double(generator.cacheBytes) / 1e9,
                     seconds.map { String(format: "%.0f", $0 * 1000) }.joined(separator: " ") + " ms (DiT)"))
    }
}
