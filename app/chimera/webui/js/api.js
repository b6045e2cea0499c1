// The server's API: every request carries the API key (kept in this browser) as a Bearer header,
// never in a URL; a 401 asks for the key once and retries.

const KEY = "chimera.apiKey";
let asking = null;

export function apiKey() { return localStorage.getItem(KEY) || ""; }

function askForKey(rejected) {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  document.getElementById("key-error").hidden = !rejected;
  input.value = "";
  asking = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      asking = null;
      localStorage.setItem(KEY, input.value.trim());
      resolve();
    }, { once: true });
  });
  dialog.showModal();
  input.focus();
  return asking;
}

export class ApiError extends Error {
  constructor(status, message, body) { super(message); this.status = status; this.body = body; }
}

function errorMessage(body, status) {
  if (body && typeof body === "object") {
    const e = body.error;
    if (typeof e === "string") return e;
    if (e && e.message) return e.message;
  }
  return `HTTP ${status}`;
}

// fetch with the key; JSON bodies for plain objects; answers the Response (ok) or throws ApiError
export async function request(path, options = {}) {
  for (let attempt = 0; attempt < 4; attempt++) {
    const headers = new Headers(options.headers || {});
    const key = apiKey();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    let body = options.body;
    if (body && !(body instanceof FormData) && !(body instanceof Blob) && typeof body !== "string") {
      body = JSON.stringify(body);
      headers.set("Content-Type", "application/json");
    }
    const r = await fetch(path, { ...options, headers, body });
    if (r.status === 401) {
      await askForKey(Boolean(key));
      continue;
    }
    if (!r.ok) {
      let parsed = null;
      try { parsed = await r.json(); } catch { /* not JSON */ }
      throw new ApiError(r.status, errorMessage(parsed, r.status), parsed);
    }
    return r;
  }
  throw new ApiError(401, "no API key was accepted");
}

export async function json(path, options) { return (await request(path, options)).json(); }

// Server-sent events over fetch (EventSource cannot send the Authorization header):
// calls onEvent({event, data}) for each event; `data` is parsed JSON, or the raw text.
export async function sse(path, options, onEvent) {
  const r = await request(path, options);
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "message";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
      if (line === "") {
        if (data.length) {
          const text = data.join("\n");
          let parsed = text;
          if (text !== "[DONE]") { try { parsed = JSON.parse(text); } catch { /* raw */ } }
          onEvent({ event, data: parsed });
        }
        event = "message";
        data = [];
      } else if (line.startsWith("event:")) {
        event = line.slice(6).trim();
      } else if (line.startsWith("data:")) {
        data.push(line.slice(5).replace(/^ /, ""));
      }
    }
  }
  return r;
}
