import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWebSocket
import HummingbirdWSClient
import Logging
import ReelCore
import Testing
@testable import ReelServer

/// The deploy/ files refer to what exists: the Dockerfile's sources, the server's port and routes in the Kubernetes
/// manifests, nginx's WebSocket proxying. Where nginx is installed, it checks the configurations and carries a
/// WebSocket session to two servers (skipped otherwise; `deploy/loopback-demo.sh` is the same with `reel serve`).
@Suite struct DeployFilesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func text(_ path: String) throws -> String { try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8) }

    static func matches(_ pattern: String, in text: String) -> [String] {
        let regex = try! NSRegularExpression(pattern: pattern, options: [.anchorsMatchLines])
        return regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap {
            Range($0.range(at: 1), in: text).map { String(text[$0]) }
        }
    }

    @Test func dockerfileCopiesWhatTheBuildStagesAndTheRepositoryHolds() throws {
        let docker = try Self.text("deploy/Dockerfile"), build = try Self.text("scripts/gpu/build.sh")
        let sources = Self.matches(#"^COPY (?!--from)(\S+) \S+$"#, in: docker)
        #expect(sources == ["deploy/stage/reel.xz", "deploy/stage/Reel_ReelCUDA.resources", "Models/tiny"])
        for source in sources {
            if source.hasPrefix("deploy/stage/") {
                // scripts/gpu/build.sh stages these (REEL_GPU_DIR=deploy/stage): the xz-compressed binary and the kernels.
                let name = String(source.dropFirst("deploy/stage/".count))
                #expect(name == "reel.xz" ? build.contains("xz -9e -T2 \"$dest/reel\"") : build.contains("\(name)\" \"$dest/\""), "\(name)")
            } else {
                #expect(FileManager.default.fileExists(atPath: Self.root.appendingPathComponent(source).path), "\(source)")
            }
        }
        #expect(try Self.text(".gitignore").contains("/deploy/stage/"))
        // The build context admits exactly what the Dockerfile copies (everything else: several GB of build folders).
        let admitted = Self.matches(#"^!(\S+)$"#, in: try Self.text(".dockerignore"))
        #expect(try Self.text(".dockerignore").contains("\n*\n") && admitted == sources, "\(admitted)")
        #expect(docker.contains("ENTRYPOINT [\"/opt/reel/reel\", \"serve\", \"--host\", \"0.0.0.0\", \"--port\", \"8080\"]"))
        #expect(docker.contains("COPY Models/tiny /opt/reel/Models/tiny") && docker.contains("\"--model\", \"/opt/reel/Models/tiny\""))
        #expect(docker.contains("COPY deploy/stage/Reel_ReelCUDA.resources /opt/reel/Reel_ReelCUDA.resources"),
                "the kernels beside the binary, where KernelCache looks")
        #expect(docker.contains("EXPOSE 8080"))
        #expect(try Self.text("Sources/reel/Serve.swift").contains("var port = 8080"), "the server's default port")
    }

    @Test func manifestsUseTheServersPortAndRoutes() async throws {
        let deployment = try Self.text("deploy/k8s/deployment.yaml"), service = try Self.text("deploy/k8s/service.yaml")
        let monitor = try Self.text("deploy/k8s/servicemonitor.yaml")
        #expect(Self.matches(#"containerPort: (\d+)"#, in: deployment) == ["8080"])
        #expect(Self.matches(#"path: (\S+)"#, in: deployment) == ["/healthz", "/healthz", "/healthz"], "startup, readiness, liveness")
        #expect(deployment.contains("nvidia.com/gpu: 1") && deployment.contains("name: REEL_API_KEY"))
        #expect(Self.matches(#"port: (\S+)"#, in: service).contains("8080") && service.contains("targetPort: http"))
        #expect(Self.matches(#"path: (\S+)"#, in: monitor) == ["/metrics"])
        #expect(monitor.contains("name: reel-api-key") && deployment.contains("name: reel-api-key"))
        // The probes' path answers without the key; the scraped path answers with it.
        let server = try TestModel.server { $0.access.apiKey = "k" }
        try await HTTPAPITests.app(server).test(.router) { client in
            let health = try await client.execute(uri: "/healthz", method: .get)
            let metrics = try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer k"])
            #expect(health.status == .ok && metrics.status == .ok)
        }
        await server.manager.shutdown()
    }

    @Test func nginxProxiesWebSocketsAndKeepsClientsOnTheirServer() throws {
        for path in ["deploy/nginx/reel.conf", "deploy/nginx/loopback.conf"] {
            let conf = try Self.text(path)
            for line in ["map $http_upgrade $connection_upgrade", "proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                         "proxy_set_header Connection $connection_upgrade;", "proxy_set_header Host $http_host;",
                         "hash $remote_addr consistent;", "proxy_buffering off;", "proxy_read_timeout 1h;"] {
                #expect(conf.contains(line), "\(path): \(line)")
            }
            let bodyLimit = Self.matches(#"client_max_body_size (\d+)m;"#, in: conf).map { Int($0)! << 20 }
            #expect(bodyLimit == [ServerConfiguration().maxUploadBytes], "\(path): uploads as large as the server takes")
            #expect(!conf.contains("$request "), "\(path): no query strings (a WebSocket's key) in the log")
        }
        let loopback = try Self.text("deploy/nginx/loopback.conf"), demo = try Self.text("deploy/loopback-demo.sh")
        #expect(Self.matches(#"server 127\.0\.0\.1:(\d+);"#, in: loopback) == ["8091", "8092"])
        #expect(demo.contains("for port in 8091 8092") && demo.contains("127.0.0.1 8090") && loopback.contains("listen 127.0.0.1:8090;"))
    }

    static func findNginx() -> String? {
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// nginx (where installed) from a scratch prefix on the loopback configuration, with its ports replaced by two live
    /// in-process servers' and a free one; a WebSocket session with the key goes through it and frames come back.
    @Test func nginxCarriesAWebSocketSessionToTwoServers() async throws {
        guard let nginx = Self.findNginx() else { print("DeployFilesTests: no nginx; skipped"); return }
        let key = "nginx-key"
        let a = try TestModel.server { $0.access.apiKey = key }, b = try TestModel.server { $0.access.apiKey = key }
        try await HTTPAPITests.app(a).test(.live) { clientA in
            try await HTTPAPITests.app(b).test(.live) { clientB in
                let prefix = NSTemporaryDirectory() + "reel-nginx-\(UUID().uuidString)"
                try FileManager.default.createDirectory(atPath: prefix + "/tmp", withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: prefix) }
                let port = Int.random(in: 20000..<40000)
                let conf = try Self.text("deploy/nginx/loopback.conf")
                    .replacingOccurrences(of: "127.0.0.1:8090", with: "127.0.0.1:\(port)")
                    .replacingOccurrences(of: "127.0.0.1:8091", with: "127.0.0.1:\(try #require(clientA.port))")
                    .replacingOccurrences(of: "127.0.0.1:8092", with: "127.0.0.1:\(try #require(clientB.port))")
                try conf.write(toFile: prefix + "/nginx.conf", atomically: true, encoding: .utf8)
                let check = Process()
                check.executableURL = URL(fileURLWithPath: nginx)
                check.arguments = ["-t", "-q", "-p", prefix, "-c", prefix + "/nginx.conf"]
                try check.run()
                check.waitForExit()
                #expect(check.terminationStatus == 0, "nginx -t accepts the loopback configuration")
                let process = Process()
                process.executableURL = URL(fileURLWithPath: nginx)
                process.arguments = ["-p", prefix, "-c", prefix + "/nginx.conf"]
                process.standardError = FileHandle.nullDevice
                try process.run()
                defer { process.terminate(); process.waitForExit() }
                #expect(await eventually(120) { FileManager.default.fileExists(atPath: prefix + "/nginx.pid") })
                try await Task.sleep(for: .milliseconds(200))
                let seen = WebSocketTests.Seen()
                var config = WebSocketClientConfiguration()
                config.maxFrameSize = 1 << 20
                try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/v1/ws?key=\(key)", configuration: config,
                                                  logger: Logger(label: "nginx")) { inbound, outbound, _ in
                    var messages = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                    try await outbound.write(.text("{\"type\": \"start\", \"prompt\": \"a cat\", \"options\": {\"seconds\": 1}}"))
                    try await WebSocketTests.read(&messages, into: seen) { $0.states().last == "finished" }
                    try await outbound.close(.normalClosure, reason: nil)
                }
                #expect(seen.states().last == "finished" && seen.frames.count >= 8, "\(seen.states()) \(seen.frames.count) frames")
                let created = [a, b].map { $0.manager.metrics.value("reel_sessions_created_total") }
                #expect(created.reduce(0, +) == 1, "the session ran on one of the two servers: \(created)")
            }
        }
        await a.manager.shutdown()
        await b.manager.shutdown()
    }
}
