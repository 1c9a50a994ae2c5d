// The composer's helpers: it grows with its text, counts characters near
// the limit (a long paste is never cut silently), keeps a draft per room
// across reloads, and completes @mentions from the room's members.

import * as storage from "./storage.js";

const COUNT_FROM = 0.9; // show the counter from 90 % of the limit
const MENTION_BEFORE_CARET = /(?:^|[^\p{L}\p{N}_.+@/-])@([\p{L}\p{N}_.+-]{0,150})$/u;

/** Characters as the server counts them (code points, not UTF-16 units). */
export function length(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

export class Composer {
  /**
   * input: the textarea; counter: the element for "N characters left";
   * limit: the server's length limit; draftKey: localStorage key.
   */
  constructor({ input, counter, limit, draftKey }) {
    this.input = input;
    this.counter = counter;
    this.limit = limit;
    this.draftKey = draftKey;
    // Chromium sizes the field to its text by itself (field-sizing: content,
    // in the stylesheet); elsewhere the height follows scrollHeight.
    this.sizesItself = window.CSS?.supports?.("field-sizing", "content") ?? false;
    const draft = storage.load(draftKey);
    if (draft) input.value = draft;
    input.addEventListener("input", () => this.changed());
    this.changed();
  }

  get overBy() {
    return length(this.input.value.trim()) - this.limit;
  }

  changed() {
    storage.save(this.draftKey, this.input.value.trim() ? this.input.value : "");
    this.grow();
    const used = length(this.input.value.trim());
    const near = used >= this.limit * COUNT_FROM;
    this.counter.hidden = !near;
    this.counter.classList.toggle("over", used > this.limit);
    this.input.setAttribute("aria-invalid", used > this.limit ? "true" : "false");
    if (!near) return;
    const left = this.limit - used;
    this.counter.textContent =
      left >= 0
        ? `${left} character${left === 1 ? "" : "s"} left`
        : `${-left} character${left === -1 ? "" : "s"} over the limit of ${this.limit}`;
  }

  grow() {
    if (this.sizesItself) return;
    this.input.style.setProperty("height", "auto");
    this.input.style.setProperty("height", `${this.input.scrollHeight + 2}px`);
  }

  /** Replace the text (a sent message clears it; a refused one comes back). */
  set(text) {
    this.input.value = text;
    this.changed();
  }
}

/**
 * @mention completion: typing "@al" lists the room's members whose name
 * starts with "al" (asked from the server, GET people/?q=), arrow keys
 * choose, Enter or Tab takes one, Escape closes the list.
 */
export class MentionPicker {
  constructor({ input, list, url, me, onPick }) {
    this.input = input;
    this.list = list;
    this.url = url;
    this.me = me;
    this.onPick = onPick;
    this.names = [];
    this.active = -1;
    this.cache = new Map();
    this.query = null;
    input.addEventListener("input", () => this.update());
    input.addEventListener("click", () => this.update());
    input.addEventListener("blur", () => setTimeout(() => this.close(), 150));
    input.addEventListener("keydown", (event) => this.key(event), { capture: true });
  }

  get open() {
    return !this.list.hidden;
  }

  /** The "@prefix" just before the caret, or null. */
  prefix() {
    const caret = this.input.selectionStart;
    if (caret !== this.input.selectionEnd) return null;
    const match = MENTION_BEFORE_CARET.exec(this.input.value.slice(0, caret));
    return match ? match[1] : null;
  }

  async update() {
    const prefix = this.prefix();
    this.query = prefix;
    if (prefix === null) return this.close();
    const names = await this.lookup(prefix);
    if (this.query !== prefix) return; // typed on meanwhile
    this.show(names.filter((name) => name !== this.me));
  }

  async lookup(prefix) {
    const key = prefix.toLowerCase();
    if (!this.cache.has(key)) {
      const answer = fetch(`${this.url}?q=${encodeURIComponent(prefix)}`, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then((response) => (response.ok ? response.json() : { users: [] }))
        .then((data) => data.users ?? [])
        .catch(() => {
          this.cache.delete(key); // try again on the next keystroke
          return [];
        });
      this.cache.set(key, answer);
    }
    return this.cache.get(key);
  }

  show(names) {
    this.names = names;
    if (!names.length) return this.close();
    this.active = 0;
    this.list.replaceChildren(
      ...names.map((name, index) => {
        const option = document.createElement("li");
        option.id = `mention-option-${index}`;
        option.setAttribute("role", "option");
        option.textContent = `@${name}`;
        option.addEventListener("mousedown", (event) => {
          event.preventDefault(); // keep the focus in the textarea
          this.pick(index);
        });
        return option;
      }),
    );
    this.list.hidden = false;
    this.highlight();
  }

  highlight() {
    [...this.list.children].forEach((option, index) => {
      option.setAttribute("aria-selected", index === this.active ? "true" : "false");
    });
    this.input.setAttribute("aria-activedescendant", `mention-option-${this.active}`);
  }

  close() {
    this.list.hidden = true;
    this.names = [];
    this.input.removeAttribute("aria-activedescendant");
  }

  key(event) {
    if (!this.open || event.isComposing) return;
    const moves = { ArrowDown: 1, ArrowUp: -1 };
    if (event.key in moves) {
      this.active = (this.active + moves[event.key] + this.names.length) % this.names.length;
      this.highlight();
    } else if (event.key === "Enter" || event.key === "Tab") {
      this.pick(this.active);
    } else if (event.key === "Escape") {
      this.close();
    } else {
      return;
    }
    event.preventDefault();
    event.stopImmediatePropagation();
  }

  /** Put "@name " in place of the "@prefix" before the caret. */
  pick(index) {
    const name = this.names[index];
    const prefix = this.prefix();
    this.close();
    if (name === undefined || prefix === null) return;
    const caret = this.input.selectionStart;
    const start = caret - prefix.length;
    const text = this.input.value;
    const after = text.slice(caret);
    const insert = `${name}${after.startsWith(" ") ? "" : " "}`;
    this.input.value = text.slice(0, start) + insert + after;
    const at = start + insert.length;
    this.input.setSelectionRange(at, at);
    this.onPick();
  }
}
