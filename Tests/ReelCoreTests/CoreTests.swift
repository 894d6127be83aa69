import Testing
@testable import ReelCore

@Suite struct DTypeTests {
    @Test func bfloat16RoundsToNearestEven() {
        #expect(BFloat16Bits.toFloat(BFloat16Bits.fromFloat(1.0)) == 1.0)
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to even (1.0).
        #expect(BFloat16Bits.toFloat(BFloat16Bits.fromFloat(1 + 1.0 / 256)) == 1.0)
        #expect(BFloat16Bits.toFloat(BFloat16Bits.fromFloat(1 + 3.0 / 256)) == 1 + 4.0 / 256)
        #expect(BFloat16Bits.toFloat(BFloat16Bits.fromFloat(.nan)).isNaN)
    }

    @Test func fp8RoundTripsEveryEncoding() {
        for b in 0...255 {
            let bits = UInt8(b)
            let f = Float8E4M3Bits.toFloat(bits)
            if f.isNaN { continue }
            let back = Float8E4M3Bits.fromFloat(f)
            // +0 and -0 are distinct encodings of equal values.
            #expect(back == bits || (f == 0 && back & 0x7F == 0), "encoding \(b) -> \(f) -> \(back)")
        }
        #expect(Float8E4M3Bits.toFloat(Float8E4M3Bits.fromFloat(1000)) == 448)
        #expect(Float8E4M3Bits.toFloat(0x7E) == 448)
    }

    @Test func shapeBroadcasting() {
        #expect(broadcastShapes([2, 1, 4], [3, 1]) == [2, 3, 4])
        #expect(broadcastShapes([2, 3], [4, 3]) == nil)
    }
}

@Suite struct PhiloxTests {
    // Known-answer test from the Random123 distribution (philox4x32_10, kat_vectors).
    @Test func philoxKnownAnswers() {
        let zero = Philox.block(counter: (0, 0, 0, 0), key: (0, 0))
        #expect(zero == (0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8))
        let ones = Philox.block(counter: (0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff), key: (0xffff_ffff, 0xffff_ffff))
        #expect(ones == (0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd))
    }

    @Test func normalsHaveUnitMoments() {
        let n = 200_000
        var sum = 0.0, sq = 0.0
        for i in 0..<n {
            let z = Double(PhiloxNormal.sample(seed: 42, index: UInt64(i)))
            sum += z; sq += z * z
        }
        let mean = sum / Double(n), variance = sq / Double(n) - mean * mean
        #expect(abs(mean) < 0.01)
        #expect(abs(variance - 1) < 0.02)
        #expect(PhiloxNormal.sample(seed: 1, index: 7) != PhiloxNormal.sample(seed: 2, index: 7))
    }
}
