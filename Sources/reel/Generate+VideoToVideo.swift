import Foundation
import ReelCore
import ReelMedia
import ReelModels
import ReelPipeline

extension Generate {
    /// `--input`: the input restyled live by the prompt with StreamDiffusionV2's schedule
    /// (`VideoToVideoPipeline`), frames fitted to the video size and rate, written as they come.
    func videoToVideo(files: ModelFiles, geometry: BlockGeometry, fps: Int) async throws {
        let backend = try backendOptions.make()
        let loadStart = Date()
        let model = try LoadedModel.load(files: files, decoder: true, encoder: true, backend: backend,
                                          decodeBackend: try backendOptions.makeDecodeBackend(),
                                          encodeBackend: try backendOptions.makeEncodeBackend(beside: backend), dtype: backendOptions.storageType,
                                          quantization: models.quantization, kvCache: models.kvCache, attention: models.attention, textBackend: backendOptions.makeTextBackend(),
                                          residency: backendOptions.residency(geometry: geometry))
        if let plan = model.placement?.plan { log(plan.description) }
        guard let encoder = model.newEncoder() else { throw ReelError.input("the model has no encoder for video inputs") }
        log(String(format: "loaded the model with its encoder in %.1f s", Date().timeIntervalSince(loadStart)))

        let raw = try openVideoInput(path: input!, stallTimeout: inputTimeout)
        let source = try FittedInput(raw, width: geometry.width, height: geometry.height, frameRate: try FrameRate(fps))
        log("input \(raw.source): \(raw.width)x\(raw.height)\(raw.frameRate.map { " at \($0) fps" } ?? ""), "
            + "fitted to \(geometry) at \(fps) fps (scaled to cover, centre-cropped)")
        let noiseScale = self.noiseScale ?? files.noiseScale ?? StreamV2VSchedule.streamDiffusionV2.noiseScale
        let schedule = try StreamV2VSchedule.streamDiffusionV2(steps: steps, noiseScale: noiseScale)
        let request = VideoToVideoRequest(geometry: geometry, schedule: schedule,
                                          maxInputFrames: seconds.map { Int(($0 * Double(fps)).rounded(.up)) })
        let pipeline = try VideoToVideoPipeline(model: model, encoder: encoder, encodeStream: model.encodeStream, input: source,
                                                request: request, prompt: try model.context(for: prompt!),
                                                noise: PhiloxStreamNoise(seed: seed))
        let sink = try VideoSinks.open(path: output, fps: fps, live: liveOptions) { log("note: " + $0) }
        var frames = 0
        let started = Date()
        do {
            for try await chunk in pipeline.chunks() {
                guard let rgb = chunk.frames else { continue }
                try sink.write(rgb)
                frames += rgb.count
                let step = pipeline.generator.lastStep
                log(String(format: "block %d: DiT %.0f ms, decode %.0f ms, %d frames (noise scale %.3f); %.2f frames/s overall",
                           chunk.block.index, chunk.block.timings.seconds * 1000, chunk.decodeSeconds * 1000, rgb.count,
                           step?.noiseScale ?? noiseScale, Double(frames) / max(Date().timeIntervalSince(started), 1e-9)))
            }
        } catch {
            try? sink.finish()   // what was made so far stays playable
            log("wrote \(frames) frames to \(sink.destination) before the error")
            throw error
        }
        try sink.finish()
        log("wrote \(frames) frames (\(geometry), \(fps) fps) to \(sink.destination)")
    }
}
