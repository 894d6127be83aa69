import Foundation
import ReelCore
import ReelCPU
import ReelIO
@testable import ReelModels
import ReelTestSupport
import Testing

/// umT5 with its blocks' linears in FP8 E4M3 (`UMT5Encoder.load(quantization: .fp8)`, `--gpu-memory`'s text encoder
/// step on the device): its prompt embeddings against the float32 model's, beside bf16's, on the shipped tiny
/// model's trained umT5 (`Models/tiny`). The error is reported (printed) and bounded well below a known-wrong
/// variant's (another prompt's embedding). Reel's own GEMM on the CPU.
@Suite struct UMT5FP8Tests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Models/tiny")

    /// ||a - b|| / ||a|| over the whole embedding.
    static func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for (x, y) in zip(a, b) {
            num += Double(x - y) * Double(x - y)
            den += Double(x) * Double(x)
        }
        return (num / max(den, 1e-30)).squareRoot()
    }

    @Test func fp8EmbeddingsStayCloseToFloat32() async throws {
        try await offThePool {
            let backend = CPUBackend(threads: 2, gemm: .own)
            let path = Self.folder.appendingPathComponent("text_encoder.safetensors").path
            let tok = try Tokenizer(contentsOf: Self.folder.appendingPathComponent("tokenizer.json"))
            let exact = try UMT5Encoder.load(from: WeightFileTensors(path: path), backend: backend)
            let bf16 = try UMT5Encoder.load(from: WeightFileTensors(path: path), backend: backend, dtype: .bf16)
            let fp8 = try UMT5Encoder.load(from: WeightFileTensors(path: path), backend: backend, quantization: .fp8)
            #expect(fp8.quantization == .fp8 && exact.quantization == nil)
            let prompts = ["a red circle moves left on a blue background",
                           "a large green square bounces around on a white background",
                           "a small yellow triangle drifts slowly to the right on a black background"]
            var fp8Worst = 0.0, bf16Worst = 0.0
            for prompt in prompts {
                let ids = try tok.wanPromptIds(prompt)
                let a = try exact.encode(ids).toFloats()
                fp8Worst = max(fp8Worst, Self.relativeError(a, try fp8.encode(ids).toFloats()))
                bf16Worst = max(bf16Worst, Self.relativeError(a, try bf16.encode(ids).toFloats()))
            }
            // The known-wrong variant: another prompt of the same token count padded or cut to match.
            let a = try exact.encode(try tok.wanPromptIds(prompts[0])).toFloats()
            let other = try exact.encode(try tok.wanPromptIds(prompts[1])).toFloats()
            let wrong = Self.relativeError(Array(a.prefix(min(a.count, other.count))),
                                           Array(other.prefix(min(a.count, other.count))))
            print(String(format: "umT5 (Models/tiny) embedding error against float32, worst of %d prompts: FP8 %.4f, "
                         + "bf16 %.4f; another prompt's embedding %.3f", prompts.count, fp8Worst, bf16Worst, wrong))
            #expect(fp8Worst > 0 && fp8Worst < 0.1, "FP8 relative error \(fp8Worst)")
            #expect(fp8Worst < wrong / 5, "FP8 \(fp8Worst) against a wrong prompt's \(wrong)")
            #expect(bf16Worst < fp8Worst)
        }
    }
}
