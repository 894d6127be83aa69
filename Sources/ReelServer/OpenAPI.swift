/// The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json`. Keep it in step with
/// `ReelServer.router()`; a test checks that every path here answers.
enum OpenAPI {
    static let document = #"""
    {
      "openapi": "3.1.0",
      "info": {
        "title": "Reel",
        "version": "1",
        "description": "Real-time streaming video generation from a stream of text prompts. Live sessions run over the WebSocket at /v1/ws: JSON control messages {type: start|prompt|pause|resume|stop} in, JSON status and block messages plus one binary message per frame out (16-byte header 'RLF1', u32 block, u32 frame, u16 prompt index, u16 0, little-endian, then a baseline JPEG). A block is sent a latent frame at a time (1 frame for the video's first, 4 after), each part a block message with latentFrame, frames and endsBlock, then its frames."
      },
      "paths": {
        "/v1/sessions": {
          "post": {
            "summary": "Start a session that records a video of options.seconds (default 10) without a watcher",
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SessionRequest" } } } },
            "responses": {
              "201": { "description": "Created (running or queued)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Session" } } } },
              "400": { "$ref": "#/components/responses/Error" },
              "413": { "$ref": "#/components/responses/Error" },
              "429": { "$ref": "#/components/responses/Error" },
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
          "get": { "summary": "Liveness, device and session counts", "responses": { "200": { "description": "OK", "content": { "application/json": { "schema": {
            "type": "object", "required": ["status", "device"], "properties": {
              "status": { "type": "string" }, "device": { "type": "string" }, "sessions": { "type": "integer" },
              "active": { "type": "integer" }, "queued": { "type": "integer" },
              "maxActiveSessions": { "type": "integer" }, "maxQueuedSessions": { "type": "integer" } } } } } } } }
        },
        "/metrics": {
          "get": { "summary": "Prometheus metrics (text format 0.0.4)", "responses": { "200": { "description": "Metrics", "content": { "text/plain": {} } } } }
        },
        "/openapi.json": {
          "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.1", "content": { "application/json": {} } } } }
        }
      },
      "components": {
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
                  "record": { "type": "boolean" }
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
