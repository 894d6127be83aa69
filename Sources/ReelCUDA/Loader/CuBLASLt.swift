import Foundation
import ReelCore

/// cuBLASLt, bound from libcublasLt: the GEMM library behind `matmul` and `conv3d`.
public struct CuBLASLt: @unchecked Sendable {
    public typealias Status = Int32
    public let library: DynamicLibrary

    let cublasLtCreate: @convention(c) (UnsafeMutablePointer<CUhandle>) -> Status
    let cublasLtGetVersion: @convention(c) () -> Int
    let cublasLtGetStatusString: (@convention(c) (Status) -> UnsafePointer<CChar>?)?
    let cublasLtGetStatusName: (@convention(c) (Status) -> UnsafePointer<CChar>?)?
    let cublasLtMatmulDescCreate: @convention(c) (UnsafeMutablePointer<CUhandle>, Int32, Int32) -> Status
    let cublasLtMatmulDescSetAttribute: @convention(c) (CUhandle, Int32, UnsafeRawPointer, Int) -> Status
    let cublasLtMatmulDescDestroy: @convention(c) (CUhandle) -> Status
    let cublasLtMatrixLayoutCreate: @convention(c) (UnsafeMutablePointer<CUhandle>, Int32, UInt64, UInt64, Int64) -> Status
    let cublasLtMatrixLayoutSetAttribute: @convention(c) (CUhandle, Int32, UnsafeRawPointer, Int) -> Status
    let cublasLtMatrixLayoutDestroy: @convention(c) (CUhandle) -> Status
    let cublasLtMatmulPreferenceCreate: @convention(c) (UnsafeMutablePointer<CUhandle>) -> Status
    let cublasLtMatmulPreferenceSetAttribute: @convention(c) (CUhandle, Int32, UnsafeRawPointer, Int) -> Status
    let cublasLtMatmulPreferenceDestroy: @convention(c) (CUhandle) -> Status
    let cublasLtMatmulAlgoGetHeuristic: @convention(c) (CUhandle, CUhandle, CUhandle, CUhandle, CUhandle, CUhandle, CUhandle, Int32,
                                                        UnsafeMutableRawPointer, UnsafeMutablePointer<Int32>) -> Status
    let cublasLtMatmul: @convention(c) (CUhandle, CUhandle, UnsafeRawPointer, UInt64, CUhandle, UInt64, CUhandle, UnsafeRawPointer,
                                        UInt64, CUhandle, UInt64, CUhandle, UnsafeRawPointer?, UInt64, Int, CUhandle) -> Status

    // Enum values from cublasLt.h / library_types.h.
    static let computeF32: Int32 = 68          // CUBLAS_COMPUTE_32F
    static let dataF32: Int32 = 0              // CUDA_R_32F
    static let dataF16: Int32 = 2              // CUDA_R_16F
    static let dataBF16: Int32 = 14            // CUDA_R_16BF
    static let dataFP8E4M3: Int32 = 28         // CUDA_R_8F_E4M3
    static let computeI32: Int32 = 72          // CUBLAS_COMPUTE_32I
    static let dataI8: Int32 = 3               // CUDA_R_8I
    static let dataI32: Int32 = 10             // CUDA_R_32I
    static let opN: Int32 = 0, opT: Int32 = 1
    static let descTransA: Int32 = 3, descTransB: Int32 = 4, descEpilogue: Int32 = 7
    static let descBiasPointer: Int32 = 8, descBiasDataType: Int32 = 26
    static let descAScalePointer: Int32 = 17, descBScalePointer: Int32 = 18, descFastAccum: Int32 = 25
    static let descAScaleMode: Int32 = 31, descBScaleMode: Int32 = 32
    /// CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F: a float32 scale per row of op(A) and per column of op(B).
    static let scaleOuterVector: Int32 = 3
    static let epilogueDefault: Int32 = 1, epilogueBias: Int32 = 4
    /// GELU, and bias then GELU (GELU | BIAS). cuBLAS documents its GELU as the tanh approximation
    /// (cublasLtEpilogue_t, note 5); `reel check-ops` checks it on the GPU at hand.
    static let epilogueGELU: Int32 = 32, epilogueGELUBias: Int32 = 36
    static let layoutBatchCount: Int32 = 5, layoutStridedBatchOffset: Int32 = 6
    static let prefMaxWorkspaceBytes: Int32 = 1
    /// sizeof(cublasLtMatmulHeuristicResult_t): algo (8 x u64), workspaceSize, state, wavesCount, reserved[4].
    static let heuristicResultSize = 96

    init(library lib: DynamicLibrary) throws {
        library = lib
        cublasLtCreate = try lib.symbol("cublasLtCreate")
        cublasLtGetVersion = try lib.symbol("cublasLtGetVersion")
        cublasLtGetStatusString = lib.optionalSymbol("cublasLtGetStatusString")
        cublasLtGetStatusName = lib.optionalSymbol("cublasLtGetStatusName")
        cublasLtMatmulDescCreate = try lib.symbol("cublasLtMatmulDescCreate")
        cublasLtMatmulDescSetAttribute = try lib.symbol("cublasLtMatmulDescSetAttribute")
        cublasLtMatmulDescDestroy = try lib.symbol("cublasLtMatmulDescDestroy")
        cublasLtMatrixLayoutCreate = try lib.symbol("cublasLtMatrixLayoutCreate")
        cublasLtMatrixLayoutSetAttribute = try lib.symbol("cublasLtMatrixLayoutSetAttribute")
        cublasLtMatrixLayoutDestroy = try lib.symbol("cublasLtMatrixLayoutDestroy")
        cublasLtMatmulPreferenceCreate = try lib.symbol("cublasLtMatmulPreferenceCreate")
        cublasLtMatmulPreferenceSetAttribute = try lib.symbol("cublasLtMatmulPreferenceSetAttribute")
        cublasLtMatmulPreferenceDestroy = try lib.symbol("cublasLtMatmulPreferenceDestroy")
        cublasLtMatmulAlgoGetHeuristic = try lib.symbol("cublasLtMatmulAlgoGetHeuristic")
        cublasLtMatmul = try lib.symbol("cublasLtMatmul")
    }

    public func check(_ status: Status, _ call: @autoclosure () -> String) throws {
        if status != 0 {
            let name = cublasLtGetStatusName?(status).map { String(cString: $0) } ?? "CUBLAS_STATUS \(status)"
            let text = cublasLtGetStatusString?(status).map { String(cString: $0) } ?? ""
            throw ReelError.library(name: "cuBLASLt", message: "\(call()): \(name) \(text)")
        }
    }

    /// "13.4.1" from cublasLtGetVersion (major*10000 + minor*100 + patch).
    public var versionString: String {
        let v = cublasLtGetVersion()
        return "\(v / 10000).\((v / 100) % 100).\(v % 100)"
    }
}
