// Drawing the room: the message list, the online list, the typing line.
// User content only ever goes in as text nodes (markup.js builds the DOM
// nodes of a body), never through innerHTML.

import { el, parseBody } from "./markup.js";

const GROUP_WITHIN_MS = 5 * 60 * 1000; // one author's messages this close share a header
const PAGE_STEP = 10; // messages Page Up and Page Down move in the list
const ANNOUNCE_EACH_UPTO = 3; // more new messages at once are announced as a count
const ANNOUNCE_CHARS = 200;
const ANNOUNCEMENT_KEPT_MS = 10_000;
const DAY_MS = 24 * 60 * 60 * 1000;

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });
const dayFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "long",
  month: "long",
  day: "numeric",
});
const dayWithYearFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full" });

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate());
}

/** The start of a message's text, for a quote of it. */
export function excerpt(body, limit = 120) {
  const text = body.split(/\s+/).filter(Boolean).join(" ");
  return text.length <= limit ? text : `${text.slice(0, limit - 1)}\u2026`;
}

/** "Today", "Yesterday", "Monday, March 3", or with the year when not this one. */
export function dayLabel(date, now = new Date()) {
  const days = Math.round((startOfDay(now) - startOfDay(date)) / DAY_MS);
  if (days === 0) return "Today";
  if (days === 1) return "Yesterday";
  if (date.getFullYear() === now.getFullYear()) return dayFormat.format(date);
  return dayWithYearFormat.format(date);
}

function setTime(item, date) {
  item.dataset.created = date.toISOString();
  const time = item.querySelector("time");
  time.dateTime = date.toISOString();
  time.textContent = timeFormat.format(date); // the day is in the separator above
  time.title = fullFormat.format(date);
}

/**
 * The message list, in seq order, each message at most once. Messages from
 * the server are keyed by seq; the user's own unconfirmed sends ("pending")
 * are keyed by client_id and always sit after the confirmed ones.
 *
 * Each message is one <li>; what depends on its neighbours (the day
 * separator above it, whether it continues the previous author's group, the
 * "New" divider) is drawn inside it and recomputed when a neighbour changes.
 *
 * decorate(item, {id, seq, user}) adds controls to each confirmed message.
 *
 * Keyboard: the list is one tab stop (a roving tabindex). The message that
 * holds it is `current`; arrow keys, Home, End, Page Up and Page Down move
 * between messages, and Tab from a message reaches its own links and
 * actions (only the current message's are tab stops), so any number of
 * messages, and of actions per message, cost a keyboard user two or three
 * presses to get past. Until the reader moves in the list, the stop follows
 * the newest message. onEscape() is called for Escape in the list.
 */
export class MessageList {
  constructor(
    list,
    scroller,
    me,
    decorate = () => {},
    { onEscape = () => {}, onReact = () => {}, onQuote = () => {} } = {},
  ) {
    this.onReact = onReact;
    this.onQuote = onQuote;
    this.list = list;
    this.scroller = scroller;
    this.me = me;
    this.decorate = decorate;
    this.onEscape = onEscape;
    this.bySeq = new Map();
    this.seqById = new Map();
    this.pending = new Map();
    this.dividerSeq = null;
    this.current = null;
    this.followNewest = true;
    list.addEventListener("keydown", (event) => this.key(event));
    list.addEventListener("focusin", (event) => {
      const item = event.target.closest("li.message");
      if (item) this.setCurrent(item);
    });
    // A tap (or click) on a message selects it: on touch screens that is
    // what shows its actions (chat.css), as a pointer over it does elsewhere.
    list.addEventListener("click", (event) => {
      const item = event.target.closest("li.message");
      if (!item || event.target.closest("a, button, input, textarea, form")) return;
      if (!item.contains(document.activeElement)) item.focus({ preventScroll: true });
    });
  }

  get oldestSeq() {
    const first = this.list.querySelector("li[data-seq]");
    return first ? Number(first.dataset.seq) : null;
  }

  get newestSeq() {
    const items = this.list.querySelectorAll("li[data-seq]");
    return items.length ? Number(items[items.length - 1].dataset.seq) : null;
  }

  get size() {
    return this.bySeq.size + this.pending.size;
  }

  /** Confirmed messages' items, newest first. */
  *newestFirst() {
    const items = this.list.querySelectorAll("li[data-seq]");
    for (let i = items.length - 1; i >= 0; i--) yield items[i];
  }

