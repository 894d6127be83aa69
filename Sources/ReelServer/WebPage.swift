import Hummingbird

/// The studio page served at `/`: prompt box, start, live video drawn on a canvas as blocks arrive,
/// prompt changes at any time, pause/resume/stop, the recording's download, and FPS, latency, block
/// and device. Plain HTML, CSS and JavaScript: no build step, nothing from a CDN.
///
/// Input: None (the prompt alone), Camera (getUserMedia) or File (a video or an image). A camera or video is
/// drawn into the input canvas, shown beside the output, and sent as a JPEG (`canvas.toBlob`) at the session's
/// fps (`options.input = "video"`: video-to-video, with the noise scale and steps controls); at most
/// `4 * steps + 8` frames are in flight (sent and not yet back), beyond that capture ticks are skipped (a video
/// file is paused meanwhile), so a slow server is never flooded and each output frame answers one sent frame. A video file's end sends
/// `{"type": "end"}`. An image is sent once (`options.input = "image"`: the video opens on it).
///
/// The URL may start a session by itself (a shareable demo, and how the browser tests drive it):
/// `/?prompt=TEXT&seed=N&autostart=1&then=TEXT&at=SECONDS` switches to `then` after `at` seconds of video;
/// `&input=camera&noise=S&steps=N` starts video-to-video from the camera; `&codec=h264` streams H.264.
///
/// Stream: JPEG frames (each drawn through `createImageBitmap`) or H.264 (`options.codec = "h264"`: the server's
/// `codec` message configures a WebCodecs `VideoDecoder`, each frame message is one access unit). A browser without
/// WebCodecs' H.264, or a server without ffmpeg (`codec_unavailable`), falls back to JPEG with a note. The page
/// measures what it receives (`window.reelStats`: bytes, and per frame made -> decoded and made -> drawn, from the
/// `block` messages' `madeAt`) and shows the last second's bit rate and the glass-to-glass median.
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
          <label>input <select id="inputKind">
            <option value="none">None (prompt only)</option>
            <option value="camera">Camera</option>
            <option value="file">File (video or image)</option>
          </select></label>
          <label>stream <select id="codec">
            <option value="jpeg">JPEG frames</option>
            <option value="h264">H.264 (WebCodecs)</option>
          </select></label>
          <input id="file" type="file" accept="video/*,image/*" hidden>
          <span id="v2v" hidden>
            <label>noise scale <input id="noiseScale" type="range" min="0.2" max="1" step="0.05" value="0.6"> <b id="noiseValue">model default</b></label>
            <label>steps <select id="steps"><option>1</option><option selected>2</option><option>3</option><option>4</option></select></label>
          </span>
        </div>
        <div class="row">
          <label>seed <input id="seed" type="number" value="0" min="0"></label>
          <button id="start">Start</button>
          <button id="send" disabled>Change prompt</button>
          <button id="pause" disabled>Pause</button>
          <button id="stop" disabled>Stop</button>
          <a id="download" class="button disabled" href="#" download>Download</a>
        </div>
      </section>
      <div class="screens">
        <figure id="inputFigure" hidden><canvas id="inputView" width="320" height="240"></canvas><figcaption>input</figcaption></figure>
        <figure><canvas id="video" width="832" height="480"></canvas><figcaption>output</figcaption></figure>
      </div>
      <video id="source" muted playsinline hidden></video>
      <section class="stats">
        <span>state <b id="state">idle</b></span>
        <span>FPS <b id="fps">0</b></span>
        <span>latency <b id="latency">-</b></span>
        <span>block <b id="block">-</b></span>
        <span>DiT <b id="dit">-</b></span>
        <span>frames <b id="frames">0</b></span>
        <span>prompt <b id="promptIndex">0</b></span>
        <span>input sent <b id="inputSent">0</b></span>
        <span>stream <b id="bandwidth">-</b></span>
        <span>glass-to-glass <b id="glass">-</b></span>
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
    select { background: #1c1c1c; color: #eee; border: 1px solid #444; }
    .screens { display: flex; gap: 0.5rem; }
    .screens figure { flex: 1; margin: 0; }
    figcaption { font-size: 0.8rem; color: #999; text-align: center; }
    .stats { display: flex; gap: 1rem; flex-wrap: wrap; margin-top: 0.5rem; font-size: 0.9rem; }
    #message { color: #f77; min-height: 1.2em; }
    """#

    static let script = #"""
    "use strict";
    const $ = (id) => document.getElementById(id);
    // The noise scale is sent once chosen; until then the server uses the model's default (reel.json noise_scale).
    let noiseTouched = false;
    const canvas = $("video"), ctx = canvas.getContext("2d");
    // bytesReceived: frame messages' bytes; glassMs: per drawn frame, made on the server -> drawn (the page and the
    // server share a clock when they share a machine); readyMs: made -> decoded, ready to draw.
    const stats = { framesDrawn: 0, framesReceived: 0, promptIndexDrawn: 0, block: -1, state: "idle", session: null, latencyMs: null,
                    errors: [], inputSent: 0, input: "none", codec: "jpeg", bytesReceived: 0, firstFrameAt: null, lastFrameAt: null,
                    glassMs: [], readyMs: [] };
    window.reelStats = stats;
    let ws = null, queue = [], fps = 16, nextDue = 0, drawTimes = [], pendingSwitch = null, paused = false;
    const inputView = $("inputView"), inputCtx = inputView.getContext("2d"), source = $("source");
    let capture = null, camera = null, image = null, sending = false, inputOpen = false;
    // H.264: one WebCodecs decoder per session; queue items wait in `decoding` (by frame index) for its output.
    let decoder = null;
    const decoding = new Map(), madeAt = new Map(), received = [];

    // A server started with an API key: the key comes from the address (?key=KEY, then removed from it and kept for
    // this tab) or, when the server refuses the page's first request, from a prompt. It is sent as the WebSocket's
    // key parameter and as `Authorization: Bearer` on HTTP requests.
    const params = new URLSearchParams(location.search);
    let apiKey = params.get("key") || sessionStorage.getItem("reelKey") || "", keyChecked = false;
    if (params.has("key")) {
      sessionStorage.setItem("reelKey", apiKey); params.delete("key");
      history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
    }
    const authorized = () => (apiKey ? { Authorization: "Bearer " + apiKey } : {});
    async function checkKey() {
      if (keyChecked) return;
      for (let tries = 0; tries < 3; tries++) {
        const r = await fetch("/v1/sessions", { headers: authorized() });
        if (r.status !== 401) { keyChecked = true; return; }
        const key = window.prompt(tries === 0 && !apiKey ? "This server needs its API key:" : "Wrong key; the API key:");
        if (!key) break;
        apiKey = key; sessionStorage.setItem("reelKey", key);
      }
      throw new Error("this server needs its API key (open the page as /?key=KEY)");
    }

    fetch("/healthz").then((r) => r.json()).then((h) => { $("device").textContent = "device: " + h.device; }).catch(() => {});

    function show(id, text) { $(id).textContent = text; }
    function setState(label) {
      const state = label.split(" ")[0];   // "queued (#2)" is queued
      stats.state = state; show("state", label);
      const live = state === "running" || state === "paused" || state === "queued";
      $("send").disabled = !live || stats.input === "video"; $("pause").disabled = !live; $("stop").disabled = !live;
      if (!live && state !== "idle") stopCapture();
      $("pause").textContent = state === "paused" ? "Resume" : "Pause";
    }

    async function connect() {
      if (ws && ws.readyState === WebSocket.OPEN) return ws;
      await checkKey();
      return new Promise((resolve, reject) => {
        const key = apiKey ? "?key=" + encodeURIComponent(apiKey) : "";
        ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/v1/ws" + key);
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
      if (m.type === "error") {
        if (m.code === "codec_unavailable" && stats.codec === "h264") {   // the server has no ffmpeg: JPEG it is
          $("codec").value = "jpeg"; show("message", "H.264 is not available on this server; JPEG frames instead");
          start($("prompt").value, $("seed").value, true).catch((e) => show("message", e.message));
          return;
        }
        show("message", m.code + ": " + m.message); stats.errors.push(m.code); return;
      }
      if (m.type === "codec") { configureDecoder(m); return; }
      if (m.type === "session" || m.type === "state") {
        const first = m.type === "session";
        stats.session = m.id; fps = m.fps || fps;
        setState(m.state + (m.state === "queued" && m.queuePosition ? " (#" + m.queuePosition + ")" : ""));
        if (m.video) { const a = $("download"); a.href = m.video; a.classList.remove("disabled"); }
        if (m.error) show("message", m.error);
        if (first) startCapture();
      } else if (m.type === "block") {
        stats.block = m.index; show("block", m.index);
        show("dit", Math.round(m.ditMs) + " ms" + (m.recacheMs > 0 ? " (recache " + Math.round(m.recacheMs) + ")" : ""));
        if (canvas.width !== m.width || canvas.height !== m.height) { canvas.width = m.width; canvas.height = m.height; }
        for (let k = 0; k < m.frames; k++) madeAt.set(m.firstFrame + k, m.madeAt);
      }
    }

    function configureDecoder(m) {
      if (decoder && decoder.state !== "closed") decoder.close();
      decoder = new VideoDecoder({
        output: (frame) => {
          const item = decoding.get(frame.timestamp);
          decoding.delete(frame.timestamp);
          if (item) { item.bitmap = frame; item.readyAt = performance.now(); } else frame.close();
        },
        error: (e) => {
          stats.errors.push("h264"); show("message", "H.264 decoding failed: " + e.message);
          for (const item of decoding.values()) item.bitmap = "bad";
          decoding.clear();
        },
      });
      const description = Uint8Array.from(atob(m.description), (c) => c.charCodeAt(0));
      decoder.configure({ codec: m.codec, description, optimizeForLatency: true });
    }

    // Whether this browser decodes the server's H.264 (WebCodecs; Constrained Baseline up to level 4).
    async function canDecodeH264() {
      if (!("VideoDecoder" in window)) return false;
      try { return (await VideoDecoder.isConfigSupported({ codec: "avc1.42c028", optimizeForLatency: true })).supported; }
      catch (e) { return false; }
    }

    function onFrame(buffer) {
      const view = new DataView(buffer);
      const magic = buffer.byteLength < 16 ? 0 : view.getUint32(0, false);
      if (magic !== 0x524c4631 && magic !== 0x524c4831) return;   // "RLF1" (JPEG), "RLH1" (H.264)
      const frame = view.getUint32(8, true), promptIndex = view.getUint16(12, true);
      const now = performance.now();
      stats.framesReceived++; stats.bytesReceived += buffer.byteLength;
      if (stats.firstFrameAt === null) stats.firstFrameAt = now;
      stats.lastFrameAt = now;
      received.push([now, buffer.byteLength]);
      while (received.length > 0 && received[0][0] < now - 1000) received.shift();
      show("bandwidth", Math.round(received.reduce((sum, r) => sum + r[1], 0) * 8 / 1000) + " kbit/s");
      const item = { frame, promptIndex, bitmap: null, readyAt: null };
      queue.push(item);
      if (magic === 0x524c4831) {
        if (!decoder || decoder.state !== "configured") { item.bitmap = "bad"; stats.errors.push("h264-unconfigured"); return; }
        decoding.set(frame, item);
        const key = (view.getUint8(14) & 1) === 1;
        decoder.decode(new EncodedVideoChunk({ type: key ? "key" : "delta", timestamp: frame, data: new Uint8Array(buffer, 16) }));
        return;
      }
      createImageBitmap(new Blob([buffer.slice(16)], { type: "image/jpeg" }))
        .then((bitmap) => { item.bitmap = bitmap; item.readyAt = performance.now(); })
        .catch(() => { item.bitmap = "bad"; stats.errors.push("decode"); });
    }

    function record(list, value) { list.push(Math.round(value * 10) / 10); if (list.length > 900) list.shift(); }

    function tick(now) {
      if (!paused && queue.length > 0 && queue[0].bitmap && now >= nextDue) {
        const item = queue.shift();
        if (item.bitmap !== "bad") { ctx.drawImage(item.bitmap, 0, 0, canvas.width, canvas.height); item.bitmap.close(); }
        stats.framesDrawn++; stats.promptIndexDrawn = item.promptIndex;
        const made = madeAt.get(item.frame);
        madeAt.delete(item.frame);
        if (made !== undefined && item.bitmap !== "bad") {
          record(stats.glassMs, performance.timeOrigin + performance.now() - made);
          record(stats.readyMs, performance.timeOrigin + item.readyAt - made);
          const recent = stats.glassMs.slice(-30).sort((a, b) => a - b);
          show("glass", Math.round(recent[recent.length >> 1]) + " ms");
        }
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

    // Input: what the chosen source is ("none", "video" or "image"), made ready before a session starts.
    async function prepareInput() {
      const kind = $("inputKind").value;
      image = null;
      if (kind === "camera") {
        if (!camera) camera = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
        source.srcObject = camera; await source.play();
        return "video";
      }
      if (kind === "file") {
        const file = $("file").files[0];
        if (!file) throw new Error("choose a video or image file first");
        if (file.type.startsWith("image/")) {
          image = await createImageBitmap(file);
          return "image";
        }
        source.srcObject = null; source.src = URL.createObjectURL(file); source.loop = false;
        source.onended = endInput;
        // Loaded and held at its start: the capture plays it once the session runs (a slow start must not let
        // the file end before its first frame is sent).
        await source.play(); source.pause(); source.currentTime = 0;
        return "video";
      }
      return "none";
    }

    // Draws a frame of `what` into the input canvas (at most 640 wide; the server fits it) and sends it as a JPEG.
    function sendFrame(what, width, height) {
      const scale = Math.min(1, 640 / width);
      const w = Math.max(1, Math.round(width * scale)), h = Math.max(1, Math.round(height * scale));
      if (inputView.width !== w || inputView.height !== h) { inputView.width = w; inputView.height = h; }
      inputCtx.drawImage(what, 0, 0, w, h);
      sending = true;
      inputView.toBlob((blob) => {
        sending = false;
        if (!blob || !inputOpen || !ws || ws.readyState !== WebSocket.OPEN) return;
        ws.send(blob); stats.inputSent++; show("inputSent", stats.inputSent);
      }, "image/jpeg", 0.85);
    }

    // Frames go at the session's fps while fewer than 4 * steps + 8 are in flight (sent, not yet back). A camera
    // goes on meanwhile (its frames are skipped); a video file is paused, so that none of it is lost.
    function startCapture() {
      stopCapture(false);
      inputOpen = true;
      if (stats.input === "image" && image) { sendFrame(image, image.width, image.height); return; }
      if (stats.input !== "video") return;
      const inFlight = 4 * Number($("steps").value) + 8;
      capture = setInterval(() => {
        if (sending) return;
        const held = paused || stats.inputSent - stats.framesReceived >= inFlight;
        if (!camera || source.srcObject !== camera) {
          if (source.ended) { endInput(); return; }
          if (held && !source.paused) source.pause();
          if (!held && source.paused && !source.ended) source.play().catch(() => {});
        }
        if (held || source.readyState < 2 || !source.videoWidth) return;
        sendFrame(source, source.videoWidth, source.videoHeight);
      }, 1000 / fps);
    }

    // The end of a video file: the frame being encoded goes out, then {"type": "end"}.
    function endInput() {
      if (capture) { clearInterval(capture); capture = null; }
      if (!inputOpen) return;
      if (sending) { setTimeout(endInput, 10); return; }
      inputOpen = false;
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" }));
    }

    function stopCapture(releaseCamera = true) {
      if (releaseCamera) inputOpen = false;
      if (capture) { clearInterval(capture); capture = null; }
      if (releaseCamera && camera && stats.state !== "running" && stats.state !== "queued" && stats.state !== "paused") {
        camera.getTracks().forEach((t) => t.stop()); camera = null; source.srcObject = null;
      }
    }

    async function start(prompt, seed, keepMessage = false) {
      if (!keepMessage) show("message", "");
      let codec = $("codec").value;
      if (codec === "h264" && !(await canDecodeH264())) {
        codec = "jpeg"; $("codec").value = "jpeg";
        show("message", "this browser cannot decode H.264 through WebCodecs; JPEG frames instead");
      }
      await connect();
      const input = await prepareInput();
      stopCapture(false);
      queue = []; nextDue = 0; paused = false;
      stats.framesDrawn = 0; stats.framesReceived = 0; stats.promptIndexDrawn = 0; stats.block = -1;
      stats.inputSent = 0; stats.input = input; stats.codec = codec;
      stats.bytesReceived = 0; stats.firstFrameAt = null; stats.lastFrameAt = null; stats.glassMs = []; stats.readyMs = [];
      if (decoder && decoder.state !== "closed") decoder.close();
      decoder = null; decoding.clear(); madeAt.clear();
      $("inputFigure").hidden = input === "none";
      const a = $("download"); a.classList.add("disabled"); a.href = "#";
      const options = { codec };
      if (input !== "none") options.input = input;
      if (input === "video") { if (noiseTouched) options.noiseScale = Number($("noiseScale").value); options.steps = Number($("steps").value); }
      ws.send(JSON.stringify({ type: "start", prompt, seed: Number(seed) || 0, options }));
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
    $("stop").onclick = () => { stopCapture(); ws.send(JSON.stringify({ type: "stop" })); };
    function showInputControls() {
      const kind = $("inputKind").value;
      $("file").hidden = kind !== "file";
      const file = $("file").files[0];
      $("v2v").hidden = kind === "none" || (kind === "file" && (!file || file.type.startsWith("image/")));
    }
    // The recording through fetch when a key is needed: a plain link cannot send the Authorization header.
    $("download").onclick = async (event) => {
      const a = $("download");
      if (!apiKey || a.classList.contains("disabled")) return;
      event.preventDefault();
      try {
        const r = await fetch(a.href, { headers: authorized() });
        if (!r.ok) throw new Error("download: HTTP " + r.status);
        const name = (r.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
        const link = document.createElement("a");
        link.href = URL.createObjectURL(await r.blob()); link.download = name ? name[1] : "reel-video";
        link.click(); setTimeout(() => URL.revokeObjectURL(link.href), 60000);
      } catch (e) { show("message", e.message); }
    };
    $("inputKind").onchange = showInputControls;
    $("file").onchange = showInputControls;
    $("noiseScale").oninput = () => { noiseTouched = true; show("noiseValue", Number($("noiseScale").value).toFixed(2)); };

    // /?prompt=TEXT&seed=N&autostart=1&then=TEXT&at=SECONDS (and key=KEY, read above)
    if (params.get("prompt")) $("prompt").value = params.get("prompt");
    if (params.get("seed")) $("seed").value = params.get("seed");
    if (params.get("input")) $("inputKind").value = params.get("input");
    if (params.get("noise")) { noiseTouched = true; $("noiseScale").value = params.get("noise"); show("noiseValue", Number(params.get("noise")).toFixed(2)); }
    if (params.get("steps")) $("steps").value = params.get("steps");
    if (params.get("codec")) $("codec").value = params.get("codec");
    showInputControls();
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
