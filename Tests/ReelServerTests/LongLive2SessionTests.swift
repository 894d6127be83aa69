import Foundation
import HummingbirdTesting
import HummingbirdWebSocket
import ReelCore
import ReelCPU
import ReelIO
import ReelMedia
import ReelModels
import ReelPipeline
import Testing
@testable import ReelServer

extension TestModel {
    nonisolated(unsafe) private static var cachedLongLive2: LoadedModel?
    private static let longLive2Lock = NSLock()

    /// A LongLive 2.0 model with random weights, the shapes of `ModelFolderFixtures.longLive2Folder`'s (ReelPipelineTests):
    /// a DiT of 48 latent channels in and out, the Wan2.2 VAE's structure (16-pixel stride) at widths 4 / 8 with its
    /// encoder, and the micro model's umT5 and tokenizer. Sizes in multiples of 32; blocks of 8 latent frames.
    static func longLive2() throws -> LoadedModel {
        try longLive2Lock.withLock {
            if let cachedLongLive2 { return cachedLongLive2 }
            let backend = CPUBackend(threads: 1, gemm: .own)
            let tok = try Tokenizer(contentsOf: fixtures.appendingPathComponent("tokenizer/nfkc/tokenizer.json"))
            let t5 = try UMT5Encoder.load(
                from: UMT5Encoder.randomWeights(UMT5Config(vocabulary: tok.vocabularySize, dim: 16, heads: 2, headDim: 8, ffnDim: 32,
                                                           layers: 1), on: backend), backend: backend)
            let config = WanDiTConfig(dim: 64, ffnDim: 128, heads: 2, layers: 2, inChannels: 48, outChannels: 48, textDim: 16)
            let dit = try WanDiT.load(from: WanDiT.randomWeights(config, on: backend, seed: 11), heads: 2, backend: backend)
            var vae = WanVAEConfig.wan22
            vae.baseDim = 4
            vae.decoderBaseDim = 8
            let decoder = UncheckedSendable(try WanVAEDecoder.load(from: WanVAEDecoder.randomWeights(vae, on: backend, seed: 12),
                                                                    on: backend, config: vae))
            let encoder = UncheckedSendable(try WanVAEEncoder.load(from: WanVAEEncoder.randomWeights(vae, on: backend, seed: 13),
                                                                    on: backend, config: vae))
            let model = LoadedModel(prompts: try PromptEncoder(tokenizer: tok, textEncoder: t5, model: dit), decoderName: "wan2.2-vae",
                                    makeEncoder: { StreamingVAEEncoder(model: encoder.value) }) {
                StreamingVAEDecoder(model: decoder.value)
            }
            cachedLongLive2 = model
            return model
        }
    }
}

/// `reel serve` with a LongLive 2.0 model: sessions in its blocks (8 latent frames: 29 video frames, then 32), live
/// prompt switches without a recache, an image as the first frame, and what 2.0 cannot do refused at creation.
@Suite struct LongLive2SessionTests {
    /// Frames of each block a watched session sends (with their prompt index), acknowledging each block; `onFirst`
    /// runs when the first frames come, before block 0 is acknowledged.
    static func blocks(of created: (session: Session, events: AsyncStream<SessionEvent>?),
                       onFirst: () -> Void = {}) async -> [Int: [(frame: Int, promptIndex: Int)]] {
        var out: [Int: [(frame: Int, promptIndex: Int)]] = [:], first = true
        for await event in created.events! {
            if case let .block(_, frames, endsBlock) = event {
                for message in frames {
                    guard let f = FrameMessage.decode(message) else { continue }
                    out[f.block, default: []].append((f.frame, f.promptIndex))
                }
                if first { first = false; onFirst() }
                if endsBlock { created.session.delivered() }
            }
            if [.finished, .failed].contains(created.session.state), case .message = event { break }
        }
        return out
    }

    func request(seconds: Double, width: Int = 64, height: Int = 64, input: SessionInput? = nil) -> SessionRequest {
        SessionRequest(prompt: "a red circle moves left", seed: 3, width: width, height: height, fps: 24, seconds: seconds,
                       quality: 90, record: false, input: input)
    }

    @Test func sessionRunsInTheModelsBlocksWithALiveSwitch() async throws {
        let manager = SessionManager(model: try TestModel.longLive2(), config: TestModel.config { $0.defaultWidth = 64; $0.defaultHeight = 64 })
        // 4 s at 24 fps: 96 frames need 25 latent frames, 4 blocks of 8 (29 + 3 * 32 = 125 frames).
        let created = try await manager.create(request(seconds: 4), watched: true)
        let blocks = await Self.blocks(of: created) { created.session.setPrompt("a blue square bounces") }
        let session = created.session
        #expect(session.state == .finished, "\(session.statusMessage().error ?? "")")
        #expect(blocks.keys.sorted() == [0, 1, 2, 3])
        let counts: [Int] = (0..<4).map { blocks[$0]?.count ?? 0 }
        #expect(counts == [29, 32, 32, 32])
        let frames: [(frame: Int, promptIndex: Int)] = (0..<4).flatMap { blocks[$0] ?? [] }
        #expect(frames.map(\.frame) == Array(0..<125))
        // Block 0 is acknowledged only after the switch was sent, so the generator can be at most 2 blocks ahead:
        // the switch starts a later block (1...3), and every block from it has the new prompt.
        let switched = try #require((0..<4).first { blocks[$0]?.first?.promptIndex == 1 })
        #expect((1...3).contains(switched))
        #expect((0..<4).allSatisfy { b in blocks[b]!.allSatisfy { $0.promptIndex == (b < switched ? 0 : 1) } })
        let status = session.statusMessage()
        #expect(status.frames == 125 && status.blocks == 4 && status.promptSwitches == 1 && status.prompt == "a blue square bounces")
        await manager.shutdown()
    }

