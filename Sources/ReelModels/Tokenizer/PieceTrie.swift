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

    /// Builds the trie from `(bytes, id)` pairs; when a byte string occurs twice the first id wins.
    init(_ entries: [(bytes: [UInt8], id: Int32)]) {
        // Build with per-node dictionaries, then freeze into the flat layout.
        var children: [[UInt8: Int32]] = [[:]]
        var nodeValues: [Int32] = [-1]
        for (bytes, id) in entries where !bytes.isEmpty {
            var node = 0
            for b in bytes {
                if let next = children[node][b] {
                    node = Int(next)
                } else {
                    children.append([:])
                    nodeValues.append(-1)
                    let next = Int32(children.count - 1)
                    children[node][b] = next
                    node = Int(next)
                }
            }
            if nodeValues[node] < 0 { nodeValues[node] = id }
        }
        firstChild.reserveCapacity(children.count)
        for node in children {
            firstChild.append(Int32(labels.count))
            childCount.append(UInt16(node.count))
            for (label, target) in node.sorted(by: { $0.key < $1.key }) {
                labels.append(label)
                targets.append(target)
            }
        }
        values = nodeValues
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
