import Foundation
import Testing
@testable import ReelCore
@testable import ReelCUDA

/// NCCL's binding where the library is installed (every symbol Reel declares resolves, its own messages come
/// through), and the errors of a communicator asked for without the GPUs it needs.
@Suite struct NCCLTests {
    @Test func bindingResolvesAndReportsNCCLsOwnMessages() throws {
        guard let nccl = try? CUDALibraries.nccl() else {
            // Not installed: the error says what was looked for and what to set.
            do {
                _ = try CUDALibraries.nccl()
            } catch let ReelError.library(name, message) {
                #expect(name.contains("NCCL") && message.contains("libnccl.so.2") && message.contains("REEL_CUDA_PATH"))
            }
            return
        }
        let version = nccl.versionString.split(separator: ".")
        #expect(version.count == 3 && version.allSatisfy { Int($0) != nil } && Int(version[0]) == 2, "\(nccl.versionString)")
        #expect(throws: Never.self) { try nccl.check(0, "ncclGroupStart") }
        do {
            try nccl.check(4, "ncclAllReduce (rank 1)")           // ncclInvalidArgument
            Issue.record("a failed result passed")
        } catch let ReelError.library(name, message) {
            #expect(name == "NCCL" && message.hasPrefix("ncclAllReduce (rank 1): ") && message.contains("invalid argument"))
        }
        #expect(NCCL.reductionType(.bf16) == NCCL.bfloat16 && NCCL.reductionType(.int32) == nil)
    }

    @Test func communicatorsWithoutTheirGPUsAreClearErrors() throws {
        #expect(throws: ReelError.input("NCCL: GPUs [0, 0] name one device twice; each rank needs a GPU of its own")) {
            try NCCLCommunicator.checkDevices([0, 0])
        }
        #expect(throws: ReelError.input("NCCL: no GPU named")) { try NCCLCommunicator.checkDevices([]) }
        guard let driver = try? CUDALibraries.driver() else {
            // No driver (CI): the error names it.
            do {
                _ = try NCCLCommunicator(devices: [0, 1])
                Issue.record("a communicator without a GPU")
            } catch let ReelError.library(name, _) {
                #expect(name.contains("libcuda"))
            }
            return
        }
        var count: Int32 = 0
        try driver.check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount")
        let tooMany = Array(0...Int(count))
        do {
            try NCCLCommunicator.checkDevices(tooMany)
            Issue.record("\(tooMany.count) GPUs accepted where \(count) are visible")
        } catch let ReelError.input(message) {
            #expect(message.contains("needs GPU cuda:\(count)") && message.contains("\(tooMany.count) ranks need \(tooMany.count) GPUs"))
        }
    }
}
