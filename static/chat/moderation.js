// Moderation from the room page: anyone reports someone else's message;
// owners, room moderators and staff (data-can-moderate="1") also remove
// messages and mute or ban people. The server checks every request: the
// buttons only save a trip. Each action asks first, in one shared <dialog>.

const MUTE_LABELS = { 10: "for 10 minutes", 60: "for 1 hour", 1440: "for 1 day", "": "until unmuted" };

function button(text, label, onClick) {
  const node = document.createElement("button");
  node.type = "button";
  node.className = "mod-action";
  node.textContent = text;
  node.setAttribute("aria-label", label);
  node.addEventListener("click", onClick);
  return node;
}

export class Moderation {
  /** onRemoved(id): a message this page removed (its message.deleted may lag). */
  constructor(root, { onRemoved }) {
    this.me = root.dataset.user;
    this.slug = root.dataset.slug;
    this.csrf = root.dataset.csrf;
    this.canModerate = root.dataset.canModerate === "1";
    this.onRemoved = onRemoved;
    this.notice = document.getElementById("moderation-status");
    this.dialog = document.getElementById("mod-dialog");
    this.minutes = document.getElementById("mod-minutes");
    this.reason = document.getElementById("mod-reason");
  }

  /** For MessageList: Report on others' messages, Remove for moderators. */
  messageControls = (item, { user }) => {
    const actions = document.createElement("span");
    actions.className = "mod-actions";
    if (user !== this.me) {
      const report = button("Report", `Report message from ${user}`, () =>
        this.report(item, user, report),
      );
      actions.append(report);
    }
    if (this.canModerate) {
      actions.append(
        button("Remove", `Remove message from ${user}`, () => this.remove(item, user)),
      );
    }
    if (actions.childElementCount) item.querySelector(".meta").append(actions);
  };

  /** For OnlineList: Mute and Ban for moderators, on everyone but themselves.
   * The labels are drawn by CSS (data-label) so that each line's text stays
   * the bare username, which is what readers of the Online list expect. */
  userControls = (item, user) => {
    if (!this.canModerate || user === this.me) return;
    for (const [text, act] of [
      ["Mute", () => this.mute(user)],
      ["Ban", () => this.ban(user)],
    ]) {
      const node = button("", `${text} ${user}`, act);
      node.classList.add("user-action");
      node.dataset.label = text;
      item.append(node);
    }
  };

  async report(item, user, control) {
    const answer = await this.ask({
      title: `Report ${user}'s message`,
      text: "The room's moderators will see your report.",
      confirm: "Send report",
      reason: true,
    });
    if (!answer) return;
    const ok = await this.post(`messages/${item.dataset.id}/report/`, answer, "Reported — thanks");
    if (ok) {
      control.disabled = true;
      control.textContent = "Reported";
    }
  }

  async remove(item, user) {
    const answer = await this.ask({
      title: `Remove ${user}'s message`,
      text: "It disappears for everyone in the room.",
      confirm: "Remove",
      reason: true,
    });
    if (!answer) return;
    const id = Number(item.dataset.id);
    if (await this.post(`messages/${id}/remove/`, answer, "Message removed")) this.onRemoved(id);
  }

  async mute(user) {
    const answer = await this.ask({
      title: `Mute ${user}`,
      text: `${user} can read but not send messages here.`,
      confirm: "Mute",
      reason: true,
      minutes: true,
    });
    if (!answer) return;
    const done = `Muted ${user} ${MUTE_LABELS[answer.minutes ?? ""]}`;
    await this.post(`users/${encodeURIComponent(user)}/mute/`, answer, done);
  }

  async ban(user) {
    const answer = await this.ask({
      title: `Ban ${user}?`,
      text: `${user} leaves the room at once and cannot come back until unbanned.`,
      confirm: "Ban",
      reason: true,
    });
    if (!answer) return;
    await this.post(`users/${encodeURIComponent(user)}/ban/`, answer, `Banned ${user}`);
  }

  /** Open the dialog; resolves to the chosen fields, or null if cancelled. */
  ask({ title, text, confirm, reason = false, minutes = false }) {
    document.getElementById("mod-dialog-title").textContent = title;
    document.getElementById("mod-dialog-text").textContent = text;
    document.getElementById("mod-confirm").textContent = confirm;
    document.getElementById("mod-minutes-field").hidden = !minutes;
    document.getElementById("mod-reason-field").hidden = !reason;
    this.minutes.value = "10";
    this.reason.value = "";
    this.dialog.returnValue = "";
    this.dialog.showModal();
    return new Promise((resolve) => {
      this.dialog.addEventListener(
        "close",
        () => {
          if (this.dialog.returnValue !== "confirm") return resolve(null);
          const fields = {};
          if (reason && this.reason.value.trim()) fields.reason = this.reason.value.trim();
          if (minutes && this.minutes.value) fields.minutes = this.minutes.value;
          resolve(fields);
        },
        { once: true },
      );
    });
  }

  /** POST to /rooms/<slug>/<path>; show the outcome; true when it worked. */
  async post(path, fields, done) {
    let ok = false;
    let text;
    try {
      const response = await fetch(`/rooms/${encodeURIComponent(this.slug)}/${path}`, {
        method: "POST",
        headers: { "X-CSRFToken": this.csrf },
        body: new URLSearchParams(fields),
        credentials: "same-origin",
      });
      const answer = await response.json().catch(() => ({}));
      ok = response.ok && answer.ok === true;
      text = ok ? done : answer.detail || `That did not work (HTTP ${response.status}).`;
    } catch {
      text = "Could not reach the server; try again.";
    }
    this.notice.hidden = false;
    this.notice.classList.toggle("failed", !ok);
    this.notice.textContent = text;
    return ok;
  }
}
