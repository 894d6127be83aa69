import Testing
@testable import ReelCUDA

/// The Hopper attention kernel's schedule (which query tiles take every key, which are cut into key parts): pure
/// arithmetic, checked here; the kernel under each schedule is checked on an H100 by `reel check-ops --filter hopper`.
@Suite struct HopperScheduleTests {
    /// The self-attention shapes of the 1.3B (12 heads), the 14B (40) and LongLive 2.0's 5B (24 heads, 7040 queries)
    /// on an H100's 132 SMs.
    @Test func theFillRuleSplitsOnlyTheLastWave() {
        let small = HopperAttentionSchedule.filled(lq: 4680, lk: 18720, heads: 12, sms: 132)
        // 37 tiles x 12 heads = 444: 33 x 12 = 396 fill 3 waves; the last 4 tiles of each head go in parts.
        #expect(small == HopperAttentionSchedule(wholeTiles: 33, splits: 2))
        #expect(small.units(lq: 4680, heads: 12, batch: 1) == 396 + 4 * 12 * 2)
        #expect(small.splitRows(lq: 4680) == 4680 - 33 * 128)
        let big = HopperAttentionSchedule.filled(lq: 4680, lk: 18720, heads: 40, sms: 132)
        #expect(big.splits > 1 && big.wholeTiles > 30)
        // 55 tiles x 24 heads = 1320 = 10 waves exactly: nothing to split.
        #expect(HopperAttentionSchedule.filled(lq: 7040, lk: 35200, heads: 24, sms: 132) == .plain(lq: 7040))
        for (lq, lk, h) in [(4680, 18720, 12), (4680, 18720, 40), (7040, 35200, 24), (1560, 4680, 12), (4680, 9360, 12)] {
            let filled = HopperAttentionSchedule.filled(lq: lq, lk: lk, heads: h, sms: 132)
            let time = filled.predictedTime(lq: lq, lk: lk, heads: h, sms: 132)
            #expect(time <= HopperAttentionSchedule.plain(lq: lq).predictedTime(lq: lq, lk: lk, heads: h, sms: 132))
            for s in 2...4 where lk % s == 0 {
                #expect(time <= HopperAttentionSchedule.everyTileSplit(lq: lq, splits: s).predictedTime(lq: lq, lk: lk, heads: h, sms: 132))
            }
        }
    }

    /// The model's waves: 132 equal units take one unit's time, 133 take two; a split unit costs its share of the keys
    /// plus the fixed cost.
    @Test func predictedTimeCountsWaves() {
        let keys = 128 * 100, fixed = HopperAttentionSchedule.fixedCost
        let oneWave = HopperAttentionSchedule.plain(lq: 128 * 11).predictedTime(lq: 128 * 11, lk: keys, heads: 12, sms: 132)
        #expect(oneWave == 100 + fixed)
        let twoWaves = HopperAttentionSchedule.plain(lq: 128 * 12).predictedTime(lq: 128 * 12, lk: keys, heads: 12, sms: 132)
        #expect(twoWaves == 2 * (100 + fixed))
        // 11 whole tiles a head (one wave) and the 12th in 4 parts: 48 quarter units on 132 SMs after it.
        let tail = HopperAttentionSchedule(wholeTiles: 11, splits: 4).predictedTime(lq: 128 * 12, lk: keys, heads: 12, sms: 132)
        #expect(tail == 100 + fixed + 25 + fixed)
        #expect(HopperAttentionSchedule(wholeTiles: 11, splits: 4).units(lq: 128 * 12, heads: 12, batch: 1) == 132 + 48)
        #expect(HopperAttentionSchedule.everyTileSplit(lq: 300, splits: 1) == .plain(lq: 300))
        #expect(HopperAttentionSchedule.plain(lq: 300).units(lq: 300, heads: 2, batch: 3) == 3 * 2 * 3)
    }
}

