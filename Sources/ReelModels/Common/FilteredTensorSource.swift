import ReelCore

/// The tensors of another source whose keys do not start with any of `excluding`: the part of a
/// checkpoint a model does not use (a VAE's encoder when only decoding), so strict loading can
/// still demand that every remaining key is bound.
public final class FilteredTensorSource: TensorSource {
    public let base: any TensorSource
    public let keys: [String]

    public init(_ base: any TensorSource, excluding prefixes: [String]) {
        self.base = base
        keys = base.keys.filter { key in !prefixes.contains { key.hasPrefix($0) } }
    }

    public func shape(of key: String) -> Shape? { keys.contains(key) ? base.shape(of: key) : nil }

    public func load(_ key: String, on backend: any Backend, as dtype: DType?) throws -> Tensor {
        try base.load(key, on: backend, as: dtype)
    }
}