  /** Insert or refresh server messages; stays at the bottom if it was there.
   * Returns the items that are new. */
  add(messages) {
    const added = [];
    this.keepingScroll(() =>
      messages.forEach((m) => {
        const item = this.upsert(m);
        if (item) added.push(item);
      }),
    );
    return added;
  }

  upsert(message) {
    const existing = this.bySeq.get(message.seq);
    if (existing) {
      // Seen already (an ack drew it first, or a resume repeated it): only
      // the server's own timestamp is new.
      setTime(existing, new Date(message.created));
      existing.dataset.id = message.id;
      this.seqById.set(message.id, message.seq);
      existing.id = `message-${message.id}`;
      // Drawn from an ack so far: the quote, marks and reactions come now.
      if (existing.dataset.rev === undefined) this.details(existing, message);
      else this.update(message);
      this.refreshAround(existing);
      return null;
    }
    const item = this.item(message.user, message.body);
    item.dataset.seq = message.seq;
    item.dataset.id = message.id;
    item.id = `message-${message.id}`;
    setTime(item, new Date(message.created));
    this.decorate(item, message);
    this.details(item, message);
    this.rove(item, false);
    this.place(item, message.seq);
    this.bySeq.set(message.seq, item);
    this.seqById.set(message.id, message.seq);
    this.refreshAround(item);
    this.keepTabStop();
    return item;
  }

  addPending(clientId, body) {
    const item = this.item(this.me, body);
    item.classList.add("pending");
    setTime(item, new Date());
    item.querySelector("time").textContent = "Sending…";
    this.rove(item, false);
    this.list.append(item);
    this.pending.set(clientId, item);
    this.refreshAround(item);
    this.keepTabStop();
    this.scrollToBottom(); // your own message: always show it
  }

  /** An ack: the pending item becomes message `seq` (unless already shown). */
  confirm(clientId, { id, seq }) {
    const item = this.pending.get(clientId);
    if (!item) return;
    this.pending.delete(clientId);
    if (this.bySeq.has(seq)) return this.removeItem(item);
    item.classList.remove("pending");
    item.dataset.seq = seq;
    item.dataset.id = id;
    item.id = `message-${id}`;
    setTime(item, new Date()); // the broadcast brings the real one
    this.decorate(item, { id, seq, user: this.me });
    this.rove(item, item === this.current);
    this.keepingScroll(() => this.place(item, seq));
    this.bySeq.set(seq, item);
    this.seqById.set(id, seq);
    this.refreshAround(item);
  }

  dropPending(clientId) {
    const item = this.pending.get(clientId);
    this.pending.delete(clientId);
    if (item) this.removeItem(item);
  }

  /** A removed message keeps its place, as a placeholder saying so (and
   * without its actions); a message not on screen is no concern. Quotes of
   * it in replies say so too. */
  markRemoved({ id, seq, by }) {
    const note = by === "author" ? "Message deleted" : "Message removed by a moderator";
    for (const quote of this.list.querySelectorAll(`.quote[data-id="${Number(id)}"]`)) {
      quote.querySelector(".quote-text").textContent = "(removed)";
    }
    const item = this.bySeq.get(seq) ?? this.bySeq.get(this.seqById.get(id));
    if (!item || item.classList.contains("removed")) return;
    const hadFocus = item.contains(document.activeElement);
    item.classList.add("removed");
    item.classList.remove("mentions-me");
    item
      .querySelectorAll(
        ".mod-actions, .mention-note, .msg-actions, .reactions, .edited, .editor, .react-menu",
      )
      .forEach((node) => node.remove());
    item.querySelector(".body").replaceWith(el("p", "removed-note", note));
    if (hadFocus) item.focus();
  }

  /** A message changed (message.updated, a resume's changes): redraw it if
   * this is newer than what is shown. */
  update(message) {
    const item = this.bySeq.get(message.seq);
    if (!item || item.classList.contains("removed")) return;
    if ((message.rev ?? 0) <= Number(item.dataset.rev ?? 0)) return;
    const body = item.querySelector(".body");
    const { nodes } = parseBody(message.body, this.me);
    body.replaceChildren(...nodes);
    item.rawBody = message.body;
    this.details(item, message);
    for (const quote of this.list.querySelectorAll(`.quote[data-id="${message.id}"]`)) {
      quote.querySelector(".quote-text").textContent = excerpt(message.body);
    }
  }

