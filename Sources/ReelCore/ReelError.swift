/// Errors every part of Reel reports. Each case carries what a person needs to fix the problem.
public enum ReelError: Error, CustomStringConvertible, Equatable {
    /// An op was called with tensors whose shapes or dtypes it cannot accept.
    case invalidArgument(op: String, message: String)
    /// A backend does not implement an op for these dtypes.
    case unsupported(backend: String, op: String, message: String)
    /// A tensor of one backend was handed to another.
    case wrongBackend(op: String, expected: String, got: String)
    /// Memory could not be obtained.
    case outOfMemory(backend: String, bytes: Int)
    /// An allocation would take a device past its memory cap (`--gpu-memory`): the bytes asked for,
    /// the bytes the device holds already and the cap.
    case overMemoryCap(device: String, requested: Int, inUse: Int, cap: Int)
    /// A file could not be read as what it claims to be.
    case badFile(path: String, message: String)
    /// A weight the model needs is missing, has the wrong shape, or is left over.
    case weights(message: String)
    /// Anything a library reports (CUDA, NVRTC, BLAS), with its own message.
    case library(name: String, message: String)
    /// Bad user input (CLI, schedule, prompt).
    case input(String)

    public var description: String {
        switch self {
        case let .invalidArgument(op, message): "\(op): \(message)"
        case let .unsupported(backend, op, message): "\(backend) backend does not support \(op): \(message)"
        case let .wrongBackend(op, expected, got): "\(op): tensor lives on \(got), expected \(expected)"
        case let .outOfMemory(backend, bytes): "\(backend): out of memory allocating \(bytes) bytes"
        case let .overMemoryCap(device, requested, inUse, cap):
            "\(device): allocating \(MemoryBudget.gigabytes(requested)) would pass the memory cap of "
                + "\(MemoryBudget.gigabytes(cap)) (\(MemoryBudget.gigabytes(inUse)) in use); raise --gpu-memory "
                + "or lower the request (`reel inspect DIR --gpu-memory GB` prints what fits)"
        case let .badFile(path, message): "\(path): \(message)"
        case let .weights(message): "weights: \(message)"
        case let .library(name, message): "\(name): \(message)"
        case let .input(message): message
        }
    }
}

@inlinable
public func require(_ condition: Bool, _ op: String, _ message: @autoclosure () -> String) throws {
    if !condition { throw ReelError.invalidArgument(op: op, message: message()) }
}
