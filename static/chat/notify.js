// Desktop notifications for the open room: asked for with a button (never on
// page load), then, per room, for mentions of you (the default), for every
// message, or for nothing. Never for a room you are looking at (this tab
// visible and its window focused).

import * as storage from "./storage.js";

const LEVELS = new Set(["mentions", "all", "off"]);
const BODY_CHARS = 180;

export class Notifier {
  constructor({ slug, roomName, enableButton, choice, select }) {
    this.slug = slug;
    this.roomName = roomName;
    this.enableButton = enableButton;
    this.choice = choice;
    this.select = select;
    this.key = `chat.notify.${slug}`;
    this.focused = document.hasFocus();
    window.addEventListener("focus", () => (this.focused = true));
    window.addEventListener("blur", () => (this.focused = false));
    if (!("Notification" in window)) return; // nothing to offer
    enableButton.addEventListener("click", () => this.ask());
    select.value = this.level;
    select.addEventListener("change", () => this.setLevel(select.value));
    this.render();
  }

  get supported() {
    return "Notification" in window;
  }

  get level() {
    const stored = storage.load(this.key);
    return LEVELS.has(stored) ? stored : "mentions";
  }

  setLevel(level) {
    storage.save(this.key, level);
  }

  get lookingAt() {
    return document.visibilityState === "visible" && this.focused;
  }

  async ask() {
    await Notification.requestPermission();
    this.render();
    if (Notification.permission === "granted") this.select.focus();
  }

  render() {
    const permission = Notification.permission;
    this.enableButton.hidden = permission !== "default";
    this.choice.hidden = permission !== "granted";
  }

  /** A live message from someone else arrived. */
  message(message, mentionsMe) {
    if (!this.supported || Notification.permission !== "granted" || this.lookingAt) return;
    const level = this.level;
    if (level === "off" || (level === "mentions" && !mentionsMe)) return;
    const title = mentionsMe
      ? `${message.user} mentioned you in ${this.roomName}`
      : `${message.user} in ${this.roomName}`;
    const body =
      message.body.length > BODY_CHARS ? `${message.body.slice(0, BODY_CHARS)}…` : message.body;
    const note = new Notification(title, { body, tag: `chat-${this.slug}-${message.seq}` });
    note.addEventListener("click", () => {
      window.focus();
      note.close();
    });
  }
}
