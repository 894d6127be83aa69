import Foundation

/// Counters and gauges of the server, rendered in the Prometheus text format (version 0.0.4).
///
/// A series is named `name` or `name{label="value"}`. Every session is accounted for at any quiet moment:
///
///     reel_sessions_created_total = sum(reel_sessions_ended_total) + reel_sessions_active + reel_sessions_queued
///     reel_sessions_created_total = sum(reel_sessions_removed_total) + reel_sessions
///
/// (each created session ends once, with one outcome, and is removed once, for one reason).
public final class Metrics: @unchecked Sendable {
    private let lock = NSLock()
    private var counters: [String: Double] = [:]
    private var gauges: [String: Double] = [:]

    /// How a session's generation ended (`reel_sessions_ended_total{outcome}`).
    enum Outcome: String, CaseIterable {
        /// It made its requested length, or its input ended.
        case finished
        /// A client stopped it, deleted it or went away.
        case stopped
        /// An error ended it (`reel_sessions_failed_total{cause}` says which).
        case failed
        /// It ended while waiting for a device slot, before generating anything.
        case cancelled
    }

    /// Why a session's generation failed (`reel_sessions_failed_total{cause}`).
    enum FailureCause: String, CaseIterable {
        /// The device (or the host) had no memory for an allocation.
        case outOfMemory = "out_of_memory"
        /// Its input: an undecodable or silent input, a file that cannot be read.
        case input
        /// Anything else.
        case internalError = "internal"
    }

    /// Why a session was removed from the server (`reel_sessions_removed_total{reason}`).
    enum RemovalReason: String, CaseIterable {
        /// `DELETE /v1/sessions/{id}`.
        case deleted
        /// Its WebSocket closed.
        case disconnected
        /// Its WebSocket started another session.
        case replaced
        /// Idle past the idle timeout.
        case reclaimed
        /// The server shut down.
        case shutdown
    }

    static let help: [String: (type: String, help: String)] = [
        "reel_sessions_created_total": ("counter", "Sessions created."),
        "reel_sessions_rejected_total": ("counter", "Session requests refused because the server was full."),
        "reel_sessions_reclaimed_total": ("counter", "Idle sessions reclaimed."),
        "reel_sessions_started_total": ("counter", "Sessions given a device slot."),
        "reel_sessions_ended_total": ("counter", "Sessions whose generation ended, by outcome."),
        "reel_sessions_failed_total": ("counter", "Sessions that ended with an error, by cause."),
        "reel_sessions_removed_total": ("counter", "Sessions removed from the server, by reason."),
        "reel_blocks_generated_total": ("counter", "Blocks generated and decoded."),
        "reel_frames_sent_total": ("counter", "Video frames sent over WebSockets."),
        "reel_bytes_sent_total": ("counter", "Bytes of video frames sent over WebSockets."),
        "reel_prompt_switches_total": ("counter", "Prompt switches (each a KV-recache for a LongLive 1.0 model)."),
        "reel_client_errors_total": ("counter", "Requests and messages answered with an error."),
        "reel_block_seconds_total": ("counter", "Seconds spent generating blocks (DiT)."),
        "reel_decode_seconds_total": ("counter", "Seconds spent decoding blocks."),
        "reel_encode_seconds_total": ("counter",
                                      "Seconds spent encoding frames for WebSockets (wall clock, frames in parallel)."),
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
        "reel_websockets_opened_total": ("counter", "WebSocket connections opened."),
        "reel_websocket_messages_total": ("counter", "WebSocket messages received (text and binary)."),
        "reel_sessions_active": ("gauge", "Sessions holding a device slot."),
        "reel_sessions_queued": ("gauge", "Sessions waiting for a device slot."),
        "reel_sessions": ("gauge", "Sessions the server holds (any state)."),
        "reel_websockets_open": ("gauge", "Open WebSocket connections."),
        "reel_device_sessions_active": ("gauge", "Sessions generating on a device (its engine's slots in use)."),
        "reel_device_sessions_started_total": ("counter", "Sessions started on a device."),
        "reel_device_memory_bytes": ("gauge", "Device memory held by live tensors, where the device keeps count."),
        "reel_group_sessions_active": ("gauge", "Sessions generating on an engine's group of devices (its slots in use)."),
        "reel_group_sessions_started_total": ("counter", "Sessions started on an engine's group of devices."),
        "reel_heap_in_use_bytes": ("gauge", "Bytes the C heap (malloc) has allocated, host tensors included."),
        "reel_heap_free_bytes": ("gauge", "Bytes free inside the C heap's arenas, kept by malloc rather than given back."),
    ]

