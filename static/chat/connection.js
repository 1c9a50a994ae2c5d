// One WebSocket that keeps itself open: reconnects with exponential backoff
// and jitter, notices dead connections within seconds (the browser's
// offline/online events, and a ping after a few silent seconds), and stops
// for good on the close codes after which the server would only refuse us
// again. Where WebSockets are blocked (the upgrade fails, or no hello comes,
// twice in a row, while the server says it is ready) it carries on over
// Server-Sent Events (eventstream.js), and tries the WebSocket again now and
// then.

import { EventStream } from "./eventstream.js";

// The close codes are the server's (the page's room-config, from
// chat.events.Close; docs/protocol.md lists them). After `left` (the user
// left the room, on this page or another) there is nothing to reconnect to. When the server asks for a
// new connection (reconnect: access to be checked again; tooFarBehind: this
// page fell too far behind; serviceRestart: the worker restarts), come back
// at once, spread over a second so that a worker's pages do not all arrive
// together, and resume from the last seq. When it is busy or cannot open the
// socket now (tryAgainLater), its close reason says when to come back, and a
// random part of that again is added on top.
const AT_ONCE_SPREAD_MS = 1000;

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
// After this long without a frame from the server, ping it…
const PING_AFTER_SILENCE_MS = 3000;
// …and a socket still silent this long after the ping is dead (a half-open
// TCP connection, or a network that went away, never fires `close` by
// itself). So a dead connection shows within 5 s, at one small frame per 3 s
// on a quiet socket.
const PONG_WITHIN_MS = 2000;
const CONNECT_WITHIN_MS = 8000;
// A WebSocket whose hello has not come this long after opening counts as
// blocked (a proxy that swallows the upgrade); two in a row, and the page
// switches to the event stream…
const WEBSOCKET_HELLO_WITHIN_MS = 4000;
const WEBSOCKET_FAILURES_BEFORE_FALLBACK = 2;
// …and tries a WebSocket again this often (going back to it if it works).
const WEBSOCKET_RETRY_MS = 5 * 60 * 1000;
// 200 here means the server is up and taking connections (not draining
// after a SIGTERM, which kept-alive connections can still reach).
const READINESS_URL = "/readyz";

export class Connection {
  /**
   * url: () => string, called before every attempt (so it can resume from
   *   the latest seq); onFrame(frame); onState(state, detail) with state one
   *   of "connecting", "connected", "waiting" (detail: seconds left),
   *   "offline" (the browser has no network; reconnects when it returns),
   *   "ended" (session over), "forbidden" (no access). "connected" has the
   *   detail "compatibility" over the event stream. csrfToken: for the
   *   event stream's POSTs. closeCodes: {sessionEnded, noAccess, reconnect,
   *   tooFarBehind, serviceRestart, tryAgainLater}, from the server.
   */
  constructor({ url, onFrame, onState, csrfToken = "", closeCodes }) {
    this.url = url;
    this.codes = closeCodes;
    this.reconnectAtOnce = new Set([
      closeCodes.reconnect,
      closeCodes.tooFarBehind,
      closeCodes.serviceRestart,
    ]);
    this.onFrame = onFrame;
    this.onState = onState;
    this.csrfToken = csrfToken;
    this.socket = null;
    this.attempt = 0;
    this.state = null;
    this.timers = {};
    this.transport = "websocket"; // or "eventstream"
    this.websocketFailures = 0;
    this.greeted = false; // the current socket's hello came
  }

  get isOpen() {
    return this.socket !== null && this.state === "connected";
  }