  /** What a message has besides its text: the quote it replies to, the
   * "edited" mark, the reactions. */
  details(item, message) {
    item.dataset.rev = message.rev ?? 0;
    const bubble = item.querySelector(".bubble");
    const quoted = message.reply_to;
    if (quoted && !bubble.querySelector(".quote")) {
      const quote = el("a", "quote");
      quote.href = `#message-${quoted.id}`;
      quote.dataset.id = quoted.id;
      quote.dataset.seq = quoted.seq;
      const who = quoted.removed ? "a removed message" : quoted.user;
      quote.setAttribute("aria-label", `Reply to ${who}: go to the original`);
      quote.append(
        el("span", "quote-user", quoted.removed ? "" : quoted.user),
        " ",
        el("span", "quote-text", quoted.removed ? "(removed)" : quoted.excerpt),
      );
      quote.addEventListener("click", (event) => {
        event.preventDefault();
        this.onQuote(quoted);
      });
      bubble.querySelector(".body").before(quote);
    }
    const meta = item.querySelector(".meta");
    let mark = meta.querySelector(".edited");
    if (message.edited && !mark) {
      mark = el("span", "edited", "(edited)");
      meta.querySelector("time").after(" ", mark);
    }
    if (mark) mark.title = `Edited ${fullFormat.format(new Date(message.edited))}`;
    bubble.querySelector(".reactions")?.remove();
    const reactions = Object.entries(message.reactions ?? {});
    if (reactions.length) {
      const bar = el("div", "reactions");
      bar.setAttribute("role", "group");
      bar.setAttribute("aria-label", "Reactions");
      for (const [emoji, users] of reactions) {
        const mine = users.includes(this.me);
        const button = el("button", "reaction", `${emoji} ${users.length}`);
        button.type = "button";
        button.dataset.emoji = emoji;
        button.setAttribute("aria-pressed", String(mine));
        button.title = users.join(", ");
        button.setAttribute(
          "aria-label",
          `${emoji} ${users.length}: ${users.join(", ")}${mine ? " (press to take yours back)" : ""}`,
        );
        button.addEventListener("click", () => this.onReact(Number(item.dataset.id), emoji, !mine));
        bar.append(button);
      }
      bubble.append(bar);
    }
    this.rove(item, item === this.current);
  }

  /** Scroll to message `id` and highlight it; false when it is not shown. */
  jumpTo(id) {
    const item = this.bySeq.get(this.seqById.get(id));
    if (!item) return false;
    item.scrollIntoView({ block: "center" });
    this.setCurrent(item);
    item.focus({ preventScroll: true });
    item.classList.remove("highlight");
    void item.offsetWidth; // restart the animation
    item.classList.add("highlight");
    return true;
  }

  removeItem(item) {
    const next = item.nextElementSibling;
    if (item === this.current) {
      const neighbour = next ?? item.previousElementSibling;
      const hadFocus = item.contains(document.activeElement);
      this.setCurrent(neighbour);
      if (hadFocus) neighbour?.focus();
    }
    item.remove();
    if (next) this.refresh(next);
  }

  item(user, body) {
    const item = el("li", user === this.me ? "message mine" : "message");
    item.dataset.user = user;
    const day = el("div", "day-separator");
    day.hidden = true;
    const divider = el("div", "unread-divider");
    divider.append(el("span", "", "New"));
    divider.hidden = true;
    const meta = el("div", "meta");
    meta.append(el("span", "author", user), " ", el("time"));
    const content = el("div", "body");
    item.rawBody = body; // as written (editing starts from it)
    const { nodes, mentions } = parseBody(body, this.me);
    content.append(...nodes);
    if (user !== this.me && mentions.has(this.me.toLowerCase())) {
      item.classList.add("mentions-me");
      const note = el("span", "mention-note", "mentions you");
      meta.append(note);
    }
    const bubble = el("div", "bubble");
    bubble.append(meta, content);
    item.append(day, divider, bubble);
    return item;
  }

  // ---------------------------------------------------------- keyboard

  /** Make `item` the list's one tab stop (null: none). */
  setCurrent(item) {
    if (item === this.current) return;
    if (this.current) this.rove(this.current, false);
    this.current = item;
    if (item) this.rove(item, true);
    this.followNewest = item === null || item === this.list.lastElementChild;
  }

