// TEMPORARY: mirrors ReelIO's WeightFile until it lands on main. Deleted on rebase.
import ReelCore

public struct TensorInfo: Sendable, Equatable {
    public let dtype: DType
    public let shape: Shape
}

public protocol WeightFile: AnyObject, Sendable {
    var path: String { get }
    var keys: [String] { get }
    func info(_ key: String) throws -> TensorInfo
    func tensor(_ key: String, on backend: any Backend, as dtype: DType?) throws -> Tensor
}
