import Foundation
import ReelCore

/// `reel.json` of a Reel model folder.
struct ReelSettings: Decodable {
    var heads: Int?
    var size: String?
    var fps: Int?
    /// Video-to-video's default noise scale for this model (`noise_scale`).
    var noiseScale: Double?

    enum CodingKeys: String, CodingKey { case heads, size, fps, noiseScale = "noise_scale" }

    static func read(_ path: String) throws -> ReelSettings {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ReelError.badFile(path: path, message: "cannot be read")
        }
        do { return try JSONDecoder().decode(ReelSettings.self, from: data) } catch {
            throw ReelError.badFile(path: path, message: "not a JSON object of heads, size, fps and noise_scale (\(error))")
        }
    }
}

/// A DiT's `config.json`: Wan2.1's (`WanModel`'s `register_to_config` arguments in Wan2.1
/// `wan/modules/model.py`: dim, ffn_dim, num_heads, num_layers, in_dim, out_dim, text_len, model_type)
/// or diffusers' `WanTransformer3DModel` (diffusers scripts/convert_wan_to_diffusers.py: num_attention_heads,
/// attention_head_dim, ffn_dim, num_layers, in_channels, out_channels, text_dim).
public struct DiTConfigFile: Decodable, Sendable, Equatable {
    public var className: String?
    public var modelType: String?
    public var dim: Int?
    public var ffnDim: Int?
    public var layers: Int?
    public var heads: Int?
    public var textLength: Int?
    public var inChannels: Int?
    public var outChannels: Int?
    public var textDim: Int?

    enum CodingKeys: String, CodingKey {
        case className = "_class_name", modelType = "model_type", dim, ffnDim = "ffn_dim", numLayers = "num_layers"
        case numHeads = "num_heads", numAttentionHeads = "num_attention_heads", attentionHeadDim = "attention_head_dim"
        case textLen = "text_len", inDim = "in_dim", outDim = "out_dim", inChannels = "in_channels"
        case outChannels = "out_channels", textDim = "text_dim"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        className = try c.decodeIfPresent(String.self, forKey: .className)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType)
        ffnDim = try c.decodeIfPresent(Int.self, forKey: .ffnDim)
        layers = try c.decodeIfPresent(Int.self, forKey: .numLayers)
        heads = try c.decodeIfPresent(Int.self, forKey: .numHeads) ?? c.decodeIfPresent(Int.self, forKey: .numAttentionHeads)
        let headDim = try c.decodeIfPresent(Int.self, forKey: .attentionHeadDim)
        dim = try c.decodeIfPresent(Int.self, forKey: .dim) ?? heads.flatMap { h in headDim.map { h * $0 } }
        textLength = try c.decodeIfPresent(Int.self, forKey: .textLen)
        inChannels = try c.decodeIfPresent(Int.self, forKey: .inDim) ?? c.decodeIfPresent(Int.self, forKey: .inChannels)
        outChannels = try c.decodeIfPresent(Int.self, forKey: .outDim) ?? c.decodeIfPresent(Int.self, forKey: .outChannels)
        textDim = try c.decodeIfPresent(Int.self, forKey: .textDim)
    }

    /// Whether it describes a DiT (a diffusers pipeline's top `config.json` may be something else).
    var describesDiT: Bool { layers != nil && (heads != nil || dim != nil) }

    static func read(_ path: String) throws -> DiTConfigFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ReelError.badFile(path: path, message: "cannot be read")
        }
        do { return try JSONDecoder().decode(DiTConfigFile.self, from: data) } catch {
            throw ReelError.badFile(path: path, message: "not a model config.json (\(error))")
        }
    }
}
