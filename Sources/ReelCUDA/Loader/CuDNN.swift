import Foundation
import ReelCore

/// cuDNN's backend (graph) API, bound from libcudnn: used for its fused flash attention, which the
/// runtime fusion engine builds from a graph of matmul, pointwise and reduction ops.
public struct CuDNN: @unchecked Sendable {
    public typealias Status = Int32
    public let library: DynamicLibrary

    let cudnnGetVersion: @convention(c) () -> Int
    let cudnnGetErrorString: @convention(c) (Status) -> UnsafePointer<CChar>?
    let cudnnGetLastErrorString: (@convention(c) (UnsafeMutablePointer<CChar>, Int) -> Void)?
    let cudnnCreate: @convention(c) (UnsafeMutablePointer<CUhandle>) -> Status
    let cudnnSetStream: @convention(c) (CUhandle, CUhandle) -> Status
    let cudnnBackendCreateDescriptor: @convention(c) (Int32, UnsafeMutablePointer<CUhandle>) -> Status
    let cudnnBackendDestroyDescriptor: @convention(c) (CUhandle) -> Status
    let cudnnBackendFinalize: @convention(c) (CUhandle) -> Status
    let cudnnBackendSetAttribute: @convention(c) (CUhandle, Int32, Int32, Int64, UnsafeRawPointer) -> Status
    let cudnnBackendGetAttribute: @convention(c) (CUhandle, Int32, Int32, Int64, UnsafeMutablePointer<Int64>, UnsafeMutableRawPointer?) -> Status
    let cudnnBackendExecute: @convention(c) (CUhandle, CUhandle, CUhandle) -> Status

    // cudnnBackendDescriptorType_t
    static let pointwiseDescriptor: Int32 = 0, engineCfgDescriptor: Int32 = 3, engineHeurDescriptor: Int32 = 4
    static let executionPlanDescriptor: Int32 = 5, operationPointwiseDescriptor: Int32 = 13, operationGraphDescriptor: Int32 = 15
    static let variantPackDescriptor: Int32 = 16, tensorDescriptor: Int32 = 17, matmulDescriptor: Int32 = 18
    static let operationMatmulDescriptor: Int32 = 19, reductionDescriptor: Int32 = 21, operationReductionDescriptor: Int32 = 22
    static let operationSDPAForwardDescriptor: Int32 = 41  // cuDNN >= 9.13
    static let convolutionDescriptor: Int32 = 1, operationConvForwardDescriptor: Int32 = 10
    // cudnnBackendAttributeType_t
    static let typeHandle: Int32 = 0, typeDataType: Int32 = 1, typeBoolean: Int32 = 2, typeInt64: Int32 = 3
    static let typeVoidPtr: Int32 = 6, typeHeurMode: Int32 = 8, typePointwiseMode: Int32 = 14, typeBackendDescriptor: Int32 = 15
    static let typeReductionOperator: Int32 = 18, typeFloat: Int32 = 4, typeConvolutionMode: Int32 = 7
    // cudnnBackendAttributeName_t
    static let attrPointwiseMode: Int32 = 0, attrPointwiseMathPrec: Int32 = 1
    static let attrEngineHeurMode: Int32 = 200, attrEngineHeurOperationGraph: Int32 = 201, attrEngineHeurResults: Int32 = 202
    static let attrPlanHandle: Int32 = 400, attrPlanEngineConfig: Int32 = 401, attrPlanWorkspaceSize: Int32 = 402
    static let attrOpPointwiseDesc: Int32 = 750, attrOpPointwiseX: Int32 = 751, attrOpPointwiseB: Int32 = 752, attrOpPointwiseY: Int32 = 753
    static let attrGraphHandle: Int32 = 800, attrGraphOps: Int32 = 801
    static let attrTensorAlignment: Int32 = 900, attrTensorDataType: Int32 = 901, attrTensorDims: Int32 = 902
    static let attrTensorStrides: Int32 = 903, attrTensorUID: Int32 = 906, attrTensorVirtual: Int32 = 907, attrTensorByValue: Int32 = 908
    static let attrVariantUIDs: Int32 = 1000, attrVariantPointers: Int32 = 1001, attrVariantWorkspace: Int32 = 1003
    static let attrConvCompType: Int32 = 100, attrConvMode: Int32 = 101, attrConvDilations: Int32 = 102
    static let attrConvStrides: Int32 = 103, attrConvPostPaddings: Int32 = 104, attrConvPrePaddings: Int32 = 105
    static let attrConvSpatialDims: Int32 = 106
    static let attrOpConvAlpha: Int32 = 700, attrOpConvBeta: Int32 = 701, attrOpConvDesc: Int32 = 702
    static let attrOpConvW: Int32 = 703, attrOpConvX: Int32 = 704, attrOpConvY: Int32 = 705
    static let crossCorrelation: Int32 = 1
    static let attrMatmulCompType: Int32 = 1500
    static let attrSDPAForwardQ: Int32 = 2800, attrSDPAForwardK: Int32 = 2801, attrSDPAForwardV: Int32 = 2802
    static let attrSDPAForwardO: Int32 = 2803, attrSDPAForwardStats: Int32 = 2804, attrSDPAForwardScale: Int32 = 2805
    static let attrOpMatmulA: Int32 = 1520, attrOpMatmulB: Int32 = 1521, attrOpMatmulC: Int32 = 1522, attrOpMatmulDesc: Int32 = 1523
    static let attrReductionOperator: Int32 = 1600, attrReductionCompType: Int32 = 1601
    static let attrOpReductionX: Int32 = 1610, attrOpReductionY: Int32 = 1611, attrOpReductionDesc: Int32 = 1612
    // cudnnDataType_t, cudnnPointwiseMode_t, cudnnReduceTensorOp_t, cudnnBackendHeurMode_t
    static let dataFloat: Int32 = 0, dataHalf: Int32 = 2, dataBFloat16: Int32 = 9, dataFP8E4M3: Int32 = 12
    static let pwAdd: Int32 = 0, pwMul: Int32 = 1, pwDiv: Int32 = 6, pwSub: Int32 = 9, pwExp: Int32 = 13, pwLog: Int32 = 15
    static let reduceAdd: Int32 = 0, reduceMax: Int32 = 3, reduceAmax: Int32 = 4
    static let heurModeA: Int32 = 3, heurModeB: Int32 = 1, heurModeFallback: Int32 = 2

