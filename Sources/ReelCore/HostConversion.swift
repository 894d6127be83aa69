/// Converts between host float32 arrays and the byte encodings of each dtype.
public enum HostConversion {
    public static func encode(_ values: [Float], as dtype: DType) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count * dtype.size)
        out.withUnsafeMutableBytes { raw in
            values.withUnsafeBufferPointer { v in encode(v, as: dtype, into: raw) }
        }
        return out
    }

    public static func encode(_ v: UnsafeBufferPointer<Float>, as dtype: DType, into raw: UnsafeMutableRawBufferPointer) {
        let n = v.count
        switch dtype {
        case .f32: raw.baseAddress!.copyMemory(from: v.baseAddress!, byteCount: n * 4)
        case .f16:
            let p = raw.bindMemory(to: UInt16.self)
            for i in 0..<n { p[i] = Float16Bits.fromFloat(v[i]) }
        case .bf16:
            let p = raw.bindMemory(to: UInt16.self)
            for i in 0..<n { p[i] = BFloat16Bits.fromFloat(v[i]) }
        case .fp8e4m3:
            let p = raw.bindMemory(to: UInt8.self)
            for i in 0..<n { p[i] = Float8E4M3Bits.fromFloat(v[i]) }
        case .int8:
            let p = raw.bindMemory(to: Int8.self)
            for i in 0..<n { p[i] = Int8(max(-128, min(127, v[i].rounded()))) }
        case .uint8, .bool:
            let p = raw.bindMemory(to: UInt8.self)
            for i in 0..<n { p[i] = UInt8(max(0, min(255, v[i].rounded()))) }
        case .int32:
            let p = raw.bindMemory(to: Int32.self)
            // Saturating, NaN -> 0: a float outside the range must not trap (Int32(_:) would).
            for i in 0..<n { let x = v[i]; p[i] = x.isNaN ? 0 : x >= 0x1p31 ? .max : x < -0x1p31 ? .min : Int32(x) }
        case .int64:
            let p = raw.bindMemory(to: Int64.self)
            for i in 0..<n { let x = v[i]; p[i] = x.isNaN ? 0 : x >= 0x1p63 ? .max : x < -0x1p63 ? .min : Int64(x) }
        }
    }

    public static func decode(_ bytes: [UInt8], from dtype: DType) throws -> [Float] {
        try require(bytes.count % dtype.size == 0, "decode", "\(bytes.count) bytes is not a whole number of \(dtype)")
        let n = bytes.count / dtype.size
        var out = [Float](repeating: 0, count: n)
        bytes.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { o in decode(UnsafeRawBufferPointer(raw), from: dtype, into: o) }
        }
        return out
    }

    public static func decode(_ raw: UnsafeRawBufferPointer, from dtype: DType, into o: UnsafeMutableBufferPointer<Float>) {
        let n = o.count
        switch dtype {
        case .f32: o.baseAddress!.update(from: raw.baseAddress!.assumingMemoryBound(to: Float.self), count: n)
        case .f16:
            let p = raw.baseAddress!.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { o[i] = Float16Bits.toFloat(p[i]) }
        case .bf16:
            let p = raw.baseAddress!.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { o[i] = BFloat16Bits.toFloat(p[i]) }
        case .fp8e4m3:
            let p = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n { o[i] = Float8E4M3Bits.toFloat(p[i]) }
        case .int8:
            let p = raw.baseAddress!.assumingMemoryBound(to: Int8.self)
            for i in 0..<n { o[i] = Float(p[i]) }
        case .uint8, .bool:
            let p = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n { o[i] = Float(p[i]) }
        case .int32:
            let p = raw.baseAddress!.assumingMemoryBound(to: Int32.self)
            for i in 0..<n { o[i] = Float(p[i]) }
        case .int64:
            let p = raw.baseAddress!.assumingMemoryBound(to: Int64.self)
            for i in 0..<n { o[i] = Float(p[i]) }
        }
    }
}
