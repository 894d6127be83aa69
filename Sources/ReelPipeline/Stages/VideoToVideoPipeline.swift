import Foundation
import ReelCore
import ReelMedia
import ReelModels

/// One video-to-video run's settings.
public struct VideoToVideoRequest: Sendable {
    /// The output size (input frames arrive already fitted to it: `FittedInput`).
    public var geometry: BlockGeometry
    public var schedule: StreamV2VSchedule
    /// Input frames to convert at most (nil: until the input ends or the pipeline is stopped).
    public var maxInputFrames: Int?

    public init(geometry: BlockGeometry, schedule: StreamV2VSchedule = .streamDiffusionV2, maxInputFrames: Int? = nil) {
        self.geometry = geometry; self.schedule = schedule; self.maxInputFrames = maxInputFrames
    }

    /// Input frames of the first block (5: 1 + 4, two latent frames, as StreamDiffusionV2's first call) and
    /// of every later one (4: one latent frame).
    public static let firstBlockFrames = 5, blockFrames = 4
}

/// An input block encoded by the Input stage.
struct EncodedInput: @unchecked Sendable {
    var index: Int
    /// `[k, h, w, C]` on the encode stream (k = 2 for the first block, 1 after).
    var latents: Tensor
    var ready: any BackendEvent
    /// The motion of its frames after the previous block's last (`MotionAwareNoise.frameDifference`).
    var motion: Double
}

/// Live video-to-video (StreamDiffusionV2's schedule): Input (frames read, fitted, encoded a block at a time on
/// the encode stream) -> Generator (`StreamBatchGenerator` on the DiT's stream) -> Decoder -> chunks, each stage
/// on its own thread, joined by channels of capacity 1 (backpressure from a slow consumer reaches the input,
/// which then waits: a live source is read as fast as the pipeline converts).
///
/// The output has the input's frames one for one: 5 for the first block, 4 for each later one. With the stream
/// batch a block comes out N - 1 blocks after it went in; at the end of the input the pipeline pushes N - 1 copies
/// of the last block to bring the last real blocks out (their own outputs are dropped). A trailing group of
/// fewer than 4 frames is not converted. The prompt is fixed for the run: StreamDiffusionV2 starts a new session
/// to change it; `switchPrompt` messages are ignored here (pause, resume and stop apply between blocks).
public final class VideoToVideoPipeline {
    public let control: ControlChannel
    public let request: VideoToVideoRequest
    public let generator: StreamBatchGenerator
    private let model: any PipelineModel
    private let input: UncheckedSendable<any VideoInput>
    private let encoder: UncheckedSendable<any VideoEncoder>
    private let encodeStream: any Backend
    private let decoder: (any VideoDecoder)?

    public init(model: any PipelineModel, encoder: any VideoEncoder, encodeStream: any Backend, input: any VideoInput,
                request: VideoToVideoRequest, prompt: WanDiT.PromptContext, noise: any StreamNoiseSource,
                control: ControlChannel = ControlChannel()) throws {
        let g = request.geometry
        guard input.width == g.width, input.height == g.height else {
            throw ReelError.input("\(input.source) gives \(input.width)x\(input.height) frames; the video is \(g) (fit them first)")
        }
        guard let decoder = model.newDecoder() else { throw ReelError.input("video-to-video needs a decoder") }
        // StreamDiffusionV2 feeds its DiT the Wan VAE's raw means (`stream_encode(is_scale=False)`), and its
        // decoder de-normalizes the DiT's output as usual (docs/streamdiffusionv2.md, section 1).
        (encoder as? StreamingVAEEncoder)?.normalizes = false
        self.model = model
        self.encoder = UncheckedSendable(encoder)
        self.encodeStream = encodeStream
        self.input = UncheckedSendable(input)
        self.request = request
        self.control = control
        self.decoder = decoder
        generator = try StreamBatchGenerator(model: model.dit, prompt: prompt, latentHeight: g.latentHeight,
                                             latentWidth: g.latentWidth, schedule: request.schedule, noise: noise)
    }

    /// Starts the stages and returns the chunks in order. Call once.
    public func chunks() -> AsyncThrowingStream<VideoChunk, Error> {
        let encoded = Channel<EncodedInput>(capacity: 1)
        let latents = Channel<LatentBlock>(capacity: 1)
        let output = Channel<VideoChunk>(capacity: 1)
        let run = PipelineRun(control: control, output: output, channels: [encoded.cancel, latents.cancel])
        let (input, encoder, stream, limit) = (self.input, self.encoder, encodeStream, request.maxInputFrames)
        // Not awaited on an error: a live input's read may block for ever (the encoder's work is then not in flight).
        run.stages.start(awaited: false) {
            InputStage.run(input: input.value, encoder: encoder.value, stream: stream, maxFrames: limit, output: encoded)
        }
        let (generator, control) = (self.generator, self.control)
        run.stages.start {
            StreamGeneratorStage.run(generator: generator, control: control, input: encoded, output: latents)
        }
        let (decoder, decodeStream) = (UncheckedSendable(decoder), model.decodeStream)
        run.stages.start {
            DecoderStage.run(decoder: decoder.value, stream: decodeStream, granularity: .block, input: latents, output: output)
        }
        return AsyncThrowingStream(unfolding: { try await run.next() })
    }
}

