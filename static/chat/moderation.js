// Moderation from the room page: anyone reports someone else's message;
// owners, room moderators and staff (data-can-moderate="1") also remove
// messages, and in the members dialog see everyone's state (moderator,
// muted until, banned) and mute, unmute, ban and unban them; owners appoint
// and dismiss moderators there. The server checks every request: the
// buttons only save a trip. Mutes, bans and removals ask first, in one
// shared <dialog>; the durations offered come from the server's settings
// (the options of #mod-minutes).

import { el } from "./markup.js";
import { localTime } from "./render.js";

function button(text, label, onClick, className = "mod-action") {
  const node = el("button", className, text);
  node.type = "button";
  if (label) node.setAttribute("aria-label", label);
  node.addEventListener("click", onClick);
  return node;
}

/** "muted until 16:55" or "muted" (until unmuted), from the member JSON. */
function mutedText(member) {
  return member.muted_until ? `muted until ${localTime(new Date(member.muted_until))}` : "muted";
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
    this.members = document.getElementById("members-dialog");
    if (this.canModerate && this.members) this.setUpMembers();
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

  // ---------------------------------------------------------- members

  setUpMembers() {
    this.memberList = document.getElementById("member-states");
    this.memberSearch = document.getElementById("members-q");
    this.memberOutcome = document.getElementById("members-outcome");
    this.memberMore = document.getElementById("members-more");
    document.getElementById("members-open").addEventListener("click", () => {
      this.members.showModal();
      this.loadMembers();
    });
    let typing = null;
    this.memberSearch.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => this.loadMembers(), 200);
    });
    document
      .getElementById("members-search")
      .addEventListener("submit", (event) => event.preventDefault());
  }

  /** Fetch the members (matching the search) with their states, and draw
   * them; focus goes back to `focusUser`'s row after an action. */
  async loadMembers(focusUser = null) {
    const query = this.memberSearch.value.trim();
    const url = `/rooms/${encodeURIComponent(this.slug)}/moderation/members/?q=${encodeURIComponent(query)}`;
    let answer;
    try {
      const response = await fetch(url, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      answer = response.ok ? await response.json() : null;
    } catch {
      answer = null;
    }
    if (query !== this.memberSearch.value.trim()) return; // typed on meanwhile
    if (!answer) {
      this.memberOutcome.textContent = "Could not load the members; try again.";
      return;
    }
    this.memberList.replaceChildren(
      ...answer.members.map((member, index) => this.memberRow(member, index)),
    );
    this.memberMore.hidden = !answer.more;
    if (!answer.members.length) this.memberList.append(el("li", "muted", "Nobody by that name."));
    const row = focusUser && this.memberList.querySelector(`[data-user="${CSS.escape(focusUser)}"]`);
    row?.querySelector("button")?.focus();
  }

  memberRow(member, index) {
    const row = el("li", "member-state");
    row.dataset.user = member.user;
    const name = el("span", "member-name", member.user);
    name.id = `member-${index}`;
    const badges = el("span", "member-badges");
    if (member.role !== "member") badges.append(el("span", "badge", member.role));
    if (member.user === this.me) badges.append(el("span", "badge", "you"));
    if (member.muted) badges.append(el("span", "badge badge-warn", mutedText(member)));
    if (member.banned) badges.append(el("span", "badge badge-danger", "banned"));
    row.append(name, badges);
    const actions = el("div", "member-actions");
    // The row's buttons say only the verb: the group is named by the member.
    actions.setAttribute("role", "group");
    actions.setAttribute("aria-labelledby", name.id);
    const user = member.user;
    const after = (promise) => promise.then((done) => done && this.loadMembers(user));
    if (member.can_moderate) {
      actions.append(
        member.muted
          ? button("Unmute", null, () => after(this.unmute(user)), "member-action")
          : button("Mute", null, () => after(this.mute(user)), "member-action"),
        member.banned
          ? button("Unban", null, () => after(this.unban(user)), "member-action")
          : button("Ban", null, () => after(this.ban(user)), "member-action"),
      );
    }
    if (member.can_set_role) {
      actions.append(
        member.role === "moderator"
          ? button("Remove moderator", null, () => after(this.setRole(user, "member")), "member-action")
          : button("Make moderator", null, () => after(this.setRole(user, "moderator")), "member-action"),
      );
    }
    if (actions.childElementCount) row.append(actions);
    return row;
  }

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
      text: `${user} can read but not send messages here, and is told so.`,
      confirm: "Mute",
      reason: true,
      minutes: true,
    });
    if (!answer) return false;
    const option = [...this.minutes.options].find((o) => o.value === (answer.minutes ?? ""));
    const howLong = answer.minutes ? `for ${option.textContent}` : "until unmuted";
    return this.userAction(user, "mute", answer, `Muted ${user} ${howLong}`);
  }

  async ban(user) {
    const answer = await this.ask({
      title: `Ban ${user}?`,
      text: `${user} leaves the room at once and cannot come back until unbanned.`,
      confirm: "Ban",
      reason: true,
    });
    if (!answer) return false;
    return this.userAction(user, "ban", answer, `Banned ${user}`);
  }

  // Undoing asks nothing: it harms nobody, and can itself be undone.
  unmute(user) {
    return this.userAction(user, "unmute", {}, `Unmuted ${user}`);
  }

  unban(user) {
    return this.userAction(user, "unban", {}, `Unbanned ${user}: they can come back`);
  }

  setRole(user, role) {
    const done = role === "moderator" ? `${user} is now a moderator` : `${user} is no longer a moderator`;
    return this.userAction(user, "role", { role }, done);
  }

  userAction(user, action, fields, done) {
    return this.post(`users/${encodeURIComponent(user)}/${action}/`, fields, done);
  }

  /** Open the dialog; resolves to the chosen fields, or null if cancelled. */
  ask({ title, text, confirm, reason = false, minutes = false }) {
    document.getElementById("mod-dialog-title").textContent = title;
    document.getElementById("mod-dialog-text").textContent = text;
    document.getElementById("mod-confirm").textContent = confirm;
    document.getElementById("mod-minutes-field").hidden = !minutes;
    document.getElementById("mod-reason-field").hidden = !reason;
    this.minutes.selectedIndex = 0;
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
    // Inside the members dialog its own line says it (the page's is behind it).
    const notice = this.members?.open ? this.memberOutcome : this.notice;
    notice.hidden = false;
    notice.classList.toggle("failed", !ok);
    notice.textContent = text;
    return ok;
  }
}
