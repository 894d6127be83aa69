import Foundation
import ReelCore

/// The multistep UniPC sampler LongLive 2.0 runs on every block (NVlabs/LongLive main,
/// `pipeline/causal_diffusion_inference.py` `_initialize_sample_scheduler`: `FlowUniPCMultistepScheduler(
/// num_train_timesteps=1000, shift=1, use_dynamic_shifting=False)` then `set_timesteps(steps, shift=5)`;
/// `wan_5b/utils/fm_solvers_unipc.py`): flow prediction converted to x0, `solver_order` 2, B(h) = expm1 ("bh2"),
/// lower order on the last step, the UniC corrector after every step but the first, no thresholding.
/// A fresh solver per block (the reference builds one per chunk). Deterministic: no noise is drawn.
///
/// The coefficients are computed in float64 here; the reference computes them from float32 sigmas in float32
/// tensors, a difference of ~1e-7 relative.
public struct FlowUniPCSolver {
    /// Timesteps the model sees, e.g. [999, 937, 833, 624] for 4 steps with shift 5 (truncated to integers,
    /// as the reference stores them in int64).
    public let timesteps: [Float]
    /// sigma of each step and a final 0 (float32, as the reference).
    public let sigmas: [Float]
    private var outputs: [Tensor] = []           // converted x0 predictions, oldest first, at most 2
    private var lastSample: Tensor?
    private var lowerOrderNums = 0
    private var order = 0
    private var index = 0
    let solverOrder = 2

    public init(steps: Int, shift: Double, trainSteps: Int = 1000) throws {
        try require(steps > 0 && shift > 0, "FlowUniPCSolver", "need steps > 0 and shift > 0, got \(steps), \(shift)")
        // __init__: sigmas = 1 - linspace(1, 1/N, N)[::-1] in float32; sigma_max = sigmas[0], sigma_min = sigmas[-1].
        let sigmaMax = Double(Float(1 - 1 / Double(trainSteps))), sigmaMin = 0.0
        // set_timesteps: linspace(sigma_max, sigma_min, steps + 1)[:-1], shifted, in float64.
        let shifted = (0..<steps).map { i -> Double in
            let s = Double(i) * ((sigmaMin - sigmaMax) / Double(steps)) + sigmaMax    // numpy's linspace
            return shift * s / (1 + (shift - 1) * s)
        }
        timesteps = shifted.map { Float(($0 * Double(trainSteps)).rounded(.towardZero)) }
        sigmas = shifted.map(Float.init) + [0]
    }

    /// lambda = log(alpha) - log(sigma) with alpha = 1 - sigma (`_sigma_to_alpha_sigma_t`).
    private func lambda(_ i: Int) -> Double { log(1 - Double(sigmas[i])) - log(Double(sigmas[i])) }

    /// One step: `velocity` is the model's flow prediction at `timesteps[step]` for `sample`; returns the sample
    /// for the next step (after the last step, the x0 prediction).
    public mutating func step(velocity: Tensor, sample input: Tensor) throws -> Tensor {
        let be = input.backend, i = index
        try require(i < timesteps.count, "FlowUniPCSolver.step", "all \(timesteps.count) steps were taken")
        // convert_model_output: x0 = sample - sigma * v (float32).
        let x0 = try be.axpby(1, input, -sigmas[i], velocity)
        var sample = input
        if i > 0, let last = lastSample {
            sample = try corrected(x0, last: last, order: order)
        }
        outputs.append(x0)
        if outputs.count > solverOrder { outputs.removeFirst() }
        order = min(min(solverOrder, timesteps.count - i), lowerOrderNums + 1)
        lastSample = sample
        let next = try predicted(sample, order: order)
        lowerOrderNums = min(lowerOrderNums + 1, solverOrder)
        index += 1
        return next
    }

    /// h, hh = -h, phi_1 = expm1(hh) and B(h) = expm1(hh) between sigma indices `from` and `to`.
    private func span(from s0: Int, to t: Int) -> (h: Double, hh: Double, phi1: Double, bh: Double) {
        let h = lambda(t) - lambda(s0)     // +inf towards sigma 0: phi1 = B(h) = -1
        return (h, -h, expm1(-h), expm1(-h))
    }

    /// UniP (`multistep_uni_p_bh_update`, predict_x0): from sigma[i] to sigma[i + 1].
    private func predicted(_ x: Tensor, order: Int) throws -> Tensor {
        let be = x.backend, i = index
        let (h, _, phi1, bh) = span(from: i, to: i + 1)
        let sigmaT = Double(sigmas[i + 1]), alphaT = 1 - sigmaT
        let m0 = outputs[outputs.count - 1]
        // x_t = sigma_t / sigma_s0 * x - alpha_t * phi_1 * m0 - alpha_t * B(h) * rho * D1
        var result = try be.axpby(Float(sigmaT / Double(sigmas[i])), x, Float(-alphaT * phi1), m0)
        if order == 2 {
            let rk = (lambda(i - 1) - lambda(i)) / h
            // D1 = (m1 - m0) / rk with rho_p = 0.5 (the reference's simplified order-2 case).
            let c = -alphaT * bh * 0.5 / rk
            result = try be.add(result, try be.axpby(Float(c), outputs[0], Float(-c), m0))
        }
        return result
    }

    /// UniC (`multistep_uni_c_bh_update`, predict_x0): the sample at sigma[i] recomputed from `last` (the sample
    /// at sigma[i - 1]) with the new model output `modelT`; with predict_x0 the predicted sample itself drops out.
    private func corrected(_ modelT: Tensor, last x: Tensor, order: Int) throws -> Tensor {
        let be = x.backend, i = index
        let (h, hh, phi1, bh) = span(from: i - 1, to: i)
        let sigmaT = Double(sigmas[i]), alphaT = 1 - sigmaT
        let m0 = outputs[outputs.count - 1]
        var rks: [Double] = []
        if order == 2 { rks.append((lambda(i - 2) - lambda(i - 1)) / h) }
        rks.append(1)
        var b: [Double] = [], hPhiK = phi1 / hh - 1, factorial = 1.0
        for k in 1...order {
            b.append(hPhiK * factorial / bh)
            factorial *= Double(k + 1)
            hPhiK = hPhiK / hh - 1 / factorial
        }
        let rhos: [Double]
        if order == 1 {
            rhos = [0.5]
        } else {
            // R = [[1, 1], [rk, 1]]: solve R rho = b.
            let rk = rks[0], det = 1 - rk
            rhos = [(b[0] - b[1]) / det, (b[1] - rk * b[0]) / det]
        }
        // x_t = sigma_t / sigma_s0 * x - alpha_t * phi_1 * m0 - alpha_t * B(h) * (rho_0 * D1 + rho_last * (model_t - m0))
        var result = try be.axpby(Float(sigmaT / Double(sigmas[i - 1])), x, Float(-alphaT * phi1), m0)
        let g = -alphaT * bh
        result = try be.add(result, try be.axpby(Float(g * rhos[rhos.count - 1]), modelT,
                                                 Float(-g * rhos[rhos.count - 1]), m0))
        if order == 2 {
            let c = g * rhos[0] / rks[0]     // D1 = (m1 - m0) / rk
            result = try be.add(result, try be.axpby(Float(c), outputs[0], Float(-c), m0))
        }
        return result
    }
}
