// The server view: generation speed, queue and slots from /metrics and /slots, the models and
// their status, versions from /v1/chimera/info. Refreshed every two seconds while shown.
import { json, request } from "./api.js";
import { el } from "./render.js";

function metric(text, name) {
  let sum = 0;
  let seen = false;
  for (const line of text.split("\n")) {
    if (line.startsWith(name + "{") || line.startsWith(name + " ")) {
      const v = Number(line.slice(line.lastIndexOf(" ") + 1));
      if (!Number.isNaN(v)) { sum += v; seen = true; }
    }
  }
  return seen ? sum : null;
}

function dl(target, pairs) {
  target.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v === null || v === undefined ? "—" : String(v) })]));
}

export class ServerView {
  constructor(models) {
    this.models = models;
    this.timer = null;
    this.info = null;
  }

  start() { this.refresh(); this.timer = setInterval(() => this.refresh(), 2000); }
  stop() { clearInterval(this.timer); this.timer = null; }

  async refresh() {
    try {
      if (!this.info) this.info = await json("/v1/chimera/info");
      const text = await (await request("/metrics")).text();
      const tps = metric(text, "chimera_llm_generation_tokens_per_second");
      dl(document.getElementById("server-gen"), [
        ["tokens/s now", tps === null ? null : tps.toFixed(1)],
        ["slots busy", `${metric(text, "chimera_llm_slots_busy") ?? 0} of ${metric(text, "chimera_llm_slots_total") ?? 0}`],
        ["waiting for a slot", metric(text, "chimera_llm_queue_length")],
        ["tokens generated", metric(text, "chimera_llm_generated_tokens_total")],
        ["requests in flight", metric(text, "chimera_http_requests_in_flight")],
      ]);
      await this.models.refresh();
      document.getElementById("server-models").replaceChildren(...this.models.list.map((m) => el("li", {},
        el("strong", { text: m.id }), ` ${(m.status && m.status.value) || "loaded"} · ${m.kind || "chat"}` + (m.in_flight ? ` · ${m.in_flight} in flight` : ""))));
      const current = this.models.current();
      const slotsTable = document.getElementById("server-slots");
      if (current && (!current.status || current.status.value === "loaded") && (current.kind || "chat") === "chat") {
        const slots = await json(`/slots?model=${encodeURIComponent(current.id)}`);
        slotsTable.replaceChildren(el("tr", {}, el("th", { text: "slot" }), el("th", { text: "busy" }), el("th", { text: "cached tokens" }), el("th", { text: "context" })),
          ...slots.map((s) => el("tr", {}, el("td", { text: String(s.id) }), el("td", { text: s.is_processing ? "yes" : "no" }),
            el("td", { text: String(s.n_cached_tokens ?? "") }), el("td", { text: String(s.n_ctx ?? "") }))));
      } else {
        slotsTable.replaceChildren(el("tr", {}, el("td", { text: current ? `${current.id} is not loaded` : "no model" })));
      }
      const i = this.info;
      const lc = i.llama_cpp || {};
      const eng = i.engines || {};
      dl(document.getElementById("server-versions"), [
        ["chimera", i.chimera], ["llama.cpp", lc.version && `${lc.version} (binding ${lc.binding})`],
        ["backends", (lc.backends || []).join(", ")],
        ["devices", (lc.devices || []).map((d) => `${d.description || d.name} (${Math.round((d.memory_total || 0) / 2 ** 30)} GiB)`).join(", ")],
        ["whisper.cpp", eng.whisper_cpp && eng.whisper_cpp.binding], ["stable-diffusion.cpp", eng.stable_diffusion_cpp && eng.stable_diffusion_cpp.binding],
        ["SQLite", i.sqlite && i.sqlite.sqlite], ["Python", i.python],
      ]);
    } catch (e) {
      document.getElementById("server-gen").replaceChildren(el("dt", { text: "error" }), el("dd", { text: e.message }));
    }
  }
}
