/// How the CTAs of Reel's Hopper attention kernel (`attn_sm90_d128_bf16`) cover an attention call's
/// (head, 128-query tile) pairs: each head's first `wholeTiles` tiles take all the keys in one CTA and write the
/// output; for one batch the later tiles may be cut into `splits` key parts, one CTA each, merged afterwards by
/// `attn_merge_v8`. Every tile cut (`wholeTiles` 0) is the wave-fill rule the cuDNN path uses; cutting only the
/// tiles of the last wave fills it without every tile paying for a split (`filled`).
public struct HopperAttentionSchedule: Equatable, Sendable, CustomStringConvertible {
    /// Query tiles of each head, from the first, whose CTA takes every key.
    public var wholeTiles: Int
    /// Key parts of each later tile (1: none, and then every tile is whole).
    public var splits: Int

    public init(wholeTiles: Int, splits: Int) {
        self.wholeTiles = wholeTiles
        self.splits = splits
    }

    /// A CTA's fixed cost (its prologue and epilogue, a part's share of the merge) in 128-key tiles of work:
    /// fitted to the two session-17 figures on an H100 at 4680 x 18720 x 12 heads (keys whole 582 TFLOP/s, every
    /// tile in 2 parts 597), where the waves alone predict 14% between them and 2.6% was measured. Session 18 on an
    /// H100: at 12 heads the model's choice (33 tiles whole, the rest in 2 parts) gained 3.8% where it predicted 8%; at
    /// the 14B's 40 heads (36 whole, 4 parts) it predicted 16% over every tile in 3 parts and measured -0.8%. The model
    /// picks well where one wave is left part-empty; its sizes of gain are not to be trusted.
    static let fixedCost = 16.0

    /// Every tile whole: the plain grid.
    public static func plain(lq: Int) -> HopperAttentionSchedule {
        HopperAttentionSchedule(wholeTiles: queryTiles(lq), splits: 1)
    }

    /// Every tile cut into `splits` parts (1: the plain grid).
    public static func everyTileSplit(lq: Int, splits: Int) -> HopperAttentionSchedule {
        splits > 1 ? HopperAttentionSchedule(wholeTiles: 0, splits: splits) : plain(lq: lq)
    }

    /// The schedule with the shortest predicted time on `sms` SMs (one CTA each at a time) for one batch: whole
    /// tiles for the first 0 or the last 0...4 tiles of each head short of all, their remaining tiles in 1...4
    /// parts (Lk divisible by the parts, each at least 2048 keys); ties go to fewer parts.
    public static func filled(lq: Int, lk: Int, heads: Int, sms: Int) -> HopperAttentionSchedule {
        let tiles = queryTiles(lq)
        var best = plain(lq: lq), bestTime = best.predictedTime(lq: lq, lk: lk, heads: heads, sms: sms)
        for splits in 2...4 where lk % splits == 0 && lk / splits >= 2048 {
            for whole in Set([0] + (max(0, tiles - 4)..<tiles)).sorted(by: >) {
                let candidate = HopperAttentionSchedule(wholeTiles: whole, splits: splits)
                let time = candidate.predictedTime(lq: lq, lk: lk, heads: heads, sms: sms)
                if time < bestTime * 0.995 { (best, bestTime) = (candidate, time) }
            }
        }
        return best
    }

    static func queryTiles(_ lq: Int) -> Int { (lq + 127) / 128 }

    /// The kernel's grid: B x H x `wholeTiles` whole tiles, then (B = 1) H x the later tiles x `splits` parts.
    public func units(lq: Int, heads: Int, batch: Int) -> Int {
        let tiles = Self.queryTiles(lq)
        return batch * heads * wholeTiles + (splits > 1 ? heads * (tiles - wholeTiles) * splits : 0)
    }

    /// Rows of the output the parts cover (those of the split tiles), from `firstSplitRow`.
    public func splitRows(lq: Int) -> Int { splits > 1 ? lq - firstSplitRow : 0 }
    public var firstSplitRow: Int { wholeTiles * 128 }

    /// The time of one batch's call in 128-key tiles of work when the SMs take the units in grid order, each the
    /// first one free (the GPU's block scheduler), a unit costing its keys' tiles plus `fixedCost`.
    public func predictedTime(lq: Int, lk: Int, heads: Int, sms: Int) -> Double {
        let tiles = Self.queryTiles(lq), keyTiles = Double(lk) / 128
        var free = MinHeap(count: max(1, sms))
        for _ in 0..<(heads * wholeTiles) { free.pushAfterMin(keyTiles + Self.fixedCost) }
        if splits > 1 {
            for _ in 0..<(heads * (tiles - wholeTiles) * splits) { free.pushAfterMin(keyTiles / Double(splits) + Self.fixedCost) }
        }
        return free.latest
    }

    public var description: String {
        splits == 1 ? "tiles whole" : wholeTiles == 0 ? "every tile in \(splits) key parts"
            : "\(wholeTiles) tiles a head whole, the rest in \(splits) key parts"
    }

    /// The SMs' finishing times: a binary min-heap (all zero at first).
    struct MinHeap {
        var items: [Double]
        var latest = 0.0

        init(count: Int) { items = Array(repeating: 0, count: count) }

        /// The earliest-free SM takes a unit of `duration`.
        mutating func pushAfterMin(_ duration: Double) {
            items[0] += duration
            latest = max(latest, items[0])
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l] < items[m] { m = l }
                if r < items.count && items[r] < items[m] { m = r }
                if m == i { return }
                items.swapAt(i, m)
                i = m
            }
        }
    }
}
