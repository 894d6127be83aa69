/// Where the decoder of a timestep-forcing pipeline goes, chosen from measured latencies (issue 25: "stages placed on
/// devices by measured latency"). The DiT's stages are equal by construction (each runs one step: one forward of the
/// same model), so only the decoder's place is a choice: a block leaves every `interval`, the slowest device's time
/// per block. On a device of its own the decoder adds a stage; beside step i it adds its time to that device's.
///
/// The model is additive: two stages sharing a device take the sum of their times. On a GPU the decoder's stream may
/// overlap the step's kernels where neither fills the device, so a shared device's time can be less; the sum is the
/// bound the choice is made by. LiveAvatar gives the VAE a GPU of its own (`--enable_vae_parallel`).
public struct TimestepForcingPlacement: Sendable, Equatable {
    /// Where the decoder goes.
    public enum DecoderPlace: Sendable, Equatable {
        /// A device of its own (another than every step's).
        case ownDevice
        /// Beside step `i` (on step i's device, a stream of its own).
        case besideStep(Int)
    }

    public let decoder: DecoderPlace
    /// The predicted time a block takes to leave (seconds): the slowest device's time per block.
    public let interval: Double

    /// The placement of the least interval from each step's measured seconds per block and the decoder's: beside the
    /// fastest step (the lowest index among equals), or on a device of its own when `spareDevice` and that is
    /// faster still (strictly: a device is kept for other work when it gains nothing).
    public static func best(stepSeconds: [Double], decodeSeconds: Double, spareDevice: Bool) -> TimestepForcingPlacement {
        let options = candidates(stepSeconds: stepSeconds, decodeSeconds: decodeSeconds, spareDevice: spareDevice)
        return options.dropFirst().reduce(options[0]) { $1.interval < $0.interval ? $1 : $0 }
    }

    /// Every place's predicted interval: beside each step in order, then a device of its own when `spareDevice`.
    public static func candidates(stepSeconds: [Double], decodeSeconds: Double,
                                  spareDevice: Bool) -> [TimestepForcingPlacement] {
        precondition(!stepSeconds.isEmpty, "a pipeline of at least one step")
        var out = stepSeconds.indices.map { i in
            TimestepForcingPlacement(decoder: .besideStep(i), interval: stepSeconds.indices
                .map { stepSeconds[$0] + ($0 == i ? decodeSeconds : 0) }.max()!)
        }
        if spareDevice {
            out.append(TimestepForcingPlacement(decoder: .ownDevice, interval: max(stepSeconds.max()!, decodeSeconds)))
        }
        return out
    }
}
