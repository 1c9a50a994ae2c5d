// The room page: wires the socket (connection.js) to the drawing (render.js)
// and owns the outbox, the read position, the history paging and the
// composer.

import { MessageActions } from "./changes.js";
import { Composer, MentionPicker } from "./composer.js";
import { Connection } from "./connection.js";
import { Moderation } from "./moderation.js";
import { Notifier } from "./notify.js";
import { Announcer, MessageList, MuteBanner, OnlineList, TypingLine } from "./render.js";

// The server's numbers (chat.views.room_page_config), one source each.
const config = JSON.parse(document.getElementById("room-config").textContent);
const HISTORY_PAGE = config.historyPage;
// Typing notices go out a little less often than the server forwards them
// (a notice arriving early would be dropped), and a name stays on the typing
// line for one and a half of those intervals, so a steady typist never
// flickers off it.
const TYPING_EVERY_MS = config.typingIntervalMs + 500;
const TYPING_SHOWN_MS = TYPING_EVERY_MS * 1.5;
// `read` frames go out at most this often (the server stores each one).
const READ_EVERY_MS = 500;
// Errors that answer a message.send: they refer to the one send in flight,
// because the outbox sends one message at a time.
const SEND_ERRORS = new Set([
  "rate_limited",
  "unavailable", // the server could not store it just now: it goes again
  "muted",
  "locked",
  "too_long",
  "bad_request",
  "forbidden", // a send racing a ban (the no-access close follows)
  "not_found", // a reply to a message that is gone
]);
// Pages of older history a jump to a quoted message loads at most.
const JUMP_PAGES = 20;
// Refusals that will refuse every queued message as well.
const REFUSE_ALL = new Set(["muted", "locked", "forbidden"]);

const root = document.getElementById("room");
const me = root.dataset.user;
const slug = root.dataset.slug;
const roomName = root.dataset.name;
const limit = Number(root.dataset.maxLength);
const status = document.getElementById("connection");
const countdown = document.getElementById("reconnect-in");
const scroller = document.getElementById("timeline");
const olderButton = document.getElementById("load-older");
const roomStart = document.getElementById("room-start");
const loading = document.getElementById("loading");
const emptyRoom = document.getElementById("empty-room");
const newButton = document.getElementById("new-messages");
const composerForm = document.getElementById("composer");
const input = document.getElementById("message-input");
const composerError = document.getElementById("composer-error");
const onlineBox = document.getElementById("online");
const newerButton = document.getElementById("load-newer");
const contextNotice = document.getElementById("context-notice");

const moderation = new Moderation(root, { onRemoved: (id) => messages.markRemoved({ id }) });
const replyBar = document.getElementById("reply-bar");
let replyTo = null; // {id, user, excerpt}: the message the composer answers
const actions = new MessageActions({
  me,
  editWindowSeconds: Number(root.dataset.editWindow) || 0,
  reactions: (root.dataset.reactions || "").split(" ").filter(Boolean),
  send: (frame) => ready && connection.send(frame),
  ask: (question) => moderation.ask(question),
  onReply: startReply,
  onError: (text) => {
    composerError.textContent = text;
  },
});
const messages = new MessageList(
  document.getElementById("messages"),
  scroller,
  me,
  (item, message) => {
    actions.decorate(item, message);
    moderation.messageControls(item, message);
  },
  {
    onEscape: () => input.focus(),
    onReact: (id, emoji, on) => actions.react(id, emoji, on),
    onQuote: (quote) => jumpTo(quote),
  },
);
const online = new OnlineList(onlineBox, me);
const announcer = new Announcer(document.getElementById("announcer"));
const mute = new MuteBanner(document.getElementById("mute-notice"));
// Muted already when the page was made: "indefinitely", or when it ends.
const mutedUntil = root.dataset.mutedUntil;
if (mutedUntil) mute.set(mutedUntil === "indefinitely" ? null : mutedUntil);
const typing = new TypingLine(document.getElementById("typing"), TYPING_SHOWN_MS);
const notifier = new Notifier({
  slug,
  roomName,
  enableButton: document.getElementById("notify-enable"),
  choice: document.getElementById("notify-choice"),
  select: document.getElementById("notify-level"),
});
const composer = new Composer({
  input,
  counter: document.getElementById("char-count"),
  limit,
  draftKey: `chat.draft.${slug}`,
});
// Before the composer's own Enter handler: an open list takes Enter.
new MentionPicker({
  input,
  list: document.getElementById("mention-list"),
  url: `/rooms/${encodeURIComponent(slug)}/people/`,
  me,
  onPick: () => composer.changed(),
});

