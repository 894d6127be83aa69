import Foundation

/// The mean absolute difference of two equally long byte buffers (8-bit pixels), in levels. A plain loop over the
/// raw bytes: frame-against-frame comparisons in tests stay fast in debug builds, where `zip` and closures are not.
public func meanAbsoluteDifference(_ a: some ContiguousBytes, _ b: some ContiguousBytes) -> Double {
    a.withUnsafeBytes { x in
        b.withUnsafeBytes { y in
            precondition(x.count == y.count, "comparing \(x.count) bytes with \(y.count)")
            var sum = 0
            for i in 0..<x.count { sum += abs(Int(x[i]) - Int(y[i])) }
            return Double(sum) / Double(max(x.count, 1))
        }
    }
}
