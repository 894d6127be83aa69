// A restricted pickle reader for PyTorch checkpoints (pickle protocols 2 to 5).
//
// Pickle is a small stack machine: opcodes push values, build containers from the values above a
// MARK, store values in a memo and fetch them back, look up globals (GLOBAL "module\nname\n",
// STACK_GLOBAL) and call them (REDUCE: callable, argument tuple). torch.save writes a state dict as
//
//   GLOBAL collections.OrderedDict, EMPTY_TUPLE, REDUCE        -> an empty OrderedDict
//   MARK  key  GLOBAL torch._utils._rebuild_tensor_v2
//              MARK (MARK 'storage' GLOBAL torch.BFloat16Storage '0' 'cpu' numel TUPLE) BINPERSID
//                   offset (sizes) (strides) requires_grad OrderedDict() TUPLE REDUCE   -> a tensor
//         ...  SETITEMS
//   [EMPTY_DICT {'_metadata': ...} BUILD]   STOP
//
// Here nothing is ever imported or called. GLOBAL resolves only an allow-list (AllowedGlobal) to
// a marker; REDUCE on a marker builds the data the allowed function would (a dict, a tensor
// reference); BUILD is accepted only on dicts, and its state is kept, never applied. Everything
// else (os.system, builtins.eval, NEWOBJ, INST, sets, extension codes) is refused with its name.
// Memo size, stack size and MARK nesting are bounded; a hostile pickle fails fast.

/// Runs a pickle on the restricted machine and returns its result.
struct Unpickler {
    /// Bounds on the machine's state; a real checkpoint stays far below the defaults.
    struct Limits {
        var stack = 1 << 20
        var marks = 1 << 12
        var memo = 1 << 20
    }
    static let maxRank = 32

    private let limits: Limits

    private let bytes: UnsafeRawBufferPointer
    private(set) var position = 0
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    /// Every container built, emptied at the end (see PickleValue.swift).
    private var containers: [AnyObject] = []

    init(_ bytes: UnsafeRawBufferPointer, limits: Limits = Limits()) {
        self.bytes = bytes
        self.limits = limits
    }

    /// Parses the whole pickle; the result's containers stay alive and filled until `release()`.
    mutating func run() throws(PickleError) -> PickleValue {
        while true {
            let opcode = try byte()
            if opcode == 0x2E { // STOP
                guard let top = stack.last else { throw .malformed("STOP with an empty stack") }
                return top
            }
            try step(opcode)
        }
    }

    /// Empties every container built, breaking any cycle a hostile pickle made.
    mutating func release() {
        for c in containers {
            if let t = c as? PickleTuple { t.items = [] }
            else if let l = c as? PickleList { l.items = [] }
            else if let d = c as? PickleDict { d.removeAll() }
        }
        containers = []
        stack = []
        memo = [:]
    }

    // MARK: Reading

    private mutating func byte() throws(PickleError) -> UInt8 {
        guard position < bytes.count else { throw .malformed("ends without STOP (truncated)") }
        defer { position += 1 }
        return bytes[position]
    }

