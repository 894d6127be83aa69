import Foundation
import ReelCore
import Testing

/// The placement options as the built executable takes them, on in-process CPU devices standing for GPUs (the test
/// is skipped where the executable is absent), with the shipped tiny model (`Models/tiny`, 3 heads) at 64x64:
/// `reel generate` with the input encoder, the decoder and the text encoder each on a device of its own writes the
/// one-device file byte for byte (and another seed does not); bad combinations are refused with a message;
/// `reel serve --session-devices 0+1+2,3` runs sessions on a group and a single device and reports both in /metrics.
/// `REEL_BLAS=none`: Reel's own GEMM, so no BLAS kernel choice enters the comparison.
@Suite(.serialized) struct PlacementCommandTests {
    static let executable = LongLive2GenerateCommandTests.executable
    static let tiny = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Models/tiny").path
    static let common = ["--backend", "cpu", "--model", tiny, "--size", "64x64", "--threads", "2"]

    func reel(_ arguments: [String]) throws -> (status: Int32, errors: String) {
        try CommandRunner.reel(arguments, environment: ["REEL_BLAS": "none"])
    }

    func generate(_ arguments: [String], to path: String) throws -> Data {
        let run = try reel(["generate"] + Self.common + arguments + ["-o", path])
        #expect(run.status == 0, "\(run.errors)")
        return try Data(contentsOf: URL(fileURLWithPath: path))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: executable)))
    func generateWithStagesOnTheirOwnDevicesWritesTheSameFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("reel-placement-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in.y4m").path
        _ = try generate(["--prompt", "a red circle moves left on a blue background", "--latent-frames", "6"], to: input)

        let restyle = ["--input", input, "--prompt", "a green square on a white background"]
        let placed = ["--encode-device", "1", "--decode-device", "2", "--text-device", "3"]
        let one = try generate(restyle, to: dir.appendingPathComponent("one.y4m").path)
        let spread = try generate(restyle + placed, to: dir.appendingPathComponent("spread.y4m").path)
        #expect(one.count > 100_000 && spread == one, "video-to-video: encoder, decoder and text encoder on cpu:1, 2, 3")
        let reseeded = try generate(restyle + placed + ["--seed", "2"], to: dir.appendingPathComponent("seed2.y4m").path)
        #expect(reseeded.count == one.count && reseeded != one, "negative control: another seed, another file")

        // A continued video: its last frames encoded on cpu:1 become the DiT's context on the main device.
        let continued = ["--continue", input, "--prompt", "a red circle moves left on a blue background", "--latent-frames", "3"]
        let plain = try generate(continued, to: dir.appendingPathComponent("c1.y4m").path)
        let encodedElsewhere = try generate(continued + ["--encode-device", "1"], to: dir.appendingPathComponent("c2.y4m").path)
        #expect(plain.count > 10_000 && encodedElsewhere == plain)
        // The same device named twice (the DiT's, the decoder's) is the default placement: the same file.
        let same = try generate(restyle + ["--encode-device", "0", "--text-device", "0", "--decode-device", "0"],
                                to: dir.appendingPathComponent("same.y4m").path)
        #expect(same == one)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: executable)))
    func badCombinationsAreRefused() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("reel-refused-\(UUID().uuidString).y4m").path
        let cases: [([String], String)] = [
            (["generate", "--prompt", "x", "--encode-device", "1", "-o", out], "it needs --input, --image or --continue"),
            (["generate", "--prompt", "x", "--encode-device=-1", "-o", out], "--encode-device must be 0 or more"),
            (["generate", "--prompt", "x", "--backend", "cuda", "--text-backend", "cpu", "--text-device", "1", "-o", out],
             "give one of them"),
            (["generate", "--prompt", "x", "--pipeline", "timestep-forcing", "--devices", "0,1,2,3", "--encode-device", "4",
              "-o", out], "--pipeline timestep-forcing does not take"),
            (["bench", "--encode-device", "1"], "reel bench runs one with --input"),
            (["serve", "--session-devices", "0+1,1"], "names a device twice"),
            (["serve", "--session-devices", "0+x"], "a group's joined by +"),
            (["serve", "--session-devices", "0+1", "--decode-device", "2"], "does not combine with --devices"),
            (["serve", "--session-devices", "0+1", "--gpu-memory", "3"], "--gpu-memory places a model on one device"),
            (["serve", "--pipeline", "timestep-forcing", "--devices", "0,1,2,3"], "runs LongLive's exact schedule"),
            (["serve", "--session-devices", "0+1", "--port", "0"], "3 heads do not divide by 2 ranks"),
        ]
        for (arguments, message) in cases {
            let run = try reel([arguments[0]] + Self.common + arguments.dropFirst())
            #expect(run.status != 0 && run.errors.contains(message), "\(arguments): \(run.errors)")
        }
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    func curl(_ arguments: [String]) throws -> String? { try CommandRunner.curl(arguments) }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: executable)
                   && FileManager.default.isExecutableFile(atPath: LongLive2ServeCommandTests.curlPath)))
    func serveSpreadsSessionsOverAGroupAndADevice() throws {
        let port = Int.random(in: 20_000...60_000)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: Self.executable)
        server.arguments = ["serve"] + Self.common + ["--session-devices", "0+1+2,3", "--port", "\(port)"]
        server.environment = ProcessInfo.processInfo.environment.merging(["REEL_BLAS": "none"]) { $1 }
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { server.terminate(); server.waitForExit() }
        let base = "http://127.0.0.1:\(port)"
        let deadline = Date().addingTimeInterval(300)
        while try curl(["\(base)/healthz"]) == nil, Date() < deadline, server.isRunning { Thread.sleep(forTimeInterval: 0.2) }
        let ids = try (0..<2).map { _ in
            let created = try curl(["-X", "POST", "-H", "Content-Type: application/json", "-d",
                                    "{\"prompt\": \"a red circle\", \"options\": {\"seconds\": 1, \"record\": false}}",
                                    "\(base)/v1/sessions"])
            let object = created.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            return try #require(object?["id"] as? String, "\(created ?? "no answer")")
        }
        for id in ids {
            var state = ""
            while Date() < deadline, state != "finished", state != "failed" {
                let text = try curl(["\(base)/v1/sessions/\(id)"]) ?? "{}"
                let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
                state = object?["state"] as? String ?? ""
                Thread.sleep(forTimeInterval: 0.2)
            }
            #expect(state == "finished", "session \(id)")
        }
        let metrics = try #require(try curl(["\(base)/metrics"]))
        for line in ["reel_group_sessions_started_total{group=\"cpu:0+cpu:1+cpu:2\"} 1",
                     "reel_group_sessions_started_total{group=\"cpu:3\"} 1",
                     "reel_device_sessions_started_total{device=\"cpu:1\"} 1",
                     "reel_device_sessions_started_total{device=\"cpu:3\"} 1",
                     "reel_group_sessions_active{group=\"cpu:0+cpu:1+cpu:2\"} 0"] {
            #expect(metrics.contains(line + "\n"), "\(line)")
        }
    }
}
