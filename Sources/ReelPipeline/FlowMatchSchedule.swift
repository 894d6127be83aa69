import ReelCore

/// The flow-matching timesteps and noise levels of LongLive's few-step sampler
/// (`FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True).set_timesteps(1000)` plus
/// `warp_denoising_step`). Float32 arithmetic mirrors the reference, which keeps these tables in float32.
public struct FlowMatchSchedule: Sendable, Equatable {
    /// Timesteps of the denoising steps, e.g. [1000, 937.5, 833.33, 625] for LongLive.
    public let timesteps: [Float]
    /// sigma(t) for each step; x_t = (1 - sigma) x0 + sigma * noise.
    public let sigmas: [Float]

    public init(steps: [Int], warp: Bool, shift: Double, trainSteps: Int = 1000) throws {
        try require(!steps.isEmpty && steps.allSatisfy { (0...trainSteps).contains($0) }, "FlowMatchSchedule",
                    "steps \(steps) must lie in 0...\(trainSteps)")
        // sigmas = shift*s / (1 + (shift-1)*s) over s = linspace(1, 0, trainSteps + 1)[:-1].
        let table: [Float] = (0..<trainSteps).map { i in
            let s = Float(1.0 - Double(i) / Double(trainSteps))
            let k = Float(shift)
            return k * s / (1 + (k - 1) * s)
        }
        let times = table.map { $0 * Float(trainSteps) }
        if warp {
            // timesteps[trainSteps - step], with an appended 0 for step 0.
            timesteps = steps.map { $0 == 0 ? 0 : times[trainSteps - $0] }
            sigmas = steps.map { $0 == 0 ? 0 : table[trainSteps - $0] }
        } else {
            // The model sees the raw step; sigma is the table entry whose timestep is nearest.
            timesteps = steps.map(Float.init)
            sigmas = steps.map { t in
                let i = times.indices.min { abs(times[$0] - Float(t)) < abs(times[$1] - Float(t)) } ?? 0
                return table[i]
            }
        }
    }

    public static let longLive = try! FlowMatchSchedule(steps: [1000, 750, 500, 250], warp: true, shift: 5)
}
