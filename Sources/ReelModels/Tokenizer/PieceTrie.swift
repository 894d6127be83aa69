/// A byte trie over a vocabulary's pieces, for the common-prefix searches of the unigram lattice.
///
/// Nodes are stored flat: each node's children occupy a contiguous, label-sorted range of
/// `labels`/`targets`, so a step is a short scan over at most 256 entries and there is no hashing.
struct PieceTrie: Sendable {
    private var firstChild: [Int32] = []   // per node: start of its children in labels/targets
    private var childCount: [UInt16] = []  // per node: number of children
    private var labels: [UInt8] = []
    private var targets: [Int32] = []
    private var values: [Int32] = []       // per node: piece id ending here, or -1

    /// Builds the trie from `(bytes, id)` pairs. When a byte string occurs more than once, the
    /// entry that comes last wins (as in a map filled in order).
    init(_ entries: [(bytes: [UInt8], id: Int32)]) {
        // All keys in one buffer, so that sorting and scanning touch no reference counts.
        var flatKeys: [UInt8] = []
        var keyStarts: [Int] = []
        var keyLengths: [Int] = []
        var keyIds: [Int32] = []
        for (bytes, id) in entries where !bytes.isEmpty {
            keyStarts.append(flatKeys.count)
            keyLengths.append(bytes.count)
            keyIds.append(id)
            flatKeys += bytes
        }
        // Immutable copies and local outputs: nothing the closures touch needs exclusivity checks.
        let starts = keyStarts, lengths = keyLengths, ids = keyIds, flat = flatKeys
        var values: [Int32] = [-1], firstChild: [Int32] = [], childCount: [UInt16] = []
        var labels: [UInt8] = [], targets: [Int32] = []
        flat.withUnsafeBufferPointer { key in
            func precedes(_ a: Int, _ b: Int) -> Bool {
                let n = min(lengths[a], lengths[b])
                let pa = key.baseAddress! + starts[a], pb = key.baseAddress! + starts[b]
                for k in 0..<n where pa[k] != pb[k] { return pa[k] < pb[k] }
                return lengths[a] != lengths[b] ? lengths[a] < lengths[b] : a < b
            }
            let order = Array(ids.indices).sorted(by: precedes)
            // A node's children are the distinct bytes at its depth within its sorted range; they get
            // consecutive ids when the node is expanded. Nodes are expanded depth-first, so each
            // range is scanned while it is still in cache. Work stack: (node, range, depth).
            let bound = flat.count + 1  // at most one node per key byte, plus the root
            values = [Int32](repeating: -1, count: bound)
            firstChild = [Int32](repeating: 0, count: bound)
            childCount = [UInt16](repeating: 0, count: bound)
            var nodes = 1
            var stack: [(node: Int32, lo: Int32, hi: Int32, depth: Int32)] = [(0, 0, Int32(order.count), 0)]
            while let (node32, lo32, hi32, depth32) = stack.popLast() {
                let node = Int(node32), hi = Int(hi32), depth = Int(depth32)
                var i = Int(lo32)
                while i < hi, lengths[order[i]] == depth {  // keys that end here sort first in the range
                    values[node] = ids[order[i]]
                    i += 1
                }
                firstChild[node] = Int32(labels.count)
                var count = 0
                while i < hi {
                    let label = key[starts[order[i]] + depth]
                    var j = i + 1
                    while j < hi, key[starts[order[j]] + depth] == label { j += 1 }
                    labels.append(label)
                    targets.append(Int32(nodes))
                    stack.append((Int32(nodes), Int32(i), Int32(j), Int32(depth + 1)))
                    nodes += 1
                    count += 1
                    i = j
                }
                childCount[node] = UInt16(count)
            }
            values.removeLast(bound - nodes)
            firstChild.removeLast(bound - nodes)
            childCount.removeLast(bound - nodes)
        }
        self.values = values
        self.firstChild = firstChild
        self.childCount = childCount
        self.labels = labels
        self.targets = targets
    }

    /// Calls `body(id, endIndex)` for every piece that prefixes `text[start..<end]`, shortest first.
    @inline(__always)
    func forEachPrefix(_ text: UnsafeBufferPointer<UInt8>, from start: Int, end: Int, _ body: (Int32, Int) -> Void) {
        var node = 0
        var i = start
        while i < end {
            let b = text[i]
            let lo = Int(firstChild[node])
            let hi = lo + Int(childCount[node])
            var next = -1
            var k = lo
            while k < hi {
                let l = labels[k]
                if l == b { next = Int(targets[k]); break }
                if l > b { break }
                k += 1
            }
            if next < 0 { return }
            node = next
            i += 1
            let v = values[node]
            if v >= 0 { body(v, i) }
        }
    }
}
