import ReelCore

// Layout conversions the VAEs bind their weights with: PyTorch conv weights are permuted once here
// to Reel's channel-last `[Cout, kt, kh, kw, Cin]`.
extension WeightBinder {
    /// A per-channel vector of `count` entries stored as `[count]` or `[count, 1, ...]` (Wan's
    /// RMS_norm gammas are `[C, 1, 1]` or `[C, 1, 1, 1]`). Returned as `[count]`.
    func vector(_ name: String, count: Int) throws -> Tensor {
        guard let s = shape(name) else {
            throw ReelError.weights(message: "missing weight '\(name)' (expected \(count) values)")
        }
        guard s.rank >= 1, s[0] == count, s.dims.dropFirst().allSatisfy({ $0 == 1 }) else {
            throw ReelError.weights(message: "'\(name)' has shape \(s), expected [\(count)] or [\(count), 1, ...]")
        }
        return try tensor(name, shape: s).reshaped([count])
    }

    /// A PyTorch Conv3d weight `[Cout, Cin, kt, kh, kw]` as `[Cout, kt, kh, kw, Cin]`.
    func conv3dWeight(_ name: String, cout: Int, cin: Int, kernel: (Int, Int, Int)) throws -> Tensor {
        let w = try exactTensor(name, [cout, cin, kernel.0, kernel.1, kernel.2])
        return try backend.permute(w, [0, 2, 3, 4, 1])
    }

    /// A PyTorch Conv2d weight `[Cout, Cin, kh, kw]` as a one-frame 3D kernel `[Cout, 1, kh, kw, Cin]`.
    func conv2dWeight(_ name: String, cout: Int, cin: Int, kernel: Int) throws -> Tensor {
        let w = try exactTensor(name, [cout, cin, kernel, kernel])
        return try backend.permute(w, [0, 2, 3, 1]).reshaped([cout, 1, kernel, kernel, cin])
    }

    /// The tensor `name` with exactly this shape (a conv weight of another rank is a wrong file).
    func exactTensor(_ name: String, _ dims: [Int]) throws -> Tensor {
        guard let s = shape(name) else {
            throw ReelError.weights(message: "missing weight '\(name)' (expected shape \(Shape(dims)))")
        }
        guard s.dims == dims else {
            throw ReelError.weights(message: "'\(name)' has shape \(s), expected \(Shape(dims))")
        }
        return try tensor(name, shape: s)
    }
}