  start() {
    this.stopped = false;
    if (!this.listening) {
      this.listening = true;
      window.addEventListener("offline", () => this.wentOffline());
      window.addEventListener("online", () => this.retryNow());
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "visible") this.retryNow();
      });
    }
    if (navigator.onLine === false) this.setState("offline");
    else this.open();
  }

  get final() {
    return this.stopped || ["ended", "forbidden", "left"].includes(this.state);
  }

  /** The browser lost the network: the socket is as good as gone. */
  wentOffline() {
    if (this.final) return;
    this.clearTimers();
    this.detach()?.close();
    this.setState("offline");
  }

  /** Close without reconnecting (the page is going away). */
  stop() {
    this.stopped = true;
    this.clearTimers();
    this.detach()?.close(1000);
  }

  /** Skip the rest of the backoff wait (the network came back, the tab
   * became visible again). */
  retryNow() {
    if (this.state === "waiting" || this.state === "offline") {
      this.clearTimers();
      this.attempt = 0;
      this.open();
    }
  }

  send(frame) {
    if (!this.isOpen) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  open() {
    this.setState("connecting");
    this.greeted = false;
    const overWebSocket = this.transport === "websocket";
    const socket = overWebSocket ? new WebSocket(this.url()) : new EventStream(this.url(), this.csrfToken);
    this.socket = socket;
    socket.onmessage = (event) => this.received(event);
    socket.onclose = (event) => this.closed(event.code, event.reason);
    // A handshake that hangs (a network that drops packets) counts as failed.
    const within = overWebSocket ? WEBSOCKET_HELLO_WITHIN_MS : CONNECT_WITHIN_MS;
    this.timers.pong = setTimeout(() => this.dead(), within);
  }

  dead() {
    this.detach()?.close();
    this.clearTimers();
    this.noteFailure();
    this.scheduleRetry();
  }

  /** A WebSocket that never said hello: after two in a row, and if the
   * server says it is ready all the same (so WebSockets are blocked on the
   * way, rather than the server away), the event stream. An event stream
   * that fails as well means the server went away after all: then the
   * WebSocket is tried again as soon as the server answers. */
  noteFailure() {
    if (this.greeted) return;
    if (this.transport === "eventstream") {
      this.probeAtOnce = true;
      return;
    }
    this.websocketFailures += 1;
    if (this.websocketFailures >= WEBSOCKET_FAILURES_BEFORE_FALLBACK) this.fallBackIfServerAnswers();
  }

  async fallBackIfServerAnswers() {
    let answers = false;
    try {
      answers = (await fetch(READINESS_URL, { cache: "no-store" })).ok;
    } catch {
      // no answer: the server (or the network) is away
    }
    if (this.transport !== "websocket" || this.state === "connected" || this.final) return;
    if (!answers) {
      this.websocketFailures = WEBSOCKET_FAILURES_BEFORE_FALLBACK - 1; // ask again next time
      return;
    }
    this.transport = "eventstream";
    this.attempt = 0;
    clearTimeout(this.probeTimer);
    this.probeTimer = setTimeout(() => this.probeWebSocket(), WEBSOCKET_RETRY_MS);
  }

  /** Over the event stream: is the WebSocket through now? If its hello
   * comes, go back to it (resuming from the last seq); if not, ask later. */
  probeWebSocket() {
    if (this.transport !== "eventstream" || this.final) return;
    const probe = new WebSocket(this.url());
    const giveUp = setTimeout(() => probe.close(), WEBSOCKET_HELLO_WITHIN_MS);
    probe.onmessage = () => {
      clearTimeout(giveUp);
      probe.onmessage = probe.onclose = null;
      probe.close(1000);
      this.transport = "websocket";
      this.websocketFailures = 0;
      this.clearTimers();
      this.detach()?.close();
      this.open();
    };
    probe.onclose = () => {
      clearTimeout(giveUp);
      this.probeTimer = setTimeout(() => this.probeWebSocket(), WEBSOCKET_RETRY_MS);
    };
  }

  received(event) {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return; // not ours to understand; the contract only sends JSON
    }
    // The server's first frame (hello) proves the handshake and the access
    // check passed: only now is the backoff reset.
    if (this.state !== "connected") {
      this.attempt = 0;
      this.greeted = true;
      if (this.transport === "websocket") this.websocketFailures = 0;
      this.setState("connected", this.transport === "eventstream" ? "compatibility" : undefined);
      if (this.transport === "eventstream" && this.probeAtOnce) {
        this.probeAtOnce = false;
        clearTimeout(this.probeTimer);
        this.probeTimer = setTimeout(() => this.probeWebSocket(), 0);
      }
    }
    this.keepAlive();
    this.onFrame(frame);
  }

  closed(code, reason = "") {
    this.detach();
    this.clearTimers();
    if (this.stopped) return;
    if (code === 1006) this.noteFailure(); // the upgrade failed, or the connection dropped
    if (code === this.codes.sessionEnded) return this.setState("ended");
    if (code === this.codes.noAccess) return this.setState("forbidden");
    if (code === this.codes.left) return this.setState("left");
    // Try again later says how long: "retry_after=<seconds>".
    const tryLater = code === this.codes.tryAgainLater;
    const hint = tryLater ? Number(/retry_after=([\d.]+)/.exec(reason)?.[1]) : 0;
    this.scheduleRetry(this.reconnectAtOnce.has(code), (hint || 0) * 1000);
  }

  scheduleRetry(atOnce = false, atLeastMs = 0) {
    if (navigator.onLine === false) return this.setState("offline"); // "online" reopens
    const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.attempt);
    if (!atOnce) this.attempt += 1;
    // Jitter spreads the reconnects of many clients after a server restart.
    let delay = base / 2 + (Math.random() * base) / 2;
    if (atOnce) delay = Math.random() * AT_ONCE_SPREAD_MS;
    else if (atLeastMs) delay = atLeastMs * (1 + Math.random());
    const due = Date.now() + delay;
    const tick = () => this.setState("waiting", Math.max(1, Math.ceil((due - Date.now()) / 1000)));
    tick();
    this.timers.countdown = setInterval(tick, 250);
    this.timers.retry = setTimeout(() => {
      this.clearTimers();
      this.open();
    }, delay);
  }

  /** Any frame proves the connection alive; silence gets a ping, and a
   * ping without an answer ends the socket. */
  keepAlive() {
    clearTimeout(this.timers.ping);
    clearTimeout(this.timers.pong);
    this.timers.ping = setTimeout(() => {
      this.send({ type: "ping" });
      this.timers.pong = setTimeout(() => this.dead(), PONG_WITHIN_MS);
    }, PING_AFTER_SILENCE_MS);
  }

  /** Forget the current socket so that its late events change nothing. */
  detach() {
    const socket = this.socket;
    if (socket) socket.onmessage = socket.onclose = null;
    this.socket = null;
    return socket;
  }

  clearTimers() {
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.countdown);
    clearTimeout(this.timers.ping);
    clearTimeout(this.timers.pong);
    this.timers = {};
  }

  setState(state, detail) {
    if (state === this.state && detail === this.detail) return;
    this.state = state;
    this.detail = detail;
    this.onState(state, detail);
  }
}