  /** The message itself and its links and buttons: tab stops or not. */
  rove(item, on) {
    item.tabIndex = on ? 0 : -1;
    for (const control of item.querySelectorAll("a[href], button")) control.tabIndex = on ? 0 : -1;
  }

  /** After a change: the stop is on a message that is there, and on the
   * newest one while the reader has not moved away from it. */
  keepTabStop() {
    const newest = this.list.lastElementChild;
    const inList = this.list.contains(document.activeElement);
    if (!this.current?.isConnected || (this.followNewest && !inList)) this.setCurrent(newest);
  }

  key(event) {
    const item = event.target.closest("li.message");
    if (!item || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const items = [...this.list.children];
    const at = items.indexOf(item);
    const moves = {
      ArrowUp: at - 1,
      ArrowDown: at + 1,
      PageUp: Math.max(0, at - PAGE_STEP),
      PageDown: Math.min(items.length - 1, at + PAGE_STEP),
      Home: 0,
      End: items.length - 1,
    };
    if (event.key === "Escape") {
      event.preventDefault();
      return this.onEscape();
    }
    if (!(event.key in moves)) return;
    event.preventDefault();
    const target = items[moves[event.key]];
    if (target) target.focus();
  }

  /** Put a confirmed item in seq order, before every pending one. */
  place(item, seq) {
    const first = this.list.querySelector("li[data-seq]");
    if (first && Number(first.dataset.seq) > seq) return first.before(item); // older page
    // Walk back from the end: new messages nearly always belong there.
    let before = this.list.querySelector("li.pending");
    let node = before ? before.previousElementSibling : this.list.lastElementChild;
    while (node && Number(node.dataset.seq) > seq) {
      before = node;
      node = node.previousElementSibling;
    }
    this.list.insertBefore(item, before);
  }

  // ---------------------------------------------------------- decorations

  /** The "New" divider goes above message `seq` (null: nowhere). */
  setDivider(seq) {
    if (seq === this.dividerSeq) return;
    const old = this.bySeq.get(this.dividerSeq);
    this.dividerSeq = seq;
    const item = this.bySeq.get(seq);
    // The divider takes room: a reader at the bottom stays there.
    this.keepingScroll(() => [old, item].forEach((node) => node && this.refresh(node)));
  }

  get divider() {
    return this.bySeq.get(this.dividerSeq) ?? null;
  }

  refreshAround(item) {
    this.refresh(item);
    if (item.nextElementSibling) this.refresh(item.nextElementSibling);
  }

  /** Day separator, grouping and divider of one item, from its predecessor. */
  refresh(item) {
    const prev = item.previousElementSibling;
    const created = new Date(item.dataset.created);
    const isDivider = item.dataset.seq !== undefined && Number(item.dataset.seq) === this.dividerSeq;
    const newDay =
      !prev || startOfDay(new Date(prev.dataset.created)).getTime() !== startOfDay(created).getTime();
    const day = item.querySelector(".day-separator");
    day.hidden = !newDay;
    if (newDay) day.textContent = dayLabel(created);
    item.querySelector(".unread-divider").hidden = !isDivider;
    const continued =
      !newDay &&
      !isDivider &&
      prev.dataset.user === item.dataset.user &&
      created - new Date(prev.dataset.created) < GROUP_WITHIN_MS;
    item.classList.toggle("continued", continued);
  }

  /** Redraw the day labels (after midnight "Today" becomes "Yesterday"). */
  refreshDays() {
    for (const day of this.list.querySelectorAll(".day-separator:not([hidden])")) {
      day.textContent = dayLabel(new Date(day.parentElement.dataset.created));
    }
  }

  // ---------------------------------------------------------- scrolling

  atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 40;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /** The highest seq whose message has been on screen (its top above the
   * bottom edge of the scroller). */
  seenUpTo() {
    const bottom = this.scroller.getBoundingClientRect().bottom;
    for (const item of this.newestFirst()) {
      if (item.getBoundingClientRect().top < bottom - 8) return Number(item.dataset.seq);
    }
    return null;
  }

  keepingScroll(change) {
    const wasAtBottom = this.atBottom();
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    change();
    if (wasAtBottom) this.scrollToBottom();
    // Older messages went in above: keep what the reader is looking at still.
    else this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
  }
}

/** decorate(item, user) adds controls to each user's line. */
export class OnlineList {
  constructor(list, me, decorate = () => {}) {
    this.list = list;
    this.me = me;
    this.decorate = decorate;
    this.users = new Set();
  }

