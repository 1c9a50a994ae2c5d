// The room page: wires the socket (connection.js) to the drawing (render.js)
// and owns the outbox, the history paging and the composer.

import { Connection } from "./connection.js";
import { Moderation } from "./moderation.js";
import { MessageList, OnlineList, TypingLine } from "./render.js";

const HISTORY_PAGE = 50;
const TYPING_EVERY_MS = 2000;
// Errors that answer a message.send: they refer to the oldest unanswered send,
// because the server handles one socket's frames in order.
const SEND_ERRORS = new Set([
  "rate_limited",
  "muted",
  "locked",
  "too_long",
  "bad_request",
  "forbidden", // a send racing a ban (the 4403 close follows)
]);

const root = document.getElementById("room");
const me = root.dataset.user;
const slug = root.dataset.slug;
const status = document.getElementById("connection");
const scroller = document.getElementById("timeline");
const olderButton = document.getElementById("load-older");
const composer = document.getElementById("composer");
const input = document.getElementById("message-input");
const composerError = document.getElementById("composer-error");
const onlineBox = document.getElementById("online");

const moderation = new Moderation(root, { onRemoved: (id) => messages.remove({ id }) });
const messages = new MessageList(
  document.getElementById("messages"),
  scroller,
  me,
  moderation.messageControls,
);
const online = new OnlineList(onlineBox, me, moderation.userControls);
const typing = new TypingLine(document.getElementById("typing"));

// Highest seq received in a message or history frame: having it means having
// every earlier message, so reconnecting resumes after it. Acks do not count:
// our ack can overtake someone else's earlier message.
let lastSeq = null;
let resuming = false; // this socket was opened with ?after=
let ready = false; // hello and its history are in: sends may go out
let hasMore = false; // older messages exist before the oldest shown
let loadingOlder = false;
let lastTypingSent = 0;
// Sends not yet acknowledged, oldest first: {clientId: body}. Re-sent with
// the same client_id after a reconnect; the server stores each once.
const outbox = new Map();
let inFlight = []; // client_ids sent on this socket with no answer yet
const retryTimers = new Set();

const connection = new Connection({
  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    resuming = lastSeq !== null;
    const query = resuming ? `?after=${lastSeq}` : "";
    return `${scheme}://${location.host}/ws/rooms/${encodeURIComponent(slug)}/${query}`;
  },
  onFrame: handle,
  onState: showState,
});

// ------------------------------------------------------------ server frames

function handle(frame) {
  switch (frame.type) {
    case "hello":
      ready = false;
      loadingOlder = false;
      inFlight = [];
      online.set(frame.online);
      break;
    case "history":
      if (!ready) return firstHistory(frame);
      loadingOlder = false;
      receive(frame.messages);
      setHasMore(frame.has_more);
      break;
    case "message":
      receive([frame.message]);
      break;
    case "messages":
      receive(frame.messages);
      break;
    case "ack":
      settle(frame.client_id);
      messages.confirm(frame.client_id, frame);
      break;
    case "join":
      online.add(frame.user);
      break;
    case "leave":
      online.delete(frame.user);
      break;
    case "typing":
      if (frame.user !== me) typing.show(frame.user);
      break;
    case "message.deleted":
      messages.remove(frame);
      break;
    case "error":
      failed(frame);
      break;
  }
}

function firstHistory(frame) {
  receive(frame.messages);
  // A resume's has_more speaks of messages before `after`, which we have.
  if (!resuming) setHasMore(frame.has_more);
  ready = true;
  retryTimers.forEach(clearTimeout);
  retryTimers.clear();
  // Whatever the resume did not show as stored goes out again.
  for (const clientId of outbox.keys()) transmit(clientId);
}

function receive(list) {
  for (const message of list) {
    if (lastSeq === null || message.seq > lastSeq) lastSeq = message.seq;
    if (message.user === me && outbox.has(message.client_id)) {
      // Our own send, back from the server before (or instead of) its ack.
      settle(message.client_id);
      messages.dropPending(message.client_id);
    }
    typing.clear(message.user);
  }
  messages.add(list);
}

function settle(clientId) {
  outbox.delete(clientId);
  inFlight = inFlight.filter((id) => id !== clientId);
}

function failed({ code, detail, retry_after: retryAfter }) {
  composerError.textContent = detail;
  if (!SEND_ERRORS.has(code) || inFlight.length === 0) return;
  const clientId = inFlight.shift();
  if (code === "rate_limited") {
    const timer = setTimeout(() => {
      retryTimers.delete(timer);
      transmit(clientId);
    }, retryAfter * 1000);
    retryTimers.add(timer);
    return;
  }
  // Refused for good (muted, locked, …): give the text back to the writer.
  const body = outbox.get(clientId);
  outbox.delete(clientId);
  messages.dropPending(clientId);
  if (!input.value) input.value = body;
}

// ------------------------------------------------------------ connection state

function showState(state, seconds) {
  status.dataset.state = state;
  onlineBox.classList.toggle("stale", state !== "connected");
  if (state === "connecting") status.textContent = "Connecting…";
  else if (state === "connected") status.textContent = "Connected";
  else if (state === "waiting") status.textContent = `Reconnecting in ${seconds}s…`;
  else if (state === "ended") {
    const login = document.createElement("a");
    login.href = `/accounts/login/?next=${encodeURIComponent(location.pathname)}`;
    login.textContent = "log in again";
    status.replaceChildren("Your session ended — ", login);
  } else if (state === "forbidden") {
    status.textContent = "You no longer have access to this room";
  }
  if (state !== "connected") {
    ready = false;
    typing.clearAll();
  }
  if (state === "ended" || state === "forbidden") {
    input.disabled = true;
    composer.querySelector("button").disabled = true;
    olderButton.hidden = true;
  }
}

// ------------------------------------------------------------ older messages

function setHasMore(value) {
  hasMore = value;
  olderButton.hidden = !hasMore;
}

function loadOlder() {
  const before = messages.oldestSeq;
  if (!hasMore || loadingOlder || !ready || before === null) return;
  loadingOlder = connection.send({ type: "history", before, limit: HISTORY_PAGE });
}

scroller.addEventListener("scroll", () => {
  if (scroller.scrollTop < 80) loadOlder();
});
olderButton.addEventListener("click", loadOlder);

// ------------------------------------------------------------ composer

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // randomUUID exists only in secure contexts (https or localhost).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function transmit(clientId) {
  const body = outbox.get(clientId);
  if (body === undefined || !ready) return; // sent after the next hello instead
  if (connection.send({ type: "message.send", body, client_id: clientId })) inFlight.push(clientId);
}

function submit() {
  const body = input.value.trim();
  if (!body || input.disabled) return;
  const clientId = newClientId();
  outbox.set(clientId, body);
  messages.addPending(clientId, body);
  input.value = "";
  composerError.textContent = "";
  lastTypingSent = 0; // the message ended this bout of typing for the others
  transmit(clientId);
}

composer.addEventListener("submit", (event) => {
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

window.addEventListener("online", () => connection.retryNow());
window.addEventListener("pagehide", () => connection.stop());
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
  }),
});

connection.start();
