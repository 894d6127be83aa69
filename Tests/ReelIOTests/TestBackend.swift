import Foundation
import ReelCore

/// Heap memory for `TestBackend` tensors.
final class TestStorage: HostStorage, @unchecked Sendable {
    let baseAddress: UnsafeMutableRawPointer
    let byteCount: Int
    init(byteCount: Int) {
        baseAddress = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        self.byteCount = byteCount
    }
    deinit { baseAddress.deallocate() }
}

/// A backend that only stores bytes and is not a `HostBackend`, so loaders must copy into it
/// (the path a CUDA backend takes). Ops other than memory ones are unsupported.
/// The device of `TestBackend`s.
final class TestDevice: Device {
    static let shared = TestDevice()
    var name: String { "test" }
    func makeStream() throws -> any Backend { TestBackend() }
    func memoryStatistics() -> MemoryStatistics? { nil }
    func canRead(from other: any Device) -> Bool { other === self }
}

class TestBackend: Backend, @unchecked Sendable {
    var name: String { "test" }
    private(set) var uploads = 0

    func allocate(_ shape: Shape, dtype: DType) throws -> Tensor {
        Tensor(storage: TestStorage(byteCount: shape.count * dtype.size), shape: shape, dtype: dtype, backend: self)
    }
    func upload(_ bytes: UnsafeRawBufferPointer, shape: Shape, dtype: DType) throws -> Tensor {
        try require(bytes.count == shape.count * dtype.size, "upload", "\(bytes.count) bytes for \(shape) \(dtype)")
        uploads += 1
        let t = try allocate(shape, dtype: dtype)
        if !bytes.isEmpty { t.hostPointer!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        return t
    }
    func download(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws {
        try require(bytes.count == tensor.byteCount, "download", "\(bytes.count) bytes for \(tensor)")
        if !bytes.isEmpty { bytes.baseAddress!.copyMemory(from: tensor.hostPointer!, byteCount: bytes.count) }
    }
    private func no(_ op: String) -> ReelError { .unsupported(backend: name, op: op, message: "test backend") }
    func copy(_ src: Tensor, into dst: Tensor, axis: Int, at offset: Int) throws { throw no("copy") }
    func fill(_ tensor: Tensor, with value: Float) throws { throw no("fill") }
    func synchronize() throws {}
    var device: any Device { TestDevice.shared }
    func makeStream() throws -> any Backend { self }
    func recordEvent() throws -> any BackendEvent { throw no("recordEvent") }
    func recordTimedEvent() throws -> any BackendEvent { throw no("recordTimedEvent") }
    func wait(for event: any BackendEvent) throws {}
    func matmul(_ a: Tensor, _ b: Tensor, transposeB: Bool, bias: Tensor?) throws -> Tensor { throw no("matmul") }
    func attention(query: Tensor, key: Tensor, value: Tensor, scale: Float, bias: Tensor?) throws -> Tensor { throw no("attention") }
    func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) throws -> Tensor { throw no("layerNorm") }
    func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float) throws -> Tensor { throw no("rmsNorm") }
    func l2Norm(_ x: Tensor, weight: Tensor?, scale: Float, eps: Float) throws -> Tensor { throw no("l2Norm") }
    func softmax(_ x: Tensor) throws -> Tensor { throw no("softmax") }
    func rope3d(_ x: Tensor, grid: RoPEGrid) throws -> Tensor { throw no("rope3d") }
    func unary(_ op: UnaryOp, _ x: Tensor) throws -> Tensor { throw no("unary") }
    func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) throws -> Tensor { throw no("binary") }
    func axpby(_ alpha: Float, _ x: Tensor, _ beta: Float, _ y: Tensor) throws -> Tensor { throw no("axpby") }
    func affine(_ x: Tensor, scale: Float, bias: Float) throws -> Tensor { throw no("affine") }
    func clamp(_ x: Tensor, min: Float, max: Float) throws -> Tensor { throw no("clamp") }
    func rgb8(_ frames: Tensor) throws -> Tensor { throw no("rgb8") }
    func modulate(_ x: Tensor, scale: Tensor, shift: Tensor) throws -> Tensor { throw no("modulate") }
    func conv3d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int, Int), padding: ConvPadding) throws -> Tensor { throw no("conv3d") }
    func upsampleNearest(_ x: Tensor, scaleH: Int, scaleW: Int) throws -> Tensor { throw no("upsampleNearest") }
    func concat(_ tensors: [Tensor], axis: Int) throws -> Tensor { throw no("concat") }
    func slice(_ x: Tensor, axis: Int, start: Int, length: Int) throws -> Tensor { throw no("slice") }
    func permute(_ x: Tensor, _ order: [Int]) throws -> Tensor { throw no("permute") }
    func cast(_ x: Tensor, to dtype: DType) throws -> Tensor { throw no("cast") }
    func embedding(_ ids: Tensor, table: Tensor) throws -> Tensor { throw no("embedding") }
    func randomNormal(_ shape: Shape, seed: UInt64, offset: UInt64, dtype: DType) throws -> Tensor { throw no("randomNormal") }
}
