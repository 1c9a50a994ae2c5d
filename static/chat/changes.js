// What anyone does to a message on the room page: reply to it and react to
// it; and to their own: edit it (within the server's edit window) and
// delete it. The server checks everything and broadcasts the outcome
// (message.updated, message.deleted), which redraws the message for every
// reader, this one included: the buttons here only send frames.

import { el } from "./markup.js";
import { excerpt } from "./render.js";

function button(text, label, onClick, className = "msg-action") {
  const node = el("button", className, text);
  node.type = "button";
  if (label) node.setAttribute("aria-label", label);
  node.addEventListener("click", onClick);
  return node;
}

export class MessageActions {
  /**
   * send(frame) -> bool: a frame to the server (false: not connected).
   * ask({title, text, confirm}) -> Promise<fields|null>: the page's dialog.
   * onReply({id, user, excerpt}): the composer answers that message now.
   * onError(text): a refusal or a failure to show by the message box.
   */
  constructor({ me, editWindowSeconds, reactions, send, ask, onReply, onError }) {
    this.me = me;
    this.editWindowMs = editWindowSeconds * 1000;
    this.reactions = reactions;
    this.send = send;
    this.ask = ask;
    this.onReply = onReply;
    this.onError = onError;
    this.sequence = 0;
  }

  /** For MessageList: Reply and React on every message, Edit and Delete on
   * one's own. */
  decorate = (item, message) => {
    const actions = el("span", "msg-actions");
    const user = message.user;
    actions.append(
      button("Reply", `Reply to ${user}`, () => this.reply(item, user)),
      this.reactButton(item, user),
    );
    if (user === this.me) {
      // Edit while the server's window is open (as the page saw it drawn).
      const age = message.created ? Date.now() - Date.parse(message.created) : 0;
      if (!this.editWindowMs || age < this.editWindowMs) {
        actions.append(button("Edit", "Edit your message", () => this.edit(item)));
      }
      actions.append(button("Delete", "Delete your message", () => this.remove(item)));
    }
    item.querySelector(".meta").append(actions);
  };

  clientId(kind) {
    this.sequence += 1;
    return `${kind}-${Date.now().toString(36)}-${this.sequence}`;
  }

  go(frame) {
    if (this.send({ ...frame, client_id: this.clientId(frame.type) })) return true;
    this.onError("Not connected: try again in a moment.");
    return false;
  }

  // ---------------------------------------------------------- reply

  reply(item, user) {
    const text = item.rawBody ?? item.querySelector(".body")?.textContent ?? "";
    this.onReply({ id: Number(item.dataset.id), user, excerpt: excerpt(text, 80) });
  }

  // ---------------------------------------------------------- reactions

  react(id, emoji, on) {
    this.go({ type: "reaction", id, emoji, on });
  }

  reactButton(item, user) {
    const opener = button("React", `React to ${user}'s message`, () => toggle());
    opener.setAttribute("aria-expanded", "false");
    const close = (focusBack) => {
      item.querySelector(".react-menu")?.remove();
      opener.setAttribute("aria-expanded", "false");
      if (focusBack) opener.focus();
    };
    const toggle = () => {
      if (item.querySelector(".react-menu")) return close(false);
      const menu = el("div", "react-menu");
      menu.setAttribute("role", "group");
      menu.setAttribute("aria-label", "Choose a reaction");
      for (const emoji of this.reactions) {
        menu.append(
          button(
            emoji,
            `React with ${emoji}`,
            () => {
              const mine = item.querySelector(`.reaction[data-emoji="${emoji}"]`);
              this.react(Number(item.dataset.id), emoji, mine?.ariaPressed !== "true");
              close(true);
            },
            "react-choice",
          ),
        );
      }
      menu.addEventListener("keydown", (event) => {
        if (event.key === "Escape") {
          event.preventDefault();
          event.stopPropagation();
          close(true);
        }
      });
      item.querySelector(".bubble").append(menu);
      opener.setAttribute("aria-expanded", "true");
      menu.querySelector("button").focus();
    };
    return opener;
  }

  // ---------------------------------------------------------- edit

  edit(item) {
    if (item.querySelector(".editor") || item.classList.contains("removed")) return;
    const created = Date.parse(item.dataset.created);
    if (this.editWindowMs && Date.now() - created > this.editWindowMs) {
      const minutes = Math.round(this.editWindowMs / 60000);
      return this.onError(`Messages can be edited for ${minutes} minutes after sending.`);
    }
    const body = item.querySelector(".body");
    const form = el("form", "editor");
    const field = el("textarea", "editor-input");
    field.id = `edit-${item.dataset.id}`;
    const before = item.rawBody ?? body.textContent;
    field.value = before;
    field.rows = Math.min(6, field.value.split("\n").length + 1);
    const label = el("label", "visually-hidden", "Edit message");
    label.htmlFor = field.id;
    const save = el("button", "", "Save");
    save.type = "submit";
    const cancel = button("Cancel", "Cancel editing", () => done(), "button-quiet");
    const row = el("div", "editor-buttons");
    row.append(save, cancel);
    form.append(label, field, row);
    const done = () => {
      form.remove();
      body.hidden = false;
      item.focus();
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = field.value.trim();
      if (!text) return this.onError("A message cannot be empty: delete it instead.");
      if (text !== before.trim()) {
        if (!this.go({ type: "message.edit", id: Number(item.dataset.id), body: text })) return;
      }
      done();
    });
    field.addEventListener("keydown", (event) => {
      event.stopPropagation(); // not the list's arrow keys
      if (event.key === "Escape") {
        event.preventDefault();
        done();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    body.hidden = true;
    body.after(form);
    field.focus();
    field.setSelectionRange(field.value.length, field.value.length);
  }

  // ---------------------------------------------------------- delete

  async remove(item) {
    const answer = await this.ask({
      title: "Delete your message",
      text: "It is replaced by “Message deleted” for everyone in the room.",
      confirm: "Delete",
    });
    if (!answer) return;
    this.go({ type: "message.delete", id: Number(item.dataset.id) });
  }
}
