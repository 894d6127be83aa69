import Hummingbird

/// The studio page served at `/`: prompt box, start, live video drawn on a canvas as blocks arrive,
/// prompt changes at any time, pause/resume/stop, the recording's download, and FPS, latency, block
/// and device. Plain HTML, CSS and JavaScript: no build step, nothing from a CDN.
///
/// The URL may start a session by itself (a shareable demo, and how the browser test drives it):
/// `/?prompt=TEXT&seed=N&autostart=1&then=TEXT&at=SECONDS` switches to `then` after `at` seconds of video.
enum WebPage {
    static func response(_ text: String, type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-cache"],
                 body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Reel studio</title>
    <link rel="stylesheet" href="/app.css">
    </head>
    <body>
    <header><h1>Reel</h1><span id="device">device: ?</span></header>
    <main>
      <section class="controls">
        <textarea id="prompt" rows="3" placeholder="Describe the video; change it at any time">a red circle moves left on a blue background</textarea>
        <div class="row">
          <label>seed <input id="seed" type="number" value="0" min="0"></label>
          <button id="start">Start</button>
          <button id="send" disabled>Change prompt</button>
          <button id="pause" disabled>Pause</button>
          <button id="stop" disabled>Stop</button>
          <a id="download" class="button disabled" href="#" download>Download</a>
        </div>
      </section>
      <canvas id="video" width="832" height="480"></canvas>
      <section class="stats">
        <span>state <b id="state">idle</b></span>
        <span>FPS <b id="fps">0</b></span>
        <span>latency <b id="latency">-</b></span>
        <span>block <b id="block">-</b></span>
        <span>DiT <b id="dit">-</b></span>
        <span>frames <b id="frames">0</b></span>
        <span>prompt <b id="promptIndex">0</b></span>
      </section>
      <p id="message"></p>
    </main>
    <script src="/app.js"></script>
    </body>
    </html>
    """#

    static let style = #"""
    body { font-family: system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
    header { display: flex; justify-content: space-between; align-items: baseline; padding: 0.5rem 1rem; background: #222; }
    h1 { margin: 0; font-size: 1.3rem; }
    main { max-width: 900px; margin: 1rem auto; padding: 0 1rem; }
    textarea { width: 100%; box-sizing: border-box; font-size: 1rem; background: #1c1c1c; color: #eee; border: 1px solid #444; padding: 0.5rem; }
    .row { display: flex; gap: 0.5rem; align-items: center; margin: 0.5rem 0; flex-wrap: wrap; }
    button, .button { background: #2d6cdf; color: white; border: 0; padding: 0.4rem 0.9rem; border-radius: 4px; font-size: 0.95rem; text-decoration: none; cursor: pointer; }
    button:disabled, .button.disabled { background: #444; color: #999; pointer-events: none; }
    input { width: 6rem; background: #1c1c1c; color: #eee; border: 1px solid #444; }
    canvas { width: 100%; background: #000; display: block; }
    .stats { display: flex; gap: 1rem; flex-wrap: wrap; margin-top: 0.5rem; font-size: 0.9rem; }
    #message { color: #f77; min-height: 1.2em; }
    """#

    static let script = #"""
    "use strict";
    const $ = (id) => document.getElementById(id);
    const canvas = $("video"), ctx = canvas.getContext("2d");
    const stats = { framesDrawn: 0, framesReceived: 0, promptIndexDrawn: 0, block: -1, state: "idle", session: null, latencyMs: null, errors: [] };
    window.reelStats = stats;
    let ws = null, queue = [], fps = 16, nextDue = 0, drawTimes = [], pendingSwitch = null, paused = false;

    fetch("/healthz").then((r) => r.json()).then((h) => { $("device").textContent = "device: " + h.device; }).catch(() => {});

    function show(id, text) { $(id).textContent = text; }
    function setState(state) {
      stats.state = state; show("state", state);
      const live = state === "running" || state === "paused" || state === "queued";
      $("send").disabled = !live; $("pause").disabled = !live; $("stop").disabled = !live;
      $("pause").textContent = state === "paused" ? "Resume" : "Pause";
    }

    function connect() {
      return new Promise((resolve, reject) => {
        if (ws && ws.readyState === WebSocket.OPEN) { resolve(ws); return; }
        ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/v1/ws");
        ws.binaryType = "arraybuffer";
        ws.onopen = () => resolve(ws);
        ws.onerror = () => reject(new Error("WebSocket failed"));
        ws.onclose = () => { setState("disconnected"); };
        ws.onmessage = onMessage;
      });
    }

    function onMessage(event) {
      if (typeof event.data !== "string") { onFrame(event.data); return; }
      const m = JSON.parse(event.data);
      if (m.type === "error") { show("message", m.code + ": " + m.message); stats.errors.push(m.code); return; }
      if (m.type === "session" || m.type === "state") {
        stats.session = m.id; fps = m.fps || fps;
        setState(m.state + (m.state === "queued" && m.queuePosition ? " (#" + m.queuePosition + ")" : ""));
        stats.state = m.state;
        if (m.video) { const a = $("download"); a.href = m.video; a.classList.remove("disabled"); }
        if (m.error) show("message", m.error);
      } else if (m.type === "block") {
        stats.block = m.index; show("block", m.index);
        show("dit", Math.round(m.ditMs) + " ms" + (m.recacheMs > 0 ? " (recache " + Math.round(m.recacheMs) + ")" : ""));
        if (canvas.width !== m.width || canvas.height !== m.height) { canvas.width = m.width; canvas.height = m.height; }
      }
    }

    function onFrame(buffer) {
      const view = new DataView(buffer);
      if (buffer.byteLength < 16 || view.getUint32(0, false) !== 0x524c4631) return;   // "RLF1"
      const frame = view.getUint32(8, true), promptIndex = view.getUint16(12, true);
      stats.framesReceived++;
      const item = { frame, promptIndex, bitmap: null };
      queue.push(item);
      createImageBitmap(new Blob([buffer.slice(16)], { type: "image/jpeg" }))
        .then((bitmap) => { item.bitmap = bitmap; })
        .catch(() => { item.bitmap = "bad"; stats.errors.push("decode"); });
    }

    function tick(now) {
      if (!paused && queue.length > 0 && queue[0].bitmap && now >= nextDue) {
        const item = queue.shift();
        if (item.bitmap !== "bad") { ctx.drawImage(item.bitmap, 0, 0, canvas.width, canvas.height); item.bitmap.close(); }
        stats.framesDrawn++; stats.promptIndexDrawn = item.promptIndex;
        show("frames", stats.framesDrawn); show("promptIndex", item.promptIndex);
        nextDue = Math.max(nextDue + 1000 / fps, now - 1000 / fps);
        drawTimes.push(now);
        while (drawTimes.length > 0 && drawTimes[0] < now - 1000) drawTimes.shift();
        show("fps", drawTimes.length);
        if (pendingSwitch && item.promptIndex >= pendingSwitch.index) {
          stats.latencyMs = Math.round(now - pendingSwitch.sent);
          show("latency", stats.latencyMs + " ms");
          pendingSwitch = null;
        }
      }
      requestAnimationFrame(tick);
    }
    requestAnimationFrame(tick);

    async function start(prompt, seed) {
      show("message", "");
      await connect();
      queue = []; nextDue = 0; paused = false;
      stats.framesDrawn = 0; stats.promptIndexDrawn = 0; stats.block = -1;
      const a = $("download"); a.classList.add("disabled"); a.href = "#";
      ws.send(JSON.stringify({ type: "start", prompt, seed: Number(seed) || 0 }));
    }

    function changePrompt(prompt) {
      if (!ws) return;
      ws.send(JSON.stringify({ type: "prompt", prompt }));
      pendingSwitch = { index: stats.promptIndexDrawn + 1, sent: performance.now() };
    }

    $("start").onclick = () => start($("prompt").value, $("seed").value).catch((e) => show("message", e.message));
    $("send").onclick = () => changePrompt($("prompt").value);
    $("pause").onclick = () => {
      paused = stats.state !== "paused";
      ws.send(JSON.stringify({ type: paused ? "pause" : "resume" }));
    };
    $("stop").onclick = () => ws.send(JSON.stringify({ type: "stop" }));

    // /?prompt=TEXT&seed=N&autostart=1&then=TEXT&at=SECONDS
    const params = new URLSearchParams(location.search);
    if (params.get("prompt")) $("prompt").value = params.get("prompt");
    if (params.get("seed")) $("seed").value = params.get("seed");
    if (params.get("autostart")) {
      start($("prompt").value, $("seed").value).catch((e) => show("message", e.message));
      const then = params.get("then"), at = Number(params.get("at") || 2);
      if (then) {
        const wait = setInterval(() => {
          if (stats.framesDrawn >= at * fps) { clearInterval(wait); $("prompt").value = then; changePrompt(then); }
        }, 50);
      }
    }
    """#
}
