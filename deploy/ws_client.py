#!/usr/bin/env python3
"""A minimal WebSocket client (Python's standard library only) for the loopback demo: connects to reel serve's
/v1/ws (through nginx), starts a session, counts the frames that come back, stops.

    ws_client.py HOST PORT KEY PROMPT [SECONDS]
"""
import base64, json, os, socket, struct, sys, time


def send(sock, opcode, payload):
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
    sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("the socket closed")
        data += chunk
    return data


def recv(sock):
    b0, b1 = recv_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", recv_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", recv_exact(sock, 8))[0]
    return b0 & 0x0F, recv_exact(sock, n)


def main():
    host, port, key, prompt = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 2
    sock = socket.create_connection((host, port), timeout=60)
    nonce = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /v1/ws?key={key} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    status = response.split(b"\r\n")[0].decode()
    print("upgrade:", status)
    if " 101 " not in status + " ":
        sys.exit(1)
    start = {"type": "start", "prompt": prompt, "seed": 1, "options": {"seconds": seconds}}
    send(sock, 1, json.dumps(start).encode())
    frames, states, t0 = 0, [], time.time()
    while True:
        opcode, payload = recv(sock)
        if opcode == 2:
            frames += 1
        elif opcode == 1:
            message = json.loads(payload)
            if message["type"] in ("session", "state"):
                states.append(message["state"])
                if message["state"] in ("finished", "failed"):
                    break
            elif message["type"] == "error":
                print("error:", message)
        elif opcode == 8:
            break
    print(f"session states {' -> '.join(dict.fromkeys(states))}; {frames} frames in {time.time() - t0:.1f} s")
    send(sock, 8, struct.pack(">H", 1000))
    sys.exit(0 if frames > 0 and states[-1] == "finished" else 1)


main()
