import Foundation
import ReelCore

/// NCCL, bound from libnccl.so.2 (`nccl.h`): the collectives between the GPUs of one process.
///
/// Reel drives every GPU from one process, so communicators come from `ncclCommInitAll` (one per device,
/// NCCL making the unique id itself; `ncclGetUniqueId` + `ncclCommInitRank` serve several processes, which
/// Reel does not run) and each collective is issued for every rank between `ncclGroupStart` and
/// `ncclGroupEnd`, which is what lets one thread issue all ranks' parts without a deadlock.
public struct NCCL: @unchecked Sendable {
    public typealias Result = Int32
    public typealias Comm = UnsafeMutableRawPointer?
    public let library: DynamicLibrary

    let ncclGetVersion: @convention(c) (UnsafeMutablePointer<Int32>) -> Result
    let ncclGetErrorString: @convention(c) (Result) -> UnsafePointer<CChar>?
    /// `ncclGetLastError(comm)` (NCCL 2.13 on): the detail behind the last failure.
    let ncclGetLastError: (@convention(c) (Comm) -> UnsafePointer<CChar>?)?
    let ncclCommInitAll: @convention(c) (UnsafeMutablePointer<Comm>, Int32, UnsafePointer<Int32>) -> Result
    let ncclCommDestroy: @convention(c) (Comm) -> Result
    let ncclGroupStart: @convention(c) () -> Result
    let ncclGroupEnd: @convention(c) () -> Result
    /// (sendbuff, recvbuff, count, datatype, op, comm, stream)
    let ncclAllReduce: @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int, Int32, Int32, Comm, CUhandle) -> Result
    /// (sendbuff, recvbuff, sendcount, datatype, comm, stream)
    let ncclAllGather: @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int, Int32, Comm, CUhandle) -> Result
    /// (sendbuff, count, datatype, peer, comm, stream)
    let ncclSend: @convention(c) (UnsafeRawPointer?, Int, Int32, Int32, Comm, CUhandle) -> Result
    /// (recvbuff, count, datatype, peer, comm, stream)
    let ncclRecv: @convention(c) (UnsafeMutableRawPointer?, Int, Int32, Int32, Comm, CUhandle) -> Result

    // ncclDataType_t and ncclRedOp_t values from nccl.h.
    static let int8: Int32 = 0, float16: Int32 = 6, float32: Int32 = 7, bfloat16: Int32 = 9
    static let sum: Int32 = 0

    init(library lib: DynamicLibrary) throws {
        library = lib
        ncclGetVersion = try lib.symbol("ncclGetVersion")
        ncclGetErrorString = try lib.symbol("ncclGetErrorString")
        ncclGetLastError = lib.optionalSymbol("ncclGetLastError")
        ncclCommInitAll = try lib.symbol("ncclCommInitAll")
        ncclCommDestroy = try lib.symbol("ncclCommDestroy")
        ncclGroupStart = try lib.symbol("ncclGroupStart")
        ncclGroupEnd = try lib.symbol("ncclGroupEnd")
        ncclAllReduce = try lib.symbol("ncclAllReduce")
        ncclAllGather = try lib.symbol("ncclAllGather")
        ncclSend = try lib.symbol("ncclSend")
        ncclRecv = try lib.symbol("ncclRecv")
    }

    /// Turns a failed `ncclResult_t` into a Swift error with NCCL's own message (and its last error's detail).
    public func check(_ result: Result, _ call: @autoclosure () -> String, comm: Comm = nil) throws {
        guard result != 0 else { return }
        let text = ncclGetErrorString(result).map { String(cString: $0) } ?? "ncclResult_t \(result)"
        let detail = ncclGetLastError?(comm).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        throw ReelError.library(name: "NCCL", message: "\(call()): \(text)\(detail.map { " (\($0))" } ?? "")")
    }

    /// The ncclDataType_t of a floating-point dtype for reductions (nil: NCCL does not reduce it).
    static func reductionType(_ dtype: DType) -> Int32? {
        switch dtype {
        case .f32: float32
        case .f16: float16
        case .bf16: bfloat16
        default: nil
        }
    }

    /// "2.21.5": ncclGetVersion's code is major*10000 + minor*100 + patch from 2.9 on, major*1000 + minor*100
    /// + patch before.
    public var versionString: String {
        var v: Int32 = 0
        guard ncclGetVersion(&v) == 0 else { return "unknown version" }
        let code = Int(v)
        if code >= 20900 { return "\(code / 10000).\((code / 100) % 100).\(code % 100)" }
        return "\(code / 1000).\((code / 100) % 10).\(code % 100)"
    }
}
