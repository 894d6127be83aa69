import ReelCore

/// A value as `torch.save` pickles it: a tensor, or a dictionary of values (a state dict is an
/// `OrderedDict` of tensors; LongLive nests one under `"generator"`).
public indirect enum TorchValue {
    case tensor(dtype: DType, shape: [Int], bytes: [UInt8])
    case stateDict([(String, TorchValue)])
    case dict([(String, TorchValue)])
    /// Metadata beside the tensors (a merged LongLive checkpoint's `checkpoint_format`, `merged_lora`).
    case string(String)
    case bool(Bool)

    /// A tensor of `values` stored as `dtype` (f32, bf16 or f16).
    public static func tensor(_ values: [Float], shape: [Int], as dtype: DType) throws -> TorchValue {
        .tensor(dtype: dtype, shape: shape, bytes: try HostConversion.encode(values, as: dtype))
    }
}

/// Writes what `torch.save(value, "<name>.pt")` writes (the entries of a PyTorch 2.x archive): a zip of
/// `<name>/data.pkl` (pickle protocol 2; tensors as `torch._utils._rebuild_tensor_v2` over persistent
/// storages), `<name>/byteorder`, one `<name>/data/<n>` per storage, `<name>/version` ("3") and
/// `<name>/.data/serialization_id` (40 digits), built with `PickleBuilder` and `ZipBuilder`. Unlike
/// PyTorch it does not pad storages to 64-byte offsets (readers must not rely on it) and pickles state
/// dicts without their `_metadata` attribute.
public enum TorchSave {
    public static func archive(_ value: TorchValue, name: String) -> [UInt8] {
        var p = PickleBuilder()
        var storages: [(String, [UInt8])] = []
        pickle(value, into: &p, storages: &storages)
        p.stop()
        var z = ZipBuilder()
        z.add("\(name)/data.pkl", p.bytes)
        z.add("\(name)/byteorder", Array("little".utf8))
        for (key, bytes) in storages { z.add("\(name)/data/\(key)", bytes) }
        z.add("\(name)/version", Array("3\n".utf8))
        z.add("\(name)/.data/serialization_id", Array("0636457737946401051300000027264370494161".utf8))
        return z.build()
    }

    static func pickle(_ value: TorchValue, into p: inout PickleBuilder, storages: inout [(String, [UInt8])]) {
        switch value {
        case let .tensor(dtype, shape, bytes):
            let key = String(storages.count)
            storages.append((key, bytes))
            var strides = [Int](repeating: 1, count: shape.count)
            for i in stride(from: shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
            p.tensor(storage: key, numel: shape.reduce(1, *), size: shape, stride: strides, storageType: storageType(dtype))
        case let .string(text):
            p.string(text)
        case let .bool(value):
            p.op(value ? 0x88 : 0x89)  // NEWTRUE / NEWFALSE
        case let .stateDict(items), let .dict(items):
            if case .stateDict = value {
                p.global("collections", "OrderedDict"); p.op(0x29); p.op(0x52)  // OrderedDict()
            } else {
                p.op(0x7D)  // EMPTY_DICT
            }
            guard !items.isEmpty else { return }
            p.mark()
            for (key, item) in items {
                p.string(key)
                pickle(item, into: &p, storages: &storages)
            }
            p.op(0x75)  // SETITEMS
        }
    }

    static func storageType(_ dtype: DType) -> String {
        switch dtype {
        case .bf16: "BFloat16Storage"
        case .f16: "HalfStorage"
        default: "FloatStorage"
        }
    }
}
