// chimera's web UI: wires the views together. No build step: ES modules served as they are.
import { Attachments } from "./attach.js";
import { Chat } from "./chat.js";
import { Images } from "./images.js";
import { Models } from "./models.js";
import { el, toast } from "./render.js";
import { ServerView } from "./server.js";
import { openStore } from "./store.js";

function theme() {
  const root = document.documentElement;
  const apply = (t) => {
    root.dataset.theme = t;
    document.getElementById("hl-light").disabled = t === "dark";
    document.getElementById("hl-dark").disabled = t !== "dark";
  };
  const saved = localStorage.getItem("chimera.theme");
  apply(saved || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
  document.getElementById("theme").addEventListener("click", () => {
    const next = root.dataset.theme === "dark" ? "light" : "dark";
    localStorage.setItem("chimera.theme", next);
    apply(next);
  });
}

class Sidebar {
  constructor() {
    this.list = document.getElementById("conversations");
    this.search = document.getElementById("search");
    this.more = document.getElementById("more-chats");
    this.cursor = null;
    this.chat = null;
    let timer = null;
    this.search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => this.refresh(), 250); });
    this.more.addEventListener("click", () => this.refresh(true));
    document.getElementById("menu").addEventListener("click", () => document.getElementById("sidebar").classList.toggle("open"));
  }

  async refresh(append = false) {
    if (!this.chat || !this.chat.store) return;
    try {
      const page = await this.chat.store.list(this.search.value.trim(), append ? this.cursor : null);
      this.cursor = page.next;
      this.more.hidden = !page.next;
      const items = page.items.map((c) => {
        const li = el("li", { "data-id": c.id, class: c.id === this.chat.conv.id ? "active" : "", title: c.title },
          c.title, el("small", { text: new Date(c.updated).toLocaleString() + (c.model ? ` · ${c.model}` : "") }));
        li.addEventListener("click", async () => {
          document.getElementById("sidebar").classList.remove("open");
          showView("chat");
          await this.chat.open(c.id);
          this.refresh();
        });
        return li;
      });
      if (append) this.list.append(...items); else this.list.replaceChildren(...items);
      if (!items.length && !append) this.list.replaceChildren(el("li", { class: "note", text: this.search.value ? "Nothing found." : "No conversations yet." }));
    } catch (e) {
      toast(`Conversations: ${e.message}`);
    }
  }
}

const views = {};

function showView(name) {
  for (const v of ["chat", "images", "server"]) {
    document.getElementById(`view-${v}`).hidden = v !== name;
    document.querySelector(`.tab[data-view="${v}"]`).classList.toggle("active", v === name);
  }
  if (name === "server") views.server.start(); else views.server.stop();
  location.hash = name === "chat" ? "" : name;
}

async function main() {
  theme();
  const sidebar = new Sidebar();
  const models = new Models(() => {});
  const chat = new Chat(models, sidebar);
  sidebar.chat = chat;
  chat.attachments = new Attachments(chat);
  views.server = new ServerView(models);
  views.images = new Images();
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
  document.getElementById("new-chat").addEventListener("click", () => {
    document.getElementById("sidebar").classList.remove("open");
    showView("chat");
    chat.reset();
    sidebar.refresh();
  });
  await models.refresh();
  models.watch();
  chat.store = await openStore();
  document.getElementById("storage-note").textContent = chat.store.note;
  chat.render();
  await sidebar.refresh();
  views.images.init();
  showView(["images", "server"].includes(location.hash.slice(1)) ? location.hash.slice(1) : "chat");
  document.body.dataset.ready = "true";
  chat.input.focus();
}

addEventListener("DOMContentLoaded", () => main().catch((e) => toast(`chimera: ${e.message}`, 10000)));
