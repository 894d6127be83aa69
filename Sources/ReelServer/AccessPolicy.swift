import Foundation

/// Who may use a `reel serve` instance, and how fast: an API key, the origins a browser page may call from, and
/// rates per client (its remote address). Checked by `AccessMiddleware` on every HTTP request and WebSocket upgrade,
/// and by `SocketConnection` on every control message.
///
/// Without a key every request is served. With one, the API (`/v1/...`, the WebSocket included) and `/metrics`
/// need `Authorization: Bearer KEY` (a WebSocket may instead pass `?key=KEY`: browsers cannot set headers on it);
/// the page and its assets, `/openapi.json` and `/healthz` stay open, so that a browser can load the page and a
/// probe can check the server without the key (`/healthz` tells the device and session counts, nothing else).
/// `metricsOpen` opens `/metrics` too (a cluster whose scraper holds no key).
public struct AccessPolicy: Sendable {
    /// The key every API request must carry (nil: none needed). Never logged.
    public var apiKey: String?
    /// Origins (`https://studio.example.com`) whose pages may call the API: CORS answers and WebSocket upgrades.
    /// A page from the server's own origin is always allowed; `*` allows every origin.
    public var allowedOrigins: [String] = []
    /// `/metrics` is served without the key.
    public var metricsOpen = false
    /// HTTP requests (WebSocket upgrades included) a second a client may send on average, in bursts of up to
    /// `burstSeconds` worth; more are answered 429 (0: no limit).
    public var requestsPerSecond = 100.0
    /// WebSocket control messages a second a client may send on average (input frames have their own limit,
    /// `ServerConfiguration.maxInputFPS`); more are answered with a `rate_limited` error and dropped (0: no limit).
    public var messagesPerSecond = 50.0
    /// How many seconds' worth of requests or messages a client may send at once.
    public var burstSeconds = 2.0

    public init() {}

    /// Paths served without the key: the page, its assets, the API's description and the health probe.
    static let openPaths: Set<String> = ["/", "/app.js", "/app.css", "/favicon.ico", "/openapi.json", "/healthz"]

    /// Whether `path` needs the key under this policy.
    func needsKey(_ path: String) -> Bool {
        guard apiKey != nil else { return false }
        if Self.openPaths.contains(path) { return false }
        return !(metricsOpen && path == "/metrics")
    }

    /// Whether `presented` is the key, in time that depends only on `presented`'s length (never on how much of it
    /// matches), so that timing tells an attacker nothing about the key.
    func accepts(_ presented: String) -> Bool {
        guard let apiKey else { return true }
        return Self.constantTimeEqual(Array(presented.utf8), Array(apiKey.utf8))
    }

    /// `a == b`, reading every byte of `a` whatever the first difference.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference: UInt8 = a.count == b.count ? 0 : 1
        for i in a.indices { difference |= a[i] ^ (b.isEmpty ? 0 : b[i % b.count]) }
        return difference == 0
    }

    /// Whether the `Origin` header `field` (one origin, or several joined by commas) is allowed for a server reached as
    /// `host`. Only the origins a browser sends are checked - `http(s)://...` and `null` (a sandboxed or file page) -
    /// because the check protects users' browsers from other sites' pages; a program that sends another `Origin`
    /// (HummingbirdWSClient sends `ws://host`) could send any, and is held by the key instead.
    func allowsAll(origins field: String, host: String?) -> Bool {
        field.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0 == "null" || $0.hasPrefix("http://") || $0.hasPrefix("https://") }
            .allSatisfy { allows(origin: $0, host: host) }
    }

    /// Whether a page from `origin` may call a server reached as `host` (the request's Host header).
    func allows(origin: String, host: String?) -> Bool {
        Self.isSameOrigin(origin, host: host) || allowedOrigins.contains("*") || allowedOrigins.contains(origin)
    }

    /// An origin `scheme://authority` is the server's own when its authority is the Host the request was sent to
    /// (a reverse proxy must pass the Host on: `proxy_set_header Host $http_host`).
    static func isSameOrigin(_ origin: String, host: String?) -> Bool {
        guard let host, let range = origin.range(of: "://") else { return false }
        return origin[range.upperBound...].lowercased() == host.lowercased()
    }
}

/// Token buckets per client: `rate` a second on average, at most `burst` at once. Buckets that have refilled are
/// forgotten once many clients are held, so memory stays bounded whoever connects.
final class ClientRateLimiter: @unchecked Sendable {
    private let lock = NSLock()
    private let rate: Double, burst: Double
    private var buckets: [String: (tokens: Double, last: ContinuousClock.Instant)] = [:]
    private static let pruneAbove = 4096

    /// `rate` <= 0: no limit.
    init(rate: Double, burstSeconds: Double) {
        self.rate = rate
        burst = max(rate * burstSeconds, 1)
    }

    /// Whether one more request or message from `client` arriving now is served.
    func take(_ client: String, now: ContinuousClock.Instant = .now) -> Bool {
        guard rate > 0 else { return true }
        return lock.withLock {
            var tokens = burst
            if let bucket = buckets[client] { tokens = min(burst, bucket.tokens + (now - bucket.last).seconds * rate) }
            if buckets.count >= Self.pruneAbove {
                let refill = Duration.seconds(burst / rate)
                buckets = buckets.filter { now - $0.value.last < refill }
            }
            guard tokens >= 1 else {
                buckets[client] = (tokens, now)
                return false
            }
            buckets[client] = (tokens - 1, now)
            return true
        }
    }
}