    /// `reel serve --test-pattern` with a 2.0 model sends the pattern in the model's blocks (29 frames, then 32), as the
    /// model's video would come; with a 1.0 model it keeps 1.0's (9, then 12).
    @Test func testPatternComesInTheModelsBlocks() async throws {
        let manager = SessionManager(model: try TestModel.longLive2(), config: TestModel.config {
            $0.defaultWidth = 64; $0.defaultHeight = 64; $0.testPattern = true
        })
        // 2 s at 24 fps: 48 frames need 13 latent frames, 2 blocks of 8 (29 + 32 = 61 frames).
        let blocks = await Self.blocks(of: try await manager.create(request(seconds: 2), watched: true))
        #expect(blocks.keys.sorted() == [0, 1] && blocks[0]?.count == 29 && blocks[1]?.count == 32)
        await manager.shutdown()
        let wan = SessionManager(model: try TestModel.load(), config: TestModel.config { $0.testPattern = true })
        let wanBlocks = await Self.blocks(of: try await wan.create(
            SessionRequest(prompt: "a pattern", seed: 4, width: 64, height: 64, fps: 24, seconds: 1, quality: 90,
                           record: false), watched: true))
        #expect(wanBlocks.keys.sorted() == [0, 1, 2] && wanBlocks[0]?.count == 9 && wanBlocks[1]?.count == 12)
        await wan.shutdown()
    }

    @Test func imageSessionStartsFromTheImageAsItsFirstFrame() async throws {
        let manager = SessionManager(model: try TestModel.longLive2(), config: TestModel.config())
        var pixels: [UInt8] = []
        for y in 0..<64 { for x in 0..<80 { pixels += [UInt8(x * 3), UInt8(y * 4), 128] } }
        let image = try RGBFrames(width: 80, height: 64, pixels: pixels)
        // 2 s at 24 fps: 48 frames, 2 blocks (61 frames) with the image as latent frame 0.
        let created = try await manager.create(request(seconds: 2, input: .image), source: .image(image), watched: true)
        let blocks = await Self.blocks(of: created)
        #expect(created.session.state == .finished, "\(created.session.statusMessage().error ?? "")")
        let counts: [Int] = (0..<2).map { blocks[$0]?.count ?? 0 }
        #expect(counts == [29, 32])
        await manager.shutdown()
    }

    @Test func sizesAndInputsTheModelCannotMakeAreRefusedAtCreation() async throws {
        let server = try ReelServer(manager: SessionManager(model: try TestModel.longLive2(),
                                                            config: TestModel.config { $0.defaultWidth = 64; $0.defaultHeight = 64 }))
        // In the manager: a 1.0 size (multiples of 16, not 32) and video-to-video.
        let refusals: [(SessionRequest, SessionSource?, String, String)] = [
            (request(seconds: 1, width: 48, height: 32), nil, "bad_size", "multiples of 32"),
            (request(seconds: 1, input: .video), .videoFile("/nonexistent.mp4"), "unsupported_input", "LongLive 2.0"),
        ]
        for (request, source, code, words) in refusals {
            do {
                _ = try await server.manager.create(request, source: source)
                Issue.record("\(code): the session was created")
            } catch {
                #expect(error.status == .badRequest && error.code == code)
                #expect(error.message.contains(words), "\(error.message)")
            }
        }
        #expect(await server.manager.counts.total == 0)
        // Over HTTP: 400 with the code; over the WebSocket: an error message, and the socket stays open for a start.
        try await HTTPAPITests.app(server).test(.live) { client in
            let response = try await HTTPAPITests.post(client, "{\"prompt\": \"a cat\", \"options\": {\"width\": 48, \"height\": 32}}")
            #expect(response.status == .badRequest)
            #expect(try HTTPAPITests.json(response)["error"]?["code"]?.string == "bad_size")
            try await client.ws("/v1/ws") { stream, outbound, _ in
                var inbound = stream.messages(maxSize: 1 << 20).makeAsyncIterator()
                let seen = WebSocketTests.Seen()
                try await outbound.write(WebSocketTests.text(["type": "start", "prompt": "a cat", "options": ["width": 48, "height": 32]]))
                try await outbound.write(WebSocketTests.text(["type": "start", "prompt": "a cat", "options": ["input": "video"]]))
                try await WebSocketTests.read(&inbound, into: seen) { $0.messages.count == 2 }
                #expect(seen.messages.map { $0["code"]?.string } == ["bad_size", "unsupported_input"])
                #expect(seen.messages.allSatisfy { $0["type"] == "error" })
            }
        }
        #expect(await server.manager.counts.total == 0)
        await server.manager.shutdown()
    }
}
