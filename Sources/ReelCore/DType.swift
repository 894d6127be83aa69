/// Element types a tensor can be stored in.
///
/// Math happens in float32 on the CPU backend and with float32 accumulation on CUDA; the 16-bit
/// and 8-bit types are storage formats that are converted on the way in and out of each op.
public enum DType: String, CaseIterable, Sendable, Codable, CustomStringConvertible {
    case f32
    case f16
    case bf16
    /// FP8 E4M3 (finite, no infinities; 0x7F / 0xFF are NaN), as used by Hopper tensor cores.
    case fp8e4m3
    case int8
    case uint8
    case int32
    case int64
    case bool

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f32, .int32: 4
        case .f16, .bf16: 2
        case .fp8e4m3, .int8, .uint8, .bool: 1
        case .int64: 8
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .f32, .f16, .bf16, .fp8e4m3: true
        default: false
        }
    }

    public var description: String { rawValue }

    /// The name safetensors uses in its header ("F32", "BF16", ...).
    public var safetensorsName: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .bf16: "BF16"
        case .fp8e4m3: "F8_E4M3"
        case .int8: "I8"
        case .uint8: "U8"
        case .int32: "I32"
        case .int64: "I64"
        case .bool: "BOOL"
        }
    }

    public init?(safetensorsName name: String) {
        guard let match = DType.allCases.first(where: { $0.safetensorsName == name }) else { return nil }
        self = match
    }
}

// MARK: - Scalar conversions shared by every backend's host side.

public enum Float16Bits {
    /// float32 -> IEEE half, round to nearest even.
    @inlinable public static func fromFloat(_ value: Float) -> UInt16 {
        Float16(value).bitPattern
    }

    @inlinable public static func toFloat(_ bits: UInt16) -> Float {
        Float(Float16(bitPattern: bits))
    }
}

public enum BFloat16Bits {
    /// float32 -> bfloat16, round to nearest even; NaN stays NaN (quiet).
    @inlinable public static func fromFloat(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        let rounding: UInt32 = 0x7FFF + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    @inlinable public static func toFloat(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }
}

public enum Float8E4M3Bits {
    /// float32 -> FP8 E4M3 (bias 7, max 448), round to nearest even, saturating to +-448.
    public static func fromFloat(_ value: Float) -> UInt8 {
        if value.isNaN { return 0x7F }
        let sign: UInt8 = value.sign == .minus ? 0x80 : 0
        let magnitude = min(abs(value), 448)
        if magnitude == 0 { return sign }
        // Smallest normal is 2^-6; subnormals step by 2^-9.
        if magnitude < 0.015625 {
            let steps = (magnitude / 0.001953125).rounded(.toNearestOrEven)
            return sign | UInt8(steps)  // steps == 8 rolls into the smallest normal encoding
        }
        var exponent = Int(magnitude.exponent)  // unbiased
        var mantissa = (magnitude.significand - 1) * 8  // 3 mantissa bits
        var m = mantissa.rounded(.toNearestOrEven)
        if m == 8 { m = 0; exponent += 1 }
        mantissa = m
        let e = UInt8(exponent + 7)
        return sign | (e << 3) | UInt8(mantissa)
    }

    public static func toFloat(_ bits: UInt8) -> Float {
        let sign: Float = bits & 0x80 != 0 ? -1 : 1
        let e = Int((bits >> 3) & 0x0F)
        let m = Float(bits & 0x07)
        if e == 0x0F && bits & 0x07 == 0x07 { return .nan }
        if e == 0 { return sign * m * 0.001953125 }
        return sign * (1 + m / 8) * Float(sign: .plus, exponent: e - 7, significand: 1)
    }
}