/// The Input stage: frames read (already fitted), grouped (5, then 4), their motion measured on the host, and
/// encoded on the encode stream. The input is closed when the stage ends.
enum InputStage {
    static func run(input: any VideoInput, encoder: any VideoEncoder, stream: any Backend, maxFrames: Int?,
                    output: Channel<EncodedInput>) {
        defer { input.close() }
        do {
            encoder.reset()
            var read = 0, index = 0
            var previousLast: ArraySlice<UInt8>?
            while !output.isCancelled {
                let want = index == 0 ? VideoToVideoRequest.firstBlockFrames : VideoToVideoRequest.blockFrames
                if let maxFrames, read + want > maxFrames { break }
                // Frames are taken once the generator has room for their block: read ahead, they would wait in
                // the channel, and a live input's latency with them.
                guard output.reserve() else { break }
                var frames: [RGBFrames] = []
                while frames.count < want, let frame = try input.nextFrame() { frames.append(frame) }
                read += frames.count
                if frames.count < want {
                    output.release()
                    if index == 0 {
                        throw ReelError.input("\(input.source): video-to-video needs at least \(want) frames, the input had \(frames.count)")
                    }
                    break   // a trailing partial group: not converted
                }
                let block = try RGBFrames(width: frames[0].width, height: frames[0].height, pixels: Array(frames.map(\.pixels).joined()))
                let slices = (0..<block.count).map { block.frame($0) }
                let motion = try previousLast.map { try MotionAwareNoise.frameDifference(bytes: [$0] + slices) } ?? 0
                previousLast = slices.last
                let x = try block.modelInput(on: stream, dtype: encoder.dtype)       // [1, want, H, W, 3] in [-1, 1]
                guard let z = try encoder.encode(x) else {
                    throw ReelError.input("the encoder made no latent frame from \(want) frames")
                }
                let latents = try z.reshaped([z.shape[1], z.shape[2], z.shape[3], z.shape[4]])
                guard output.send(EncodedInput(index: index, latents: latents, ready: try stream.recordEvent(), motion: motion)) else { break }
                index += 1
            }
            output.finish()
        } catch {
            output.finish(throwing: error)
        }
    }
}

/// The Generator stage of video-to-video: each encoded block into `StreamBatchGenerator`, what comes out handed
/// on as a `LatentBlock` (latent frame `startFrame` of the output stream); at the end of the input, the last
/// blocks brought out of the stream batch.
enum StreamGeneratorStage {
    static func run(generator: StreamBatchGenerator, control: ControlChannel, input: Channel<EncodedInput>,
                    output: Channel<LatentBlock>) {
        var state = ControlState()
        let be = generator.model.backend
        do {
            var last: (latents: Tensor, index: Int)?
            func send(_ made: StreamV2VBlock?, started: any BackendEvent) throws -> Bool {
                guard let made else { return true }
                let start = made.index == 0 ? 0 : made.index + 1      // block 0 is 2 latent frames, every later one 1
                var block = LatentBlock(index: made.index, startFrame: start, latents: made.latents, promptIndex: 0,
                                        ready: try be.recordTimedEvent(),
                                        timings: BlockTimings(seconds: .nan, recacheSeconds: 0, forwards: generator.schedule.levels))
                block.marks = (started, nil)
                return output.send(block)
            }
            while output.reserve() {
                guard let item = try input.receive() else { output.release(); break }
                state.apply(control.take(waiting: false))
                while state.paused && !state.stopped { state.apply(control.take(waiting: true)) }
                if state.stopped { output.release(); break }
                let started = try be.recordTimedEvent()
                let z = try item.latents.handedOver(to: be, ready: item.ready)
                let made = item.index == 0 ? try generator.start(latents: z) : try generator.push(latent: z, motion: item.motion)
                if item.index > 0 { last = (z, item.index) }
                if made == nil { output.release() }
                guard try send(made, started: started) else { break }
            }
            // The stream batch holds the last N - 1 blocks: push copies of the last block to bring them out.
            if !state.stopped, !output.isCancelled, generator.schedule.streamBatch, let last {
                for _ in 1..<generator.schedule.levels {
                    guard output.reserve() else { break }
                    let started = try be.recordTimedEvent()
                    guard let made = try generator.push(latent: last.latents, motion: 0), made.index <= last.index else {
                        output.release()
                        break
                    }
                    guard try send(made, started: started) else { break }
                }
            }
            output.finish()
        } catch {
            input.cancel()
            output.finish(throwing: error)
        }
    }
}