// Highest seq received in a message or history frame: having it means having
// every earlier message, so reconnecting resumes after it. Acks do not count:
// our ack can overtake someone else's earlier message.
let lastSeq = null;
let resuming = false; // this socket was opened with ?after=
let ready = false; // hello and its history are in: sends may go out
let opened = false; // the first history ever arrived (the placeholder is gone)
let hasMore = false; // older messages exist before the oldest shown
// The history request on its way, so its answer is told apart: "older"
// (before), "around" or "newer" (after); null: none. One at a time.
let historyWanted = null;
let lastTypingSent = 0;
let fanoutDegraded = false; // the server said messages from others may be late
// The highest change number (edits, deletions, reactions) seen: a resume
// asks for every change after it (null: none seen yet).
let lastChange = null;
// A jump to a quoted message that is older than the history shown:
// {id, seq, pages} while older pages load.
let seeking = null;

// The read position: every message up to readSeq has been seen, on this
// device or another (the server keeps it per user and room).
let readSeq = Number(root.dataset.lastRead) || 0;
let sentReadSeq = readSeq;
let readTimer = null;
// The "New" divider sits above the first message by someone else after
// dividerFrom (null: no divider; a first visit has none).
let dividerFrom = readSeq > 0 ? readSeq : null;

// Sends not yet acknowledged, in the order written: {clientId: body}. One is
// on the wire at a time, so the server stores them in that order whatever it
// refuses and we retry; re-sent with the same client_id after a reconnect,
// the server stores each once.
const outbox = new Map();

// Opened from a search result (?at=<seq>): that message is shown, with the
// messages around it, marked and focused.
const atParam = new URLSearchParams(location.search).get("at") ?? "";
const target = /^\d{1,18}$/.test(atParam) ? Number(atParam) : null;
// When the target is older than the latest page, the list shows a stretch
// of the room around it that does not reach the newest messages: `context`
// then holds what comes from the server past the stretch (the latest page,
// live messages), by seq, until the stretch is extended to reach it.
// newest: the newest seq of the stretch (null until it arrives).
let context = null;
const replies = new Map(); // {clientId: the id of the message it answers}
let inFlight = null; // the client_id sent on this socket with no answer yet
let retryTimer = null; // waiting out a rate limit
let rateLimited = false; // the composer shows the rate limit error

const connection = new Connection({
  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    resuming = lastSeq !== null;
    let query = resuming ? `?after=${lastSeq}&` : "?";
    query += lastChange === null ? "changes=" : `changes=${lastChange}`;
    return `${scheme}://${location.host}/ws/rooms/${encodeURIComponent(slug)}/${query}`;
  },
  onFrame: handle,
  onState: showState,
  csrfToken: root.dataset.csrf,
  closeCodes: config.close,
});

// ------------------------------------------------------------ server frames

