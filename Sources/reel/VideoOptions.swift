import ArgumentParser
import ReelPipeline

/// `--size WIDTHxHEIGHT`, checked as it is parsed (positive multiples of 16).
struct SizeOption: ParsableArguments {
    @Option(help: "Video size WIDTHxHEIGHT, multiples of 16 (default: the model folder's, else 832x480).",
            transform: { text in
                do { return try BlockGeometry(size: text) } catch { throw ValidationError("\(error)") }
            })
    var size: BlockGeometry?

    /// The size asked for, else the model folder's, else 832x480.
    func geometry(folderSize: String?) throws -> BlockGeometry {
        try size ?? folderSize.map { try BlockGeometry(size: $0) } ?? BlockGeometry(width: 832, height: 480)
    }
}

/// The video's size and frame rate (generate, serve).
struct VideoOptions: ParsableArguments {
    @OptionGroup var size: SizeOption
    @Option(help: "Frames per second the video plays at (default: the model folder's, else 16).")
    var fps: Int?

    func validate() throws {
        if let fps, fps <= 0 { throw ValidationError("--fps must be positive, got \(fps).") }
    }

    func geometry(folderSize: String?) throws -> BlockGeometry { try size.geometry(folderSize: folderSize) }

    /// The frame rate asked for, else the model folder's, else 16.
    func framesPerSecond(folderFPS: Int?) throws -> Int {
        let fps = self.fps ?? folderFPS ?? 16
        guard fps > 0 else { throw ValidationError("the model folder's fps must be positive, got \(fps).") }
        return fps
    }
}