  set(users) {
    this.users = new Set(users);
    this.render();
  }

  add(user) {
    this.users.add(user);
    this.render();
  }

  delete(user) {
    this.users.delete(user);
    this.render();
  }

  render() {
    const names = [...this.users].sort();
    this.list.replaceChildren(
      ...names.map((user) => {
        const item = el("li", user === this.me ? "me" : "", user);
        this.decorate(item, user);
        return item;
      }),
    );
  }
}

/** "alice is typing…", each name for a few seconds after its last notice. */
export class TypingLine {
  constructor(line, showForMs) {
    this.line = line;
    this.showForMs = showForMs;
    this.timers = new Map();
  }

  show(user) {
    clearTimeout(this.timers.get(user));
    this.timers.set(user, setTimeout(() => this.clear(user), this.showForMs));
    this.render();
  }

  clear(user) {
    clearTimeout(this.timers.get(user));
    if (this.timers.delete(user)) this.render();
  }

  clearAll() {
    [...this.timers.keys()].forEach((user) => this.clear(user));
  }

  render() {
    const names = [...this.timers.keys()];
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "Several people are typing…";
    this.line.textContent = text;
  }
}

/**
 * What a screen reader hears of new messages: the message log itself is not
 * a live region (history pages would be read out whole), so each live
 * message from someone else is said here, or a count when many come at once.
 */
export class Announcer {
  constructor(region) {
    this.region = region;
  }

  /** items: the <li> of messages that just arrived live. */
  messages(items) {
    if (items.length > ANNOUNCE_EACH_UPTO) return this.say(`${items.length} new messages`);
    for (const item of items) {
      const text = item.querySelector(".body")?.textContent ?? "";
      const short = text.length > ANNOUNCE_CHARS ? `${text.slice(0, ANNOUNCE_CHARS)}…` : text;
      const verb = item.classList.contains("mentions-me") ? "mentioned you" : "said";
      this.say(`${item.dataset.user} ${verb}: ${short}`);
    }
  }

  /** Added, never replaced: a live region reads what is added. Old lines go
   * after a while, so that the page does not keep a hidden transcript. */
  say(text) {
    const line = el("p", "", text);
    this.region.append(line);
    setTimeout(() => line.remove(), ANNOUNCEMENT_KEPT_MS);
  }
}

const untilToday = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const untilLater = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
  hour: "2-digit",
  minute: "2-digit",
});
const LONGEST_TIMER_MS = 2 ** 31 - 1; // setTimeout's limit (about 24 days)

/** "16:55" today, "Tue 25 Nov, 16:55" on another day: the reader's own time. */
export function localTime(date, now = new Date()) {
  return startOfDay(date).getTime() === startOfDay(now).getTime()
    ? untilToday.format(date)
    : untilLater.format(date);
}

/**
 * The muted user's banner: shown when a moderator mutes them (a `muted`
 * frame, or a send refused as `muted`), with the local time it ends; gone
 * when it ends or a moderator lifts it. The banner goes into a live region
 * that is always there, so it is announced when it appears.
 */
export class MuteBanner {
  constructor(region) {
    this.region = region;
    this.until = null; // a Date, or Infinity for "until unmuted"
    this.timer = null;
  }

  get active() {
    return this.until !== null && this.until > Date.now();
  }

  /** until: ISO time, or null/undefined for "until unmuted". */
  set(until) {
    this.until = until ? new Date(until) : Infinity;
    this.render();
  }

  clear() {
    this.until = null;
    this.render();
  }

  /** The sentence for the banner (and for a refused send). */
  get sentence() {
    if (this.until === Infinity) return "You are muted in this room until a moderator unmutes you.";
    return `You are muted in this room until ${localTime(this.until)}.`;
  }

  render() {
    clearTimeout(this.timer);
    if (!this.active) {
      this.until = null;
      return this.region.replaceChildren();
    }
    const banner = el("p", "mute-banner", `${this.sentence} You can still read along.`);
    this.region.replaceChildren(banner);
    if (this.until !== Infinity) {
      const left = Math.min(this.until - Date.now() + 250, LONGEST_TIMER_MS);
      this.timer = setTimeout(() => this.render(), left);
    }
  }
}
