import Foundation
import ReelCore
import ReelCPU

/// Deterministic test data: SplitMix64 uniform and Box-Muller normal values.
struct TestRNG {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func normal() -> Float {
        Float((-2 * log(uniform() + 1e-300)).squareRoot() * cos(2 * .pi * uniform()))
    }
    mutating func normals(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in normal() * scale } }
}

/// A tensor of random values in `dtype`, and those values as the reference sees them (after rounding
/// to `dtype`), in float64.
func randomTensor(_ cpu: CPUBackend, _ shape: Shape, _ dtype: DType = .f32, seed: UInt64, scale: Float = 1) throws -> (Tensor, [Double]) {
    var rng = TestRNG(seed)
    let values = rng.normals(shape.count, scale: scale)
    let t = try cpu.tensor(values, shape: shape, dtype: dtype)
    let rounded = try HostConversion.decode(HostConversion.encode(values, as: dtype), from: dtype)
    return (t, rounded.map(Double.init))
}

/// Normalized squared error sum((a-b)^2) / sum(b^2), the measure every op is held to.
func nmse(_ a: [Float], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "\(a.count) values against \(b.count)")
    var num = 0.0, den = 0.0
    for i in 0..<a.count {
        let d = Double(a[i]) - b[i]
        num += d * d; den += b[i] * b[i]
    }
    if den == 0 { return num }
    return num / den
}

/// Bounds by output dtype: float32 results are held to float32 rounding, 16-bit results to theirs.
func tolerance(_ dtype: DType, f32: Double = 1e-10) -> Double {
    switch dtype {
    case .f32: f32
    case .f16: 1e-6
    default: 3e-5
    }
}

/// Host memory that is not a CPUStorage, standing in for a memory-mapped weight file.
final class ForeignHostStorage: HostStorage, @unchecked Sendable {
    let baseAddress: UnsafeMutableRawPointer
    let byteCount: Int
    init(bytes: [UInt8]) {
        byteCount = bytes.count
        baseAddress = .allocate(byteCount: max(bytes.count, 1), alignment: 1)
        bytes.withUnsafeBytes { baseAddress.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    }
    deinit { baseAddress.deallocate() }
}

/// Storage of a device the CPU cannot read.
final class DeviceStorage: TensorStorage, @unchecked Sendable {
    let byteCount: Int
    init(byteCount: Int) { self.byteCount = byteCount }
}

/// The device of `FakeDeviceBackend`s: memory the CPU cannot read.
final class FakeDevice: Device {
    static let shared = FakeDevice()
    let name = "fake:0"
    func makeStream() throws -> any Backend { FakeDeviceBackend() }
    func memoryStatistics() -> MemoryStatistics? { nil }
    func canRead(from other: any Device) -> Bool { other === self }
}

/// A backend whose tensors live elsewhere: only its name and tensors matter to the tests.
final class FakeDeviceBackend: Backend, @unchecked Sendable {
    let name = "fake:0"
    var device: any Device { FakeDevice.shared }
    struct Unused: Error {}
    func tensor(_ shape: Shape) -> Tensor {
        Tensor(storage: DeviceStorage(byteCount: shape.count * 4), shape: shape, dtype: .f32, backend: self)
    }
    func allocate(_ shape: Shape, dtype: DType) throws -> Tensor { throw Unused() }
    func upload(_ bytes: UnsafeRawBufferPointer, shape: Shape, dtype: DType) throws -> Tensor { throw Unused() }
    func download(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws { throw Unused() }
    func copy(_ src: Tensor, into dst: Tensor, axis: Int, at offset: Int) throws { throw Unused() }
    func fill(_ tensor: Tensor, with value: Float) throws { throw Unused() }
    func synchronize() throws {}
    func makeStream() throws -> any Backend { self }
    func recordEvent() throws -> any BackendEvent { throw Unused() }
    func recordTimedEvent() throws -> any BackendEvent { throw Unused() }
    func wait(for event: any BackendEvent) throws {}
    func matmul(_ a: Tensor, _ b: Tensor, transposeB: Bool, bias: Tensor?) throws -> Tensor { throw Unused() }
    func attention(query: Tensor, key: Tensor, value: Tensor, scale: Float, bias: Tensor?) throws -> Tensor { throw Unused() }
    func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) throws -> Tensor { throw Unused() }
    func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float) throws -> Tensor { throw Unused() }
    func l2Norm(_ x: Tensor, weight: Tensor?, scale: Float, eps: Float) throws -> Tensor { throw Unused() }
    func softmax(_ x: Tensor) throws -> Tensor { throw Unused() }
    func rope3d(_ x: Tensor, grid: RoPEGrid) throws -> Tensor { throw Unused() }
    func unary(_ op: UnaryOp, _ x: Tensor) throws -> Tensor { throw Unused() }
    func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) throws -> Tensor { throw Unused() }
    func axpby(_ alpha: Float, _ x: Tensor, _ beta: Float, _ y: Tensor) throws -> Tensor { throw Unused() }
    func affine(_ x: Tensor, scale: Float, bias: Float) throws -> Tensor { throw Unused() }
    func clamp(_ x: Tensor, min: Float, max: Float) throws -> Tensor { throw Unused() }
    func rgb8(_ frames: Tensor) throws -> Tensor { throw Unused() }
    func modulate(_ x: Tensor, scale: Tensor, shift: Tensor) throws -> Tensor { throw Unused() }
    func conv3d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int, Int), padding: ConvPadding) throws -> Tensor { throw Unused() }
    func upsampleNearest(_ x: Tensor, scaleH: Int, scaleW: Int) throws -> Tensor { throw Unused() }
    func concat(_ tensors: [Tensor], axis: Int) throws -> Tensor { throw Unused() }
    func slice(_ x: Tensor, axis: Int, start: Int, length: Int) throws -> Tensor { throw Unused() }
    func permute(_ x: Tensor, _ order: [Int]) throws -> Tensor { throw Unused() }
    func cast(_ x: Tensor, to dtype: DType) throws -> Tensor { throw Unused() }
    func embedding(_ ids: Tensor, table: Tensor) throws -> Tensor { throw Unused() }
    func randomNormal(_ shape: Shape, seed: UInt64, offset: UInt64, dtype: DType) throws -> Tensor { throw Unused() }
}

/// Multi-index helpers for the naive references.
func unravel(_ i: Int, _ dims: [Int]) -> [Int] {
    var rem = i
    var idx = [Int](repeating: 0, count: dims.count)
    for a in stride(from: dims.count - 1, through: 0, by: -1) {
        idx[a] = rem % dims[a]
        rem /= dims[a]
    }
    return idx
}

func ravel(_ idx: [Int], _ dims: [Int]) -> Int {
    var off = 0
    for a in 0..<dims.count { off = off * dims[a] + idx[a] }
    return off
}
