import Foundation
import ReelCore

/// The CUDA backend: one stream of one GPU. Ops are queued on the stream and return at once;
/// `download` and `synchronize` wait. `makeStream()` gives another backend on the same device whose
/// ops run concurrently, ordered against this one with `recordEvent()` / `wait(for:)`.
///
/// Storage is bf16/f16/f32 (plus int32/int64 ids and raw bytes for layout ops); every kernel
/// accumulates in float32. Kernels are compiled by NVRTC on first use and cached on disk.
public final class CUDABackend: Backend, @unchecked Sendable {
    /// The GPU this stream issues to: its allocator, compiled kernels and plan caches, shared by its streams.
    public let cudaDevice: CUDADevice
    public var device: any Device { cudaDevice }
    let driver: CUDADriver
    /// This backend's stream (non-blocking: never serialized with the legacy default stream).
    public let stream: CUhandle
    public let name: String
    /// cuBLASLt's scratch memory, one per stream (concurrent GEMMs must not share it).
    /// (A storage, not a Tensor: a tensor would hold this backend and never let it go.)
    private var workspace: CUDAStorage?

    /// Whether an op runs on cuDNN or on Reel's own kernels. `.auto` uses cuDNN where it supports
    /// the problem and is installed, Reel's kernels otherwise; `.cudnn` fails where cuDNN cannot.
    public enum KernelChoice: String, Sendable, CaseIterable { case auto, own, cudnn }
    /// Which attention kernel runs. `.auto`: cuDNN's fused flash attention where it supports the problem and is
    /// installed (Reel's Hopper kernel first where `Tuning.hopperAttention` asks for it), Reel's kernels otherwise;
    /// `.own`: Reel's portable kernels (mma.sync, or the generic one); `.cudnn` fails where cuDNN cannot; `.hopper`:
    /// Reel's wgmma/TMA kernel (Kernels/attention_sm90.cu), failing where it cannot (an sm_90 GPU, bf16, no bias,
    /// D = Dv = 128).
    public enum AttentionPath: String, Sendable, CaseIterable { case auto, own, cudnn, hopper }
    /// Attention: cuDNN's fused flash attention (bf16/f16, no bias, D = Dv <= 128) or Reel's kernels.
    public var attentionPath: AttentionPath = .auto
    /// Which kernel runs FP8 attention (`fp8Attention`). `.auto`: cuDNN's FP8 graph (Reel's Hopper FP8 kernel first
    /// where `Tuning.hopperFP8Attention` asks for it); `.cudnn`: the graph; `.hopper`: Reel's `attn_sm90_d128_e4m3`,
    /// failing where it cannot run (an sm_90 GPU, bf16 q, k, v, D = 128).
    public enum FP8AttentionPath: String, Sendable, CaseIterable { case auto, cudnn, hopper }
    public var fp8AttentionPath: FP8AttentionPath = .auto
    /// conv3d: cuDNN's implicit-GEMM convolution (bf16/f16) or Reel's im2col + cuBLASLt GEMM.
    public var convolutionPath: KernelChoice = .auto
    /// linearGELU: cuBLASLt's GELU epilogue (one GEMM writes GELU(x W^T + b)) or, when false, `linear`
    /// then a `geluTanh` pass. Wan's reference is PyTorch's tanh GELU, the form cuBLAS documents for its
    /// epilogue; `reel check-ops` checks that on the GPU ("linearGELU epilogue is tanh GELU").
    public var geluEpilogue: Bool
    /// Split-key attention's part count: nil picks it by the SMs' wave fill (`attentionSplits`); a number forces
    /// it (1: never split). Starts from `tuning.attentionSplits`.
    public var attentionSplitOverride: Int?
    /// The Hopper attention kernel's schedule for every call when set (check-ops' cases); nil: `hopperSchedule`'s rule.
    public var hopperScheduleOverride: HopperAttentionSchedule?
    /// The Hopper kernel's rule: split only the last wave's tiles (`HopperAttentionSchedule.filled`) or every tile.
    /// Starts from `tuning.hopperFillLastWave`.
    public var hopperFillLastWave: Bool
    /// The performance choices this stream was made with (`Tuning`; the CLI reads them from the environment).
    public let tuning: Tuning
    /// The device's plan caches (GEMM descriptors, cuDNN plans and refusals), shared with its other streams.
    var plans: CUDAPlanCache { cudaDevice.plans }
    /// Shapes cuDNN refused on this device, with its reason (so they are not retried on every call).
    public var cudnnRefusals: [String] { plans.cudnnRefusals }
    /// The cuDNN workspace of this stream (concurrent executions must not share one).
    var cudnnWorkspace: CUDAStorage?
    let ropeTableLock = NSLock()
    var ropeTables: [(key: RoPETableKey, table: Tensor)] = []

    /// Opens GPU `ordinal` (loading the NVIDIA libraries on first use) with a new stream.
    public convenience init(device ordinal: Int = 0, tuning: Tuning = .standard) throws {
        try self.init(device: CUDADevice.open(ordinal), tuning: tuning)
    }