function handle(frame) {
  switch (frame.type) {
    case "hello":
      ready = false;
      historyWanted = null; // a request on the old socket is not answered
      fanoutDegraded = false; // a `status` frame follows hello if it still is
      inFlight = null;
      online.set(frame.online);
      if (lastChange === null && frame.last_change !== undefined) lastChange = frame.last_change;
      syncMembers();
      break;
    case "history": {
      if (!ready) return firstHistory(frame);
      const wanted = historyWanted;
      historyWanted = null;
      if (wanted === "around" || wanted === "newer") return stretch(frame, wanted);
      receive(frame.messages, false);
      setHasMore(frame.has_more);
      if (seeking) continueSeeking();
      break;
    }
    case "message":
      receive([frame.message], true);
      break;
    case "messages":
      receive(frame.messages, true);
      break;
    case "ack":
      if (frame.of) break; // an edit, deletion or reaction: its broadcast redraws it
      if (mute.active) mute.clear(); // a send went through: no longer muted
      messages.confirm(frame.client_id, frame);
      settle(frame.client_id);
      changed();
      break;
    case "read":
      // Read on another tab or device: this one's unread state follows.
      if (frame.room === slug && frame.seq > readSeq) {
        readSeq = sentReadSeq = frame.seq;
        changed();
      }
      break;
    case "join":
      online.add(frame.user);
      syncMembers();
      break;
    case "leave":
      online.delete(frame.user);
      syncMembers();
      break;
    case "typing":
      if (frame.user !== me) typing.show(frame.user);
      break;
    case "message.deleted":
      context?.held.delete(frame.seq);
      messages.markRemoved(frame);
      if (replyTo && replyTo.id === frame.id) cancelReply();
      changed();
      break;
    case "message.updated":
      messages.update(frame.message);
      seenChange(frame.message.rev);
      break;
    case "changes":
      // What changed in the messages we have while this page was away.
      for (const message of frame.messages) messages.update(message);
      for (const gone of frame.deleted) messages.markRemoved(gone);
      seenChange(frame.last_change);
      changed();
      break;
    case "muted":
      if (frame.room === slug) mute.set(frame.until);
      break;
    case "unmuted":
      if (frame.room === slug) mute.clear();
      break;
    case "topic":
      if (frame.room === slug) showTopic(frame.topic);
      break;
    case "owner":
      if (frame.room === slug) showOwner(frame);
      break;
    case "error":
      // An edit, deletion or reaction refused (they name the message).
      if (frame.id !== undefined) composerError.textContent = frame.detail;
      else failed(frame);
      break;
    case "status":
      // Messages from other workers are delayed (the server's Redis is
      // away; they still come, from the database, every few seconds).
      fanoutDegraded = frame.fanout === "degraded";
      showState(connection.state);
      break;
  }
}

function seenChange(rev) {
  if (typeof rev === "number" && (lastChange === null || rev > lastChange)) lastChange = rev;
}

// ------------------------------------------------------------ replies

function startReply(target) {
  replyTo = target;
  document.getElementById("reply-user").textContent = target.user;
  document.getElementById("reply-excerpt").textContent = target.excerpt;
  replyBar.hidden = false;
  input.focus();
}

function cancelReply() {
  replyTo = null;
  replyBar.hidden = true;
}

document.getElementById("reply-cancel").addEventListener("click", () => {
  cancelReply();
  input.focus();
});

/** Go to a quoted message: at once when it is shown, else after loading
 * older pages until it is (or there are none). */
function jumpTo({ id, seq }) {
  if (messages.jumpTo(id)) return;
  const oldest = messages.oldestSeq;
  if (oldest !== null && seq >= oldest) {
    composerError.textContent = "That message was removed.";
    return;
  }
  seeking = { id, seq, pages: 0 };
  continueSeeking();
}

function continueSeeking() {
  const { id, seq } = seeking;
  if (messages.jumpTo(id)) {
    seeking = null;
    return;
  }
  const oldest = messages.oldestSeq;
  if (!hasMore || seeking.pages >= JUMP_PAGES || (oldest !== null && seq >= oldest)) {
    seeking = null;
    composerError.textContent = "The original message is no longer there.";
    return;
  }
  seeking.pages += 1;
  loadOlder();
}

const topicLine = document.getElementById("room-topic");
const memberList = document.getElementById("members");
// The member list starts folded (a phone shows the sidebar as a strip) and
// opens where there is room for it.
const membersBox = document.getElementById("members-box");
if (membersBox && matchMedia("(min-width: 721px)").matches) membersBox.open = true;

