import ReelCore

/// A value the restricted unpickler can build. There is no case for arbitrary objects: anything
/// that is not data or a torch tensor/storage is refused while parsing.
enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(PickleTuple)
    case list(PickleList)
    case dict(PickleDict)
    /// An allow-listed global, not yet called.
    case global(AllowedGlobal)
    /// A storage from a persistent id: its bytes are `data/<key>` in the archive.
    case storage(TorchStorageRef)
    case tensor(TorchTensorRef)

    var kind: String {
        switch self {
        case .none: "None"
        case .bool: "bool"
        case .int: "int"
        case .float: "float"
        case .string: "str"
        case .bytes: "bytes"
        case .tuple: "tuple"
        case .list: "list"
        case .dict: "dict"
        case .global(let g): g.name
        case .storage: "storage"
        case .tensor: "tensor"
        }
    }
}

// Containers are classes because pickles fill them after creation (EMPTY_DICT, MARK, SETITEMS)
// while the memo also refers to them. The unpickler keeps every container it makes and empties
// them all when done, so reference cycles a hostile pickle builds are broken and nothing nested
// is ever freed recursively.

final class PickleTuple {
    var items: [PickleValue]
    init(_ items: [PickleValue]) { self.items = items }
}

final class PickleList {
    var items: [PickleValue] = []
}

final class PickleDict {
    enum Key: Hashable, CustomStringConvertible {
        case string(String)
        case int(Int)
        var description: String {
            switch self {
            case .string(let s): s
            case .int(let i): String(i)
            }
        }
    }
    private(set) var entries: [(key: Key, value: PickleValue)] = []
    private var index: [Key: Int] = [:]
    /// Set by BUILD (an OrderedDict's `_metadata`); kept only so it can be emptied.
    var state: PickleValue = .none

    func set(_ key: Key, _ value: PickleValue) {
        if let i = index[key] { entries[i].value = value } else {
            index[key] = entries.count
            entries.append((key, value))
        }
    }

    func removeAll() {
        entries = []
        index = [:]
        state = .none
    }
}

/// The globals a plain `torch.save(state_dict)` emits, and nothing else.
enum AllowedGlobal: Equatable {
    case orderedDict
    case rebuildTensorV2
    case rebuildTensorV3
    case rebuildParameter
    case rebuildParameterWithState
    /// `torch.FloatStorage` and friends: a storage whose elements have this type.
    case typedStorage(StoredType, String)
    /// `torch.storage.UntypedStorage`: bytes; the tensor's dtype comes from `_rebuild_tensor_v3`.
    case untypedStorage
    /// `torch.float8_e4m3fn` and friends, as `_rebuild_tensor_v3`'s dtype argument.
    case dtype(StoredType, String)

    var name: String {
        switch self {
        case .orderedDict: "collections.OrderedDict"
        case .rebuildTensorV2: "torch._utils._rebuild_tensor_v2"
        case .rebuildTensorV3: "torch._utils._rebuild_tensor_v3"
        case .rebuildParameter: "torch._utils._rebuild_parameter"
        case .rebuildParameterWithState: "torch._utils._rebuild_parameter_with_state"
        case .typedStorage(_, let n): "torch.\(n)"
        case .untypedStorage: "torch.storage.UntypedStorage"
        case .dtype(_, let n): "torch.\(n)"
        }
    }

    private static let storages: [String: StoredType] = [
        "FloatStorage": .native(.f32), "HalfStorage": .native(.f16), "BFloat16Storage": .native(.bf16),
        "DoubleStorage": .f64, "LongStorage": .native(.int64), "IntStorage": .native(.int32),
        "CharStorage": .native(.int8), "ByteStorage": .native(.uint8), "BoolStorage": .native(.bool),
    ]
    private static let dtypes: [String: StoredType] = [
        "float32": .native(.f32), "float": .native(.f32), "float16": .native(.f16), "half": .native(.f16),
        "bfloat16": .native(.bf16), "float64": .f64, "double": .f64, "int64": .native(.int64),
        "long": .native(.int64), "int32": .native(.int32), "int": .native(.int32), "int8": .native(.int8),
        "uint8": .native(.uint8), "bool": .native(.bool), "float8_e4m3fn": .native(.fp8e4m3),
    ]

    /// The allowed global `module.name`, or an error naming it. Nothing is imported or called.
    static func resolve(module: String, name: String) throws(PickleError) -> AllowedGlobal {
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): return .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor_v3"): return .rebuildTensorV3
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): return .rebuildParameterWithState
        case ("torch.storage", "UntypedStorage"), ("torch", "UntypedStorage"): return .untypedStorage
        case ("torch", _):
            if let t = storages[name] { return .typedStorage(t, name) }
            if let t = dtypes[name] { return .dtype(t, name) }
            if name.hasSuffix("Storage") || name.hasPrefix("float") || name.hasPrefix("int") || name.hasPrefix("uint") || name.hasPrefix("complex") {
                throw PickleError.refused("torch.\(name): tensors of this element type are not supported by Reel "
                    + "(supported: f32, f16, bf16, f64, fp8 e4m3, int8, uint8, int32, int64, bool)")
            }
        default: break
        }
        throw PickleError.refused("global \(module).\(name) is not allowed: a checkpoint may hold only tensors, "
            + "OrderedDict/dict/list/tuple/str/int/float/bool/None; nothing was executed")
    }
}

/// A torch storage: `data/<key>` in the archive, `count` elements of `type` (bytes when untyped).
struct TorchStorageRef {
    let key: String
    /// nil for an UntypedStorage, whose count is in bytes.
    let type: StoredType?
    let count: Int

    var byteCount: Int? {
        let (n, o) = count.multipliedReportingOverflow(by: type?.size ?? 1)
        return o ? nil : n
    }
}

/// A tensor view of a storage: `_rebuild_tensor_v2/v3(storage, offset, size, stride, ...)`.
struct TorchTensorRef {
    let storage: TorchStorageRef
    let type: StoredType
    let offset: Int
    let shape: [Int]
    let strides: [Int]
}

/// Why a pickle was refused; `TorchCheckpoint` adds the file and the byte position.
enum PickleError: Error, CustomStringConvertible {
    case malformed(String)
    case refused(String)
    case limit(String)

    var description: String {
        switch self {
        case .malformed(let m): "malformed pickle: \(m)"
        case .refused(let m): "refused: \(m)"
        case .limit(let m): "too large or too deep: \(m)"
        }
    }
}
