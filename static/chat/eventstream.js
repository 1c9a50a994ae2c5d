// The room over Server-Sent Events, for networks that block WebSockets: the
// same frames, as events of `GET /sse/rooms/<slug>/`; what the page sends
// goes as `POST` to the same address, and the frames the server answers with
// (ack, error, pong, history) come back as if they had arrived on the
// stream. It looks to connection.js like a WebSocket: onmessage, onclose,
// send, close.

export class EventStream {
  constructor(socketUrl, csrfToken) {
    const url = new URL(socketUrl);
    url.protocol = url.protocol === "wss:" ? "https:" : "http:";
    url.pathname = url.pathname.replace(/^\/ws\//, "/sse/");
    this.postUrl = `${url.origin}${url.pathname}`;
    this.csrfToken = csrfToken;
    this.conn = "";
    this.closed = false;
    this.onmessage = null;
    this.onclose = null;
    this.source = new EventSource(url);
    this.source.onmessage = (event) => this.received(event.data);
    // EventSource would reconnect by itself, from where the stream began;
    // the page reconnects itself instead, from the last seq it has.
    this.source.onerror = () => this.ended(1006, "");
  }

  received(data) {
    if (this.closed) return;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === "close") return this.ended(frame.code, frame.reason || "");
    if (frame.type === "hello" && frame.conn) this.conn = frame.conn;
    this.onmessage?.({ data });
  }

  ended(code, reason) {
    if (this.closed) return;
    this.closed = true;
    this.source.close();
    this.onclose?.({ code, reason });
  }

  send(text) {
    if (this.closed) return;
    const query = this.conn ? `?conn=${encodeURIComponent(this.conn)}` : "";
    fetch(this.postUrl + query, {
      method: "POST",
      body: text,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": this.csrfToken },
    })
      // Refusals are frames too (a 403 for a stale CSRF token: `forbidden`).
      .then((response) => response.json())
      .then((frames) => {
        for (const frame of frames) this.received(JSON.stringify(frame));
      })
      // A POST that never got an answer: the outbox sends the message again
      // after the next reconnect (its client_id keeps it stored once).
      .catch(() => {});
  }

  close() {
    this.closed = true;
    this.source.close();
  }
}
