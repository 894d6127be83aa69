import Foundation
import ReelCore

/// A live output address (`reel generate -o rtmp://...`), checked before anything runs.
///
/// - `rtmp://host[:port]/app/key` and `rtmps://...` (RTMP, FLV container): OBS, nginx-rtmp, MediaMTX, YouTube,
///   Twitch. The path needs an application and a stream key.
/// - `srt://host:port[?options]` (SRT as caller, MPEG-TS): ffmpeg's SRT options pass through the query
///   (`?latency=200000&passphrase=...`); `linger=2` unless given.
/// - `udp://host:port[?options]` (MPEG-TS in 1316-byte datagrams unless `pkt_size` is given; multicast works).
public struct LiveDestination: Sendable, Equatable, CustomStringConvertible {
    public enum Transport: String, CaseIterable, Sendable {
        case rtmp, rtmps, srt, udp

        /// The container ffmpeg muxes into for this transport.
        public var container: String { self == .rtmp || self == .rtmps ? "flv" : "mpegts" }
    }

    public let transport: Transport
    /// The address as given.
    public let url: String
    /// The address ffmpeg is given (UDP gets its packet size and a connected socket; see `init`).
    public let ffmpegURL: String
    /// Seconds the connection is held open after the last frame before ffmpeg is told the video ended. SRT: twice
    /// the largest latency the query names (`latency`, `rcvlatency`, `peerlatency`, in microseconds as ffmpeg takes
    /// them; SRT's default 120 ms otherwise) plus 0.25 s, so that a receiver delivering by timestamp has handed on
    /// the last frames before the connection closes. On loopback under load, without the hold the last 1-2 of 45
    /// frames were lost in 10 of 10 runs, `linger=2` or not; with 0.5 s, none in 14 (docs/streaming.md). 0 for the others
    /// (RTMP runs over TCP; UDP has no connection to close).
    public let closeHold: Double
    public var description: String { url }

    /// Whether `text` names a live output rather than a file (it has a `scheme://` prefix).
    public static func isURL(_ text: String) -> Bool {
        guard let range = text.range(of: "://") else { return false }
        let scheme = text[..<range.lowerBound]
        return !scheme.isEmpty && scheme.allSatisfy { $0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == "." }
    }

    /// Throws `ReelError.input` saying what is wrong and what a right address looks like.
    public init(url: String) throws {
        func bad(_ why: String) -> ReelError {
            .input("live output \(url): \(why) (e.g. rtmp://127.0.0.1/live/stream, srt://127.0.0.1:9000, "
                   + "udp://127.0.0.1:1234)")
        }
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased() else {
            throw bad("not a valid URL")
        }
        guard let transport = Transport(rawValue: scheme) else {
            throw bad("'\(scheme)://' is not a live output; Reel pushes rtmp://, rtmps://, srt:// and udp://")
        }
        guard let host = components.host, !host.isEmpty else { throw bad("no host") }
        if let port = components.port, !(1...65535).contains(port) { throw bad("port \(port) is not in 1...65535") }
        switch transport {
        case .rtmp, .rtmps:
            let parts = components.path.split(separator: "/")
            guard parts.count >= 2 else {
                throw bad("an RTMP address needs an application and a stream key in its path (/app/key)")
            }
        case .srt, .udp:
            guard components.port != nil else { throw bad("\(scheme):// needs a port") }
            guard components.path.isEmpty || components.path == "/" else {
                throw bad("\(scheme):// takes no path (options go in the query: ?name=value)")
            }
        }
        self.transport = transport
        self.url = url
        // UDP: 7 TS packets a datagram (fits an Ethernet MTU), and a connected socket, so that a port with no
        // listener (ICMP port unreachable) is an error rather than datagrams sent to nobody. SRT: the end of the
        // video waits up to 2 s for the receiver's acknowledgement of what is unsent (without it the last 4 of 45
        // frames were lost in LiveStreamTests; alone it still lost 1-3 under load: see `closeHold`).
        let defaults: [(String, String)] = switch transport {
        case .udp: [("pkt_size", "1316"), ("connect", "1")]
        case .srt: [("linger", "2")]
        case .rtmp, .rtmps: []
        }
        let query = components.queryItems ?? []
        if transport == .srt {
            let latencies = query.filter { ["latency", "rcvlatency", "peerlatency"].contains($0.name) }
                .compactMap { $0.value.flatMap(Double.init) }.filter { $0 >= 0 }
            closeHold = 2 * (latencies.max() ?? 120_000) / 1e6 + 0.25
        } else {
            closeHold = 0
        }
        let names = Set(query.map(\.name))
        let extra = defaults.filter { !names.contains($0.0) }.map { "\($0.0)=\($0.1)" }
        let joiner = components.query.map { $0.isEmpty ? "" : "&" } ?? "?"
        ffmpegURL = extra.isEmpty ? url : url + joiner + extra.joined(separator: "&")
    }
}