// The member list (drawn by the server, online first) follows presence:
// who is online moves to the top; someone new in the room is added.
function memberItem(user) {
  const item = document.createElement("li");
  item.dataset.user = user;
  const name = document.createElement("span");
  name.className = "member-name";
  name.textContent = user;
  const role = document.createElement("small");
  role.className = "muted member-role";
  role.textContent = "member";
  const presence = document.createElement("span");
  presence.className = "member-presence";
  item.append(name, " ", role, " ", presence);
  if (user !== me && root.dataset.direct !== "1") {
    const link = document.createElement("a");
    link.href = `/dm/${encodeURIComponent(user)}/`;
    link.className = "member-dm";
    link.textContent = "Message";
    link.setAttribute("aria-label", `Message ${user}`);
    item.append(" ", link);
  }
  return item;
}

function syncMembers() {
  if (!memberList) return;
  const items = [...memberList.children];
  const known = new Set(items.map((item) => item.dataset.user));
  for (const user of online.users) if (!known.has(user)) items.push(memberItem(user));
  for (const item of items) {
    const on = online.users.has(item.dataset.user);
    item.toggleAttribute("data-online", on);
    item.querySelector(".member-presence").textContent = on ? "online" : "";
  }
  const rank = (item) => (item.hasAttribute("data-online") ? 0 : 1);
  items.sort((a, b) => rank(a) - rank(b) || (a.dataset.user < b.dataset.user ? -1 : 1));
  memberList.append(...items);
}

// The room was handed over: the member list shows the new roles at once.
// The owner's controls are drawn by the server, so the two people whose
// powers changed are told to reload for the rest; the settings link, the
// one control that is only the owner's, follows at once.
function showOwner({ user, previous }) {
  for (const [name, role] of [
    [previous, "moderator"],
    [user, "owner"],
  ]) {
    const label = memberList?.querySelector(`li[data-user="${CSS.escape(name)}"] .member-role`);
    if (label) label.textContent = role;
  }
  const status = document.getElementById("moderation-status");
  if (user === me) {
    if (!document.querySelector(".room-tools .settings-link")) {
      const link = document.createElement("a");
      link.href = `/rooms/${encodeURIComponent(slug)}/settings/`;
      link.className = "settings-link";
      link.textContent = "Room settings";
      document.querySelector(".room-tools").prepend(link);
    }
    status.textContent = `${previous} handed this room over to you: you own it now. Reload the page for all of the owner's tools.`;
  } else if (previous === me) {
    status.textContent = `${user} owns this room now; you are one of its moderators. Reload the page to leave it.`;
  }
}

function showTopic(topic) {
  topicLine.textContent = topic;
  topicLine.hidden = !topic;
}

function firstHistory(frame) {
  const first = frame.messages[0];
  const reachesTarget = !frame.has_more || (first !== undefined && first.seq <= target);
  if (!context && target !== null && !opened && !reachesTarget) {
    context = { held: new Map(), newest: null };
    contextNotice.hidden = false;
  }
  if (context) hold(frame.messages);
  else receive(frame.messages, false);
  // A resume's has_more speaks of messages before `after`, which we have.
  if (!resuming && !context) setHasMore(frame.has_more);
  ready = true;
  clearTimeout(retryTimer);
  retryTimer = null;
  if (!opened) {
    opened = true;
    loading.hidden = true;
    if (target !== null && !context) showTarget();
    else showDivider();
  }
  // The stretch around the target (again, if the socket closed before it came).
  if (context?.newest === null && historyWanted === null) {
    if (connection.send({ type: "history", around: target, limit: HISTORY_PAGE })) {
      historyWanted = "around";
    }
  }
  // Whatever the resume did not show as stored goes out again, in order.
  pump();
  // Read while the socket was down: the server hears of it now.
  if (resuming && readSeq > 0) connection.send({ type: "read", seq: readSeq });
  changed();
}

