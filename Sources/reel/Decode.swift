import ArgumentParser
import Foundation
import ReelCore
import ReelMedia
import ReelCPU
import ReelIO
import ReelModels
import ReelPipeline

extension LatentLayout: ExpressibleByArgument {}

/// `reel decode`: a latent video (safetensors) to a video file, block by block.
struct Decode: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode a latent video to MP4, Y4M or PNG frames with the Wan VAE or the TAEHV tiny decoder.",
        discussion: """
        The latents are the DiT's normalized latents (16 channels; 48 for the Wan2.2 VAE), in a safetensors file; the layout \
        ([N,C,T,h,w], [N,T,C,h,w] or [N,T,h,w,C]) is detected unless --layout says it. They are decoded \
        --block latent frames at a time, as a stream: each block's frames reach the output before the \
        next block is decoded. Latent 0 gives 1 frame, every later latent 4 (a latent cell is 8x8 pixels; \
        16x16 for Wan2.2).

        --vae takes Wan2.1_VAE.pth or Wan2.2_VAE.pth (which one is read from the weights), a safetensors \
        file with the same keys, or diffusers' vae/ folder (or its diffusion_pytorch_model.safetensors); \
        with --tiny it takes taew2_1.pth (or .safetensors). \
        The output format follows the extension: .mp4 (H.264 through ffmpeg; Y4M when ffmpeg is \
        missing), .y4m, or anything else for a folder of PNG frames. Runs on the CPU backend.
        """
    )

    @Option(help: "Safetensors file holding the latents.")
    var latents: String

    @Option(help: "Tensor to read from the latents file (default: its only tensor, or 'latents').")
    var key: String?

    @Option(help: "Latent layout: \(LatentLayout.allCases.map(\.rawValue).joined(separator: ", ")) (default: detected).")
    var layout: LatentLayout?

    @Option(help: "VAE weights (Wan2.1_VAE.pth, Wan2.2_VAE.pth, safetensors, or a diffusers vae/ folder); TAEHV weights with --tiny.")
    var vae: String

    @Flag(help: "Use the TAEHV tiny decoder (taew2_1) instead of the Wan VAE.")
    var tiny = false

    @Option(name: [.short, .customLong("output")], help: "out.mp4, out.y4m, or a folder for PNG frames.")
    var output: String

    @Option(help: "Frames per second of the video.")
    var fps = 16

    @Option(help: "Latent frames decoded per step.")
    var block = 3

    @Option(help: "Latent frames the Wan VAE runs through its layers at once (1 = Wan's schedule, least memory; the frames are the same).")
    var chunk = 1

    @Option(help: "CPU threads (default: all cores).")
    var threads: Int?

    mutating func validate() throws {
        if fps <= 0 { throw ValidationError("--fps must be positive, got \(fps).") }
        if block <= 0 { throw ValidationError("--block must be at least 1 latent frame, got \(block).") }
        if chunk <= 0 { throw ValidationError("--chunk must be at least 1 latent frame, got \(chunk).") }
        if let threads, threads <= 0 { throw ValidationError("--threads must be positive, got \(threads).") }
        for (name, path) in [("--latents", latents), ("--vae", vae)] where !FileManager.default.fileExists(atPath: path) {
            throw ValidationError("\(name): \(path) does not exist.")
        }
    }

    func run() async throws {
        do { try await decode() } catch let error as ReelError {
            printError(error)
            throw ExitCode.failure
        }
    }

    private func decode() async throws {
        let backend = CPUBackend(threads: threads)
        let started = Date()
        let decoder: any VideoDecoder
        var name = "TAEHV tiny decoder"
        if tiny {
            decoder = StreamingTinyDecoder(model: try TinyDecoder.load(from: WeightFileTensors(path: vae), on: backend))
        } else {
            let model = try WanVAEDecoder.load(from: WeightFileTensors(path: vae), on: backend)
            name = model.config.name + " decoder"
            decoder = StreamingVAEDecoder(model: model, maxLatentFramesPerChunk: chunk)
        }
        let z = try LatentLayout.channelLast(readLatents(backend), channels: decoder.latentChannels, layout: layout)
        guard z.shape[0] == 1 else {
            throw ReelError.input("latents hold \(z.shape[0]) videos (N = \(z.shape[0])); reel decode writes one video, N must be 1")
        }
        let total = z.shape[1]
        let (h, w) = (z.shape[2] * decoder.spatialStride, z.shape[3] * decoder.spatialStride)
        log("\(name) loaded in \(Self.seconds(since: started)); "
            + "\(total) latent frames -> \(4 * total - 3) frames of \(w)x\(h) at \(fps) fps")
        let sink = try VideoSinks.open(path: output, fps: fps) { log("note: " + $0) }
        let blocks = AsyncThrowingStream<Tensor, Error> { c in
            for start in stride(from: 0, to: total, by: block) {
                do { c.yield(try backend.slice(z, axis: 1, start: start, length: min(block, total - start))) } catch {
                    c.finish(throwing: error)
                    return
                }
            }
            c.finish()
        }
        var latentDone = 0, framesDone = 0
        let decodeStart = Date()
        let frames = try await BlockDecodingLoop.run(blocks, decoder: decoder, sink: sink) { r in
            latentDone += r.latentFrames
            framesDone += r.frames
            log("latents \(latentDone)/\(total): \(framesDone) frames written "
                + "(decode \(String(format: "%.2f", r.decodeSeconds)) s, write \(String(format: "%.2f", r.writeSeconds)) s)")
        }
        let elapsed = Date().timeIntervalSince(decodeStart)
        log("wrote \(frames) frames to \(sink.destination) in \(String(format: "%.1f", elapsed)) s "
            + "(\(String(format: "%.2f", Double(frames) / max(elapsed, 1e-9))) frames/s)")
    }

    /// The latent tensor: --key, the file's only tensor, or the one named "latents".
    private func readLatents(_ backend: CPUBackend) throws -> Tensor {
        let file = try WeightFiles.open(latents)
        let name: String
        if let key {
            name = key
        } else if file.keys.count == 1 {
            name = file.keys[0]
        } else if file.keys.contains("latents") {
            name = "latents"
        } else {
            throw ReelError.input("\(latents) holds \(file.keys.count) tensors (\(file.keys.prefix(6).joined(separator: ", "))): pick one with --key")
        }
        return try file.tensor(name, on: backend, as: .f32)
    }

    static func seconds(since start: Date) -> String { String(format: "%.2f s", Date().timeIntervalSince(start)) }

}
