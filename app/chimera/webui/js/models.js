// The model picker: every served model from /v1/models with what it can do and its status; with
// models on demand, a load/unload button and the load progress from /models/sse.
import { json, sse } from "./api.js";
import { toast } from "./render.js";

export class Models {
  constructor(onChange) {
    this.select = document.getElementById("model");
    this.badge = document.getElementById("model-status");
    this.loadBtn = document.getElementById("model-load");
    this.unloadBtn = document.getElementById("model-unload");
    this.progress = document.getElementById("model-progress");
    this.list = [];
    this.onChange = onChange;
    this.select.addEventListener("change", () => {
      localStorage.setItem("chimera.model", this.select.value);
      this.show();
      this.onChange();
    });
    this.loadBtn.addEventListener("click", () => this.act("load"));
    this.unloadBtn.addEventListener("click", () => this.act("unload"));
  }

  async refresh() {
    let data;
    for (let i = 0; i < 120; i++) {
      try { data = (await json("/v1/models")).data; break; } catch (e) {
        if (e.status !== 503) throw e;  // the models loaded at start are still loading
        this.badge.textContent = "starting…";
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    this.list = (data || []).filter((m) => !m.chimera);  // speech, image and vector-store models are not chat models
    const keep = this.select.value || localStorage.getItem("chimera.model");
    this.select.replaceChildren(...this.list.map((m) => {
      const o = document.createElement("option");
      o.value = m.id;
      o.textContent = `${m.id} · ${(m.capabilities || []).filter((c) => c !== "completion").join(", ")}`;
      return o;
    }));
    if (this.list.some((m) => m.id === keep)) this.select.value = keep;
    else {
      const chat = this.list.find((m) => (m.kind || "chat") === "chat");
      if (chat) this.select.value = chat.id;
    }
    this.show();
  }

  current() { return this.list.find((m) => m.id === this.select.value) || null; }
  can(capability) { const m = this.current(); return Boolean(m && (m.capabilities || []).includes(capability)); }
  onDemand() { return this.list.some((m) => m.status && m.status.value && m.status.value !== "loaded") || this.list.length > 1; }

  show() {
    const m = this.current();
    const st = (m && m.status && m.status.value) || "loaded";
    this.badge.className = `badge ${st}`;
    this.badge.textContent = st === "failed" ? "failed" : st;
    this.badge.title = (m && m.status && m.status.error) || "";
    this.loadBtn.hidden = !(m && (st === "unloaded" || st === "failed"));
    this.unloadBtn.hidden = !(m && st === "loaded" && this.onDemand());
    this.progress.hidden = st !== "loading";
    if (st === "loading") this.progress.value = (m.status.progress) || 0;
  }

  async act(what) {
    const m = this.current();
    if (!m) return;
    try {
      if (what === "load") { m.status = { value: "loading", progress: 0 }; this.show(); }
      await json(`/models/${what}`, { method: "POST", body: { model: m.id } });
    } catch (e) {
      toast(`${what} ${m.id}: ${e.message}`);
    }
    await this.refresh();
  }

  // status changes and load progress, as they happen (a request that loads a model shows here too)
  async watch() {
    for (;;) {
      try {
        await sse("/models/sse", {}, ({ data }) => {
          if (!data || typeof data !== "object" || !data.model) return;
          const m = this.list.find((x) => x.id === data.model);
          if (!m) return;
          const d = data.data || {};
          m.status = { value: d.status, progress: d.progress ? d.progress.value : undefined, error: d.error };
          if (m.id === this.select.value) this.show();
        });
      } catch (e) {
        if (e.status === 404 || e.status === 501) return;
      }
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
}
