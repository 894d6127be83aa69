import Foundation
import ReelCore
import ReelCUDA
import ReelMedia
import ReelModels
import ReelPipeline

/// Frames made up front and handed out one at a time, each timed: as fast as they are pulled, or (`interval`)
/// released at a camera's pace, frame i not before the first pull + i x interval. A frame's time is when it was
/// pulled, or its release when paced (a live camera's frame exists from then, however late it is read).
final class PreparedInput: VideoInput, @unchecked Sendable {
    let source = "memory"
    let width: Int, height: Int
    var frameRate: FrameRate? { nil }
    private let frames: [RGBFrames]
    private let interval: Duration?
    private let lock = NSLock()
    private var next = 0
    private var firstPull: ContinuousClock.Instant?
    private(set) var pulledAt: [ContinuousClock.Instant] = []

    init(width: Int, height: Int, count: Int, interval: Duration? = nil) throws {
        self.width = width; self.height = height
        self.interval = interval
        // A bright square (up to 64 pixels) moving 8 pixels a frame over a dim gradient (the motion rule sees motion).
        frames = try (0..<count).map { i in
            var p = [UInt8](repeating: 0, count: width * height * 3)
            for y in 0..<height { for x in 0..<width { p[(y * width + x) * 3 + 2] = UInt8(40 + 80 * x / width) } }
            let side = max(1, min(64, width / 4, height / 4))
            let x0 = (8 * i) % max(1, width - side)
            for y in (height / 3)..<(height / 3 + side) { for x in x0..<(x0 + side) { p[(y * width + x) * 3] = 230 } }
            return try RGBFrames(width: width, height: height, pixels: p)
        }
    }

    func nextFrame() throws -> RGBFrames? {
        let (index, release): (Int, ContinuousClock.Instant?) = lock.withLock {
            let start = firstPull ?? .now
            firstPull = start
            return (next, interval.map { start + $0 * next })
        }
        guard index < frames.count else { return nil }
        if let release, release > .now { Thread.sleep(forTimeInterval: (release - .now).seconds) }
        return lock.withLock {
            defer { next += 1 }
            pulledAt.append(release ?? .now)
            return frames[index]
        }
    }

    func close() {}
    func pulled(_ frame: Int) -> ContinuousClock.Instant? { lock.withLock { frame < pulledAt.count ? pulledAt[frame] : nil } }
}