    init(device: CUDADevice, tuning: Tuning = .standard) throws {
        self.cudaDevice = device
        self.tuning = tuning
        geluEpilogue = tuning.geluEpilogue
        attentionSplitOverride = tuning.attentionSplits
        hopperFillLastWave = tuning.hopperFillLastWave
        driver = cudaDevice.driver
        try cudaDevice.makeCurrent()
        var s: CUhandle = nil
        try driver.check(driver.cuStreamCreate(&s, CUDADriver.streamNonBlocking), "cuStreamCreate")
        stream = s
        name = "cuda:\(cudaDevice.info.ordinal)"
    }

    deinit {
        _ = driver.cuStreamSynchronize(stream)
        _ = driver.cuStreamDestroy(stream)
    }

    // MARK: Memory

    public func allocate(_ shape: Shape, dtype: DType) throws -> Tensor {
        try require(shape.isValid, "allocate", "negative dimension in \(shape)")
        try cudaDevice.makeCurrent()
        let storage = try cudaDevice.allocator.allocate(shape.count * dtype.size, stream: stream)
        return Tensor(storage: storage, shape: shape, dtype: dtype, backend: self)
    }

    /// The device address of a tensor's first element; throws if it lives on another backend.
    func pointer(_ t: Tensor, _ op: String) throws -> CUdeviceptr {
        guard let s = t.storage as? CUDAStorage, s.allocator === cudaDevice.allocator else {
            throw ReelError.wrongBackend(op: op, expected: name, got: t.backend.name)
        }
        return s.pointer + UInt64(t.byteOffset)
    }

    public func upload(_ bytes: UnsafeRawBufferPointer, shape: Shape, dtype: DType) throws -> Tensor {
        try require(bytes.count == shape.count * dtype.size, "upload",
                    "\(bytes.count) bytes for \(shape) \(dtype) (needs \(shape.count * dtype.size))")
        let t = try allocate(shape, dtype: dtype)
        if bytes.count == 0 { return t }
        let dst = try pointer(t, "upload")
        let staging = cudaDevice.staging
        staging.lock.lock()
        defer { staging.lock.unlock() }
        let bufs = try staging.acquire()
        var done = 0, i = 0
        // Double-buffered: the host fills one pinned buffer while the other is on its way.
        while done < bytes.count {
            let n = min(PinnedStaging.chunk, bytes.count - done)
            let (buf, event) = bufs[i & 1]
            try driver.check(driver.cuEventSynchronize(event), "cuEventSynchronize")
            buf.copyMemory(from: bytes.baseAddress! + done, byteCount: n)
            try driver.check(profiled("upload " + ProfileTable.bytes(n)) { driver.cuMemcpyHtoDAsync(dst + UInt64(done), buf, n, stream) },
                             "cuMemcpyHtoDAsync_v2")
            try driver.check(driver.cuEventRecord(event, stream), "cuEventRecord")
            done += n; i += 1
        }
        return t
    }

