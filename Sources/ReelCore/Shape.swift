/// The extent of a tensor along each axis, outermost first (row-major, last axis contiguous).
public struct Shape: Hashable, Sendable, Codable, CustomStringConvertible, ExpressibleByArrayLiteral {
    public var dims: [Int]

    public init(_ dims: [Int]) { self.dims = dims }
    public init(arrayLiteral elements: Int...) { self.dims = elements }

    public var rank: Int { dims.count }
    /// Number of elements (1 for a scalar shape `[]`).
    public var count: Int { dims.reduce(1, *) }
    public subscript(axis: Int) -> Int { dims[axis < 0 ? axis + dims.count : axis] }
    public var last: Int { dims.last ?? 1 }

    /// Row-major strides in elements.
    public var strides: [Int] {
        var s = [Int](repeating: 1, count: dims.count)
        var acc = 1
        for i in stride(from: dims.count - 1, through: 0, by: -1) {
            s[i] = acc
            acc *= dims[i]
        }
        return s
    }

    /// Product of every axis before `axis` and of every axis after it.
    public func split(at axis: Int) -> (outer: Int, extent: Int, inner: Int) {
        let a = normalize(axis)
        return (dims[..<a].reduce(1, *), dims[a], dims[(a + 1)...].reduce(1, *))
    }

    public func normalize(_ axis: Int) -> Int { axis < 0 ? axis + rank : axis }

    public func replacing(axis: Int, with extent: Int) -> Shape {
        var d = dims
        d[normalize(axis)] = extent
        return Shape(d)
    }

    public var description: String { "[" + dims.map(String.init).joined(separator: ", ") + "]" }

    /// Every dimension positive (a zero-size tensor is legal: dims of 0 are allowed, negatives are not).
    public var isValid: Bool { dims.allSatisfy { $0 >= 0 } }
}

/// NumPy-style broadcasting of two shapes; nil when they are incompatible.
public func broadcastShapes(_ a: Shape, _ b: Shape) -> Shape? {
    let rank = max(a.rank, b.rank)
    var out = [Int](repeating: 1, count: rank)
    for i in 0..<rank {
        let da = i < rank - a.rank ? 1 : a.dims[i - (rank - a.rank)]
        let db = i < rank - b.rank ? 1 : b.dims[i - (rank - b.rank)]
        if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else { return nil }
    }
    return Shape(out)
}
