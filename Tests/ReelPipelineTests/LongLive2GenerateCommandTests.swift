import Foundation
import Testing

/// `reel generate --model FOLDER` on a tiny LongLive 2.0 folder, run as the built executable (`swift build` builds
/// it beside the tests; the test is skipped where it is absent): PNG frames of the expected count, and LongLive
/// 1.0's --continue refused with a message.
@Suite(.serialized) struct LongLive2GenerateCommandTests {
    static let executable = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug/reel").path

    func reel(_ arguments: [String]) throws -> (status: Int32, errors: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.executable)
        p.arguments = arguments
        let errors = Pipe()
        p.standardError = errors
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

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
    }
}