    private mutating func take(_ n: Int) throws(PickleError) -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - position else {
            throw .malformed("needs \(n) bytes at \(position) but only \(bytes.count - position) remain (truncated)")
        }
        defer { position += n }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)])
    }

    private mutating func uint(_ width: Int) throws(PickleError) -> UInt64 {
        let b = try take(width)
        var v: UInt64 = 0
        for i in stride(from: width - 1, through: 0, by: -1) { v = v << 8 | UInt64(b[i]) }
        return v
    }

    private mutating func length(_ width: Int) throws(PickleError) -> Int {
        let v = try uint(width)
        guard v <= UInt64(bytes.count - position) else {
            throw .malformed("a length of \(v) at \(position) runs past the end of the pickle")
        }
        return Int(v)
    }

    private mutating func line() throws(PickleError) -> String {
        var end = position
        while end < bytes.count, bytes[end] != 0x0A { end += 1 }
        guard end < bytes.count else { throw .malformed("unterminated text argument at \(position)") }
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<end]), as: UTF8.self)
        position = end + 1
        return s
    }

    private mutating func utf8(_ n: Int) throws(PickleError) -> String {
        String(decoding: try take(n), as: UTF8.self)
    }

    // MARK: Stack

    private mutating func push(_ v: PickleValue) throws(PickleError) {
        guard stack.count < limits.stack else { throw .limit("more than \(limits.stack) values on the pickle stack") }
        stack.append(v)
    }

    private mutating func pop() throws(PickleError) -> PickleValue {
        guard let v = stack.popLast(), stack.count >= (marks.last ?? 0) else { throw .malformed("stack underflow at \(position)") }
        return v
    }

    private mutating func popMark() throws(PickleError) -> [PickleValue] {
        guard let m = marks.popLast() else { throw .malformed("no MARK for the opcode at \(position - 1)") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    private mutating func tuple(_ items: [PickleValue]) -> PickleValue {
        let t = PickleTuple(items)
        containers.append(t)
        return .tuple(t)
    }

    private mutating func newDict() -> PickleDict {
        let d = PickleDict()
        containers.append(d)
        return d
    }

    private mutating func memoize(_ index: Int) throws(PickleError) {
        guard let top = stack.last else { throw .malformed("memo store with an empty stack") }
        guard memo[index] != nil || memo.count < limits.memo else { throw .limit("more than \(limits.memo) memo entries") }
        memo[index] = top
    }

    private mutating func recall(_ index: Int) throws(PickleError) {
        guard let v = memo[index] else { throw .malformed("memo reference \(index) was never stored") }
        try push(v)
    }

    private func dictKey(_ v: PickleValue) throws(PickleError) -> PickleDict.Key {
        switch v {
        case .string(let s): return .string(s)
        case .int(let i): return .int(i)
        default: throw .refused("dict key of type \(v.kind); only str and int keys are supported")
        }
    }

    private mutating func setItems(_ pairs: [PickleValue]) throws(PickleError) {
        guard pairs.count % 2 == 0 else { throw .malformed("SETITEMS with an odd number of values") }
        guard case .dict(let d) = try pop() else { throw .refused("SETITEM(S) on something that is not a dict") }
        for i in stride(from: 0, to: pairs.count, by: 2) { d.set(try dictKey(pairs[i]), pairs[i + 1]) }
        try push(.dict(d))
    }

    private func int64(littleEndian b: UnsafeRawBufferPointer) throws(PickleError) -> Int {
        if b.isEmpty { return 0 }
        guard b.count <= 8 else { throw .refused("integer of \(b.count) bytes does not fit 64 bits") }
        var v: UInt64 = 0
        for i in stride(from: b.count - 1, through: 0, by: -1) { v = v << 8 | UInt64(b[i]) }
        if b.count < 8, b[b.count - 1] & 0x80 != 0 { v |= ~0 << (8 * UInt64(b.count)) }  // sign-extend
        return Int(Int64(bitPattern: v))
    }

    // MARK: Opcodes

    private mutating func step(_ op: UInt8) throws(PickleError) {
        switch op {
        case 0x80: // PROTO
            let v = try byte()
            guard v <= 5 else { throw .malformed("pickle protocol \(v) is newer than 5") }
        case 0x95: _ = try take(8) // FRAME: framing only
        case 0x28: // MARK
            guard marks.count < limits.marks else { throw .limit("more than \(limits.marks) nested MARKs") }
            marks.append(stack.count)
        case 0x30: _ = try pop() // POP
        case 0x31: _ = try popMark() // POP_MARK
        case 0x32: // DUP
            guard let top = stack.last else { throw .malformed("DUP with an empty stack") }
            try push(top)

        case 0x4E: try push(.none) // NONE
        case 0x88: try push(.bool(true)) // NEWTRUE
        case 0x89: try push(.bool(false)) // NEWFALSE
        case 0x4A: try push(.int(Int(Int32(bitPattern: UInt32(try uint(4)))))) // BININT
        case 0x4B: try push(.int(Int(try uint(1)))) // BININT1
        case 0x4D: try push(.int(Int(try uint(2)))) // BININT2
        case 0x8A: let n = try length(1); try push(.int(try int64(littleEndian: try take(n)))) // LONG1
        case 0x8B: let n = try length(4); try push(.int(try int64(littleEndian: try take(n)))) // LONG4
        case 0x49: // INT (text; "01"/"00" are True/False in protocol 0)
            let s = try line()
            if s == "01" { try push(.bool(true)) } else if s == "00" { try push(.bool(false)) }
            else if let i = Int(s) { try push(.int(i)) } else { throw .malformed("INT argument '\(s)' is not an integer") }
        case 0x4C: // LONG (text, trailing L)
            let s = try line()
            guard let i = Int(s.hasSuffix("L") ? String(s.dropLast()) : s) else { throw .refused("LONG '\(s)' does not fit 64 bits") }
            try push(.int(i))
        case 0x47: try push(.float(Double(bitPattern: try uint(8).byteSwapped))) // BINFLOAT (big-endian)
        case 0x46: // FLOAT (text)
            let s = try line()
            guard let d = Double(s) else { throw .malformed("FLOAT argument '\(s)' is not a number") }
            try push(.float(d))

        case 0x58: let n = try length(4); try push(.string(try utf8(n))) // BINUNICODE
        case 0x8C: let n = try length(1); try push(.string(try utf8(n))) // SHORT_BINUNICODE
        case 0x8D: let n = try length(8); try push(.string(try utf8(n))) // BINUNICODE8
        case 0x54: let n = try length(4); try push(.string(String(decoding: try take(n), as: Unicode.ASCII.self))) // BINSTRING
        case 0x55: let n = try length(1); try push(.string(String(decoding: try take(n), as: Unicode.ASCII.self))) // SHORT_BINSTRING
        case 0x42: let n = try length(4); try push(.bytes(Array(try take(n)))) // BINBYTES
        case 0x43: let n = try length(1); try push(.bytes(Array(try take(n)))) // SHORT_BINBYTES
        case 0x8E: let n = try length(8); try push(.bytes(Array(try take(n)))) // BINBYTES8

        case 0x29: try push(tuple([])) // EMPTY_TUPLE
        case 0x74: let items = try popMark(); try push(tuple(items)) // TUPLE
        case 0x85: let a = try pop(); try push(tuple([a])) // TUPLE1
        case 0x86: let b = try pop(), a = try pop(); try push(tuple([a, b])) // TUPLE2
        case 0x87: let c = try pop(), b = try pop(), a = try pop(); try push(tuple([a, b, c])) // TUPLE3
        case 0x5D: // EMPTY_LIST
            let l = PickleList()
            containers.append(l)
            try push(.list(l))
        case 0x6C: // LIST
            let items = try popMark()
            let l = PickleList()
            l.items = items
            containers.append(l)
            try push(.list(l))
        case 0x61: // APPEND
            let v = try pop()
            guard case .list(let l)? = stack.last else { throw .refused("APPEND to something that is not a list") }
            l.items.append(v)
        case 0x65: // APPENDS
            let items = try popMark()
            guard case .list(let l)? = stack.last else { throw .refused("APPENDS to something that is not a list") }
            l.items.append(contentsOf: items)
        case 0x7D: try push(.dict(newDict())) // EMPTY_DICT
        case 0x64: // DICT
            let items = try popMark()
            try push(.dict(newDict()))
            try setItems(items)
        case 0x73: // SETITEM
            let v = try pop(), k = try pop()
            try setItems([k, v])
        case 0x75: try setItems(try popMark()) // SETITEMS

        case 0x70: // PUT (text)
            let s = try line()
            guard let i = Int(s), i >= 0 else { throw .malformed("PUT argument '\(s)'") }
            try memoize(i)
        case 0x71: try memoize(Int(try uint(1))) // BINPUT
        case 0x72: try memoize(Int(try uint(4))) // LONG_BINPUT
        case 0x94: try memoize(memo.count) // MEMOIZE
        case 0x67: // GET (text)
            let s = try line()
            guard let i = Int(s) else { throw .malformed("GET argument '\(s)'") }
            try recall(i)
        case 0x68: try recall(Int(try uint(1))) // BINGET
        case 0x6A: try recall(Int(try uint(4))) // LONG_BINGET

        case 0x63: // GLOBAL "module\nname\n"
            let module = try line(), name = try line()
            try push(.global(try AllowedGlobal.resolve(module: module, name: name)))
        case 0x93: // STACK_GLOBAL
            guard case .string(let name) = try pop(), case .string(let module) = try pop() else {
                throw .malformed("STACK_GLOBAL needs two strings")
            }
            try push(.global(try AllowedGlobal.resolve(module: module, name: name)))
        case 0x52: // REDUCE
            let args = try pop(), callable = try pop()
            guard case .global(let g) = callable else { throw .refused("REDUCE calls a \(callable.kind), not an allowed function") }
            guard case .tuple(let t) = args else { throw .malformed("REDUCE arguments are a \(args.kind), not a tuple") }
            try push(try call(g, t.items))
        case 0x62: // BUILD: only an OrderedDict's attribute state (its _metadata), kept and ignored
            let state = try pop()
            guard case .dict(let d)? = stack.last else {
                throw .refused("BUILD on a \(stack.last?.kind ?? "nothing"); only dict state is accepted")
            }
            d.state = state
        case 0x51: // BINPERSID
            try push(.storage(try persistent(try pop())))

        case 0x69: // INST "module\nname\n": name the global in the refusal
            let module = try line(), name = try line()
            _ = try AllowedGlobal.resolve(module: module, name: name)
            throw .refused("INST \(module).\(name): creating objects is not allowed")
        default:
            let names: [UInt8: String] = [
                0x81: "NEWOBJ", 0x92: "NEWOBJ_EX", 0x6F: "OBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
                0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x96: "BYTEARRAY8",
                0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER", 0x50: "PERSID", 0x53: "STRING", 0x56: "UNICODE",
            ]
            if let n = names[op] { throw .refused("opcode \(n) at \(position - 1) is not allowed in a checkpoint") }
            throw .malformed("unknown opcode 0x\(String(op, radix: 16)) at \(position - 1)")
        }
    }

    // MARK: Allowed calls

    private mutating func call(_ g: AllowedGlobal, _ a: [PickleValue]) throws(PickleError) -> PickleValue {
        switch g {
        case .orderedDict:
            let d = newDict()
            if a.count == 1, case .list(let pairs) = a[0] {
                for p in pairs.items {
                    guard case .tuple(let kv) = p, kv.items.count == 2 else { throw .malformed("OrderedDict items must be pairs") }
                    d.set(try dictKey(kv.items[0]), kv.items[1])
                }
            } else if !a.isEmpty {
                throw .malformed("OrderedDict called with \(a.count) arguments")
            }
            return .dict(d)
        case .rebuildTensorV2:
            guard a.count == 6 || a.count == 7, case .storage(let s) = a[0] else {
                throw .malformed("_rebuild_tensor_v2 needs (storage, offset, size, stride, requires_grad, hooks[, metadata])")
            }
            guard let type = s.type else { throw .malformed("_rebuild_tensor_v2 on an untyped storage") }
            return .tensor(try tensor(s, type, a))
        case .rebuildTensorV3:
            guard a.count == 7 || a.count == 8, case .storage(let s) = a[0], case .global(.dtype(let type, _)) = a[6] else {
                throw .malformed("_rebuild_tensor_v3 needs (storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])")
            }
            return .tensor(try tensor(s, type, a))
        case .rebuildParameter, .rebuildParameterWithState:
            guard a.count == (g == .rebuildParameter ? 3 : 4), case .tensor = a[0] else {
                throw .malformed("\(g.name) needs a tensor and \(g == .rebuildParameter ? 2 : 3) more arguments")
            }
            return a[0]
        case .typedStorage, .untypedStorage, .dtype:
            throw .refused("calling \(g.name) is not allowed; storages come only from persistent ids")
        }
    }

    private func ints(_ v: PickleValue, _ what: String) throws(PickleError) -> [Int] {
        guard case .tuple(let t) = v else { throw .malformed("tensor \(what) is a \(v.kind), not a tuple") }
        guard t.items.count <= Self.maxRank else { throw .limit("tensor of rank \(t.items.count)") }
        var out: [Int] = []
        for item in t.items {
            guard case .int(let i) = item, i >= 0 else { throw .malformed("tensor \(what) holds \(item.kind == "int" ? "a negative int" : item.kind)") }
            out.append(i)
        }
        return out
    }

    /// Checks a view against its storage: every element it reaches lies inside.
    private func tensor(_ s: TorchStorageRef, _ type: StoredType, _ a: [PickleValue]) throws(PickleError) -> TorchTensorRef {
        guard case .int(let offset) = a[1], offset >= 0 else { throw .malformed("tensor storage offset is not a non-negative int") }
        let shape = try ints(a[2], "size"), strides = try ints(a[3], "stride")
        guard shape.count == strides.count else { throw .malformed("tensor size \(shape) and stride \(strides) differ in rank") }
        guard let count = CheckedSize.product(shape), !count.multipliedReportingOverflow(by: 8).overflow else {
            throw .limit("tensor of shape \(shape)")
        }
        guard let storageBytes = s.byteCount else { throw .limit("storage '\(s.key)' of \(s.count) elements") }
        let capacity = storageBytes / type.size
        if count > 0 {
            guard let last = CheckedSize.lastIndex(offset: offset, dims: shape, strides: strides), last < capacity else {
                throw .malformed("tensor \(shape) with strides \(strides) at offset \(offset) reaches past its storage "
                    + "'\(s.key)' of \(capacity) elements")
            }
        }
        return TorchTensorRef(storage: s, type: type, offset: offset, shape: shape, strides: strides)
    }

    /// `('storage', StorageType, key, location, numel)`.
    private func persistent(_ pid: PickleValue) throws(PickleError) -> TorchStorageRef {
        guard case .tuple(let t) = pid, t.items.count == 5, case .string("storage") = t.items[0] else {
            throw .refused("persistent id \(pid.kind) is not a torch storage reference")
        }
        guard case .string(let key) = t.items[2], case .int(let count) = t.items[4], count >= 0 else {
            throw .malformed("storage reference needs a string key and a non-negative size")
        }
        switch t.items[1] {
        case .global(.typedStorage(let type, _)): return TorchStorageRef(key: key, type: type, count: count)
        case .global(.untypedStorage): return TorchStorageRef(key: key, type: nil, count: count)
        default: throw .malformed("storage '\(key)' has type \(t.items[1].kind), not a torch storage class")
        }
    }
}
