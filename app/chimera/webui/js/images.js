// Image generation: /v1/images/generations (or /edits with an init image) with a progress bar fed
// by the progress events, and a gallery of this browser's results with their parameters.
import { json, sse } from "./api.js";
import { el, toast } from "./render.js";

const GALLERY = "chimera.gallery";

export class Images {
  constructor() {
    this.form = document.getElementById("image-form");
    this.progress = document.getElementById("image-progress");
    this.status = document.getElementById("image-status");
    this.gallery = document.getElementById("gallery");
    this.items = JSON.parse(sessionStorage.getItem(GALLERY) || "[]");
    this.form.addEventListener("submit", (ev) => { ev.preventDefault(); this.generate(); });
    this.enabled = null;
  }

  async init() {
    try {
      const loras = await json("/v1/images/lora-adapters");
      const select = document.getElementById("image-lora");
      for (const l of loras) select.append(el("option", { value: l.name || l.id, text: l.name || l.id }));
      this.enabled = true;
    } catch (e) {
      this.enabled = e.status !== 501;
      if (!this.enabled) this.status.textContent = "Image generation is off: start the server with --sd-model.";
    }
    document.getElementById("image-go").disabled = !this.enabled;
    this.renderGallery();
  }

  params() {
    const v = (id) => document.getElementById(id).value;
    const p = { prompt: v("image-prompt"), size: v("image-size"), steps: Number(v("image-steps")), cfg_scale: Number(v("image-cfg")) };
    if (v("image-negative")) p.negative_prompt = v("image-negative");
    if (v("image-seed") !== "") p.seed = Number(v("image-seed"));
    if (v("image-lora")) p.loras = [{ name: v("image-lora"), scale: 1.0 }];
    return p;
  }

  async generate() {
    const p = this.params();
    const init = document.getElementById("image-init").files[0];
    let path = "/v1/images/generations";
    let body = { ...p, stream: true };
    if (init) {
      path = "/v1/images/edits";
      body = new FormData();
      body.append("image", init, init.name);
      for (const [k, val] of Object.entries(p)) body.append(k, typeof val === "object" ? JSON.stringify(val) : String(val));
      body.append("stream", "true");
    }
    this.progress.hidden = false;
    this.progress.value = 0;
    this.status.textContent = "Waiting for a worker…";
    document.getElementById("image-go").disabled = true;
    let result = null;
    try {
      await sse(path, { method: "POST", body }, ({ event, data }) => {
        if (event === "progress" && data && data.steps) {
          this.progress.value = data.step / data.steps;
          this.status.textContent = `Step ${data.step} of ${data.steps}`;
        } else if (event === "result") {
          result = data;
        } else if (event === "error" || (data && data.error)) {
          throw new Error((data.error && data.error.message) || "generation failed");
        }
      });
      if (!result) throw new Error("the server sent no image");
      for (const img of result.data) {
        this.items.unshift({ src: `data:image/${result.output_format || "png"};base64,${img.b64_json}`,
                             params: { ...p, seed: img.seed, size: result.size }, at: Date.now() });
      }
      this.items = this.items.slice(0, 24);
      try { sessionStorage.setItem(GALLERY, JSON.stringify(this.items)); } catch { /* full: keep them in memory */ }
      this.status.textContent = `Done: ${result.size}, seed ${result.seed}.`;
      this.renderGallery();
    } catch (e) {
      this.status.textContent = "";
      toast(`Image: ${e.message}`, 6000);
    } finally {
      this.progress.hidden = true;
      document.getElementById("image-go").disabled = false;
    }
  }

  renderGallery() {
    this.gallery.replaceChildren(...this.items.map((it) => {
      const p = it.params;
      const caption = `${p.prompt} · ${p.size} · ${p.steps} steps · cfg ${p.cfg_scale} · seed ${p.seed}` + (p.loras ? ` · LoRA ${p.loras[0].name}` : "");
      return el("figure", {}, el("img", { src: it.src, alt: p.prompt }), el("figcaption", { text: caption }));
    }));
  }
}
