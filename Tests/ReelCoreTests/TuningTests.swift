import Testing
@testable import ReelCore

/// `Tuning.fromEnvironment`: each variable sets its switch, values that do not parse leave the default (the
/// measured best), and an empty environment is the defaults.
@Suite struct TuningTests {
    @Test func emptyEnvironmentIsTheDefaults() {
        #expect(Tuning.fromEnvironment([:]) == Tuning.standard)
        // The Hopper attention kernels are on by default (measured faster on an H100, session 17), for long keys only.
        #expect(Tuning.standard.hopperAttention && Tuning.standard.hopperFP8Attention)
        #expect(Tuning.standard.hopperAttentionMinKeys == 8192)
        #expect(Tuning.standard.hopperFillLastWave)   // measured on an H100, session 18
    }

    @Test func hopperSwitchesTurnOffAndOn() {
        let off = Tuning.fromEnvironment(["REEL_ATTN_HOPPER": "0", "REEL_ATTN_FP8_HOPPER": "0"])
        #expect(!off.hopperAttention && !off.hopperFP8Attention)
        let on = Tuning.fromEnvironment(["REEL_ATTN_HOPPER": "1", "REEL_ATTN_HOPPER_MIN_KEYS": "1"])
        #expect(on.hopperAttention && on.hopperAttentionMinKeys == 1)
        #expect(Tuning.fromEnvironment(["REEL_ATTN_HOPPER_FILL": "1"]).hopperFillLastWave)
        #expect(!Tuning.fromEnvironment(["REEL_ATTN_HOPPER_FILL": "0"]).hopperFillLastWave)
        // On since session 19 measured it (H100: the 14B's DiT -18%).
        #expect(!Tuning.fromEnvironment(["REEL_WIDE_ROWS": "0"]).wideRowKernels && Tuning.standard.wideRowKernels)
    }

    @Test func valuesThatDoNotParseLeaveTheDefault() {
        let t = Tuning.fromEnvironment(["REEL_ATTN_HOPPER": "yes", "REEL_ATTN_HOPPER_MIN_KEYS": "0",
                                        "REEL_ATTN_FP8_HOPPER": "", "REEL_ATTN_SPLITS": "many",
                                        "REEL_ATTN_HOPPER_FILL": "off"])
        #expect(t == Tuning.standard)
    }
}