    public func download(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws {
        try require(bytes.count == tensor.byteCount, "download", "buffer of \(bytes.count) bytes for \(tensor) (\(tensor.byteCount) bytes)")
        if bytes.count == 0 { return }
        try cudaDevice.makeCurrent()
        let src = try pointer(tensor, "download")
        let staging = cudaDevice.staging
        staging.lock.lock()
        defer { staging.lock.unlock() }
        let bufs = try staging.acquire()
        var done = 0
        while done < bytes.count {
            let n = min(PinnedStaging.chunk, bytes.count - done)
            let (buf, event) = bufs[0]
            // An upload from another stream may still be reading this buffer.
            try driver.check(driver.cuEventSynchronize(event), "cuEventSynchronize")
            try driver.check(profiled("download " + ProfileTable.bytes(n)) { driver.cuMemcpyDtoHAsync(buf, src + UInt64(done), n, stream) },
                             "cuMemcpyDtoHAsync_v2")
            try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
            (bytes.baseAddress! + done).copyMemory(from: buf, byteCount: n)
            done += n
        }
    }

    func gemmWorkspace() throws -> UInt64 {
        if workspace == nil { workspace = try cudaDevice.allocator.allocate(CUDADevice.gemmWorkspaceBytes, stream: stream) }
        return workspace!.pointer
    }

    // MARK: Streams

    public func synchronize() throws {
        try cudaDevice.makeCurrent()
        try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
    }

    public func makeStream() throws -> any Backend { try CUDABackend(device: cudaDevice, tuning: tuning) }

    public func recordEvent() throws -> any BackendEvent { try record(timing: false) }
    public func recordTimedEvent() throws -> any BackendEvent { try record(timing: true) }

    /// An event recorded on this stream; with `timing`, usable with `elapsedMilliseconds`.
    public func record(timing: Bool) throws -> CUDAEvent {
        try cudaDevice.makeCurrent()
        let e = try CUDAEvent(driver: driver, timing: timing)
        try driver.check(driver.cuEventRecord(e.handle, stream), "cuEventRecord")
        return e
    }

    public func wait(for event: any BackendEvent) throws {
        guard let e = event as? CUDAEvent else {
            throw ReelError.wrongBackend(op: "wait", expected: name, got: "\(type(of: event))")
        }
        try driver.check(driver.cuStreamWaitEvent(stream, e.handle, 0), "cuStreamWaitEvent")
    }

    /// Milliseconds between two timing events (waits for `end`).
    public func elapsedMilliseconds(from start: CUDAEvent, to end: CUDAEvent) throws -> Double {
        try driver.check(driver.cuEventSynchronize(end.handle), "cuEventSynchronize")
        var ms: Float = 0
        try driver.check(driver.cuEventElapsedTime(&ms, start.handle, end.handle), "cuEventElapsedTime")
        return Double(ms)
    }

    // MARK: Graphs

    /// Records the ops `body` issues on this stream into a CUDA Graph instead of running them.
    /// `replay()` then reruns them all with one launch. Run `body` once before capturing, so kernels
    /// are compiled and cuBLASLt has chosen its algorithms. Tensors allocated inside `body` (its
    /// outputs and intermediates) are owned by the graph and reused by every replay; tensors made
    /// before it (weights, inputs) must outlive the graph. Inputs change by writing into them
    /// (`copy(_:into:axis:at:)`) between replays.
    public func captureGraph(_ body: () throws -> Void) throws -> CUDAGraph {
        try cudaDevice.makeCurrent()
        let capture = CUDAGraphCapture()
        cudaDevice.allocator.beginCapture(stream: stream, capture)
        try driver.check(driver.cuStreamBeginCapture(stream, CUDADriver.captureModeRelaxed), "cuStreamBeginCapture_v2")
        var bodyError: Error?
        do { try body() } catch { bodyError = error }
        var graph: CUhandle = nil
        let endStatus = driver.cuStreamEndCapture(stream, &graph)
        cudaDevice.allocator.endCapture(stream: stream)
        if let bodyError {
            if graph != nil { _ = driver.cuGraphDestroy(graph) }
            throw bodyError
        }
        try driver.check(endStatus, "cuStreamEndCapture")
        var exec: CUhandle = nil
        let status = driver.cuGraphInstantiateWithFlags(&exec, graph, 0)
        if status != 0 { _ = driver.cuGraphDestroy(graph) }
        try driver.check(status, "cuGraphInstantiateWithFlags")
        return CUDAGraph(backend: self, graph: graph, exec: exec, capture: capture)
    }
}

/// A CUDA event; destroyed with the object.
public final class CUDAEvent: BackendEvent, @unchecked Sendable {
    let handle: CUhandle
    private let driver: CUDADriver

    init(driver: CUDADriver, timing: Bool) throws {
        self.driver = driver
        var e: CUhandle = nil
        try driver.check(driver.cuEventCreate(&e, timing ? 0 : CUDADriver.eventDisableTiming), "cuEventCreate")
        handle = e
    }

    /// Blocks the host until the work before this event has finished.
    public func synchronize() throws { try driver.check(driver.cuEventSynchronize(handle), "cuEventSynchronize") }

    /// Seconds from `earlier` (a timing event of the same device) to this one; waits for this event.
    public func seconds(since earlier: any BackendEvent) throws -> Double {
        guard let earlier = earlier as? CUDAEvent else {
            throw ReelError.invalidArgument(op: "seconds(since:)", message: "events of different devices")
        }
        try synchronize()
        var ms: Float = 0
        try driver.check(driver.cuEventElapsedTime(&ms, earlier.handle, handle), "cuEventElapsedTime")
        return Double(ms) / 1000
    }

    deinit { _ = driver.cuEventDestroy(handle) }
}

/// A captured sequence of ops (see `CUDABackend.captureGraph`), replayed on the stream it was captured on.
public final class CUDAGraph: @unchecked Sendable {
    private let backend: CUDABackend
    private let graph: CUhandle
    private let exec: CUhandle
    private let capture: CUDAGraphCapture

    init(backend: CUDABackend, graph: CUhandle, exec: CUhandle, capture: CUDAGraphCapture) {
        self.backend = backend; self.graph = graph; self.exec = exec; self.capture = capture
    }

    /// Number of tensors' storages the graph keeps alive.
    public var retainedAllocations: Int { capture.retained.count }

    /// Queues every captured op again on the backend's stream.
    public func replay() throws {
        try backend.cudaDevice.makeCurrent()
        try backend.driver.check(backend.profiled("graph replay") { backend.driver.cuGraphLaunch(exec, backend.stream) }, "cuGraphLaunch")
    }

    deinit {
        _ = backend.driver.cuStreamSynchronize(backend.stream)
        _ = backend.driver.cuGraphExecDestroy(exec)
        _ = backend.driver.cuGraphDestroy(graph)
    }
}

/// What a RoPE angle table depends on (`CUDABackend.ropeTable`).
struct RoPETableKey: Equatable {
    var grid: RoPEGrid
    var headDim: Int
}

extension CUDABackend: ThreadBoundStream {
    /// Binds this GPU's context to the calling thread.
    public func bindToCallingThread() throws { try cudaDevice.makeCurrent() }
}
