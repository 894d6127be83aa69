import Foundation
import ReelCore

/// NVRTC, the run-time CUDA C++ compiler, bound from libnvrtc.
public struct NVRTC: @unchecked Sendable {
    public typealias Result = Int32
    public let library: DynamicLibrary

    let nvrtcVersion: @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Result
    let nvrtcGetErrorString: @convention(c) (Result) -> UnsafePointer<CChar>?
    let nvrtcCreateProgram: @convention(c) (UnsafeMutablePointer<CUhandle>, UnsafePointer<CChar>, UnsafePointer<CChar>?, Int32,
                                            UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?) -> Result
    let nvrtcDestroyProgram: @convention(c) (UnsafeMutablePointer<CUhandle>) -> Result
    let nvrtcCompileProgram: @convention(c) (CUhandle, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Result
    let nvrtcGetProgramLogSize: @convention(c) (CUhandle, UnsafeMutablePointer<Int>) -> Result
    let nvrtcGetProgramLog: @convention(c) (CUhandle, UnsafeMutablePointer<CChar>) -> Result
    let nvrtcGetCUBINSize: @convention(c) (CUhandle, UnsafeMutablePointer<Int>) -> Result
    let nvrtcGetCUBIN: @convention(c) (CUhandle, UnsafeMutablePointer<CChar>) -> Result

    init(library lib: DynamicLibrary) throws {
        library = lib
        nvrtcVersion = try lib.symbol("nvrtcVersion")
        nvrtcGetErrorString = try lib.symbol("nvrtcGetErrorString")
        nvrtcCreateProgram = try lib.symbol("nvrtcCreateProgram")
        nvrtcDestroyProgram = try lib.symbol("nvrtcDestroyProgram")
        nvrtcCompileProgram = try lib.symbol("nvrtcCompileProgram")
        nvrtcGetProgramLogSize = try lib.symbol("nvrtcGetProgramLogSize")
        nvrtcGetProgramLog = try lib.symbol("nvrtcGetProgramLog")
        nvrtcGetCUBINSize = try lib.symbol("nvrtcGetCUBINSize")
        nvrtcGetCUBIN = try lib.symbol("nvrtcGetCUBIN")
    }

    public func check(_ status: Result, _ call: @autoclosure () -> String) throws {
        if status != 0 {
            let text = nvrtcGetErrorString(status).map { String(cString: $0) } ?? "NVRTC error \(status)"
            throw ReelError.library(name: "NVRTC", message: "\(call()): \(text)")
        }
    }

    public var version: (major: Int, minor: Int) {
        var a: Int32 = 0, b: Int32 = 0
        _ = nvrtcVersion(&a, &b)
        return (Int(a), Int(b))
    }

    public var versionString: String { "\(version.major).\(version.minor)" }

    /// Compiles one translation unit to a CUBIN for `arch` (e.g. "sm_90"). `headers` are (name, text)
    /// pairs the source may `#include`. On a compile error the NVRTC log is in the thrown message.
    public func compile(source: String, name: String, headers: [(String, String)], options: [String]) throws -> [UInt8] {
        var program: CUhandle = nil
        let headerTexts = headers.map { strdup($0.1) }
        let headerNames = headers.map { strdup($0.0) }
        let opts = options.map { strdup($0) }
        defer {
            (headerTexts + headerNames + opts).forEach { free($0) }
        }
        let texts: [UnsafePointer<CChar>?] = headerTexts.map { UnsafePointer($0) }
        let names: [UnsafePointer<CChar>?] = headerNames.map { UnsafePointer($0) }
        try check(nvrtcCreateProgram(&program, source, name, Int32(headers.count), texts, names), "nvrtcCreateProgram(\(name))")
        defer { _ = nvrtcDestroyProgram(&program) }
        let optPtrs: [UnsafePointer<CChar>?] = opts.map { UnsafePointer($0) }
        let status = nvrtcCompileProgram(program, Int32(opts.count), optPtrs)
        var logSize = 0
        _ = nvrtcGetProgramLogSize(program, &logSize)
        var log = [CChar](repeating: 0, count: max(logSize, 1))
        if logSize > 1 { _ = nvrtcGetProgramLog(program, &log) }
        let logText = String(decoding: log.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if status != 0 {
            let text = nvrtcGetErrorString(status).map { String(cString: $0) } ?? "error \(status)"
            throw ReelError.library(name: "NVRTC", message: "compiling \(name) (\(options.joined(separator: " "))): \(text)\n\(logText)")
        }
        var size = 0
        try check(nvrtcGetCUBINSize(program, &size), "nvrtcGetCUBINSize(\(name))")
        var cubin = [CChar](repeating: 0, count: size)
        try check(nvrtcGetCUBIN(program, &cubin), "nvrtcGetCUBIN(\(name))")
        return cubin.map { UInt8(bitPattern: $0) }
    }
}
