/// One step of renaming a checkpoint key into the names a model binds (key remapping as data).
///
/// A list of rules is applied in order, each once, to every key of a weight file:
/// ```
/// [.substring(".norm1.gamma", ".residual.0.gamma"), .prefix("post_quant_conv.", "conv2.")]
/// ```
public enum KeyRule: Sendable, CustomStringConvertible {
    /// Replaces a leading `from` with `to`.
    case prefix(String, String)
    /// Replaces every occurrence of `from` with `to`.
    case substring(String, String)
    /// Matches a leading `pattern` in which each `#` stands for a decimal integer, and replaces the
    /// match with `replace(integers)`: `.indexed("up_blocks.#.resnets.#.") { "upsamples.\($0[0] * 4 + $0[1])." }`.
    case indexed(String, @Sendable ([Int]) -> String)

    /// The key after this rule (unchanged when the rule does not match).
    public func apply(_ key: String) -> String {
        switch self {
        case let .prefix(from, to):
            return key.hasPrefix(from) ? to + key.dropFirst(from.count) : key
        case let .substring(from, to):
            return key.replacingOccurrences(of: from, with: to)
        case let .indexed(pattern, replace):
            guard let (numbers, rest) = Self.match(pattern: pattern, key: key) else { return key }
            return replace(numbers) + rest
        }
    }

    public var description: String {
        switch self {
        case let .prefix(from, to): "prefix \(from) -> \(to)"
        case let .substring(from, to): "\(from) -> \(to)"
        case let .indexed(pattern, _): "indexed \(pattern)"
        }
    }

    /// Applies `rules` in order.
    public static func apply(_ rules: [KeyRule], to key: String) -> String {
        rules.reduce(key) { $1.apply($0) }
    }

    private static func match(pattern: String, key: String) -> ([Int], Substring)? {
        var numbers: [Int] = []
        var k = key[...]
        for p in pattern {
            if p == "#" {
                let digits = k.prefix(while: { $0.isASCII && $0.isNumber })
                guard !digits.isEmpty, let n = Int(digits) else { return nil }
                numbers.append(n)
                k = k.dropFirst(digits.count)
            } else {
                guard k.first == p else { return nil }
                k = k.dropFirst()
            }
        }
        return (numbers, k)
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = self[...]
        while let r = rest.range(of: target) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    fileprivate func range(of target: String) -> Range<Substring.Index>? {
        guard !target.isEmpty, count >= target.count else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(target) {
                return i..<index(i, offsetBy: target.count)
            }
            i = index(after: i)
        }
        return nil
    }
}
