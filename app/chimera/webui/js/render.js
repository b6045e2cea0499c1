// Model and document text → safe HTML: Markdown (marked), then DOMPurify, then highlighting.
// Nothing a model writes runs script: no <script>, no event-handler attributes, no javascript:
// links, no remote images (the page only talks to its own server).

let hooked = false;

function hook() {
  if (hooked) return;
  hooked = true;
  window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
    if (node.tagName === "IMG") {
      const src = node.getAttribute("src") || "";
      if (!/^(data:image\/|blob:)/i.test(src)) node.removeAttribute("src");
      node.removeAttribute("srcset");
    }
  });
}

export function sanitize(html) {
  hook();
  return window.DOMPurify.sanitize(html, {
    USE_PROFILES: { html: true },
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed", "link", "meta", "base"],
    FORBID_ATTR: ["style", "srcset", "action", "formaction"],
  });
}

function decorate(root) {
  for (const code of root.querySelectorAll("pre code")) {
    if (window.hljs) {
      try { window.hljs.highlightElement(code); } catch { /* unknown language */ }
    }
    const pre = code.parentElement;
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "Copy";
    copy.addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(code.textContent); copy.textContent = "Copied"; } catch { copy.textContent = "Select and copy"; }
      setTimeout(() => { copy.textContent = "Copy"; }, 1500);
    });
    pre.appendChild(copy);
  }
}

// Render Markdown into `el` (replacing what it holds).
export function markdown(el, text) {
  const html = window.marked ? window.marked.parse(text || "", { gfm: true, breaks: false }) : "";
  el.innerHTML = sanitize(html);
  if (!window.marked) el.textContent = text || "";
  decorate(el);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

export function toast(text, ms = 3500) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(t._timer);
  t._timer = setTimeout(() => { t.hidden = true; }, ms);
}