function receive(list, live) {
  if (context && live) return hold(list);
  let unseen = false;
  for (const message of list) {
    if (lastSeq === null || message.seq > lastSeq) lastSeq = message.seq;
    if (message.user === me && outbox.has(message.client_id)) {
      // Our own send, back from the server before (or instead of) its ack.
      messages.dropPending(message.client_id);
      settle(message.client_id);
    }
    typing.clear(message.user);
  }
  const added = new Set(messages.add(list));
  const heard = [];
  for (const message of live ? list : []) {
    const item = messages.bySeq.get(message.seq);
    if (!added.has(item) || message.user === me) continue;
    heard.push(item);
    if (message.seq <= readSeq) continue;
    unseen = true;
    notifier.message(message, item.classList.contains("mentions-me"));
  }
  if (heard.length) announcer.messages(heard);
  // Messages came while the reader was away and everything before was read:
  // the divider moves down to the first of them.
  if (unseen && !(reading() && messages.atBottom())) {
    const divider = messages.divider;
    if (!divider || Number(divider.dataset.seq) <= readSeq) dividerFrom = readSeq;
  }
  placeDivider();
  changed();
}

// ------------------------------------------------------------ opened at a message

/** Past the stretch shown: kept until the stretch reaches them. */
function hold(list) {
  for (const message of list) {
    if (lastSeq === null || message.seq > lastSeq) lastSeq = message.seq;
    context.held.set(message.seq, message);
  }
}

/** An answer to `around` (the stretch itself) or `after` (its newer side). */
function stretch(frame, wanted) {
  receive(frame.messages, false);
  if (wanted === "around") setHasMore(frame.has_more);
  // Of the stretch only: your own sends, confirmed meanwhile, sit below it.
  for (const message of frame.messages) context.newest = Math.max(context.newest ?? 0, message.seq);
  context.newest ??= wanted === "around" ? target : context.newest;
  const oldestHeld = Math.min(...context.held.keys());
  if (!frame.has_newer || (context.newest ?? 0) >= oldestHeld) joinLatest();
  else newerButton.hidden = false;
  if (wanted === "around") showTarget();
  changed();
}

/** The stretch reaches what was held: one list again, live as usual. */
function joinLatest() {
  const held = [...context.held.values()].sort((a, b) => a.seq - b.seq);
  context = null;
  newerButton.hidden = true;
  contextNotice.hidden = true;
  receive(held, false);
}

function loadNewer() {
  if (!context || context.newest === null || historyWanted !== null || !ready) return;
  if (connection.send({ type: "history", after: context.newest, limit: HISTORY_PAGE })) {
    historyWanted = "newer";
  }
}

newerButton.addEventListener("click", loadNewer);

/** Mark the message opened at, bring it into view and give it the focus. */
function showTarget() {
  const item = messages.bySeq.get(target);
  if (!item || item.classList.contains("removed")) {
    announcer.say("That message is not there any more.");
    document.getElementById("target-missing").hidden = false;
    return;
  }
  item.classList.add("search-target");
  item.setAttribute("aria-current", "true");
  messages.setCurrent(item);
  item.scrollIntoView({ block: "center" });
  item.focus({ preventScroll: true });
}

function placeDivider() {
  if (dividerFrom === null) return messages.setDivider(null);
  for (const item of document.querySelectorAll("#messages li[data-seq]")) {
    if (Number(item.dataset.seq) > dividerFrom && item.dataset.user !== me) {
      return messages.setDivider(Number(item.dataset.seq));
    }
  }
  messages.setDivider(null);
}

/** Opening the room: show the first unread message rather than the bottom
 * when they do not all fit on the screen. */
function showDivider() {
  const divider = messages.divider;
  if (!divider) return;
  const offset = divider.getBoundingClientRect().top - scroller.getBoundingClientRect().top;
  if (offset < 0) scroller.scrollTop += offset - 8;
}

// ------------------------------------------------------------ the outbox

function pump() {
  if (inFlight !== null || retryTimer !== null || !ready) return;
  const next = outbox.entries().next();
  if (next.done) return;
  const [clientId, body] = next.value;
  const frame = { type: "message.send", body, client_id: clientId };
  if (replies.has(clientId)) frame.reply_to = replies.get(clientId);
  if (connection.send(frame)) inFlight = clientId;
}

function settle(clientId) {
  outbox.delete(clientId);
  replies.delete(clientId);
  if (inFlight !== clientId) return;
  inFlight = null;
  if (rateLimited) {
    rateLimited = false; // the limit is behind us: its error with it
    composerError.textContent = "";
  }
  pump();
}

