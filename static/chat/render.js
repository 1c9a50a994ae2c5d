// Drawing the room: the message list, the online list, the typing line.
// User content only ever goes in through textContent, never innerHTML.

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "short",
});

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setTime(timeEl, date) {
  const today = date.toDateString() === new Date().toDateString();
  timeEl.dateTime = date.toISOString();
  timeEl.textContent = today ? timeFormat.format(date) : dateTimeFormat.format(date);
  timeEl.title = dateTimeFormat.format(date);
}

/**
 * The message list, in seq order, each message at most once. Messages from
 * the server are keyed by seq; the user's own unconfirmed sends ("pending")
 * are keyed by client_id and always sit after the confirmed ones.
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
  }

  get oldestSeq() {
    const first = this.list.querySelector("li[data-seq]");
    return first ? Number(first.dataset.seq) : null;
  }

  /** Insert or refresh server messages; stays at the bottom if it was there. */
  add(messages) {
    this.keepingScroll(() => messages.forEach((m) => this.upsert(m)));
  }

  upsert(message) {
    const existing = this.bySeq.get(message.seq);
    if (existing) {
      // Seen already (an ack drew it first, or a resume repeated it): only
      // the server's own timestamp is new.
      setTime(existing.querySelector("time"), new Date(message.created));
      existing.dataset.id = message.id;
      this.seqById.set(message.id, message.seq);
      return;
    }
    const item = this.item(message.user, message.body);
    item.dataset.seq = message.seq;
    item.dataset.id = message.id;
    setTime(item.querySelector("time"), new Date(message.created));
    this.decorate(item, message);
    this.place(item, message.seq);
    this.bySeq.set(message.seq, item);
    this.seqById.set(message.id, message.seq);
  }

  addPending(clientId, body) {
    const item = this.item(this.me, body);
    item.classList.add("pending");
    item.querySelector("time").textContent = "Sending…";
    this.list.append(item);
    this.pending.set(clientId, item);
    this.scrollToBottom(); // your own message: always show it
  }

  /** An ack: the pending item becomes message `seq` (unless already shown). */
  confirm(clientId, { id, seq }) {
    const item = this.pending.get(clientId);
    if (!item) return;
    this.pending.delete(clientId);
    if (this.bySeq.has(seq)) return item.remove();
    item.classList.remove("pending");
    item.dataset.seq = seq;
    item.dataset.id = id;
    setTime(item.querySelector("time"), new Date()); // the broadcast brings the real one
    this.decorate(item, { id, seq, user: this.me });
    this.keepingScroll(() => this.place(item, seq));
    this.bySeq.set(seq, item);
    this.seqById.set(id, seq);
  }

  dropPending(clientId) {
    this.pending.get(clientId)?.remove();
    this.pending.delete(clientId);
  }

  remove({ id, seq }) {
    const key = this.bySeq.has(seq) ? seq : this.seqById.get(id);
    this.bySeq.get(key)?.remove();
    this.bySeq.delete(key);
    this.seqById.delete(id);
  }

  item(user, body) {
    const item = el("li", user === this.me ? "message mine" : "message");
    const meta = el("div", "meta");
    meta.append(el("span", "author", user), " ", el("time"));
    item.append(meta, el("p", "body", body));
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

  atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 40;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
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
