import ReelCore
import ReelModels

/// Turns prompt text into token ids (Wan's cleaning, truncation to 511 + `</s>`).
public protocol PromptTokenizer {
    func ids(for text: String) throws -> [Int32]
}

/// A small least-recently-used map.
struct LRUCache<Key: Hashable, Value> {
    let capacity: Int
    private var entries: [Key: Value] = [:]
    private var order: [Key] = []

    init(capacity: Int) { self.capacity = max(0, capacity) }

    mutating func get(_ key: Key) -> Value? {
        guard let v = entries[key] else { return nil }
        order.removeAll { $0 == key }
        order.append(key)
        return v
    }

    mutating func set(_ key: Key, _ value: Value) {
        guard capacity > 0 else { return }
        if entries[key] == nil, entries.count >= capacity, let oldest = order.first {
            entries[oldest] = nil
            order.removeFirst()
        }
        entries[key] = value
        order.removeAll { $0 == key }
        order.append(key)
    }

    var count: Int { entries.count }
}

/// Prompt text -> the DiT's per-prompt context, with two LRU caches: text-encoder outputs (small,
/// `[tokens, textDim]`) and the DiT's cross-attention K/V (large: every layer's 512 keys and values),
/// so switching back to a recent prompt costs nothing.
public final class PromptEncoder: @unchecked Sendable {
    public let tokenizer: any PromptTokenizer
    public let textEncoder: UMT5Encoder
    public let model: WanDiT
    private var embeddings: LRUCache<String, Tensor>
    private var contexts: LRUCache<String, WanDiT.PromptContext>
    /// Encodes run (cache misses), for inspection and tests.
    public private(set) var textEncoderRuns = 0
    /// Seconds the text encoder took for its last run (a prompt not seen before; with the encoder on the CPU beside a
    /// GPU DiT, what a switch to a new prompt waits for), nil before the first.
    public private(set) var lastEncodeSeconds: Double?

    public init(tokenizer: any PromptTokenizer, textEncoder: UMT5Encoder, model: WanDiT,
                embeddingCapacity: Int = 64, contextCapacity: Int = 4) throws {
        guard textEncoder.config.dim == model.config.textDim else {
            throw ReelError.weights(message: "the text encoder's width \(textEncoder.config.dim) differs from the DiT's text_dim \(model.config.textDim)")
        }
        self.tokenizer = tokenizer
        self.textEncoder = textEncoder
        self.model = model
        embeddings = LRUCache(capacity: embeddingCapacity)
        contexts = LRUCache(capacity: contextCapacity)
    }

    /// The text encoder's output for `prompt`, `[tokens, textDim]` (real tokens only).
    public func embedding(for prompt: String) throws -> Tensor {
        if let e = embeddings.get(prompt) { return e }
        var ids = try tokenizer.ids(for: prompt)
        let limit = model.config.textLength
        if ids.count > limit, let end = ids.last {
            ids = Array(ids.prefix(limit - 1)) + [end]        // as Wan truncates at its text length: keep `</s>`
        }
        let start = ContinuousClock.now
        let e = try Self.moved(try textEncoder.encode(ids), to: model.backend, as: model.dtype)
        lastEncodeSeconds = (ContinuousClock.now - start).seconds
        textEncoderRuns += 1
        embeddings.set(prompt, e)
        return e
    }

    /// `x` on `backend` in `dtype`: itself when it is there already; else cast where it is and copied through the
    /// host (the text encoder on the CPU beside a GPU DiT: `[tokens, textDim]`, a few MB).
    static func moved(_ x: Tensor, to backend: any Backend, as dtype: DType) throws -> Tensor {
        guard x.backend !== backend else { return x }
        let cast = x.dtype == dtype ? x : try x.backend.cast(x, to: dtype)
        let bytes = try cast.backend.downloadBytes(cast)
        return try bytes.withUnsafeBytes { try backend.upload($0, shape: cast.shape, dtype: dtype) }
    }

    /// The DiT's context for `prompt`.
    public func context(for prompt: String) throws -> WanDiT.PromptContext {
        if let c = contexts.get(prompt) { return c }
        let c = try model.encodePrompt(try embedding(for: prompt))
            .startingShot(prompt.hasPrefix(LongLive2Schedule.sceneCutPrefix))
        contexts.set(prompt, c)
        return c
    }
}

extension Tokenizer: PromptTokenizer {
    /// Wan's ids: cleaned text, 511 pieces at most, then `</s>`.
    public func ids(for text: String) throws -> [Int32] { try wanPromptIds(text) }
}
