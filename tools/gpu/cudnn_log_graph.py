"""Summarizes the first operation graph in a cuDNN API log: one line per operation, in the order the
operations were finalized, with each tensor's uid, data type, dims, strides and whether it is virtual or
passed by value. Used to read the graph cudnn-frontend hands the backend (e.g. its FP8 SDPA), so that
Reel can build the same one through the backend API.

    CUDNN_LOGLEVEL_DBG=3 CUDNN_LOGDEST_DBG=/tmp/cudnn.log python3 tools/gpu/fp8_probe.py fp8-graph
    python3 tools/gpu/cudnn_log_graph.py /tmp/cudnn.log
"""
import re
import sys

FIELD = re.compile(r"^[iI]!\s+(\w+): type=([^;]+?)(?:; val=(.*?);?)?$")


def blocks(lines):
    """Yields the indented field lines of each successful cudnnBackendFinalize call's descriptor."""
    i = 0
    while i < len(lines):
        if "function cudnnBackendFinalize() called" in lines[i]:
            j = i + 1
            body = []
            while j < len(lines) and lines[j].startswith(("i!", "I!")) and "Time:" not in lines[j]:
                body.append(lines[j])
                j += 1
            yield body
            i = j
        else:
            i += 1


def tensor_summary(fields):
    dt = fields.get("type", "?").replace("CUDNN_DATA_", "").split(" ")[0]
    flags = ("virtual " if fields.get("isVirtual") == "true" else "") + ("by-value " if fields.get("isByVal") == "true" else "")
    return f"#{fields.get('uid')} {dt} {fields.get('dimA')} strides {fields.get('strideA')} {flags}".strip()


def parse(body):
    """(descriptor type, [(role, summary or value)]) for one finalized descriptor."""
    head = re.search(r"type=(CUDNN_BACKEND_\w+)", body[0]) if body else None
    if not head:
        return None, []
    items, tensor, role = [], None, None
    for line in body[1:]:
        depth = (len(line) - len(line[2:].lstrip())) - 2
        m = FIELD.match(re.sub(r"^([iI]!)\s+", r"\1 ", line))
        if not m:
            continue
        name, typ, val = m.group(1), m.group(2), m.group(3)
        if typ.startswith("CUDNN_BACKEND_TENSOR_DESCRIPTOR"):
            if tensor is not None:
                items.append((role, tensor_summary(tensor)))
            tensor, role = {}, name
        elif tensor is not None and depth >= 12:
            tensor[name] = (val or "").split(" ")[0]
        else:
            if tensor is not None:
                items.append((role, tensor_summary(tensor)))
                tensor = None
            if val is not None:
                items.append((name, val))
    if tensor is not None:
        items.append((role, tensor_summary(tensor)))
    return head.group(1), items


def main(path):
    lines = open(path, errors="replace").read().splitlines()
    n = 0
    for body in blocks(lines):
        kind, items = parse(body)
        if kind is None:
            continue
        if kind == "CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR":
            print(f"operation graph of {n} operations")
            return
        if not kind.startswith("CUDNN_BACKEND_OPERATION_"):
            continue
        n += 1
        print(f"{n:2d}. {kind.replace('CUDNN_BACKEND_OPERATION_', '').replace('_DESCRIPTOR', '')}")
        for role, value in items:
            print(f"      {role}: {value}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/cudnn.log")
