// Attachments: images go to the model (when it has a projector), audio is transcribed into the
// message (a file, or the microphone), documents go into the conversation's vector store and the
// reply then searches them (file_search through /v1/responses).
import { json, sse } from "./api.js";
import { el, toast } from "./render.js";

const DOCUMENT = /\.(txt|md|markdown|html?|pdf)$/i;

function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

export class Attachments {
  constructor(chat) {
    this.chat = chat;
    this.images = [];  // data URLs for the next message
    this.box = document.getElementById("attachments");
    this.status = document.getElementById("composer-status");
    this.input = document.getElementById("attach");
    this.mic = document.getElementById("mic");
    this.input.addEventListener("change", async () => {
      const files = [...this.input.files];
      this.input.value = "";
      for (const f of files) await this.add(f);
    });
    this.mic.addEventListener("click", () => this.toggleRecording());
    this.recorder = null;
  }

  async add(file) {
    try {
      if (file.type.startsWith("image/")) return await this.addImage(file);
      if (file.type.startsWith("audio/") || /\.(wav|mp3|flac|ogg|opus|m4a|webm)$/i.test(file.name)) return await this.transcribe(file, file.name);
      if (DOCUMENT.test(file.name) || file.type.startsWith("text/") || file.type === "application/pdf") return await this.addDocument(file);
      toast(`${file.name}: not an image, audio or a document (txt, md, html, pdf)`);
    } catch (e) {
      this.status.textContent = "";
      toast(`${file.name}: ${e.message}`, 6000);
    }
  }

  async addImage(file) {
    if (!this.chat.models.can("vision")) {
      toast("This model reads no images: start it with --mmproj (its projector), or pick a vision model.", 6000);
      return;
    }
    const url = await dataUrl(file);
    this.images.push(url);
    this.renderChips();
  }

  renderChips() {
    this.box.replaceChildren(...this.images.map((url, i) => el("span", { class: "chip" },
      el("img", { src: url, alt: "", width: "24", height: "24" }),
      `image ${i + 1}`,
      el("button", { type: "button", title: "Remove", onclick: () => { this.images.splice(i, 1); this.renderChips(); } }, "×"))));
  }

  take() { const out = this.images; this.images = []; this.renderChips(); return out; }

  // speech → text through /v1/audio/transcriptions, streamed: the text grows as segments decode
  async transcribe(blob, name) {
    const form = new FormData();
    form.append("file", blob, name);
    form.append("stream", "true");
    form.append("response_format", "json");
    this.status.textContent = `Transcribing ${name}…`;
    let text = "";
    await sse("/v1/audio/transcriptions", { method: "POST", body: form }, ({ data }) => {
      if (data && data.type === "transcript.text.delta") {
        text += data.delta;
        this.status.textContent = `Transcribing ${name}: ${text.trim().slice(-80)}`;
      } else if (data && data.type === "transcript.text.done") {
        text = data.text;
      } else if (data && data.error) {
        throw new Error(data.error.message || "transcription failed");
      }
    });
    this.status.textContent = `Transcribed ${name}.`;
    const box = this.chat.input;
    box.value = (box.value ? box.value + "\n" : "") + text.trim();
    box.dispatchEvent(new Event("input"));
    box.focus();
  }

  async toggleRecording() {
    if (this.recorder) { this.recorder.stop(); return; }
    let stream;
    try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); } catch (e) {
      toast(`No microphone: ${e.message}`);
      return;
    }
    const chunks = [];
    const rec = new MediaRecorder(stream);
    this.recorder = rec;
    rec.ondataavailable = (ev) => { if (ev.data.size) chunks.push(ev.data); };
    rec.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop());
      this.recorder = null;
      this.mic.classList.remove("recording");
      this.mic.title = "Record and transcribe";
      const blob = new Blob(chunks, { type: rec.mimeType || "audio/webm" });
      try { await this.transcribe(blob, "recording.webm"); } catch (e) { this.status.textContent = ""; toast(`recording: ${e.message}`); }
    };
    rec.start();
    this.mic.classList.add("recording");
    this.mic.title = "Stop recording";
    this.status.textContent = "Recording… press the microphone again to stop.";
  }

  // a document goes into this conversation's vector store (created on first use)
  async addDocument(file) {
    const conv = this.chat.conv;
    this.status.textContent = `Reading ${file.name} into this conversation's documents…`;
    if (!conv.settings.vectorStore) {
      const store = await json("/v1/vector_stores", { method: "POST", body: { name: `chat-${crypto.randomUUID()}` } });
      conv.settings.vectorStore = store.id;
    }
    const form = new FormData();
    form.append("file", file, file.name);
    const added = await json(`/v1/vector_stores/${conv.settings.vectorStore}/files`, { method: "POST", body: form });
    conv.settings.documents = [...(conv.settings.documents || []), file.name];
    await this.chat.saveSettings();
    this.status.textContent = `${file.name}: ${added.chunk_count ?? "its"} passages ready; replies will search ${conv.settings.documents.length} document(s).`;
    this.chat.renderDocs();
  }
}

