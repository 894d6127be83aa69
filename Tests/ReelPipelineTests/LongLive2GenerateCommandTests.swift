import Foundation
import ReelCore
import Testing

/// `reel generate --model FOLDER` on a tiny LongLive 2.0 folder, run as the built executable (`swift build` builds
/// it beside the tests; the test is skipped where it is absent): PNG frames of the expected count, and LongLive
/// 1.0's --continue refused with a message.
@Suite(.serialized) struct LongLive2GenerateCommandTests {
    static let executable = CommandRunner.executable

    func reel(_ arguments: [String]) throws -> (status: Int32, errors: String) { try CommandRunner.reel(arguments) }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: executable)))
    func generateWritesTheFrames() throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let dir = try f.longLive2Folder("LongLive2-tiny")
        let out = f.path("frames")
        let run = try reel(["generate", "--model", dir, "--prompt", "a red circle moves left", "--size", "64x64",
                            "--latent-frames", "16", "--threads", "2", "-o", out])
        #expect(run.status == 0, "\(run.errors)")
        let pngs = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasSuffix(".png") }
        #expect(pngs.count == 61, "\(run.errors)")   // 8 latent frames give 29 frames, the next 8 give 32
        #expect(run.errors.contains("wrote 61 frames (64x64, 24 fps)"), "\(run.errors)")

        let video = f.path("in.y4m")
        try Data("YUV4MPEG2 W64 H64 F24:1 C444\n".utf8).write(to: URL(fileURLWithPath: video))
        let refused = try reel(["generate", "--model", dir, "--prompt", "a red circle", "--size", "64x64",
                                "--continue", video, "-o", f.path("out.y4m")])
        #expect(refused.status != 0 && refused.errors.contains("--continue is LongLive 1.0's"), "\(refused.errors)")
        let badSize = try reel(["generate", "--model", dir, "--prompt", "a red circle", "--size", "48x48", "-o", f.path("b.y4m")])
        #expect(badSize.status != 0 && badSize.errors.contains("multiples of 32"), "\(badSize.errors)")

        // 2.0's guidance and clean recache run (16 latent frames: a scene cut at frame 8) and write the same count;
        // the same options on the shipped 1.0 tiny model are refused, as is a negative prompt without guidance.
        let schedule = f.path("cut.jsonl")
        try Data("{\"prompts\": [\"a red circle moves left\", \"The scene transitions. a blue square\"]}\n".utf8)
            .write(to: URL(fileURLWithPath: schedule))
        let guided = try reel(["generate", "--model", dir, "--schedule", schedule, "--switch-frames", "8", "--size", "64x64",
                               "--latent-frames", "16", "--threads", "2", "--guidance-scale", "3", "--negative-prompt",
                               "blurry", "--shot-clean-recache", "-o", f.path("guided.y4m")])
        #expect(guided.status == 0 && guided.errors.contains("wrote 61 frames"), "\(guided.errors)")
        let tiny = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Models/tiny").path
        let onTiny = try reel(["generate", "--model", tiny, "--prompt", "a red circle", "--guidance-scale", "3",
                               "-o", f.path("t.y4m")])
        #expect(onTiny.status != 0 && onTiny.errors.contains("--guidance-scale is LongLive 2.0's"), "\(onTiny.errors)")
        let negativeAlone = try reel(["generate", "--model", dir, "--prompt", "a red circle", "--negative-prompt", "blurry",
                                      "-o", f.path("n.y4m")])
        #expect(negativeAlone.status != 0 && negativeAlone.errors.contains("only with a --guidance-scale"),
                "\(negativeAlone.errors)")
    }
}

/// `reel serve --model FOLDER` on the tiny LongLive 2.0 folder, as the built executable: a 1.0 size is refused before
/// loading, and a session made over HTTP (curl) runs in 2.0's blocks at 24 fps.
@Suite(.serialized) struct LongLive2ServeCommandTests {
    static let curlPath = CommandRunner.curlPath

    func curl(_ arguments: [String]) throws -> String? { try CommandRunner.curl(arguments) }

