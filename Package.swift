// swift-tools-version:6.0
import PackageDescription

// The CPU backend's kernels are always optimized (tests of every other target use it as their
// oracle, and unoptimized SIMD code is ~100x slower). On x86-64 they target Haswell-class CPUs
// (AVX2 + FMA, every x86 server since 2013): without it `SIMD*.addingProduct` becomes a libm call
// per lane.
#if arch(x86_64)
let cpuKernelSettings: [SwiftSetting] = [.unsafeFlags(["-O", "-target-cpu", "haswell"])]
#else
let cpuKernelSettings: [SwiftSetting] = [.unsafeFlags(["-O"])]
#endif

let package = Package(
    name: "Reel",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "reel", targets: ["reel"]),
        .library(name: "ReelCore", targets: ["ReelCore"]),
        .library(name: "ReelCPU", targets: ["ReelCPU"]),
        .library(name: "ReelCUDA", targets: ["ReelCUDA"]),
        .library(name: "ReelIO", targets: ["ReelIO"]),
        .library(name: "ReelMedia", targets: ["ReelMedia"]),
        .library(name: "ReelModels", targets: ["ReelModels"]),
        .library(name: "ReelPipeline", targets: ["ReelPipeline"]),
        .library(name: "ReelServer", targets: ["ReelServer"]),
        .library(name: "ReelEval", targets: ["ReelEval"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // Tensors, the backend protocol, dtypes, the shared RNG.
        .target(name: "ReelCore", dependencies: ["CHeap"]),
        // glibc's heap figures and trim (<malloc.h>), for the server's memory.
        .target(name: "CHeap"),
        // The CPU backend: float32 math, multithreaded, the oracle for every other backend.
        .target(name: "ReelCPU", dependencies: ["ReelCore"], swiftSettings: cpuKernelSettings),
        // The CUDA backend: NVIDIA libraries loaded at run time, kernels compiled by NVRTC.
        .target(name: "ReelCUDA", dependencies: ["ReelCore"], resources: [.copy("Kernels")]),
        // Weight files: safetensors, PyTorch zip checkpoints, sharded indexes.
        .target(name: "ReelIO", dependencies: ["ReelCore"]),
        // Media: frames, the video sinks (MP4 through ffmpeg, Y4M, PNG) and the inputs (Y4M, PNG, JPEG, ffmpeg, live
        // frames); optimized even in debug builds: `reel serve` decodes and fits every input frame as it arrives.
        .target(name: "ReelMedia", dependencies: ["ReelCore"], swiftSettings: [.unsafeFlags(["-O"])]),
        // Tokenizer, text encoder, DiT, VAE and tiny decoder.
        .target(name: "ReelModels", dependencies: ["ReelCore", "ReelIO"]),
        // Streaming generation: flow-matching schedule, noise, KV-cache policy, prompt switches.
        .target(name: "ReelPipeline", dependencies: ["ReelCore", "ReelIO", "ReelMedia", "ReelModels"]),
        // `reel serve`: HTTP + WebSocket sessions over VideoStream, and the web page.
        .target(
            name: "ReelServer",
            dependencies: [
                "ReelCore", "ReelCPU", "ReelIO", "ReelMedia", "ReelModels", "ReelPipeline",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.unsafeFlags(["-O"])]
        ),
        // `reel eval`: the tiny model's caption grammar, ground truth, frame analysis and metrics of
        // generated video (the per-frame analysis is optimized even in debug builds: it runs on every frame).
        .target(
            name: "ReelEval",
            dependencies: ["ReelCore", "ReelIO", "ReelMedia", "ReelModels", "ReelPipeline"],
            swiftSettings: [.unsafeFlags(["-O"])]
        ),
        .executableTarget(
            name: "reel",
            dependencies: [
                "ReelCore", "ReelCPU", "ReelCUDA", "ReelIO", "ReelMedia", "ReelModels", "ReelPipeline", "ReelServer", "ReelEval",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Writers of real file formats for tests (PyTorch zip checkpoints, pickles) and pixel comparisons, shared by the
        // test targets.
        .target(name: "ReelTestSupport", dependencies: ["ReelCore"], path: "Tests/ReelTestSupport"),
        .testTarget(name: "ReelCoreTests", dependencies: ["ReelCore", "ReelCPU"]),
        .testTarget(name: "ReelCPUTests", dependencies: ["ReelCore", "ReelCPU"]),
        .testTarget(name: "ReelCUDATests", dependencies: ["ReelCore", "ReelCUDA"]),
        .testTarget(name: "ReelIOTests", dependencies: ["ReelCore", "ReelCPU", "ReelIO", "ReelTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "ReelMediaTests", dependencies: ["ReelCore", "ReelCPU", "ReelMedia", "ReelTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "ReelModelsTests", dependencies: ["ReelCore", "ReelCPU", "ReelIO", "ReelModels", "ReelTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "ReelServerTests", dependencies: [
            "ReelCore", "ReelCPU", "ReelIO", "ReelMedia", "ReelModels", "ReelPipeline", "ReelServer", "ReelEval", "ReelTestSupport",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
            .product(name: "HummingbirdWSTesting", package: "hummingbird-websocket"),
            .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .testTarget(name: "ReelEvalTests", dependencies: ["ReelCore", "ReelCPU", "ReelIO", "ReelMedia", "ReelModels", "ReelPipeline", "ReelEval",
                                                          "ReelTestSupport"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "ReelPipelineTests", dependencies: ["ReelCore", "ReelCPU", "ReelIO", "ReelMedia", "ReelModels", "ReelPipeline",
                                                              "ReelTestSupport"],
                    exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