function failed({ code, detail, retry_after: retryAfter, until }) {
  composerError.textContent = detail;
  if (code === "muted") {
    // The server's detail has the end in UTC: the banner and the error say
    // it in the reader's own time.
    mute.set(until);
    composerError.textContent = `Not sent: ${mute.sentence}`;
  }
  if (!SEND_ERRORS.has(code) || inFlight === null) return;
  const clientId = inFlight;
  inFlight = null;
  if (code === "rate_limited" || code === "unavailable") {
    // The same message goes again when the window has passed (or the
    // server has recovered: its client_id keeps it from being stored
    // twice); the ones queued behind it wait their turn.
    rateLimited = true;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      pump();
    }, retryAfter * 1000);
    return;
  }
  // Refused for good: give the text back to the writer (and, for refusals
  // that every later message would meet too, the queued ones with it).
  const refused = REFUSE_ALL.has(code) ? [...outbox.keys()] : [clientId];
  const texts = refused.map((id) => outbox.get(id));
  for (const id of refused) {
    outbox.delete(id);
    messages.dropPending(id);
  }
  composer.set([input.value, ...texts].filter(Boolean).join("\n"));
  pump();
  changed();
}

// ------------------------------------------------------------ reading

function reading() {
  return document.visibilityState === "visible";
}

function unreadCount() {
  let count = 0;
  for (const item of messages.newestFirst()) {
    if (Number(item.dataset.seq) <= readSeq) break;
    if (item.dataset.user !== me && !item.classList.contains("removed")) count += 1;
  }
  return count;
}

/** After anything that may change what is seen: advance the read position,
 * and redraw the unread count (title, "New messages" button) and the
 * room's start and empty states. */
function changed() {
  if (reading()) {
    const seen = messages.seenUpTo();
    if (seen !== null && seen > readSeq) {
      readSeq = seen;
      scheduleRead();
    }
  }
  const unread = unreadCount();
  document.title = unread ? `(${unread}) ${roomName} · Chat` : `${roomName} · Chat`;
  newButton.hidden = unread === 0 || messages.atBottom();
  newButton.textContent = unread === 1 ? "1 new message ↓" : `${unread} new messages ↓`;
  emptyRoom.hidden = !opened || hasMore || messages.size > 0 || context !== null;
  roomStart.hidden = !opened || hasMore || messages.size === 0;
}

function scheduleRead() {
  if (readTimer === null) readTimer = setTimeout(flushRead, READ_EVERY_MS);
}

function flushRead() {
  clearTimeout(readTimer);
  readTimer = null;
  if (readSeq <= sentReadSeq) return;
  if (connection.send({ type: "read", seq: readSeq })) sentReadSeq = readSeq;
  else scheduleRead(); // not connected: try again shortly
}

newButton.addEventListener("click", () => {
  const first = [...document.querySelectorAll("#messages li[data-seq]")].find(
    (item) => Number(item.dataset.seq) > readSeq && item.dataset.user !== me,
  );
  const offset = first
    ? first.getBoundingClientRect().top - scroller.getBoundingClientRect().top - 8
    : Infinity;
  if (offset > 0 && offset !== Infinity) scroller.scrollTop += offset;
  else messages.scrollToBottom();
  input.focus();
});

let scrollFrame = null;
scroller.addEventListener("scroll", () => {
  if (scroller.scrollTop < 80) loadOlder();
  if (context && scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80) loadNewer();
  scrollFrame ??= requestAnimationFrame(() => {
    scrollFrame = null;
    changed();
  });
});
document.addEventListener("visibilitychange", changed);
// "Today" becomes "Yesterday" at midnight for a page left open.
setInterval(() => messages.refreshDays(), 60_000);

// ------------------------------------------------------------ connection state

// The status line is a live region: its text changes with the state only,
// so a screen reader hears "Reconnecting…" once, not every attempt and every
// second of the wait; the countdown beside it is for the eyes.
const STATE_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline: waiting for the network",
  forbidden: "You no longer have access to this room",
  left: "You left this room",
};
let everConnected = false;
let shownStatus = STATE_TEXT.connecting; // as the page comes

