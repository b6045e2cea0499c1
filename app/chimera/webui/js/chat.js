// The conversation: messages rendered as they stream (Markdown, reasoning, tool calls, citations,
// token counts and speed), the composer, stop, regenerate, and editing a message to go on from it.
import { sse } from "./api.js";
import { el, markdown, toast } from "./render.js";

const CHAT_HEADER = "X-Chimera-Chat-Id";

function blank() { return { id: null, title: "New chat", messages: [], settings: {} }; }

function textOf(content) {
  if (typeof content === "string") return content;
  return (content || []).filter((p) => p.type === "text").map((p) => p.text).join("\n");
}

function imagesOf(content) {
  if (typeof content === "string") return [];
  return (content || []).filter((p) => p.type === "image_url").map((p) => p.image_url.url);
}

function stats(m) {
  const u = m.usage || {};
  const t = m.timings || {};
  const out = u.completion_tokens ?? u.output_tokens;
  if (out === undefined) return "";
  const parts = [`${out} tokens`];
  const speed = t.predicted_per_second || m.speed;
  if (speed) parts.push(`${speed.toFixed(1)} tok/s`);
  const prompt = u.prompt_tokens ?? u.input_tokens;
  if (prompt !== undefined) {
    const cached = (u.prompt_tokens_details || u.input_tokens_details || {}).cached_tokens;
    parts.push(`prompt ${prompt}` + (cached ? ` (${cached} cached)` : ""));
  }
  if (m.finish_reason && m.finish_reason !== "stop") parts.push(m.finish_reason === "length" ? "cut at the length limit" : m.finish_reason);
  if (m.incomplete) parts.push("stopped");
  return parts.join(" · ");
}

