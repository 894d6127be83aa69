import ReelCore

/// How a latent video is laid out in a file. Decoders take channel-last `[N, T, h, w, C]`.
public enum LatentLayout: String, CaseIterable, Sendable {
    /// `[N, C, T, h, w]`: Wan's and diffusers' VAE input.
    case ncthw
    /// `[N, T, C, h, w]`: LongLive's and Self-Forcing's pipeline output.
    case ntchw
    /// `[N, T, h, w, C]`: Reel's own.
    case nthwc

    /// The layouts `shape` (rank 5, or rank 4 with N = 1 left out) could be in for `channels` channels.
    public static func candidates(for shape: Shape, channels: Int) -> [LatentLayout] {
        let d = shape.rank == 4 ? [1] + shape.dims : shape.dims
        guard d.count == 5 else { return [] }
        return allCases.filter { layout in
            switch layout {
            case .ncthw: d[1] == channels
            case .ntchw: d[2] == channels
            case .nthwc: d[4] == channels
            }
        }
    }

    /// `latents` as `[N, T, h, w, C]`. With `layout` nil the layout is detected from which axis has
    /// `channels` entries; an ambiguous shape is an error that asks for the layout.
    public static func channelLast(_ latents: Tensor, channels: Int, layout: LatentLayout? = nil) throws -> Tensor {
        try require(latents.rank == 5 || latents.rank == 4, "latents",
                    "expected a latent video of rank 5 ([N, C, T, h, w], [N, T, C, h, w] or [N, T, h, w, C]) or 4 (the same without N), got \(latents.shape)")
        let x = latents.rank == 4 ? try latents.reshaped([1] + latents.shape.dims) : latents
        let found = candidates(for: x.shape, channels: channels)
        let chosen: LatentLayout
        if let layout {
            guard found.contains(layout) else {
                throw ReelError.input("latents \(latents.shape) are not \(layout.rawValue) with \(channels) channels")
            }
            chosen = layout
        } else {
            guard let only = found.first else {
                throw ReelError.input("latents \(latents.shape) have no axis of \(channels) channels where a layout puts it (ncthw, ntchw, nthwc)")
            }
            guard found.count == 1 else {
                throw ReelError.input("latents \(latents.shape) could be \(found.map(\.rawValue).joined(separator: " or ")): say which with --layout")
            }
            chosen = only
        }
        switch chosen {
        case .nthwc: return x
        case .ncthw: return try x.backend.permute(x, [0, 2, 3, 4, 1])
        case .ntchw: return try x.backend.permute(x, [0, 1, 3, 4, 2])
        }
    }
}
