#!/usr/bin/env python3
"""A soak of `reel serve` on loopback (Python's standard library only).

Starts `reel serve` (the tiny model on the CPU unless told otherwise), then for --minutes runs, from a seeded
random generator:

- session clients (--clients of them at once) that start WebSocket sessions with prompts and steer them (prompt
  switches, pause, resume, stop, a second start on the same socket, image inputs), then end them every way a
  client does: wait for the end, stop, close the socket abruptly, close it in the middle of a frame they were
  writing; and HTTP sessions (POST, polls, DELETE or left to be reclaimed);
- a fuzzer (--fuzzers of them) sending malformed WebSocket frames (bad opcodes, unmasked frames, reserved bits,
  huge lengths, fragmented or oversized control frames, invalid UTF-8, bad JSON, wrong fields, garbage and
  oversized binary frames) and malformed HTTP (bad methods and request lines, huge headers and bodies, lying
  lengths and chunks, bad multipart, bad paths, bad upgrades, wrong keys, other protocols' bytes), each counted by
  the status it was answered with (every malformed request must be answered, unless the fault itself prevents it);
- a monitor sampling the server's RSS (/proc/PID/status), threads, open files and /metrics.

At the end it closes every client, waits for the server to hold no session, checks that every session it saw
created is accounted for in /metrics (created = ended + active + queued = removed + held, failures by cause,
refusals) and that the server never stopped answering, and writes a JSON report and a summary. Exit status 0 when
every check passed.

    deploy/soak.py --reel .build/release/reel --minutes 30 --seed 1 --report soak-report.json
"""
import argparse, base64, faulthandler, json, os, random, re, signal, socket, struct, subprocess, sys, tempfile
import threading, time, zlib

# Error codes that answer a start instead of a session.
START_REFUSALS = ("too_many_sessions", "rate_limited", "shutting_down", "message_too_large")

PROMPTS = ["a red ball rolling on grass", "a blue square drifting left", "waves at sunset", "a green circle",
           "snow falling on a dark street", "a yellow triangle spinning", "clouds over hills", "a small boat"]


# --- The WebSocket protocol, by hand (RFC 6455), so that it can be broken on purpose ---

def frame(opcode, payload, fin=True, mask=True, rsv=0, length=None):
    """One frame; `length` overrides the length field (a lie) and `mask=False` sends it unmasked."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def text_frame(obj):
    return frame(1, obj if isinstance(obj, bytes) else json.dumps(obj).encode())


class Closed(Exception):
    pass


class WebSocket:
    """A client socket to /v1/ws: raw frames out, whole messages in."""

    def __init__(self, port, key=None, timeout=60):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        nonce = base64.b64encode(os.urandom(16)).decode()
        path = "/v1/ws" + (f"?key={key}" if key else "")
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise Closed("closed during the upgrade")
            head += chunk
        self.status = head.split(b"\r\n")[0].decode(errors="replace")
        if " 101 " not in self.status + " ":
            self.sock.close()
            raise Closed("upgrade refused: " + self.status)
        self.buffer = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        self.sock.sendall(text_frame(obj))

    def _exact(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buffer)))
            if not chunk:
                raise Closed("the server closed the socket")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def recv(self, deadline=None):
        """(opcode, payload) of the next frame other than a ping, which is answered (the server sends whole
        messages, unfragmented, and closes a socket whose pings go unanswered)."""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            opcode, payload = b0 & 0x0F, self._exact(n)
            if opcode != 9:
                return opcode, payload
            self.sock.sendall(frame(10, payload))
            if deadline and time.time() > deadline:
                raise TimeoutError("only pings came")

    def close(self, clean=True):
        try:
            if clean:
                self.sock.sendall(frame(8, struct.pack(">H", 1000)))
        except OSError:
            pass
        self.sock.close()


def http(port, method, path, body=None, headers=None, key=None, timeout=30):
    """(status, parsed JSON or raw bytes) over a fresh connection; status 0 when the connection failed."""
    headers = dict(headers or {})
    if key:
        headers.setdefault("Authorization", f"Bearer {key}")
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
        headers["Content-Length"] = str(len(body))
    request = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    request += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return raw_http(port, request.encode() + (body or b""), timeout=timeout)


def raw_http(port, data, timeout=30, read=True):
    """(status, parsed JSON or raw bytes) of what the server answered `data` with; status 0 when it answered nothing.
    The answer counts even when the connection then timed out (a keep-alive connection after a well-formed request)
    or was reset, and when the server answered before it had read all of `data` (an early 413 or 431)."""
    response = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            try:
                s.sendall(data)
            except OSError:
                pass   # the server may answer, then close, before it has read everything
            if not read:
                return 0, b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                response += chunk
    except OSError:
        if not response:
            return 0, b""
    match = re.match(rb"HTTP/1\.[01] (\d{3})", response)
    if not match:
        return 0, response
    body = response.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in response else b""
    if b"transfer-encoding: chunked" in response.split(b"\r\n\r\n", 1)[0].lower():
        body = dechunk(body)
    try:
        return int(match.group(1)), json.loads(body)
    except ValueError:
        return int(match.group(1)), body


def dechunk(body):
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return out
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


def png(width, height, seed):
    """A solid-colour RGB PNG (zlib and struct only)."""
    rng = random.Random(seed)
    pixel = bytes(rng.randrange(256) for _ in range(3))
    raw = b"".join(b"\x00" + pixel * width for _ in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# --- What the soak saw ---

class Ledger:
    """Counts and per-session records, shared by every thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.sessions = {}   # id -> record
        self.findings = []   # anything that looks like a server bug

    def add(self, name, n=1):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def session(self, sid, **fields):
        with self.lock:
            record = self.sessions.setdefault(sid, {"id": sid, "states": [], "errors": [], "frames": 0})
            for k, v in fields.items():
                if k == "state":
                    record["states"].append(v)
                elif k == "error":
                    record["errors"].append(v)
                elif k == "frames":
                    record["frames"] += v
                else:
                    record[k] = v

    def finding(self, text):
        with self.lock:
            self.findings.append({"t": round(time.time(), 1), "what": text})
        print("FINDING:", text, flush=True)