    func json(_ text: String?) -> [String: Any] {
        text.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] } ?? [:]
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: LongLive2GenerateCommandTests.executable)
                   && FileManager.default.isExecutableFile(atPath: curlPath)))
    func serveRunsASessionInTheModelsBlocks() throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let dir = try f.longLive2Folder("LongLive2-tiny")
        let badSize = try LongLive2GenerateCommandTests().reel(["serve", "--model", dir, "--size", "48x48", "--port", "0"])
        #expect(badSize.status != 0 && badSize.errors.contains("multiples of 32"), "\(badSize.errors)")

        let port = Int.random(in: 20_000...60_000)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: LongLive2GenerateCommandTests.executable)
        server.arguments = ["serve", "--model", dir, "--size", "64x64", "--port", "\(port)", "--threads", "2"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { server.terminate(); server.waitForExit() }
        let base = "http://127.0.0.1:\(port)"
        let deadline = Date().addingTimeInterval(300)
        while try curl(["\(base)/healthz"]) == nil, Date() < deadline, server.isRunning { Thread.sleep(forTimeInterval: 0.2) }
        let created = json(try curl(["-X", "POST", "-H", "Content-Type: application/json", "-d",
                                     "{\"prompt\": \"a red circle\", \"options\": {\"seconds\": 1, \"record\": false}}",
                                     "\(base)/v1/sessions"]))
        let id = try #require(created["id"] as? String, "\(created)")
        var status: [String: Any] = [:]
        while Date() < deadline {
            status = json(try curl(["\(base)/v1/sessions/\(id)"]))
            if let state = status["state"] as? String, state != "queued", state != "running" { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        // 1 s at the 2.0 default of 24 fps: 24 frames, one block of 8 latent frames (29 frames) at the default size.
        #expect(status["state"] as? String == "finished", "\(status)")
        #expect(status["frames"] as? Int == 29 && status["blocks"] as? Int == 1, "\(status)")
        #expect(status["fps"] as? Int == 24 && status["width"] as? Int == 64, "\(status)")
        let refused = try curl(["-X", "POST", "-H", "Content-Type: application/json", "-d",
                                "{\"prompt\": \"a cat\", \"options\": {\"width\": 48, \"height\": 32}}", "\(base)/v1/sessions"])
        #expect(refused == nil, "curl -f fails on the 400")
    }
}

/// `reel eval --model FOLDER` on the tiny LongLive 2.0 folder, as the built executable: the runner's report (tested in
/// LongLive2EvalTests) through the command, with and without `--autoencoded` (the ground truth through the folder's
/// Wan2.2 VAE), written as JSON.
@Suite(.serialized) struct LongLive2EvalCommandTests {
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: LongLive2GenerateCommandTests.executable)))
    func evalReportsOnTheFolder() throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let dir = try f.longLive2Folder("LongLive2-tiny")
        let small = ["--size", "64", "--prompts", "1", "--blocks", "1", "--switches", "1", "--switch-block", "1",
                     "--blocks-after-switch", "1", "--long-frames", "0", "--threads", "2"]
        for extra in [[], ["--autoencoded"]] {
            let json = f.path("report\(extra.count).json")
            let run = try CommandRunner.reel(["eval", "--model", dir, "--json", json] + small + extra)
            #expect(run.status == 0, "\(run.errors)")
            let data = try Data(contentsOf: URL(fileURLWithPath: json))
            let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            // 1 adherence video of 1 block (9 frames in eval's plan) and 1 switch video of 2 blocks (9 + 12): 30 frames.
            #expect(report["frames"] as? Int == 30 && report["frame_size"] as? Int == 64, "\(report)")
            let adherence = report["adherence"] as? [String: Any]
            #expect(adherence?["prompts"] as? Int == 1 && adherence?["frames"] as? Int == 9, "\(report)")
            let source = report["source"] as? String ?? ""
            #expect(extra.isEmpty ? source.hasPrefix("model ") && source.contains("LongLive2-tiny")
                                  : source.contains("wan2.2-vae encoder and decoder"), "\(source)")
            #expect(run.errors.contains("skipping video-to-video and image-to-video"), "\(run.errors)")
        }
    }
}
