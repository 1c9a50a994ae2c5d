// Drawing the room: the message list, the online list, the typing line.
// User content only ever goes in as text nodes (markup.js builds the DOM
// nodes of a body), never through innerHTML.

import { el, parseBody } from "./markup.js";

const GROUP_WITHIN_MS = 5 * 60 * 1000; // one author's messages this close share a header
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
 */
export class MessageList {
  constructor(list, scroller, me, decorate = () => {}) {
    this.list = list;
    this.scroller = scroller;
    this.me = me;
    this.decorate = decorate;
    this.bySeq = new Map();
    this.seqById = new Map();
    this.pending = new Map();
    this.dividerSeq = null;
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
      this.refreshAround(existing);
      return null;
    }
    const item = this.item(message.user, message.body);
    item.dataset.seq = message.seq;
    item.dataset.id = message.id;
    setTime(item, new Date(message.created));
    this.decorate(item, message);
    this.place(item, message.seq);
    this.bySeq.set(message.seq, item);
    this.seqById.set(message.id, message.seq);
    this.refreshAround(item);
    return item;
  }

  addPending(clientId, body) {
    const item = this.item(this.me, body);
    item.classList.add("pending");
    setTime(item, new Date());
    item.querySelector("time").textContent = "Sending…";
    this.list.append(item);
    this.pending.set(clientId, item);
    this.refreshAround(item);
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
    setTime(item, new Date()); // the broadcast brings the real one
    this.decorate(item, { id, seq, user: this.me });
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

  remove({ id, seq }) {
    const key = this.bySeq.has(seq) ? seq : this.seqById.get(id);
    const item = this.bySeq.get(key);
    this.bySeq.delete(key);
    this.seqById.delete(id);
    if (item) this.removeItem(item);
  }

  removeItem(item) {
    const next = item.nextElementSibling;
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
  constructor(line, showForMs = 3000) {
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