# --- Session clients ---

class SessionClient:
    def __init__(self, soak, index):
        self.soak, self.rng, self.ledger = soak, random.Random(soak.args.seed * 1000 + index), soak.ledger
        self.index = index

    def run(self):
        scenarios = [(self.websocket, 6), (self.image_session, 1), (self.http_session, 2)]
        while not self.soak.stopping.is_set():
            scenario = self.rng.choices([s for s, _ in scenarios], [w for _, w in scenarios])[0]
            try:
                scenario()
            except (OSError, Closed) as error:
                self.ledger.add("client_connection_errors")
                if not self.soak.server_alive():
                    return
                self.ledger.add(f"client_error:{scenario.__name__}:{type(error).__name__}:{error}")

    def messages_until(self, ws, sid, done, timeout=60):
        """Reads until `done(message)` (a JSON message) is true; counts frames; returns the last message."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            opcode, payload = ws.recv(deadline)
            self.ledger.add("messages_received")
            if opcode == 2:
                self.ledger.add("frames_received")
                if sid[0]:
                    self.ledger.session(sid[0], frames=1)
                if done(None):
                    return None
                continue
            if opcode == 8:
                states = self.ledger.sessions.get(sid[0], {}).get("states")
                raise Closed(f"close frame {payload[:2].hex()} {payload[2:60]!r} after {states}")
            if opcode != 1:
                continue
            message = json.loads(payload)
            kind = message.get("type")
            if kind == "session":
                sid[0] = message["id"]
                self.ledger.add("sessions_created_ws")
                self.ledger.session(sid[0], kind="ws", created=round(time.time(), 1), state=message["state"])
            elif kind == "state" and sid[0]:
                self.ledger.session(sid[0], state=message["state"])
            elif kind == "error":
                self.ledger.add(f"error:{message.get('code')}")
                if sid[0]:
                    self.ledger.session(sid[0], error=message.get("code"))
            if done(message):
                return message
        raise TimeoutError("no expected message within %s s" % timeout)

    def ended(self, sid):
        """Whether the session has ended (its end may have come while it was steered) or was reclaimed."""
        record = self.ledger.sessions.get(sid[0], {})
        return (record.get("states", [])[-1:] in (["finished"], ["failed"])
                or "session_reclaimed" in record.get("errors", []))

    def wait_end(self, ws, sid, timeout):
        if not self.ended(sid):
            self.messages_until(ws, sid, lambda m: m is not None and (
                m.get("type") == "state" and m.get("state") in ("finished", "failed")
                or m.get("type") == "error" and m.get("code") == "session_reclaimed"), timeout)

    def start(self, ws, sid, options=None):
        options = options or {}
        rng = self.rng
        size = rng.choice([64, 64, 64, 128])
        options.setdefault("width", size)
        options.setdefault("height", size)
        options.setdefault("seconds", rng.choice([1, 2, 4, None]))
        options.setdefault("record", rng.random() < 0.3)
        ws.send({"type": "start", "prompt": rng.choice(PROMPTS), "seed": rng.randrange(1 << 31), "options": options})
        self.ledger.add("messages_sent")
        self.ledger.add("sessions_requested")
        # Errors for messages sent before (steering) may still be on their way: only a refusal answers a start.
        return self.messages_until(ws, sid, lambda m: m is not None and (
            m.get("type") == "session" or m.get("type") == "error" and m.get("code") in START_REFUSALS), 60)

    def websocket(self):
        rng, ledger = self.rng, self.ledger
        ws = WebSocket(self.soak.port, self.soak.key)
        ledger.add("websockets_opened")
        sid = [None]
        try:
            first = self.start(ws, sid)
            if first.get("type") == "error":
                ledger.add("start_refused")
                ws.close()
                return
            ending = rng.choices(["wait", "stop", "abrupt", "midframe", "restart", "reconnect", "stall", "paused"],
                                 [3, 2, 2, 2, 1, 1, 1, 1])[0]
            if ending == "wait" and first.get("seconds") is None:
                ending = "stop"   # it would run until stopped
            ledger.session(sid[0], ending=ending)
            for _ in range(rng.randrange(0, 4)):
                self.steer(ws, sid)
            if ending == "wait":
                self.wait_end(ws, sid, 120)
                ws.close()
            elif ending == "stop":
                ws.send({"type": "stop"})
                ledger.add("messages_sent")
                self.wait_end(ws, sid, 60)
                ws.close()
            elif ending == "abrupt":
                self.read_some(ws, sid)
                ws.close(clean=False)
            elif ending == "midframe":
                self.read_some(ws, sid)
                whole = text_frame({"type": "prompt", "prompt": "never finished " * 20})
                ws.send_raw(whole[:rng.randrange(1, len(whole) - 1)])
                ledger.add("frames_cut_mid")
                ws.close(clean=False)
            elif ending == "restart":
                self.read_some(ws, sid)
                old = sid[0]
                sid[0] = None
                second = self.start(ws, sid)
                if second.get("type") == "session":
                    ledger.session(old, replaced=True)
                    ledger.session(sid[0], ending="stop")
                    self.read_some(ws, sid)
                    ws.send({"type": "stop"})
                    self.wait_end(ws, sid, 60)
                ws.close()
            elif ending == "stall":
                # A client that stops reading: the server must not hold its slot (or memory) for ever.
                time.sleep(rng.uniform(5, 45))
                ws.close(clean=False)
            elif ending == "paused":
                # Paused and left: reclaimed after the idle timeout, and told so.
                ws.send({"type": "pause"})
                ledger.add("messages_sent")
                self.wait_end(ws, sid, self.soak.args.idle_timeout + 30)
                ws.close()
            elif ending == "reconnect":
                self.read_some(ws, sid)
                ws.close(clean=False)
                ledger.add("reconnects")
                ws = WebSocket(self.soak.port, self.soak.key)
                ledger.add("websockets_opened")
                sid = [None]
                again = self.start(ws, sid)
                if again.get("type") == "session":
                    ledger.session(sid[0], ending="stop")
                    self.read_some(ws, sid)
                    ws.send({"type": "stop"})
                    self.wait_end(ws, sid, 60)
                ws.close()
        except TimeoutError as error:
            record = ledger.sessions.get(sid[0], {})
            ledger.finding(f"session {sid[0]} ({record.get('ending')}, states {record.get('states')}, "
                           f"errors {record.get('errors')}): {error}")
            ws.close(clean=False)

    def read_some(self, ws, sid):
        """Reads until a few frames came or the session ended."""
        want = self.rng.randrange(1, 30)
        seen = [0]

        def done(m):
            if m is None:
                seen[0] += 1
                return seen[0] >= want
            return self.ended(sid)
        if not self.ended(sid):
            self.messages_until(ws, sid, done, 60)

    def steer(self, ws, sid):
        rng = self.rng
        self.read_some(ws, sid)
        action = rng.choice(["prompt", "prompt", "pause", "stop_then_more", "end", "bad"])
        if action == "prompt":
            ws.send({"type": "prompt", "prompt": rng.choice(PROMPTS)})
        elif action == "pause":
            ws.send({"type": "pause"})
            time.sleep(rng.uniform(0, 1.5))
            ws.send({"type": "resume"})
            self.ledger.add("messages_sent")
        elif action == "stop_then_more":
            ws.send({"type": "prompt", "prompt": rng.choice(PROMPTS)})
        elif action == "end":
            ws.send({"type": "end"})   # no input: answered no_input
        else:
            ws.send({"type": "prompt", "prompt": ""})   # answered bad_request
        self.ledger.add("messages_sent")
        self.ledger.add(f"steer:{action}")

    def image_session(self):
        """An image session: its first frame a PNG (or, sometimes, garbage that fails the input)."""
        rng, ledger = self.rng, self.ledger
        ws = WebSocket(self.soak.port, self.soak.key)
        ledger.add("websockets_opened")
        sid = [None]
        try:
            first = self.start(ws, sid, {"input": "image", "seconds": 1, "width": 64, "height": 64})
            if first.get("type") == "error":
                ledger.add("start_refused")
                ws.close()
                return
            bad = rng.random() < 0.3
            ledger.session(sid[0], ending="image-bad" if bad else "image")
            data = os.urandom(rng.randrange(1, 2000)) if bad else png(rng.choice([32, 80, 200]), 48, rng.random())
            ws.send_raw(frame(2, data))
            ledger.add("messages_sent")
            ledger.add("input_frames_sent")
            terminal = lambda m: m is not None and m.get("type") == "state" and m.get("state") in ("finished", "failed")
            self.messages_until(ws, sid, terminal, 120)
            ws.close()
        except TimeoutError as error:
            ledger.finding(f"image session {sid[0]}: {error}")
            ws.close(clean=False)

    def http_session(self):
        rng, ledger, port, key = self.rng, self.ledger, self.soak.port, self.soak.key
        body = json.dumps({"prompt": rng.choice(PROMPTS), "seed": rng.randrange(1000),
                           "options": {"width": 64, "height": 64, "seconds": rng.choice([0.5, 1]),
                                       "record": rng.random() < 0.5}}).encode()
        ledger.add("sessions_requested")
        status, answer = http(port, "POST", "/v1/sessions", body, key=key)
        ledger.add("http_requests")
        if status != 201:
            ledger.add(f"http_session_refused:{status}")
            if status == 429 and isinstance(answer, dict):
                ledger.add(f"error:{answer.get('error', {}).get('code')}")
            return
        sid = answer["id"]
        ledger.add("sessions_created_http")
        ledger.session(sid, kind="http", created=round(time.time(), 1), state=answer["state"])
        deadline = time.time() + 120
        state = answer["state"]
        while state not in ("finished", "failed") and time.time() < deadline and not self.soak.stopping.is_set():
            time.sleep(0.5)
            status, answer = http(port, "GET", f"/v1/sessions/{sid}", key=key)
            ledger.add("http_requests")
            if status != 200:
                break
            state = answer["state"]
        ledger.session(sid, state=state)
        if rng.random() < 0.5:
            status, _ = http(port, "GET", f"/v1/sessions/{sid}/video", key=key)
            ledger.add("http_requests")
        if rng.random() < 0.6 or self.soak.stopping.is_set():
            status, _ = http(port, "DELETE", f"/v1/sessions/{sid}", key=key)
            ledger.add("http_requests")
            ledger.session(sid, ending="deleted" if status == 204 else f"delete-{status}")
        else:
            ledger.session(sid, ending="left to be reclaimed")


# --- The fuzzer ---

class Fuzzer:
    """Malformed WebSocket frames and HTTP requests; each fault counted by its name."""

    def __init__(self, soak, index):
        self.soak, self.rng, self.ledger = soak, random.Random(soak.args.seed * 7919 + index), soak.ledger
        self.port, self.key = soak.port, soak.key

    def run(self):
        faults = [m for m in dir(self) if m.startswith("ws_") or m.startswith("http_")]
        while not self.soak.stopping.is_set():
            name = self.rng.choice(faults)
            self.ledger.add("faults_injected")
            self.ledger.add(f"fault:{name}")
            try:
                getattr(self, name)()
            except (OSError, Closed, ValueError):
                pass   # the server may close on us: that is an answer
            time.sleep(self.rng.uniform(0, self.soak.args.fuzz_pause))

    # WebSocket faults: each on a fresh socket, then a read of what the server does.

    def _ws(self, send, session=False, reads=3):
        ws = WebSocket(self.port, self.key, timeout=3)
        try:
            if session:
                ws.send({"type": "start", "prompt": "fuzzed", "options": {"width": 64, "height": 64, "seconds": 1,
                                                                          "input": "image"}})
            send(ws)
            for _ in range(reads):
                opcode, payload = ws.recv()
                if opcode == 1:
                    message = json.loads(payload)
                    if message.get("type") == "session":
                        self.ledger.add("sessions_created_fuzzer")
                        self.ledger.session(message["id"], kind="fuzzer", state=message["state"], ending="fuzzed")
                    elif message.get("type") == "error":
                        self.ledger.add(f"fuzz_error:{message.get('code')}")
                if opcode == 8:
                    self.ledger.add("fuzz_closed_by_server")
                    break
        except (socket.timeout, TimeoutError):
            self.ledger.add("fuzz_no_answer")
        finally:
            ws.close(clean=self.rng.random() < 0.5)

    def ws_bad_opcode(self):
        self._ws(lambda ws: ws.send_raw(frame(self.rng.choice([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]), b"xyz")))

    def ws_unmasked(self):
        self._ws(lambda ws: ws.send_raw(frame(1, b'{"type":"pause"}', mask=False)))

    def ws_reserved_bits(self):
        self._ws(lambda ws: ws.send_raw(frame(1, b'{"type":"pause"}', rsv=self.rng.randrange(1, 8))))

    def ws_huge_length(self):
        n = self.rng.choice([1 << 62, (1 << 63) - 1, 1 << 40, 1 << 31])
        self._ws(lambda ws: ws.send_raw(frame(2, b"\x00" * 16, length=n)))

    def ws_oversized_message(self):
        # Over the transport limit (twice the largest input frame): the socket is closed.
        self._ws(lambda ws: ws.send_raw(frame(2, os.urandom(1024) * (9 * 1024))))

    def ws_oversized_text(self):
        self._ws(lambda ws: ws.send({"type": "prompt", "prompt": "x" * self.rng.choice([17000, 60000])}))

    def ws_oversized_frame_input(self):
        self._ws(lambda ws: ws.send_raw(frame(2, b"\xff\xd8\xff" + b"\x00" * (4 * 1024 * 1024 + 10))), session=True)

    def ws_fragmented_control(self):
        self._ws(lambda ws: ws.send_raw(frame(9, b"ping", fin=False)))

    def ws_long_control(self):
        self._ws(lambda ws: ws.send_raw(frame(9, b"p" * 200)))

    def ws_orphan_continuation(self):
        self._ws(lambda ws: ws.send_raw(frame(0, b"more")))

    def ws_unfinished_fragments(self):
        def send(ws):
            ws.send_raw(frame(1, b'{"type":', fin=False))
            ws.send_raw(frame(1, b'"pause"}'))   # a new message before the first ended
        self._ws(send)

    def ws_invalid_utf8(self):
        self._ws(lambda ws: ws.send_raw(frame(1, b'{"type":"prompt","prompt":"\xff\xfe\xc3\x28"}')))

    def ws_bad_json(self):
        payload = self.rng.choice([b"{", b"[]", b"null", b"42", b'"start"', b'{"type":}', b"{'type':'start'}",
                                   b'{"type":"start"' + b"[" * 5000, b"\x00\x01", b"", b'{"type":["start"]}'])
        self._ws(lambda ws: ws.send_raw(frame(1, payload)))

    def ws_wrong_fields(self):
        bad = self.rng.choice([
            {"type": "start"}, {"type": "start", "prompt": 5}, {"type": "start", "prompt": "a", "seed": -1},
            {"type": "start", "prompt": "a", "seed": 1e300}, {"type": "start", "prompt": "a", "colour": "red"},
            {"type": "start", "prompt": "a", "options": {"width": 0}},
            {"type": "start", "prompt": "a", "options": {"width": 100000, "height": 100000}},
            {"type": "start", "prompt": "a", "options": {"width": 65, "height": 64}},
            {"type": "start", "prompt": "a", "options": {"seconds": -1}},
            {"type": "start", "prompt": "a", "options": {"fps": 0}}, {"type": "start", "prompt": "a", "options": []},
            {"type": "start", "prompt": "a", "options": {"input": "audio"}},
            {"type": "start", "prompt": "a", "options": {"noiseScale": 7}},
            {"type": "start", "prompt": "a", "options": {"steps": 99}},
            {"type": "start", "prompt": "   "}, {"type": "start", "prompt": "y" * 3000},
            {"type": "prompt", "prompt": "no session"}, {"type": "pause"}, {"type": "end"}, {"type": "stop"},
            {"type": "launch"}, {"type": None}, {"prompt": "no type"},
        ])
        self._ws(lambda ws: ws.send(bad))

    def ws_binary_without_session(self):
        self._ws(lambda ws: ws.send_raw(frame(2, os.urandom(self.rng.randrange(1, 5000)))))

    def ws_bad_input_frames(self):
        payload = self.rng.choice([
            b"\xff\xd8\xff\xe0" + os.urandom(500),   # a JPEG's signature, then noise
            b"\x89PNG\r\n\x1a\n" + os.urandom(300),   # a PNG's signature, then noise
            png(20000, 20000, 1)[:200],                # a PNG claiming 400 megapixels
            b"\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03" + os.urandom(64),   # a JPEG claiming 65535x65535
            b"GIF89a" + os.urandom(100)])
        self._ws(lambda ws: ws.send_raw(frame(2, payload)), session=True, reads=4)

    def ws_bad_close(self):
        self._ws(lambda ws: ws.send_raw(frame(8, self.rng.choice([b"\x03", b"\x00\x00", b"\x03\xe8\xff\xfe"]))))

    def ws_ping_flood(self):
        self._ws(lambda ws: ws.send_raw(b"".join(frame(9, b"p") for _ in range(500))), reads=1)

    def ws_message_flood(self):
        # Over the per-client control-message rate: answered rate_limited.
        self._ws(lambda ws: ws.send_raw(b"".join(text_frame({"type": "pause"}) for _ in range(200))), reads=20)

    def ws_slow_header(self):
        def send(ws):
            ws.send_raw(b"\x81")
            time.sleep(self.rng.uniform(0.5, 3))
        ws = WebSocket(self.port, self.key, timeout=10)
        send(ws)
        ws.close(clean=False)

    def ws_bad_upgrade(self):
        requests = [
            "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n",
            "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: !!\r\n"
            "Sec-WebSocket-Version: 99\r\n\r\n",
            "POST /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 3\r\n\r\nabc",
            "GET /v1/ws?key=wrong HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",   # a key of 5 bytes
            "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            "GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            "HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
        ]
        self._http_raw(self.rng.choice(requests).encode())

    # HTTP faults.

    def _http_raw(self, data, read=True):
        status, _ = raw_http(self.port, data, timeout=10, read=read)
        self.ledger.add(f"fuzz_http:{sys._getframe(1).f_code.co_name}:{status}")
        self.ledger.add("http_requests")

    def _req(self, method, path, body=None, headers=None, key=True):
        status, answer = http(self.port, method, path, body, headers, key=self.key if key else None, timeout=10)
        self.ledger.add(f"fuzz_http:{sys._getframe(1).f_code.co_name}:{status}")
        self.ledger.add("http_requests")
        if status == 201 and isinstance(answer, dict) and "id" in answer:
            self.ledger.add("sessions_created_fuzzer")
            self.ledger.session(answer["id"], kind="fuzzer-http", state=answer["state"], ending="fuzzed")
            http(self.port, "DELETE", f"/v1/sessions/{answer['id']}", key=self.key)
        return status

    def http_bad_method(self):
        self._req(self.rng.choice(["FOO", "PROPFIND", "TRACE", "CONNECT", "PATCH", "PUT"]),
                  self.rng.choice(["/", "/v1/sessions", "/metrics", "/v1/ws"]))

    def http_bad_request_line(self):
        self._http_raw(self.rng.choice([b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\x01\x02\r\n\r\n",
                                        b"GET /" + b"a" * 100 + b"\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
                                        b"GET / HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
                                        b"G" * 70000 + b" / HTTP/1.1\r\n\r\n", b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
                                        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"]))

    def http_not_http(self):
        # Bytes of other protocols: a TLS client hello, an HTTP/2 preface, SSH's banner, noise.
        self._http_raw(self.rng.choice([bytes.fromhex("16030100a5010000a10303") + os.urandom(160),
                                        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"SSH-2.0-OpenSSH_9.6\r\n",
                                        os.urandom(self.rng.randrange(1, 3000))]))

    def http_huge_header(self):
        size = self.rng.choice([20000, 100000, 1 << 20])
        self._http_raw(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'h' * size}\r\n\r\n".encode())

    def http_many_headers(self):
        lines = "".join(f"X-H{i}: {i}\r\n" for i in range(self.rng.choice([200, 5000])))
        self._http_raw(f"GET /healthz HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode())

    def http_huge_body(self):
        self._req("POST", "/v1/sessions", b'{"prompt": "' + b"z" * self.rng.choice([20000, 2 << 20]) + b'"}')

    def http_lying_length(self):
        head = (f"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {self.rng.choice([10 ** 12, 500, -5])}\r\n\r\n")
        self._http_raw(head.encode() + b'{"prompt": "a"}', read=self.rng.random() < 0.5)

    def http_bad_chunked(self):
        head = (f"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        body = self.rng.choice([b"zz\r\nabc\r\n0\r\n\r\n", b"5\r\nabc\r\n0\r\n\r\n"])
        self._http_raw(head.encode() + body)

    def http_lying_chunk(self):
        # A chunk of 281 TB that never comes: the server waits for it (until the idle timeout).
        head = (f"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        self._http_raw(head.encode() + b"ffffffffffff\r\nabc")

    def http_bad_json(self):
        self._req("POST", "/v1/sessions", self.rng.choice([b"{", b"[]", b"null", b'{"prompt": 1}', b"\xff\xfe",
                                                           b'{"prompt": "a", "options": {"width": "wide"}}',
                                                           b'{"prompt": "a", "extra": 1}']))

    def http_bad_multipart(self):
        rng = self.rng
        boundary = "soakboundary"
        parts = rng.choice([
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"request\"\r\n\r\n{{\"prompt\": \"a\"}}\r\n",
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"input\"; filename=\"x.png\"\r\n\r\n"
            + "garbage" * 100 + f"\r\n--{boundary}--\r\n",
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"request\"\r\n\r\n{{\"prompt\": \"a\"}}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"input\"; filename=\"x.mp4\"\r\n\r\n"
            + "notavideo" * 50 + f"\r\n--{boundary}--\r\n",
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--{boundary}--\r\n",
            "no boundary at all",
        ])
        ctype = rng.choice([f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                            "multipart/form-data; boundary="])
        self._req("POST", "/v1/sessions", parts.encode(), {"Content-Type": ctype})

    def http_bad_paths(self):
        path = self.rng.choice(["/../../etc/passwd", "/v1/sessions/%00", "/v1/sessions/" + "a" * 20000,
                                "/v1/sessions/nope/video", "/%ff%fe", "/v1/sessions?x=" + "%" * 100, "//", "/v1//",
                                "/v1/sessions/../../metrics", "/app.js/..%2f..%2f"])
        self._req(self.rng.choice(["GET", "DELETE"]), path)

    def http_wrong_key(self):
        wrong = self.rng.choice(["Bearer nope", "Basic abc", "Bearer"])
        self._req("GET", "/v1/sessions", headers={"Authorization": wrong}, key=False)

    def http_half_request(self):
        self._http_raw(b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Len", read=False)


# --- The soak ---

class Soak:
    def __init__(self, args):
        self.args = args
        self.ledger = Ledger()
        self.stopping = threading.Event()
        self.samples = []
        self.key = args.key or base64.b16encode(os.urandom(16)).decode().lower()
        self.server = None

    def start_server(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.log = open(self.args.log, "w")
        keyfile = tempfile.NamedTemporaryFile("w", delete=False, prefix="reel-soak-key-")
        keyfile.write(self.key)
        keyfile.close()
        self.command = [self.args.reel, "serve", "--port", str(self.port), "--api-key-file", keyfile.name,
                        "--model", self.args.model, "--threads", str(self.args.threads),
                        "--max-sessions", str(self.args.max_sessions), "--max-queued", str(self.args.max_queued),
                        "--idle-timeout", str(self.args.idle_timeout), "--inject-oom-every", str(self.args.oom_every)]
        self.server = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.server.poll() is not None:
                sys.exit(f"reel serve exited with {self.server.returncode} (log: {self.args.log})")
            if http(self.port, "GET", "/healthz", timeout=2)[0] == 200:
                return
            time.sleep(0.5)
        sys.exit("reel serve did not answer /healthz within 5 minutes")

    def server_alive(self):
        return self.server.poll() is None

    def metrics(self):
        status, body = http(self.port, "GET", "/metrics", key=self.key, timeout=10)
        if status != 200:
            return None
        values = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def process(self):
        pid = self.server.pid
        fields = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    fields[key] = int(value.split()[0])
        fields["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        return fields

    def sample(self, t0):
        try:
            proc = self.process()
        except OSError:
            return None
        t = time.time()
        status, _ = http(self.port, "GET", "/healthz", timeout=10)
        answered = time.time() - t
        m = self.metrics() or {}
        sample = {"t": round(time.time() - t0, 1), "rss_kib": proc["VmRSS"], "hwm_kib": proc["VmHWM"],
                  "threads": proc["Threads"], "fds": proc["fds"], "healthz": status, "healthz_s": round(answered, 3),
                  "sessions": m.get("reel_sessions"), "active": m.get("reel_sessions_active"),
                  "queued": m.get("reel_sessions_queued"), "websockets": m.get("reel_websockets_open"),
                  "created": m.get("reel_sessions_created_total"), "blocks": m.get("reel_blocks_generated_total"),
                  "heap_in_use_kib": kib(m.get("reel_heap_in_use_bytes")), "heap_free_kib": kib(m.get("reel_heap_free_bytes"))}
        self.samples.append(sample)
        if status != 200:
            self.ledger.finding(f"/healthz answered {status} at t={sample['t']} s")
        return sample

    def monitor(self, t0):
        while not self.stopping.wait(self.args.sample_every):
            s = self.sample(t0)
            if s is None:
                self.ledger.finding("the server process is gone")
                return
            heap = (f"heap {s['heap_in_use_kib'] / 1024:6.1f} in use {s['heap_free_kib'] / 1024:6.1f} free  "
                    if s["heap_in_use_kib"] is not None else "")
            print(f"[{s['t']:7.0f} s] rss {s['rss_kib'] / 1024:6.1f} MiB  {heap}threads {s['threads']:3d}  "
                  f"fds {s['fds']:3d}  "
                  f"sessions {s['sessions']} (active {s['active']}, queued {s['queued']})  ws {s['websockets']}  "
                  f"created {s['created']}  faults {self.ledger.counts.get('faults_injected', 0)}", flush=True)

    def run(self):
        args = self.args
        self.start_server()
        t0 = time.time()
        start_metrics = self.metrics()
        self.sample(t0)
        threads = [threading.Thread(target=self.monitor, args=(t0,), daemon=True)]
        workers = [threading.Thread(target=SessionClient(self, i).run, daemon=True) for i in range(args.clients)]
        workers += [threading.Thread(target=Fuzzer(self, i).run, daemon=True) for i in range(args.fuzzers)]
        for t in threads + workers:
            t.start()
        end = t0 + args.minutes * 60
        while time.time() < end and self.server_alive():
            time.sleep(1)
        self.stopping.set()
        print("stopping: waiting for the clients to end", flush=True)
        deadline = time.time() + 240
        for t in workers:
            t.join(timeout=max(0, deadline - time.time()))
        hung = sum(t.is_alive() for t in workers)
        if hung:
            self.ledger.finding(f"{hung} client threads did not end within 4 minutes of the stop (a hung socket?)")
        crashed = not self.server_alive()
        # HTTP sessions left to be reclaimed: delete those still held, then wait for the server to hold nothing.
        quiet = None
        if not crashed:
            print("stopping: deleting what is left, waiting for the server to hold nothing", flush=True)
            status, listing = http(self.port, "GET", "/v1/sessions", key=self.key)
            for s in (listing.get("sessions", []) if isinstance(listing, dict) else []):
                http(self.port, "DELETE", f"/v1/sessions/{s['id']}", key=self.key)
                self.ledger.add("deleted_at_end")
            deadline = time.time() + 120
            while time.time() < deadline:
                m = self.metrics()
                if m and m["reel_sessions"] == 0 and m["reel_websockets_open"] == 0:
                    quiet = m
                    break
                time.sleep(1)
        last = self.sample(t0) if not crashed else None
        end_metrics = quiet or self.metrics() if not crashed else None
        report = self.report(t0, start_metrics, end_metrics, crashed)
        if self.server_alive():
            self.server.terminate()
            try:
                report["exit_status"] = self.server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.ledger.finding("reel serve did not exit within 60 s of SIGTERM")
                self.server.kill()
        report["findings"] = self.ledger.findings
        report["passed"] = not report["findings"] and all(c["ok"] for c in report["checks"])
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
        self.summary(report)
        return 0 if report["passed"] else 1

    def report(self, t0, start, end, crashed):
        ledger, args = self.ledger, self.args
        counts = dict(sorted(ledger.counts.items()))
        checks = []

        def check(name, ok, detail):
            checks.append({"check": name, "ok": bool(ok), "detail": detail})
        check("server never crashed", not crashed, "exit status %s" % (self.server.returncode,))
        check("/healthz always answered 200", all(s["healthz"] == 200 for s in self.samples),
              f"{len(self.samples)} samples")
        if end:
            seen = counts.get("sessions_created_ws", 0) + counts.get("sessions_created_http", 0) \
                + counts.get("sessions_created_fuzzer", 0)
            created = end["reel_sessions_created_total"] - start["reel_sessions_created_total"]
            check("every session the clients saw created is counted", created == seen,
                  f"clients saw {seen} created; /metrics reel_sessions_created_total {created:.0f}")
            ended = sum(v for k, v in end.items() if k.startswith("reel_sessions_ended_total{"))
            removed = sum(v for k, v in end.items() if k.startswith("reel_sessions_removed_total{"))
            busy = end["reel_sessions_active"] + end["reel_sessions_queued"]
            check("created = ended + active + queued", end["reel_sessions_created_total"] == ended + busy,
                  f"{end['reel_sessions_created_total']:.0f} = {ended:.0f} + {end['reel_sessions_active']:.0f} + "
                  f"{end['reel_sessions_queued']:.0f}")
            check("created = removed + held", end["reel_sessions_created_total"] == removed + end["reel_sessions"],
                  f"{end['reel_sessions_created_total']:.0f} = {removed:.0f} + {end['reel_sessions']:.0f}")
            check("no session, socket or slot left", end["reel_sessions"] == 0 and end["reel_websockets_open"] == 0
                  and end["reel_sessions_active"] == 0, "sessions %.0f, websockets %.0f, active %.0f" % (
                      end["reel_sessions"], end["reel_websockets_open"], end["reel_sessions_active"]))
            refused = counts.get("error:too_many_sessions", 0) + counts.get("fuzz_error:too_many_sessions", 0)
            check("every refusal counted", end["reel_sessions_rejected_total"] == refused,
                  f"clients were refused {refused}; /metrics {end['reel_sessions_rejected_total']:.0f}")
            failed_seen = sum(1 for r in ledger.sessions.values() if "failed" in r["states"])
            failed = end.get('reel_sessions_ended_total{outcome="failed"}', 0)
            check("every failure a client saw is counted", failed_seen <= failed,
                  f"clients saw {failed_seen} failed; /metrics {failed:.0f} (the rest failed after their client left)")
            oom_told = sum(1 for r in ledger.sessions.values() if "out_of_memory" in r["errors"])
            oom_failed = sum(1 for r in ledger.sessions.values()
                             if "out_of_memory" in r["errors"] and r["states"][-1:] == ["failed"])
            oom_metric = end.get('reel_sessions_failed_total{cause="out_of_memory"}', 0)
            check("each injected out-of-memory told its client, then failed", oom_told == oom_failed,
                  f"{oom_told} told, {oom_failed} then in state failed; /metrics out_of_memory {oom_metric:.0f}")
            unfinished = [r["id"] for r in ledger.sessions.values()
                          if r.get("ending") in ("wait", "stop") and r["states"][-1:] not in (["finished"], ["failed"])
                          and not r.get("replaced")]
            check("every session watched to its end ended", not unfinished,
                  f"{len(unfinished)} did not: {unfinished[:5]}")
        # The fuzzer's HTTP faults, by the status they were answered with (0: none). Every malformed request must be
        # answered, except where the fault itself prevents it (it sends half a request or reads nothing, lies about
        # its length so the server waits for the rest, or is still sending a body the server refused).
        by_design = ("http_half_request", "http_lying_length", "http_lying_chunk", "http_huge_body")
        http_faults = {"sent": 0, "answered_4xx": 0, "answered_other": 0, "unanswered": 0, "unanswered_expected": 0,
                       "statuses": {}, "unanswered_by_fault": {}}
        for name, n in counts.items():
            if not name.startswith("fuzz_http:"):
                continue
            _, fault, status = name.split(":")
            http_faults["sent"] += n
            http_faults["statuses"][status] = http_faults["statuses"].get(status, 0) + n
            if status.startswith("4"):
                http_faults["answered_4xx"] += n
            elif status == "0":
                http_faults["unanswered"] += n
                if fault in by_design:
                    http_faults["unanswered_expected"] += n
                else:
                    http_faults["unanswered_by_fault"][fault] = http_faults["unanswered_by_fault"].get(fault, 0) + n
            else:
                http_faults["answered_other"] += n
        check("every malformed HTTP request answered", not http_faults["unanswered_by_fault"],
              f"{http_faults['answered_4xx']} of {http_faults['sent']} answered 4xx; unanswered, not by design: "
              f"{http_faults['unanswered_by_fault'] or 'none'}")
        rss = [s["rss_kib"] for s in self.samples]
        settled = [s for s in self.samples if s["t"] >= min(300, args.minutes * 60 / 4)]
        trend = slope([(s["t"], s["rss_kib"]) for s in settled]) * 3600 / 1024 if len(settled) > 2 else None
        memory = {"rss_start_mib": round(rss[0] / 1024, 1), "rss_end_mib": round(rss[-1] / 1024, 1),
                  "rss_max_mib": round(max(rss) / 1024, 1),
                  "rss_at_settle_mib": round(settled[0]["rss_kib"] / 1024, 1) if settled else None,
                  "rss_trend_mib_per_hour_after_settle": round(trend, 1) if trend is not None else None,
                  "threads_start_end": [self.samples[0]["threads"], self.samples[-1]["threads"]],
                  "fds_start_end": [self.samples[0]["fds"], self.samples[-1]["fds"]]}
        # The C heap (glibc's mallinfo2 through /metrics): RSS that grows while the bytes in use do not is memory
        # malloc keeps in its arenas, not objects kept alive.
        heap = [s for s in settled if s.get("heap_in_use_kib") is not None]
        if heap:
            memory["heap_in_use_mib_settle_end"] = [round(heap[0]["heap_in_use_kib"] / 1024, 1),
                                                    round(heap[-1]["heap_in_use_kib"] / 1024, 1)]
            memory["heap_free_mib_settle_end"] = [round(heap[0]["heap_free_kib"] / 1024, 1),
                                                  round(heap[-1]["heap_free_kib"] / 1024, 1)]
            if len(heap) > 2:
                memory["heap_in_use_trend_mib_per_hour_after_settle"] = round(
                    slope([(s["t"], s["heap_in_use_kib"]) for s in heap]) * 3600 / 1024, 1)
        return {"command": " ".join(sys.argv), "server_command": " ".join(self.command),
                "minutes": round((time.time() - t0) / 60, 1), "seed": args.seed, "clients": args.clients,
                "fuzzers": args.fuzzers, "max_sessions": args.max_sessions, "machine": machine(),
                "counts": counts, "http_faults": http_faults, "memory": memory, "checks": checks,
                "metrics_end": {k: v for k, v in (end or {}).items() if k.startswith("reel_")},
                "sessions": list(ledger.sessions.values()), "samples": self.samples}

    def summary(self, report):
        c, m = report["counts"], report["memory"]
        print("\n== soak of reel serve:", report["minutes"], "minutes, seed", report["seed"], "-", report["machine"])
        print(f"sessions: {c.get('sessions_created_ws', 0)} WebSocket, {c.get('sessions_created_http', 0)} HTTP, "
              f"{c.get('sessions_created_fuzzer', 0)} by the fuzzer; {c.get('start_refused', 0)} starts refused (full)")
        print(f"messages: {c.get('messages_sent', 0)} control sent, {c.get('messages_received', 0)} received "
              f"({c.get('frames_received', 0)} frames); {c.get('http_requests', 0)} HTTP requests")
        print(f"faults injected: {c.get('faults_injected', 0)} by the fuzzer, {c.get('frames_cut_mid', 0)} frames cut "
              f"mid-write, {c.get('reconnects', 0)} reconnects")
        h = report["http_faults"]
        print(f"HTTP faults: {h['sent']} sent, {h['answered_4xx']} answered 4xx, {h['answered_other']} other statuses, "
              f"{h['unanswered']} unanswered ({h['unanswered_expected']} of them by design: half requests, lying "
              f"lengths and chunks, bodies cut by an early 413); statuses {h['statuses']}")
        print(f"RSS: {m['rss_start_mib']} MiB at start, {m['rss_at_settle_mib']} settled, {m['rss_end_mib']} at end, "
              f"max {m['rss_max_mib']}; trend after settling {m['rss_trend_mib_per_hour_after_settle']} MiB/h; "
              f"threads {m['threads_start_end']}, fds {m['fds_start_end']}")
        if "heap_in_use_mib_settle_end" in m:
            print(f"C heap (settled -> end): in use {m['heap_in_use_mib_settle_end']} MiB "
                  f"(trend {m.get('heap_in_use_trend_mib_per_hour_after_settle')} MiB/h), "
                  f"free in arenas {m['heap_free_mib_settle_end']} MiB")
        for k in sorted(report["metrics_end"]):
            if k.startswith("reel_sessions") or k.startswith("reel_websocket"):
                print(f"  {k} {report['metrics_end'][k]:.0f}")
        for ch in report["checks"]:
            print(("ok   " if ch["ok"] else "FAIL ") + ch["check"] + ": " + ch["detail"])
        for f in report["findings"]:
            print("finding:", f["what"])
        print("PASSED" if report["passed"] else "FAILED", "- report:", self.args.report)


def kib(nbytes):
    """A byte count from /metrics in KiB (None stays None: the server's C library gives no heap figures)."""
    return None if nbytes is None else round(nbytes / 1024)


def slope(points):
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def machine():
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{os.cpu_count()}-core {model}"


def main():
    faulthandler.register(signal.SIGUSR1, all_threads=True)   # kill -USR1: every thread's stack
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reel", default=".build/release/reel")
    p.add_argument("--model", default="Models/tiny")
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--clients", type=int, default=3, help="session clients at once")
    p.add_argument("--fuzzers", type=int, default=1)
    p.add_argument("--fuzz-pause", type=float, default=0.3, help="longest pause between faults, seconds")
    p.add_argument("--threads", type=int, default=2, help="the server's CPU threads")
    p.add_argument("--max-sessions", type=int, default=2)
    p.add_argument("--max-queued", type=int, default=2)
    p.add_argument("--idle-timeout", type=float, default=20)
    p.add_argument("--oom-every", type=int, default=9, help="every Nth session fails with an injected out-of-memory")
    p.add_argument("--sample-every", type=float, default=15, help="seconds between samples")
    p.add_argument("--key", help="the API key (default: a random one)")
    p.add_argument("--report", default="soak-report.json")
    p.add_argument("--log", default="soak-server.log")
    sys.exit(Soak(p.parse_args()).run())


if __name__ == "__main__":
    main()
