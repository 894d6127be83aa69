import ReelCore

/// Binds a model's parameters to the tensors of a weight file, strictly: every parameter the model
/// asks for must exist with the expected PyTorch shape, and `finish` fails when a tensor is left over.
///
/// File keys are renamed by `rules` into the names the model asks for (its canonical names);
/// conv weights are permuted once here from PyTorch's `[Cout, Cin, k...]` to Reel's channel-last
/// `[Cout, kt, kh, kw, Cin]`.
public final class WeightBinder {
    public let file: any WeightFile
    public let backend: any Backend
    /// The dtype parameters are stored in on `backend`.
    public let dtype: DType
    private let fileKeyFor: [String: String]
    private var bound: Set<String> = []

    /// - Parameter rules: renames file keys into canonical names; two keys renamed to one name throw.
    public init(file: any WeightFile, rules: [KeyRule] = [], backend: any Backend, dtype: DType = .f32) throws {
        self.file = file
        self.backend = backend
        self.dtype = dtype
        var map: [String: String] = [:]
        for key in file.keys {
            let canonical = KeyRule.apply(rules, to: key)
            if let other = map[canonical] {
                throw ReelError.weights(message: "\(file.path): '\(other)' and '\(key)' both map to '\(canonical)'")
            }
            map[canonical] = key
        }
        fileKeyFor = map
    }

    /// Whether the file holds `name` (canonical).
    public func contains(_ name: String) -> Bool { fileKeyFor[name] != nil }

    /// The PyTorch shape of `name` (canonical), or nil when the file lacks it.
    public func shape(of name: String) -> Shape? {
        guard let key = fileKeyFor[name] else { return nil }
        return try? file.info(key).shape
    }

    /// The tensor `name` exactly as stored (shape checked against `shape`).
    public func tensor(_ name: String, shape expected: [Int]) throws -> Tensor {
        guard let key = fileKeyFor[name] else {
            throw ReelError.weights(message: "\(file.path): missing '\(name)' (expected shape \(Shape(expected)))")
        }
        let info = try file.info(key)
        guard info.shape.dims == expected else {
            throw ReelError.weights(message: "\(file.path): '\(key)' has shape \(info.shape), expected \(Shape(expected))")
        }
        bound.insert(key)
        return try file.tensor(key, on: backend, as: dtype)
    }

    /// A per-channel vector of `count` entries stored as `[count]` or `[count, 1, ...]` (Wan's
    /// RMS_norm gammas are `[C, 1, 1]` or `[C, 1, 1, 1]`). Returned as `[count]`.
    public func vector(_ name: String, count: Int) throws -> Tensor {
        guard let s = shape(of: name) else {
            throw ReelError.weights(message: "\(file.path): missing '\(name)' (expected \(count) values)")
        }
        guard s.rank >= 1, s[0] == count, s.dims.dropFirst().allSatisfy({ $0 == 1 }) else {
            throw ReelError.weights(message: "\(file.path): '\(fileKeyFor[name] ?? name)' has shape \(s), expected [\(count)] or [\(count), 1, ...]")
        }
        return try tensor(name, shape: s.dims).reshaped([count])
    }

    /// A PyTorch Conv3d weight `[Cout, Cin, kt, kh, kw]` as `[Cout, kt, kh, kw, Cin]`.
    public func conv3dWeight(_ name: String, cout: Int, cin: Int, kernel: (Int, Int, Int)) throws -> Tensor {
        let w = try tensor(name, shape: [cout, cin, kernel.0, kernel.1, kernel.2])
        return try backend.permute(w, [0, 2, 3, 4, 1])
    }

    /// A PyTorch Conv2d weight `[Cout, Cin, kh, kw]` as a one-frame 3D kernel `[Cout, 1, kh, kw, Cin]`.
    public func conv2dWeight(_ name: String, cout: Int, cin: Int, kernel: Int) throws -> Tensor {
        let w = try tensor(name, shape: [cout, cin, kernel, kernel])
        return try backend.permute(w, [0, 2, 3, 1]).reshaped([cout, 1, kernel, kernel, cin])
    }

    /// Throws unless every tensor of the file was bound, apart from those whose file key starts
    /// with one of `ignoring` (parts of the checkpoint this model does not use, e.g. the encoder).
    public func finish(ignoring prefixes: [String] = []) throws {
        let unused = file.keys.filter { key in !bound.contains(key) && !prefixes.contains(where: { key.hasPrefix($0) }) }
        guard unused.isEmpty else {
            let shown = unused.prefix(8).joined(separator: ", ")
            throw ReelError.weights(message: "\(file.path): \(unused.count) unused tensor(s): \(shown)\(unused.count > 8 ? ", ..." : "") "
                + "(the file does not match this model's configuration)")
        }
    }
}