    /// Families whose series carry a device or group label (`labelled(_:device:)`, `labelled(_:group:)`): no
    /// unlabelled series of them.
    static let perDevice: Set<String> = ["reel_device_sessions_active", "reel_device_sessions_started_total",
                                         "reel_device_memory_bytes", "reel_group_sessions_active",
                                         "reel_group_sessions_started_total"]

    public init() {
        for (name, info) in Self.help where !Self.perDevice.contains(name) {
            if info.type == "counter" { counters[name] = 0 } else { gauges[name] = 0 }
        }
        // Labelled series start at 0 too, so that a scraper sees each from the start.
        for series in ["reel_sessions_ended_total", "reel_sessions_failed_total", "reel_sessions_removed_total"] {
            counters[series] = nil
        }
        let labelled = [("reel_sessions_ended_total", "outcome", Outcome.allCases.map(\.rawValue)),
                        ("reel_sessions_failed_total", "cause", FailureCause.allCases.map(\.rawValue)),
                        ("reel_sessions_removed_total", "reason", RemovalReason.allCases.map(\.rawValue))]
        for (name, label, values) in labelled {
            for value in values { counters[Self.series(name, label, value)] = 0 }
        }
    }

    static func series(_ name: String, _ label: String, _ value: String) -> String { "\(name){\(label)=\"\(value)\"}" }

    func add(_ name: String, _ value: Double = 1) { lock.withLock { counters[name, default: 0] += value } }
    func set(_ name: String, _ value: Double) { lock.withLock { gauges[name] = value } }
    func adjust(_ name: String, by value: Double) { lock.withLock { gauges[name, default: 0] += value } }

    func ended(_ outcome: Outcome) { add(Self.series("reel_sessions_ended_total", "outcome", outcome.rawValue)) }
    func failed(_ cause: FailureCause) { add(Self.series("reel_sessions_failed_total", "cause", cause.rawValue)) }
    func removed(_ reason: RemovalReason) { add(Self.series("reel_sessions_removed_total", "reason", reason.rawValue)) }

    /// `name{device="cuda:1"}`: a series of a labelled family (`add`, `set` and `value` take it as the name).
    static func labelled(_ name: String, device: String) -> String { labelled(name, "device", device) }

    /// `name{group="cuda:0+cuda:1"}`: a series of an engine's group of devices (`reel serve --session-devices 0+1`).
    static func labelled(_ name: String, group: String) -> String { labelled(name, "group", group) }

    private static func labelled(_ name: String, _ label: String, _ value: String) -> String {
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return "\(name){\(label)=\"\(escaped)\"}"
    }

    /// A series' value; a name without labels sums all its labelled series.
    public func value(_ name: String) -> Double {
        lock.withLock {
            if let v = counters[name] ?? gauges[name] { return v }
            return counters.filter { $0.key.hasPrefix(name + "{") }.values.reduce(0, +)
        }
    }

    /// The Prometheus text exposition (the help and type once per name, before its first series).
    public func render() -> String {
        let (c, g) = lock.withLock { (counters, gauges) }
        var out = ""
        var described: Set<String> = []
        for (series, value) in c.merging(g, uniquingKeysWith: { a, _ in a }).sorted(by: { $0.key < $1.key }) {
            let name = String(series.prefix { $0 != "{" })
            if let info = Self.help[name], described.insert(name).inserted {
                out += "# HELP \(name) \(info.help)\n# TYPE \(name) \(info.type)\n"
            }
            out += "\(series) \(value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value))\n"
        }
        return out
    }
}
