import Foundation
import ReelCore
import ReelCPU
import Testing

/// `--gpu-memory` on the CPU backend: allocations past the cap are refused with the bytes asked for, the bytes
/// in use and the cap; freed tensors give their bytes back.
@Suite struct MemoryCapTests {
    @Test func allocationsPastTheCapAreRefusedWithTheFigures() throws {
        let budget = MemoryBudget(cap: 1_000_000, device: "cpu")
        let be = CPUBackend(threads: 1, memoryBudget: budget)
        var a: Tensor? = try be.allocate([100_000], dtype: .f32)            // 400 KB
        let b = try be.allocate([100_000], dtype: .f32)                     // 800 KB in use
        #expect(budget.inUse == 800_000)
        #expect(throws: ReelError.overMemoryCap(device: "cpu", requested: 400_000, inUse: 800_000, cap: 1_000_000)) {
            _ = try be.allocate([100_000], dtype: .f32)
        }
        let message = "\(ReelError.overMemoryCap(device: "cpu", requested: 400_000, inUse: 800_000, cap: 1_000_000))"
        #expect(message.contains("0.4 MB"))
        #expect(message.contains("1.0 MB") && message.contains("0.8 MB") && message.contains("--gpu-memory"))
        a = nil
        _ = a
        #expect(budget.inUse == 400_000)
        let c = try be.allocate([100_000], dtype: .f32)                     // fits again
        #expect(budget.peak == 800_000)
        _ = (b, c)
    }

    @Test func opsOnACappedStreamCountTheirOutputs() throws {
        let be = CPUBackend(threads: 1, memoryBudget: MemoryBudget(cap: 10_000, device: "cpu"))
        let x = try be.tensor([Float](repeating: 1, count: 1000), shape: [1000])   // 4 KB
        let y = try be.add(x, x)                                                     // 8 KB
        #expect(throws: ReelError.self) { _ = try be.add(x, y) }
    }
}