    init(library lib: DynamicLibrary) throws {
        library = lib
        cudnnGetVersion = try lib.symbol("cudnnGetVersion")
        cudnnGetErrorString = try lib.symbol("cudnnGetErrorString")
        cudnnGetLastErrorString = lib.optionalSymbol("cudnnGetLastErrorString")
        cudnnCreate = try lib.symbol("cudnnCreate")
        cudnnSetStream = try lib.symbol("cudnnSetStream")
        cudnnBackendCreateDescriptor = try lib.symbol("cudnnBackendCreateDescriptor")
        cudnnBackendDestroyDescriptor = try lib.symbol("cudnnBackendDestroyDescriptor")
        cudnnBackendFinalize = try lib.symbol("cudnnBackendFinalize")
        cudnnBackendSetAttribute = try lib.symbol("cudnnBackendSetAttribute")
        cudnnBackendGetAttribute = try lib.symbol("cudnnBackendGetAttribute")
        cudnnBackendExecute = try lib.symbol("cudnnBackendExecute")
    }

    /// Throws cuDNN's status name and its last detailed error message.
    public func check(_ status: Status, _ call: @autoclosure () -> String) throws {
        if status != 0 {
            let name = cudnnGetErrorString(status).map { String(cString: $0) } ?? "cuDNN status \(status)"
            var detail = ""
            if let last = cudnnGetLastErrorString {
                var buf = [CChar](repeating: 0, count: 1024)
                last(&buf, buf.count)
                detail = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
            throw ReelError.library(name: "cuDNN", message: "\(call()): \(name)\(detail.isEmpty ? "" : " (\(detail))")")
        }
    }

    /// cudnnGetVersion: major*10000 + minor*100 + patch in cuDNN 9 (91300 for 9.13.0).
    public var version: Int { cudnnGetVersion() }

    /// "9.10.2" from cudnnGetVersion (major*10000 + minor*100 + patch in cuDNN 9).
    public var versionString: String {
        let v = cudnnGetVersion()
        return "\(v / 10000).\((v / 100) % 100).\(v % 100)"
    }
}
