import ReelCore
import ReelIO

/// A weight file of ReelIO (safetensors, PyTorch checkpoint, sharded index) as a `TensorSource`
/// a model binds its weights from.
public final class WeightFileTensors: TensorSource {
    public let file: any WeightFile

    public init(_ file: any WeightFile) { self.file = file }

    /// Opens `path` with `WeightFiles.open` (the format is detected from the content).
    public convenience init(path: String) throws { self.init(try WeightFiles.open(path)) }

    public var keys: [String] { file.keys }
    public func shape(of key: String) -> Shape? { try? file.info(key).shape }
    public func load(_ key: String, on backend: any Backend, as dtype: DType?) throws -> Tensor {
        try file.tensor(key, on: backend, as: dtype)
    }
}
