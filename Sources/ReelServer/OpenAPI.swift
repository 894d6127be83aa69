/// The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json`. Keep it in step with
/// `ReelServer.router()`; a test checks that every path here answers.
enum OpenAPI {
    static let document = #"""
    {
      "openapi": "3.1.0",
      "info": {
        "title": "Reel",
        "version": "1",
        "description": "Real-time streaming video generation from a stream of text prompts. Live sessions run over the WebSocket at /v1/ws: JSON control messages {type: start|prompt|pause|resume|stop} in, JSON status and block messages plus one binary message per frame out (16-byte header 'RLF1', u32 block, u32 frame, u16 prompt index, u16 0, little-endian, then a baseline JPEG). A block is sent a latent frame at a time (1 frame for the video's first, 4 after), each part a block message with latentFrame, frames and endsBlock, then its frames. Inputs (a model with an encoder): start with options.input 'video' (video-to-video, StreamDiffusionV2's schedule, options.noiseScale and options.steps) or 'image' (image-to-video), then send one binary message per input frame, a baseline JPEG or a PNG (at most 4 MiB and 3840x2160; at most 60 frames a second on average, bursts of a second's worth; beyond, frames are dropped), each one frame of the video, fitted by cover + centre crop; {type: end} ends the input (its last frames are still converted). A frame too large or not decodable is answered {type: error, code: frame_too_large | bad_frame} and ends that session's input. A video-to-video session's prompt is fixed (prompt_fixed). Access: a server started with an API key (reel serve --api-key, REEL_API_KEY or --api-key-file) answers 401 unauthorized to API requests and WebSocket upgrades without 'Authorization: Bearer KEY' (the WebSocket may pass ?key=KEY instead); /healthz, /openapi.json and the page need no key, /metrics needs it unless --metrics-open. A page from another origin than the server's gets 403 origin_not_allowed unless allowed (--allow-origin). Requests beyond a client's rate get 429 rate_limited with Retry-After; control messages beyond it get {type: error, code: rate_limited}."
      },
      "security": [ { "bearer": [] } ],
      "paths": {
        "/v1/sessions": {
          "post": {
            "summary": "Start a session that records a video of options.seconds (default 10) without a watcher",
            "description": "JSON: the prompt alone. multipart/form-data: a 'request' part with the same JSON and an 'input' part with a video or an image (curl -F 'request={\"prompt\":\"...\"}' -F input=@clip.mp4). An image (part type image/*, or PNG or JPEG bytes; JPEG or PNG) opens the video (image-to-video); anything else is a video restyled frame for frame (video-to-video), its whole length unless options.seconds says less (Y4M is read in process, other formats need ffmpeg). At most 64 MiB; the video is kept in a temporary file while the session lasts. Errors: 400 bad_upload (malformed form, missing part), 400 bad_input (the file does not decode), 400 no_upload (options.input without a file), 413 upload_too_large, 415 unsupported_media, 501 no_encoder (the model takes prompts only), 400 bad_size (a size the model cannot make: a LongLive 2.0 model's are multiples of 32), 400 unsupported_input (a video for a LongLive 2.0 model, which takes an image as its first frame).",
            "requestBody": { "required": true, "content": {
              "application/json": { "schema": { "$ref": "#/components/schemas/SessionRequest" } },
              "multipart/form-data": { "schema": { "type": "object", "required": ["request", "input"], "properties": {
                "request": { "type": "string", "contentMediaType": "application/json", "description": "A SessionRequest as JSON" },
                "input": { "type": "string", "contentMediaType": "application/octet-stream", "description": "The video or image file" } } } }
            } },
            "responses": {
              "201": { "description": "Created (running or queued)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Session" } } } },
              "400": { "$ref": "#/components/responses/Error" },
              "413": { "$ref": "#/components/responses/Error" },
              "415": { "$ref": "#/components/responses/Error" },
              "429": { "$ref": "#/components/responses/Error" },
              "501": { "$ref": "#/components/responses/Error" },
              "503": { "$ref": "#/components/responses/Error" }
            }
          },
          "get": {
            "summary": "List sessions",
            "responses": { "200": { "description": "Sessions", "content": { "application/json": { "schema": {
              "type": "object", "properties": { "sessions": { "type": "array", "items": { "$ref": "#/components/schemas/Session" } } } } } } } }
          }
        },
        "/v1/sessions/{id}": {
          "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
          "get": {
            "summary": "A session's state and progress",
            "responses": {
              "200": { "description": "The session", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Session" } } } },
              "404": { "$ref": "#/components/responses/Error" }
            }
          },
          "delete": {
            "summary": "Stop a session and delete it with its recording",
            "responses": { "204": { "description": "Deleted" }, "404": { "$ref": "#/components/responses/Error" } }
          }
        },
        "/v1/sessions/{id}/video": {
          "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
          "get": {
            "summary": "The recording, once the session has ended (H.264 MP4 when ffmpeg exists, else Y4M)",
            "responses": {
              "200": { "description": "The video", "content": { "video/mp4": {}, "video/x-yuv4mpeg": {} } },
              "404": { "$ref": "#/components/responses/Error" },
              "409": { "$ref": "#/components/responses/Error" }
            }
          }
        },
        "/healthz": {
          "get": { "summary": "Liveness, device and session counts (no key needed)", "security": [], "responses": { "200": { "description": "OK", "content": { "application/json": { "schema": {
            "type": "object", "required": ["status", "device"], "properties": {
              "status": { "type": "string" }, "device": { "type": "string" }, "sessions": { "type": "integer" },
              "active": { "type": "integer" }, "queued": { "type": "integer" },
              "maxActiveSessions": { "type": "integer" }, "maxQueuedSessions": { "type": "integer" } } } } } } } }
        },
        "/metrics": {
          "get": { "summary": "Prometheus metrics (text format 0.0.4; the key unless --metrics-open)", "responses": { "200": { "description": "Metrics", "content": { "text/plain": {} } } } }
        },
        "/openapi.json": {
          "get": { "summary": "This document", "security": [], "responses": { "200": { "description": "OpenAPI 3.1", "content": { "application/json": {} } } } }
        }
      },
      "components": {
        "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "The server's API key, when it has one" } },
        "schemas": {
          "SessionRequest": {
            "type": "object", "required": ["prompt"], "additionalProperties": false,
            "properties": {
              "prompt": { "type": "string", "minLength": 1, "description": "At most 2000 UTF-8 bytes by default (--max-prompt-bytes)" },
              "seed": { "type": "integer", "minimum": 0 },
              "options": {
                "type": "object", "additionalProperties": false,
                "properties": {
                  "width": { "type": "integer", "multipleOf": 16 }, "height": { "type": "integer", "multipleOf": 16 },
                  "fps": { "type": "integer", "minimum": 1, "maximum": 120 },
                  "seconds": { "type": ["number", "null"], "exclusiveMinimum": 0 },
                  "quality": { "type": "integer", "minimum": 1, "maximum": 100, "description": "JPEG quality of live frames" },
                  "record": { "type": "boolean" },
                  "input": { "type": ["string", "null"], "enum": ["video", "image", null], "description": "Over the WebSocket: the client sends the frames. Over HTTP: set by the upload" },
                  "noiseScale": { "type": "number", "minimum": 0.2, "maximum": 1, "description": "Video-to-video: initial noise scale (default 0.8)" },
                  "steps": { "type": "integer", "minimum": 1, "maximum": 4, "description": "Video-to-video: denoising steps a block, the first of 700, 500, 400, 200 (default 2)" },
                  "codec": { "type": "string", "enum": ["jpeg", "h264"], "description": "Over the WebSocket: each frame a JPEG (default) or one H.264 stream for WebCodecs (needs ffmpeg on the server, else 501 codec_unavailable)" }
                }
              }
            }
          },
          "Session": {
            "type": "object", "required": ["id", "state", "prompt"],
            "properties": {
              "id": { "type": "string" },
              "state": { "type": "string", "enum": ["queued", "running", "paused", "finished", "failed"] },
              "prompt": { "type": "string" }, "seed": { "type": "integer" },
              "width": { "type": "integer" }, "height": { "type": "integer" }, "fps": { "type": "integer" },
              "seconds": { "type": ["number", "null"] },
              "blocks": { "type": "integer" }, "frames": { "type": "integer" },
              "promptIndex": { "type": "integer" }, "promptSwitches": { "type": "integer" },
              "lastBlockMs": { "type": "number" }, "lastDecodeMs": { "type": "number" },
              "queuePosition": { "type": ["integer", "null"] },
              "video": { "type": ["string", "null"], "description": "Path of the recording once complete" },
              "input": { "type": ["string", "null"], "enum": ["video", "image", null] },
              "inputFrames": { "type": "integer", "description": "Live input frames taken (WebSocket input sessions only)" },
              "inputFramesDropped": { "type": "integer", "description": "Of those, dropped unread because the pipeline fell behind" },
              "error": { "type": "string" }
            }
          },
          "Error": {
            "type": "object", "required": ["error"],
            "properties": { "error": { "type": "object", "required": ["code", "message"],
              "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } }
          }
        },
        "responses": {
          "Error": { "description": "An error with a stable code", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
        }
      }
    }
    """#
}