function showState(state, seconds) {
  onlineBox.classList.toggle("stale", state !== "connected");
  // Attempts and the waits between them are one state to the reader.
  let shown = state;
  if (state === "connecting" || state === "waiting") {
    shown = everConnected ? "reconnecting" : "connecting";
  }
  if (state === "connected") everConnected = true;
  countdown.textContent = state === "waiting" ? `in ${seconds} s` : "";
  status.dataset.state = shown;
  let text = STATE_TEXT[shown];
  if (shown === "connected" && connection.transport === "eventstream") {
    text = "Connected (compatibility mode)"; // the WebSocket is blocked on this network
  }
  if (shown === "connected" && fanoutDegraded) text += " — messages may arrive late";
  if (state === "ended" && shownStatus !== "ended") {
    const login = document.createElement("a");
    login.href = `/accounts/login/?next=${encodeURIComponent(location.pathname)}`;
    login.textContent = "log in again";
    status.replaceChildren("Your session ended — ", login);
    shownStatus = "ended";
  } else if (state !== "ended" && text !== shownStatus) {
    status.textContent = shownStatus = text;
  }
  if (state !== "connected") {
    ready = false;
    typing.clearAll();
  }
  if (state === "left") location.assign("/"); // left here or on another page
  if (state === "ended" || state === "forbidden" || state === "left") {
    input.disabled = true;
    composerForm.querySelector("button").disabled = true;
    olderButton.hidden = true;
    newerButton.hidden = true;
    loading.hidden = true;
  }
}

// ------------------------------------------------------------ older messages

function setHasMore(value) {
  hasMore = value;
  olderButton.hidden = !hasMore;
  changed();
}

function loadOlder() {
  const before = messages.oldestSeq;
  if (!hasMore || historyWanted !== null || !ready || before === null) return;
  if (connection.send({ type: "history", before, limit: HISTORY_PAGE })) historyWanted = "older";
}

olderButton.addEventListener("click", loadOlder);

// ------------------------------------------------------------ composer

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // randomUUID exists only in secure contexts (https or localhost).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function submit() {
  const body = input.value.trim();
  if (!body || input.disabled) return;
  if (composer.overBy > 0) {
    composerError.textContent =
      `This message is ${composer.overBy} characters over the limit of ${limit}: ` +
      "shorten it or send it in parts.";
    return;
  }
  const clientId = newClientId();
  outbox.set(clientId, body);
  if (replyTo) replies.set(clientId, replyTo.id);
  cancelReply();
  messages.addPending(clientId, body);
  composer.set("");
  if (!rateLimited) composerError.textContent = "";
  lastTypingSent = 0; // the message ended this bout of typing for the others
  pump();
  changed();
}

composerForm.addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
  input.focus();
});

input.addEventListener("keydown", (event) => {
  // Enter sends, Shift+Enter is a new line; never while an IME is composing.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
});

input.addEventListener("input", () => {
  const now = Date.now();
  if (!input.value.trim() || !ready || now - lastTypingSent < TYPING_EVERY_MS) return;
  if (connection.send({ type: "typing" })) lastTypingSent = now;
});

// ------------------------------------------------------------ page lifecycle

window.addEventListener("pagehide", () => {
  flushRead(); // leaving right after reading: the server still hears of it
  connection.stop();
});
window.addEventListener("pageshow", (event) => {
  if (event.persisted) connection.start(); // back from the back/forward cache
});

// Read-only state for tests and the curious; nothing else is global.
Object.defineProperty(window, "chat", {
  value: Object.freeze({
    get state() {
      return connection.state;
    },
    get lastSeq() {
      return lastSeq;
    },
    get pending() {
      return outbox.size;
    },
    get readSeq() {
      return readSeq;
    },
  }),
});

// Entering the room puts you in the composer (not on touch screens, where
// that would throw the keyboard over the messages).
if (target === null && !matchMedia("(pointer: coarse)").matches) input.focus();
// Leaving from this page: its own socket's `left` close must not race the form's
// redirect (which carries the "You left" notice) to the directory.
document.querySelector(".leave-form")?.addEventListener("submit", () => connection.stop());

connection.start();
