import Foundation

/// Counters and gauges of the server, rendered in the Prometheus text format (version 0.0.4).
public final class Metrics: @unchecked Sendable {
    private let lock = NSLock()
    private var counters: [String: Double] = [:]
    private var gauges: [String: Double] = [:]

    static let help: [String: (type: String, help: String)] = [
        "reel_sessions_created_total": ("counter", "Sessions created."),
        "reel_sessions_rejected_total": ("counter", "Session requests refused because the server was full."),
        "reel_sessions_reclaimed_total": ("counter", "Idle sessions reclaimed."),
        "reel_sessions_failed_total": ("counter", "Sessions that ended with an error."),
        "reel_blocks_generated_total": ("counter", "Blocks generated and decoded."),
        "reel_frames_sent_total": ("counter", "Video frames sent over WebSockets."),
        "reel_bytes_sent_total": ("counter", "Bytes of video frames sent over WebSockets."),
        "reel_prompt_switches_total": ("counter", "Prompt switches (each a KV-recache)."),
        "reel_client_errors_total": ("counter", "Requests and messages answered with an error."),
        "reel_block_seconds_total": ("counter", "Seconds spent generating blocks (DiT)."),
        "reel_decode_seconds_total": ("counter", "Seconds spent decoding blocks."),
        "reel_encode_seconds_total": ("counter", "Seconds spent encoding frames for WebSockets (wall clock, frames in parallel)."),
        "reel_input_frames_received_total": ("counter", "Input frames received from clients (WebSocket messages)."),
        "reel_input_frames_dropped_total": ("counter",
                                            "Input frames dropped: over the rate limit, or the oldest waiting when the pipeline fell behind."),
        "reel_input_frames_rejected_total": ("counter", "Input frames refused: too large, or not a decodable JPEG or PNG."),
        "reel_input_bytes_received_total": ("counter", "Bytes of input frames received from clients."),
        "reel_uploads_total": ("counter", "Input videos and images uploaded with a session request."),
        "reel_requests_unauthorized_total": ("counter",
                                             "Requests and WebSocket upgrades refused for a missing or wrong API key."),
        "reel_requests_forbidden_total": ("counter", "Requests and WebSocket upgrades refused for their origin."),
        "reel_requests_rate_limited_total": ("counter",
                                             "Requests and WebSocket control messages refused over a client's rate."),
        "reel_sessions_active": ("gauge", "Sessions holding a device slot."),
        "reel_sessions_queued": ("gauge", "Sessions waiting for a device slot."),
        "reel_sessions": ("gauge", "Sessions the server holds (any state)."),
        "reel_websockets_open": ("gauge", "Open WebSocket connections."),
        "reel_device_sessions_active": ("gauge", "Sessions generating on a device (its engine's slots in use)."),
        "reel_device_sessions_started_total": ("counter", "Sessions started on a device."),
        "reel_device_memory_bytes": ("gauge", "Device memory held by live tensors, where the device keeps count."),
    ]

    /// Families whose series carry a device label (`labelled(_:device:)`): no unlabelled series of them.
    static let perDevice: Set<String> = ["reel_device_sessions_active", "reel_device_sessions_started_total",
                                         "reel_device_memory_bytes"]

    public init() {
        for (name, info) in Self.help where !Self.perDevice.contains(name) {
            if info.type == "counter" { counters[name] = 0 } else { gauges[name] = 0 }
        }
    }

    func add(_ name: String, _ value: Double = 1) { lock.withLock { counters[name, default: 0] += value } }
    func set(_ name: String, _ value: Double) { lock.withLock { gauges[name] = value } }
    func adjust(_ name: String, by value: Double) { lock.withLock { gauges[name, default: 0] += value } }

    public func value(_ name: String) -> Double { lock.withLock { counters[name] ?? gauges[name] ?? 0 } }

    /// `name{device="cuda:1"}`: a series of a labelled family (`add`, `set` and `value` take it as the name).
    static func labelled(_ name: String, device: String) -> String {
        let escaped = device.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return "\(name){device=\"\(escaped)\"}"
    }

    /// The Prometheus text exposition.
    public func render() -> String {
        let (c, g) = lock.withLock { (counters, gauges) }
        var out = ""
        var described: Set<Substring> = []
        for (name, value) in c.merging(g, uniquingKeysWith: { a, _ in a }).sorted(by: { $0.key < $1.key }) {
            // A family's HELP and TYPE once, before its first series (`name` or `name{labels}`).
            let family = name.prefix { $0 != "{" }
            if let info = Self.help[String(family)], described.insert(family).inserted {
                out += "# HELP \(family) \(info.help)\n# TYPE \(family) \(info.type)\n"
            }
            out += "\(name) \(value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value))\n"
        }
        return out
    }
}