extension Bench {
    /// `reel bench --input`: video-to-video with StreamDiffusionV2's schedule at `--steps` steps, random DiT and
    /// TAEHV or Wan VAE encoder and decoder of the real sizes, input frames already in memory. Prints the steady-state FPS
    /// (frames out per second after the warm-up blocks) against its floor, the first output, and the latency from
    /// a block's last input frame being taken to its frames coming out.
    func benchVideoToVideo() async throws {
        let backend = try backendOptions.make()
        let dtype = backendOptions.storageType
        let geometry = try size.geometry(folderSize: nil)
        let (lh, lw) = (geometry.latentHeight, geometry.latentWidth)
        let rate = try Rates.matmul(backend, dtype: dtype)
        guard let config = model.config else { throw ReelError.input("--input runs random weights: give --model 1.3b, 14b or small") }
        print("reel bench --input on \(backend.name) (\(dtype)): DiT \(model.name), \(decoder == .vae ? "Wan VAE" : "TAEHV") encoder and decoder, \(geometry), "
              + "\(steps) step(s), \(blocks) blocks of 4 frames")
        let dit = try WanDiT.load(from: WanDiT.randomWeights(config, on: backend, dtype: dtype), heads: config.heads,
                                  backend: backend, dtype: dtype)
        let decodeStream = try backendOptions.makeDecodeBackend() ?? backend.makeStream()
        let encodeStream = try backendOptions.makeEncodeBackend(beside: backend) ?? decodeStream.makeStream()
        print("DiT on \(backend.device.name), encoder on \(encodeStream.device.name), decoder on \(decodeStream.device.name)")
        let newEncoder: () -> any VideoEncoder, newDecoder: () -> any VideoDecoder, codecFLOPs: Double, codecNote: String
        if decoder == .vae {
            let d = try WanVAEDecoder.load(from: WanVAEDecoder.randomWeights(.wan21, on: decodeStream, dtype: dtype), on: decodeStream, dtype: dtype)
            let e = try WanVAEEncoder.load(from: WanVAEEncoder.randomWeights(.wan21, on: encodeStream, dtype: dtype), on: encodeStream, dtype: dtype)
            newEncoder = { StreamingVAEEncoder(model: e) }
            newDecoder = { StreamingVAEDecoder(model: d) }
            codecFLOPs = ComputeCost.vaeEncodeLatentFrame(.wan21, height: lh, width: lw)
                + ComputeCost.vaeDecodeLatentFrame(.wan21, height: lh, width: lw)
            codecNote = "Wan VAE encoder + decoder"
        } else {
            let d = try TinyDecoder.load(from: TinyDecoder.randomWeights(on: decodeStream, dtype: dtype), on: decodeStream, dtype: dtype)
            let e = try TinyEncoder.load(from: TinyEncoder.randomWeights(on: encodeStream, dtype: dtype), on: encodeStream, dtype: dtype)
            newEncoder = { StreamingTAEHVEncoder(model: e) }
            newDecoder = { StreamingTinyDecoder(model: d) }
            codecFLOPs = TinyEncoder.flopsPerLatentFrame(height: lh, width: lw) + TinyDecoder.flopsPerLatentFrame(height: lh, width: lw)
            codecNote = "TAEHV encoder + decoder"
        }
        let prompt = try dit.encodePrompt(try backend.randomNormal([32, config.textDim], seed: 1, offset: 0, dtype: dtype))
        let parts = ModelParts(dit: dit, newDecoder: newDecoder, decodeStream: decodeStream)
        let schedule = try StreamV2VSchedule.streamDiffusionV2(steps: steps,
                                                               noiseScale: StreamV2VSchedule.streamDiffusionV2.noiseScale)

        func runOnce(blocks: Int, paced: Duration? = nil) async throws
            -> (times: [ContinuousClock.Instant], latency: [Double], input: PreparedInput) {
            let frames = VideoToVideoRequest.firstBlockFrames + VideoToVideoRequest.blockFrames * (blocks - 1)
            let input = try PreparedInput(width: geometry.width, height: geometry.height, count: frames, interval: paced)
            let pipeline = try VideoToVideoPipeline(model: parts, encoder: newEncoder(), encodeStream: encodeStream,
                                                    input: input, request: VideoToVideoRequest(geometry: geometry, schedule: schedule),
                                                    prompt: prompt, noise: PhiloxStreamNoise(seed: 3))
            var times: [ContinuousClock.Instant] = [], latency: [Double] = []
            for try await chunk in pipeline.chunks() {
                let now = ContinuousClock.now
                times.append(now)
                let k = chunk.block.index
                let lastFrame = k == 0 ? VideoToVideoRequest.firstBlockFrames - 1 : VideoToVideoRequest.firstBlockFrames + 4 * k - 1
                if let t = input.pulled(lastFrame) { latency.append((now - t).seconds) }
            }
            return (times, latency, input)
        }
        let t0 = ContinuousClock.now
        _ = try await runOnce(blocks: max(4, steps + 3))   // kernels compiled, algorithms chosen, pools filled
        print(String(format: "warm-up run in %.1f s", (ContinuousClock.now - t0).seconds))
        let profiler = (backend as? CUDABackend)?.profiler            // REEL_PROFILE: the measured run, per stream
        if let profiler, let gpu = backend as? CUDABackend {
            profiler.reset()
            profiler.name("DiT", for: gpu)
            if let d = decodeStream as? CUDABackend, d !== gpu { profiler.name("decoder", for: d) }
            if let e = encodeStream as? CUDABackend, e !== gpu { profiler.name("encoder", for: e) }
        }
        let started = ContinuousClock.now
        let (times, latency, _) = try await runOnce(blocks: blocks)
        guard times.count > warmup + 1 else { throw ReelError.input("too few blocks came out (\(times.count)) for --warmup \(warmup)") }
        let steadySeconds = (times[times.count - 1] - times[warmup]).seconds
        let fps = Double(4 * (times.count - 1 - warmup)) / steadySeconds

        let tokens = (lh / config.patch) * (lw / config.patch)
        let ditFLOPs = ComputeCost.ditForward(config, queries: schedule.levels * tokens, keys: schedule.cacheFrames * tokens)
        let blockFloor = (ditFLOPs + codecFLOPs) / rate
        print("")
        row("end-to-end FPS (steady state)", fps, 4 / blockFloor, unit: "fps", higherIsBetter: true)
        row("first output after start", (times[0] - started).seconds * 1000, blockFloor * 1000 * Double(schedule.levels), unit: "ms",
            higherIsBetter: false)
        let steadyLatency = Array(latency.dropFirst(warmup))
        if !steadyLatency.isEmpty {
            row("input-to-output latency", median(steadyLatency) * 1000, blockFloor * 1000 * Double(schedule.levels), unit: "ms",
                higherIsBetter: false)
        }
        if inputFPS > 0 {
            // A live camera: frames at --input-fps; latency from a block's last frame's release to its output.
            let (pacedTimes, pacedLatency, _) = try await runOnce(blocks: blocks, paced: .seconds(1 / inputFPS))
            let steady = Array(pacedLatency.dropFirst(warmup))
            if !steady.isEmpty {
                let rate = Double(4 * (pacedTimes.count - 1 - warmup)) / (pacedTimes[pacedTimes.count - 1] - pacedTimes[warmup]).seconds
                let keepsUp = fps >= inputFPS * 0.98
                print(String(format: "live input at %.0f FPS: latency median %.1f ms, p90 %.1f ms, output %.1f FPS%@", inputFPS,
                             median(steady) * 1000, percentile(steady, 0.9) * 1000, rate,
                             keepsUp ? "" : " (the pipeline is slower than the input: its backlog grows, so does the latency)"))
            }
        }
        print(String(format: "DiT %.1f GFLOP a block (%d levels x %d tokens against %d cached frames), %@ %.1f GFLOP a block",
                     ditFLOPs / 1e9, schedule.levels, tokens, schedule.cacheFrames, codecNote, codecFLOPs / 1e9))
        if let stats = backend.device.memoryStatistics() {
            print(String(format: "peak device memory %.2f GB", Double(stats.peak) / 1e9))
        }
        if let profiler { print("\n" + (try profiler.report()), terminator: "") }
    }
}