export class Chat {
  constructor(models, sidebar) {
    this.models = models;
    this.sidebar = sidebar;
    this.store = null;
    this.conv = blank();
    this.box = document.getElementById("messages");
    this.input = document.getElementById("input");
    this.title = document.getElementById("chat-title");
    this.sendBtn = document.getElementById("send");
    this.stopBtn = document.getElementById("stop");
    this.controller = null;
    this.attachments = null;
    document.getElementById("composer").addEventListener("submit", (ev) => { ev.preventDefault(); this.send(); });
    this.input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); this.send(); }
    });
    this.input.addEventListener("input", () => {
      this.input.style.height = "auto";
      this.input.style.height = Math.min(this.input.scrollHeight, 220) + "px";
    });
    this.stopBtn.addEventListener("click", () => this.stop());
    document.getElementById("rename").addEventListener("click", () => this.rename());
    document.getElementById("delete").addEventListener("click", () => this.remove());
    document.getElementById("export").addEventListener("click", () => this.exportMd());
    document.getElementById("settings").addEventListener("click", () => this.editSettings());
  }

  reset() { this.conv = blank(); this.render(); this.input.focus(); }

  async open(id) {
    this.stop();
    this.conv = await this.store.get(id);
    if (!this.conv) { toast("That conversation is gone."); this.reset(); return; }
    this.conv.settings = this.conv.settings || {};
    this.render();
  }

  busy(on) {
    this.sendBtn.hidden = on;
    this.stopBtn.hidden = !on;
  }

  stop() { if (this.controller) this.controller.abort(); }

  // --- rendering ---------------------------------------------------------------------------
  render() {
    this.title.textContent = this.conv.title;
    const shown = this.conv.messages.map((m, i) => [m, i]).filter(([m]) => m.role === "user" || m.role === "assistant");
    if (!shown.length) {
      const where = this.store ? this.store.note : "";
      this.box.replaceChildren(el("div", { class: "empty" }, el("p", { text: "Ask anything. Attach images, audio or documents with the paperclip, or speak with the microphone." }), el("p", { class: "note", text: where })));
    } else {
      this.box.replaceChildren(...shown.map(([m, i]) => this.messageNode(m, i)));
    }
    this.renderDocs();
    this.box.scrollTop = this.box.scrollHeight;
  }

  renderDocs() {
    const docs = (this.conv.settings && this.conv.settings.documents) || [];
    const status = document.getElementById("composer-status");
    if (docs.length && !status.textContent) status.textContent = `Replies search this conversation's documents: ${docs.join(", ")}`;
  }

  messageNode(m, index) {
    const body = el("div", { class: "body" });
    const who = el("div", { class: "who" }, el("span", { text: m.role === "user" ? "You" : (m.model || "Assistant") }));
    const node = el("div", { class: `msg ${m.role}`, "data-index": String(index) }, who, body);
    if (m.role === "user") {
      body.textContent = textOf(m.content);
      for (const url of imagesOf(m.content)) body.append(el("img", { class: "attached", src: url, alt: "attached image" }));
      who.append(el("button", { type: "button", class: "edit", title: "Edit and go on from here", onclick: () => this.edit(index, node) }, "Edit"));
    } else {
      this.fillAssistant(node, m);
      who.append(el("button", { type: "button", class: "copy-msg", onclick: () => navigator.clipboard.writeText(m.content || "").then(() => toast("Copied"), () => {}) }, "Copy"));
      if (index === this.conv.messages.length - 1 && !this.controller) {
        who.append(el("button", { type: "button", class: "regenerate", title: "Answer again", onclick: () => this.regenerate() }, "Regenerate"));
      }
    }
    return node;
  }

  fillAssistant(node, m, streaming = false) {
    const body = node.querySelector(".body");
    body.replaceChildren();
    if (m.reasoning_content) {
      const text = el("div", { class: "text" });
      text.textContent = m.reasoning_content;
      const details = el("details", { class: "reasoning", open: streaming && !m.content }, el("summary", { text: streaming && !m.content ? "Thinking…" : "Reasoning" }), text);
      body.append(details);
    }
    const content = el("div", { class: "content" });
    markdown(content, m.content || "");
    body.append(content);
    for (const call of m.tool_calls || []) {
      const fn = call.function || {};
      body.append(el("div", { class: "tool-call" }, "Tool call: ", el("b", { text: fn.name || "?" }), `(${fn.arguments || ""})`));
    }
    if (m.citations && m.citations.length) {
      const list = el("ol");
      for (const c of m.citations) list.append(el("li", {}, el("strong", { text: c.filename }), c.text ? el("blockquote", { text: c.text }) : null));
      body.append(el("div", { class: "citations" }, el("div", { class: "note", text: "Sources" }), list));
    }
    if (m.error) body.append(el("p", { class: "error", text: m.error }));
    const line = stats(m);
    let s = node.querySelector(".stats");
    if (!s) { s = el("div", { class: "stats" }); node.append(s); }
    s.textContent = line;
  }

  // --- sending -----------------------------------------------------------------------------
  requestMessages() {
    const out = [];
    const sys = this.conv.settings.system;
    const msgs = this.conv.messages.filter((m) => m.role !== "system");
    if (sys) out.push({ role: "system", content: sys });
    for (const m of msgs) {
      const r = { role: m.role, content: m.content ?? "" };
      if (m.tool_calls) r.tool_calls = m.tool_calls;
      if (m.tool_call_id) r.tool_call_id = m.tool_call_id;
      out.push(r);
    }
    return out;
  }

  sampling() {
    const s = this.conv.settings;
    const out = {};
    for (const [k, v] of [["temperature", s.temperature], ["top_p", s.top_p], ["max_tokens", s.max_tokens], ["seed", s.seed]]) {
      if (v !== undefined && v !== null && v !== "") out[k] = Number(v);
    }
    return out;
  }

  async send() {
    if (this.controller) return;
    const text = this.input.value.trim();
    const images = this.attachments.take();
    if (!text && !images.length) return;
    const model = this.models.current();
    if (!model) { toast("No model to talk to."); return; }
    if ((model.kind || "chat") !== "chat") { toast(`${model.id} is an ${model.kind} model: pick a chat model.`); return; }
    this.input.value = "";
    this.input.style.height = "auto";
    const content = images.length ? [{ type: "text", text }, ...images.map((url) => ({ type: "image_url", image_url: { url } }))] : text;
    if (this.conv.settings.system && !this.conv.messages.some((m) => m.role === "system")) {
      this.conv.messages.unshift({ role: "system", content: this.conv.settings.system });
    }
    this.conv.messages.push({ role: "user", content });
    if (this.conv.title === "New chat") this.conv.title = text.slice(0, 80) || "Image";
    await this.generate();
  }

  async regenerate() {
    if (this.controller) return;
    const last = this.conv.messages.length - 1;
    if (last < 0 || this.conv.messages[last].role !== "assistant") return;
    this.conv.messages.pop();
    if (this.conv.id) await this.store.truncate(this.conv.id, this.conv.messages.length);
    await this.generate();
  }

  edit(index, node) {
    if (this.controller) return;
    const m = this.conv.messages[index];
    const box = el("textarea", { class: "edit-box" });
    box.value = textOf(m.content);
    const save = el("button", { type: "button", class: "primary" }, "Send");
    const cancel = el("button", { type: "button" }, "Cancel");
    node.querySelector(".body").replaceChildren(box, el("div", { class: "row end" }, cancel, save));
    box.focus();
    cancel.addEventListener("click", () => this.render());
    const go = async () => {
      const images = imagesOf(m.content);
      const content = images.length ? [{ type: "text", text: box.value }, ...images.map((url) => ({ type: "image_url", image_url: { url } }))] : box.value;
      this.conv.messages = this.conv.messages.slice(0, index);
      if (this.conv.id) await this.store.truncate(this.conv.id, index);
      this.conv.messages.push({ role: "user", content });
      await this.generate();
    };
    save.addEventListener("click", go);
    box.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); go(); } });
  }

  async generate() {
    const model = this.models.current();
    const reply = { role: "assistant", content: "", model: model.id };
    this.conv.messages.push(reply);
    this.render();
    const node = this.box.lastElementChild;
    this.controller = new AbortController();
    this.busy(true);
    const started = performance.now();
    let first = 0;
    let pending = false;
    const paint = () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; this.fillAssistant(node, reply, true); this.box.scrollTop = this.box.scrollHeight; });
    };
    const headers = {};
    if (this.conv.id && this.store.kind === "server") headers[CHAT_HEADER] = this.conv.id;
    const docs = this.conv.settings.vectorStore;
    try {
      let r;
      if (docs) r = await this.viaResponses(model, reply, headers, () => { first = first || performance.now(); paint(); });
      else r = await this.viaChat(model, reply, headers, () => { first = first || performance.now(); paint(); });
      const id = r.headers.get(CHAT_HEADER);
      if (id && this.store.kind === "server") this.conv.id = id;
    } catch (e) {
      if (e.name === "AbortError") reply.incomplete = true;
      else reply.error = e.message;
    } finally {
      this.controller = null;
      this.busy(false);
    }
    if (!reply.timings && first && reply.usage) {
      const n = reply.usage.completion_tokens ?? reply.usage.output_tokens;
      if (n > 1) reply.speed = (n - 1) / ((performance.now() - first) / 1000);
    }
    reply.elapsed = (performance.now() - started) / 1000;
    await this.store.save(this.conv);
    this.render();
    this.sidebar.refresh();
  }

  async viaChat(model, reply, headers, onDelta) {
    const body = { model: model.id, messages: this.requestMessages().slice(0, -1), stream: true,
                   stream_options: { include_usage: true }, ...this.sampling() };
    return sse("/v1/chat/completions", { method: "POST", body, headers, signal: this.controller.signal }, ({ data }) => {
      if (!data || typeof data !== "object") return;
      if (data.error) { reply.error = data.error.message; onDelta(); return; }
      const c = (data.choices || [])[0];
      if (c) {
        const d = c.delta || {};
        if (d.reasoning_content) reply.reasoning_content = (reply.reasoning_content || "") + d.reasoning_content;
        if (d.content) reply.content += d.content;
        for (const tc of d.tool_calls || []) {
          reply.tool_calls = reply.tool_calls || [];
          const slot = reply.tool_calls[tc.index] || (reply.tool_calls[tc.index] = { id: tc.id, type: "function", function: { name: "", arguments: "" } });
          if (tc.function && tc.function.name) slot.function.name = tc.function.name;
          if (tc.function && tc.function.arguments) slot.function.arguments += tc.function.arguments;
        }
        if (c.finish_reason) reply.finish_reason = c.finish_reason;
      }
      if (data.usage) reply.usage = data.usage;
      if (data.timings) reply.timings = data.timings;
      onDelta();
    });
  }

  // with documents: /v1/responses with file_search over the conversation's vector store
  async viaResponses(model, reply, headers, onDelta) {
    const input = this.requestMessages().slice(0, -1).map((m) => ({ role: m.role, content: textOf(m.content) }));
    const s = this.sampling();
    const body = { model: model.id, input, stream: true, store: false, include: ["file_search_call.results"],
                   tools: [{ type: "file_search", vector_store_ids: [this.conv.settings.vectorStore] }] };
    if (s.temperature !== undefined) body.temperature = s.temperature;
    if (s.top_p !== undefined) body.top_p = s.top_p;
    if (s.max_tokens !== undefined) body.max_output_tokens = s.max_tokens;
    const found = [];
    const cited = [];
    const r = await sse("/v1/responses", { method: "POST", body, headers, signal: this.controller.signal }, ({ data }) => {
      if (!data || typeof data !== "object") return;
      switch (data.type) {
        case "response.output_text.delta": reply.content += data.delta; break;
        case "response.reasoning_text.delta": reply.reasoning_content = (reply.reasoning_content || "") + data.delta; break;
        case "response.output_text.annotation.added": cited.push(data.annotation); break;
        case "response.output_item.done":
          if (data.item && data.item.type === "file_search_call") found.push(...(data.item.results || []));
          break;
        case "response.completed":
          reply.usage = data.response.usage;
          reply.finish_reason = data.response.status === "incomplete" ? "length" : "stop";
          break;
        case "error": reply.error = (data.error && data.error.message) || data.message; break;
        default: break;
      }
      onDelta();
    });
    const names = [...new Set(cited.map((a) => a.filename || a.file_id))];
    reply.citations = names.map((name) => {
      const hit = found.find((f) => f.filename === name || f.file_id === name);
      return { filename: name, text: hit && hit.text ? hit.text.slice(0, 400) : "" };
    });
    return r;
  }

  // --- conversation actions ------------------------------------------------------------------
  async saveSettings() { await this.store.save(this.conv); }

  async rename() {
    if (!this.conv.id) { toast("Send a message first."); return; }
    const title = prompt("Rename this conversation", this.conv.title);
    if (!title || !title.trim()) return;
    await this.store.rename(this.conv.id, title.trim());
    this.conv.title = title.trim();
    this.render();
    this.sidebar.refresh();
  }

  async remove() {
    if (!this.conv.id) { this.reset(); return; }
    if (!confirm(`Delete “${this.conv.title}”?`)) return;
    await this.store.remove(this.conv.id);
    this.reset();
    this.sidebar.refresh();
  }

  async exportMd() {
    if (!this.conv.id) { toast("Nothing to export yet."); return; }
    const md = await this.store.exportMarkdown(this.conv);
    const a = el("a", { href: URL.createObjectURL(new Blob([md], { type: "text/markdown" })), download: `${this.conv.title.slice(0, 60) || "chat"}.md` });
    document.body.append(a);
    a.click();
    a.remove();
  }

  editSettings() {
    const d = document.getElementById("settings-dialog");
    const s = this.conv.settings;
    const fields = { system: "set-system", temperature: "set-temperature", top_p: "set-top-p", max_tokens: "set-max-tokens", seed: "set-seed" };
    for (const [k, id] of Object.entries(fields)) document.getElementById(id).value = s[k] ?? "";
    // a saved chat keeps the system prompt it started with: the server stores the history as sent
    const locked = this.store.kind === "server" && this.conv.messages.length > 0;
    const sys = document.getElementById("set-system");
    sys.disabled = locked;
    sys.title = locked ? "Start a new chat to use another system prompt" : "";
    d.addEventListener("close", async () => {
      if (d.returnValue !== "ok") return;
      for (const [k, id] of Object.entries(fields)) {
        const v = document.getElementById(id).value;
        if (k === "system" && locked) continue;
        if (v === "") delete s[k]; else s[k] = k === "system" ? v : Number(v);
      }
      if (this.conv.id) await this.store.save(this.conv);
    }, { once: true });
    d.showModal();
  }
}
