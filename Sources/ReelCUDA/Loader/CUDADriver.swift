import Foundation
import ReelCore

// C types of the CUDA driver API (cuda.h). Handles are opaque pointers; device pointers are 64-bit.
public typealias CUresult = Int32
public typealias CUdevice = Int32
public typealias CUdeviceptr = UInt64
public typealias CUhandle = UnsafeMutableRawPointer?

/// The CUDA driver API entry points Reel uses, bound from libcuda with their real (`_v2`) names.
public struct CUDADriver: @unchecked Sendable {
    public let library: DynamicLibrary

    let cuInit: @convention(c) (UInt32) -> CUresult
    let cuDriverGetVersion: @convention(c) (UnsafeMutablePointer<Int32>) -> CUresult
    let cuGetErrorString: @convention(c) (CUresult, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> CUresult
    let cuGetErrorName: @convention(c) (CUresult, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> CUresult
    let cuDeviceGetCount: @convention(c) (UnsafeMutablePointer<Int32>) -> CUresult
    let cuDeviceGet: @convention(c) (UnsafeMutablePointer<CUdevice>, Int32) -> CUresult
    let cuDeviceGetName: @convention(c) (UnsafeMutablePointer<CChar>, Int32, CUdevice) -> CUresult
    let cuDeviceTotalMem: @convention(c) (UnsafeMutablePointer<Int>, CUdevice) -> CUresult
    let cuDeviceGetAttribute: @convention(c) (UnsafeMutablePointer<Int32>, Int32, CUdevice) -> CUresult
    let cuDevicePrimaryCtxRetain: @convention(c) (UnsafeMutablePointer<CUhandle>, CUdevice) -> CUresult
    let cuCtxSetCurrent: @convention(c) (CUhandle) -> CUresult
    let cuMemAlloc: @convention(c) (UnsafeMutablePointer<CUdeviceptr>, Int) -> CUresult
    let cuMemFree: @convention(c) (CUdeviceptr) -> CUresult
    let cuMemAllocHost: @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>, Int) -> CUresult
    let cuMemFreeHost: @convention(c) (UnsafeMutableRawPointer?) -> CUresult
    let cuMemGetInfo: @convention(c) (UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>) -> CUresult
    let cuMemcpyHtoDAsync: @convention(c) (CUdeviceptr, UnsafeRawPointer?, Int, CUhandle) -> CUresult
    let cuMemcpyDtoHAsync: @convention(c) (UnsafeMutableRawPointer?, CUdeviceptr, Int, CUhandle) -> CUresult
    let cuMemcpyDtoDAsync: @convention(c) (CUdeviceptr, CUdeviceptr, Int, CUhandle) -> CUresult
    /// (dst, dst context, src, src context, bytes, stream): between GPUs, directly where peer access is on.
    let cuMemcpyPeerAsync: @convention(c) (CUdeviceptr, CUhandle, CUdeviceptr, CUhandle, Int, CUhandle) -> CUresult
    let cuStreamCreate: @convention(c) (UnsafeMutablePointer<CUhandle>, UInt32) -> CUresult
    let cuStreamDestroy: @convention(c) (CUhandle) -> CUresult
    let cuStreamSynchronize: @convention(c) (CUhandle) -> CUresult
    let cuStreamWaitEvent: @convention(c) (CUhandle, CUhandle, UInt32) -> CUresult
    let cuEventCreate: @convention(c) (UnsafeMutablePointer<CUhandle>, UInt32) -> CUresult
    let cuEventRecord: @convention(c) (CUhandle, CUhandle) -> CUresult
    let cuEventSynchronize: @convention(c) (CUhandle) -> CUresult
    let cuEventQuery: @convention(c) (CUhandle) -> CUresult
    let cuEventDestroy: @convention(c) (CUhandle) -> CUresult
    let cuEventElapsedTime: @convention(c) (UnsafeMutablePointer<Float>, CUhandle, CUhandle) -> CUresult
    let cuModuleLoadData: @convention(c) (UnsafeMutablePointer<CUhandle>, UnsafeRawPointer) -> CUresult
    let cuModuleGetFunction: @convention(c) (UnsafeMutablePointer<CUhandle>, CUhandle, UnsafePointer<CChar>) -> CUresult
    let cuFuncSetAttribute: @convention(c) (CUhandle, Int32, Int32) -> CUresult
    let cuLaunchKernel: @convention(c) (CUhandle, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, CUhandle,
                                        UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> CUresult
    let cuStreamBeginCapture: @convention(c) (CUhandle, Int32) -> CUresult
    let cuStreamIsCapturing: @convention(c) (CUhandle, UnsafeMutablePointer<Int32>) -> CUresult
    let cuStreamEndCapture: @convention(c) (CUhandle, UnsafeMutablePointer<CUhandle>) -> CUresult
    let cuGraphInstantiateWithFlags: @convention(c) (UnsafeMutablePointer<CUhandle>, CUhandle, UInt64) -> CUresult
    let cuGraphLaunch: @convention(c) (CUhandle, CUhandle) -> CUresult
    let cuGraphExecDestroy: @convention(c) (CUhandle) -> CUresult
    let cuGraphDestroy: @convention(c) (CUhandle) -> CUresult
    /// A TMA descriptor (CUtensorMap, 128 bytes) for a tiled box copy (CUDA 12+; nil on older drivers).
    let cuTensorMapEncodeTiled: (@convention(c) (UnsafeMutableRawPointer, Int32, UInt32, UnsafeMutableRawPointer,
                                                 UnsafePointer<UInt64>, UnsafePointer<UInt64>, UnsafePointer<UInt32>,
                                                 UnsafePointer<UInt32>, Int32, Int32, Int32, Int32) -> CUresult)?

    // Device attributes (CUdevice_attribute).
    static let attrMultiprocessorCount: Int32 = 16
    static let attrL2CacheSize: Int32 = 38
    static let attrComputeCapabilityMajor: Int32 = 75
    static let attrComputeCapabilityMinor: Int32 = 76
    static let attrMaxSharedMemoryPerBlockOptin: Int32 = 97
    /// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    static let funcAttrMaxDynamicSharedBytes: Int32 = 8
    /// CU_STREAM_NON_BLOCKING: no implicit synchronization with the legacy default stream.
    static let streamNonBlocking: UInt32 = 1
    /// CU_EVENT_DISABLE_TIMING
    static let eventDisableTiming: UInt32 = 2
    /// CU_STREAM_CAPTURE_MODE_RELAXED: other threads may keep calling unsafe APIs during a capture.
    static let captureModeRelaxed: Int32 = 2
    /// CUDA_ERROR_NOT_READY: the work before an event (cuEventQuery) has not finished yet.
    static let errorNotReady: CUresult = 600

    init(library lib: DynamicLibrary) throws {
        library = lib
        cuInit = try lib.symbol("cuInit")
        cuDriverGetVersion = try lib.symbol("cuDriverGetVersion")
        cuGetErrorString = try lib.symbol("cuGetErrorString")
        cuGetErrorName = try lib.symbol("cuGetErrorName")
        cuDeviceGetCount = try lib.symbol("cuDeviceGetCount")
        cuDeviceGet = try lib.symbol("cuDeviceGet")
        cuDeviceGetName = try lib.symbol("cuDeviceGetName")
        cuDeviceTotalMem = try lib.symbol("cuDeviceTotalMem_v2")
        cuDeviceGetAttribute = try lib.symbol("cuDeviceGetAttribute")
        cuDevicePrimaryCtxRetain = try lib.symbol("cuDevicePrimaryCtxRetain")
        cuCtxSetCurrent = try lib.symbol("cuCtxSetCurrent")
        cuMemAlloc = try lib.symbol("cuMemAlloc_v2")
        cuMemFree = try lib.symbol("cuMemFree_v2")
        cuMemAllocHost = try lib.symbol("cuMemAllocHost_v2")
        cuMemFreeHost = try lib.symbol("cuMemFreeHost")
        cuMemGetInfo = try lib.symbol("cuMemGetInfo_v2")
        cuMemcpyHtoDAsync = try lib.symbol("cuMemcpyHtoDAsync_v2")
        cuMemcpyDtoHAsync = try lib.symbol("cuMemcpyDtoHAsync_v2")
        cuMemcpyDtoDAsync = try lib.symbol("cuMemcpyDtoDAsync_v2")
        cuMemcpyPeerAsync = try lib.symbol("cuMemcpyPeerAsync")
        cuStreamCreate = try lib.symbol("cuStreamCreate")
        cuStreamDestroy = try lib.symbol("cuStreamDestroy_v2")
        cuStreamSynchronize = try lib.symbol("cuStreamSynchronize")
        cuStreamWaitEvent = try lib.symbol("cuStreamWaitEvent")
        cuEventCreate = try lib.symbol("cuEventCreate")
        cuEventRecord = try lib.symbol("cuEventRecord")
        cuEventSynchronize = try lib.symbol("cuEventSynchronize")
        cuEventQuery = try lib.symbol("cuEventQuery")
        cuEventDestroy = try lib.symbol("cuEventDestroy_v2")
        // CUDA 12.8 added the _v2 form; CUDA 13 headers map the plain name to it.
        cuEventElapsedTime = try lib.optionalSymbol("cuEventElapsedTime_v2") ?? lib.symbol("cuEventElapsedTime")
        cuModuleLoadData = try lib.symbol("cuModuleLoadData")
        cuModuleGetFunction = try lib.symbol("cuModuleGetFunction")
        cuFuncSetAttribute = try lib.symbol("cuFuncSetAttribute")
        cuLaunchKernel = try lib.symbol("cuLaunchKernel")
        cuStreamBeginCapture = try lib.symbol("cuStreamBeginCapture_v2")
        cuStreamEndCapture = try lib.symbol("cuStreamEndCapture")
        cuStreamIsCapturing = try lib.symbol("cuStreamIsCapturing")
        cuGraphInstantiateWithFlags = try lib.symbol("cuGraphInstantiateWithFlags")
        cuGraphLaunch = try lib.symbol("cuGraphLaunch")
        cuGraphExecDestroy = try lib.symbol("cuGraphExecDestroy")
        cuGraphDestroy = try lib.symbol("cuGraphDestroy")
        cuTensorMapEncodeTiled = lib.optionalSymbol("cuTensorMapEncodeTiled")
    }

    /// Throws the driver's own name and description of `status` unless it is CUDA_SUCCESS.
    @inline(__always)
    public func check(_ status: CUresult, _ call: @autoclosure () -> String) throws {
        if status != 0 { throw error(status, call()) }
    }

    func error(_ status: CUresult, _ call: String) -> ReelError {
        var name: UnsafePointer<CChar>?
        var text: UnsafePointer<CChar>?
        _ = cuGetErrorName(status, &name)
        _ = cuGetErrorString(status, &text)
        let n = name.map { String(cString: $0) } ?? "CUDA error \(status)"
        let t = text.map { String(cString: $0) } ?? "unknown error"
        if status == 2 {  // CUDA_ERROR_OUT_OF_MEMORY is reported by the allocator with the size.
            return .library(name: "CUDA", message: "\(call): \(n): \(t)")
        }
        return .library(name: "CUDA", message: "\(call): \(n) (\(status)): \(t)")
    }

    /// "13.0" from the driver's integer version (13000).
    public func versionString() -> String {
        var v: Int32 = 0
        guard cuDriverGetVersion(&v) == 0 else { return "unknown" }
        return "\(v / 1000).\((v % 1000) / 10)"
    }
}
