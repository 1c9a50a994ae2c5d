// One WebSocket that keeps itself open: reconnects with exponential backoff
// and jitter, notices dead connections with ping/pong, and stops for good on
// the close codes after which the server would only refuse us again.

export const CLOSE_SESSION_ENDED = 4401;
export const CLOSE_NO_ACCESS = 4403;

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
const PING_EVERY_MS = 25000;
// A socket that has been silent this long after a ping is dead (a half-open
// TCP connection never fires `close` by itself).
const PONG_WITHIN_MS = 10000;

export class Connection {
  /**
   * url: () => string, called before every attempt (so it can resume from
   *   the latest seq); onFrame(frame); onState(state, detail) with state one
   *   of "connecting", "connected", "waiting" (detail: seconds left),
   *   "ended" (session over), "forbidden" (no access).
   */
  constructor({ url, onFrame, onState }) {
    this.url = url;
    this.onFrame = onFrame;
    this.onState = onState;
    this.socket = null;
    this.attempt = 0;
    this.state = null;
    this.timers = {};
  }

  get isOpen() {
    return this.socket !== null && this.state === "connected";
  }

  start() {
    this.stopped = false;
    this.open();
  }

  /** Close without reconnecting (the page is going away). */
  stop() {
    this.stopped = true;
    this.clearTimers();
    this.detach()?.close(1000);
  }

  /** Skip the rest of the backoff wait (e.g. the network came back). */
  retryNow() {
    if (this.state === "waiting") {
      this.clearTimers();
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
    const socket = new WebSocket(this.url());
    this.socket = socket;
    socket.onmessage = (event) => this.received(event);
    socket.onclose = (event) => this.closed(event.code);
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
      this.setState("connected");
    }
    this.keepAlive();
    this.onFrame(frame);
  }

  closed(code) {
    this.detach();
    this.clearTimers();
    if (this.stopped) return;
    if (code === CLOSE_SESSION_ENDED) return this.setState("ended");
    if (code === CLOSE_NO_ACCESS) return this.setState("forbidden");
    this.scheduleRetry();
  }

  scheduleRetry() {
    const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.attempt);
    this.attempt += 1;
    // Jitter spreads the reconnects of many clients after a server restart.
    const delay = base / 2 + (Math.random() * base) / 2;
    const due = Date.now() + delay;
    const tick = () => this.setState("waiting", Math.max(1, Math.ceil((due - Date.now()) / 1000)));
    tick();
    this.timers.countdown = setInterval(tick, 250);
    this.timers.retry = setTimeout(() => {
      this.clearTimers();
      this.open();
    }, delay);
  }

  keepAlive() {
    clearTimeout(this.timers.ping);
    clearTimeout(this.timers.pong);
    this.timers.ping = setTimeout(() => {
      this.send({ type: "ping" });
      this.timers.pong = setTimeout(() => {
        this.detach()?.close();
        this.scheduleRetry();
      }, PONG_WITHIN_MS);
    }, PING_EVERY_MS);
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
