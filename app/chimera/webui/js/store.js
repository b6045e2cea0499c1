// Where conversations live: on the server (--persist-chats: /v1/chimera/chats, every browser sees
// them) or, without it, in this browser's IndexedDB.
import { ApiError, json, request } from "./api.js";

const SETTINGS = "chimera.chatSettings.";

function parseContent(content) {
  if (typeof content === "string" && content.startsWith("[{")) {
    try { const parts = JSON.parse(content); if (Array.isArray(parts)) return parts; } catch { /* text */ }
  }
  return content;
}

export class ServerStore {
  constructor() {
    this.kind = "server";
    this.note = "Conversations are saved on the server (--persist-chats): open them from any browser.";
  }
  async list(q, cursor) {
    const params = new URLSearchParams({ limit: "30" });
    if (q) params.set("q", q);
    if (cursor) params.set("cursor", cursor);
    const page = await json(`/v1/chimera/chats?${params}`);
    return { items: page.data.map((c) => ({ id: c.id, title: c.title || "(untitled)", updated: c.updated_at * 1000, model: c.model })),
             next: page.has_more ? page.next_cursor : null };
  }
  async get(id) {
    const c = await json(`/v1/chimera/chats/${encodeURIComponent(id)}`);
    const settings = JSON.parse(localStorage.getItem(SETTINGS + id) || "{}");
    const messages = c.messages.map((m) => ({ ...m, content: parseContent(m.content) }));
    const sys = messages.length && messages[0].role === "system" ? messages[0].content : "";
    return { id: c.id, title: c.title || "(untitled)", model: c.model, messages, settings: { ...settings, system: sys } };
  }
  // the server saves every exchange itself; only the per-conversation settings are kept here
  async save(conv) { if (conv.id) localStorage.setItem(SETTINGS + conv.id, JSON.stringify(conv.settings || {})); }
  async rename(id, title) { await json(`/v1/chimera/chats/${encodeURIComponent(id)}`, { method: "PATCH", body: { title } }); }
  async truncate(id, keep) { await json(`/v1/chimera/chats/${encodeURIComponent(id)}`, { method: "PATCH", body: { keep_messages: keep } }); }
  async remove(id) {
    await json(`/v1/chimera/chats/${encodeURIComponent(id)}`, { method: "DELETE" });
    localStorage.removeItem(SETTINGS + id);
  }
  async exportMarkdown(conv) {
    return (await request(`/v1/chimera/chats/${encodeURIComponent(conv.id)}/export?format=markdown`)).text();
  }
}

function idb() {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("chimera", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("conversations", { keyPath: "id" });
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
}

function tx(db, mode, fn) {
  return new Promise((resolve, reject) => {
    const t = db.transaction("conversations", mode);
    const req = fn(t.objectStore("conversations"));
    t.oncomplete = () => resolve(req && req.result);
    t.onerror = () => reject(t.error);
  });
}

function text(m) {
  if (typeof m.content === "string") return m.content;
  return (m.content || []).filter((p) => p.type === "text").map((p) => p.text).join(" ");
}

export class BrowserStore {
  constructor() {
    this.kind = "browser";
    this.note = "Conversations are kept in this browser only. Start the server with --persist-chats to keep them on the server.";
    this.db = idb();
  }
  async list(q, cursor) {
    const all = (await tx(await this.db, "readonly", (s) => s.getAll())) || [];
    const words = (q || "").toLowerCase().split(/\s+/).filter(Boolean);
    const hits = all.filter((c) => words.every((w) => (c.title + " " + c.messages.map(text).join(" ")).toLowerCase().includes(w)))
      .sort((a, b) => b.updated - a.updated);
    const start = cursor ? Number(cursor) : 0;
    const page = hits.slice(start, start + 30);
    return { items: page.map((c) => ({ id: c.id, title: c.title, updated: c.updated, model: c.model })),
             next: start + 30 < hits.length ? String(start + 30) : null };
  }
  async get(id) { return tx(await this.db, "readonly", (s) => s.get(id)); }
  async save(conv) {
    if (!conv.id) conv.id = "local_" + crypto.randomUUID();
    conv.updated = Date.now();
    const copy = JSON.parse(JSON.stringify(conv));
    await tx(await this.db, "readwrite", (s) => s.put(copy));
  }
  async rename(id, title) { const c = await this.get(id); c.title = title; await this.save(c); }
  async truncate() { /* the conversation is saved whole */ }
  async remove(id) { await tx(await this.db, "readwrite", (s) => s.delete(id)); }
  async exportMarkdown(conv) {
    const lines = [`# ${conv.title}`, ""];
    for (const m of conv.messages) {
      lines.push(`## ${m.role}`, "");
      if (m.reasoning_content) lines.push(...m.reasoning_content.split("\n").map((l) => "> " + l), "");
      lines.push(text(m), "");
    }
    return lines.join("\n");
  }
}

export async function openStore() {
  try {
    await json("/v1/chimera/chats?limit=1");
    return new ServerStore();
  } catch (e) {
    if (e instanceof ApiError && e.status === 501) return new BrowserStore();
    throw e;
  }
}
