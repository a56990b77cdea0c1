// Floorcast WHIP client (RFC 9725), and the HTTP exchange that WHEP shares with it.
//
// One offer, one answer, no trickle: the offer is sent once ICE gathering is complete (or
// after 2 s, whichever comes first), so the server gets every host candidate in the SDP.
// The resource URL from `Location` is kept and DELETEd on stop. Errors from the server are
// JSON `{"error": code, "message": text}`; they surface as `SignalError` whose `message` is
// the server's own words, ready to show to a person.

const ICE_GATHERING_TIMEOUT_MS = 2000;
const REQUEST_TIMEOUT_MS = 15000;
const DELETE_TIMEOUT_MS = 5000;

/** An error a page can show as it is: `message` is meant for people, `code` for code. */
export class SignalError extends Error {
  constructor(message, { status = 0, code = "network_error", retryable = false, hint = "" } = {}) {
    super(message);
    this.name = "SignalError";
    this.status = status;
    this.code = code;
    this.retryable = retryable;
    /** What a person can do about it, when the status says so; may be empty. */
    this.hint = hint;
  }
}

/** Resolves when ICE gathering is complete, or after `timeoutMs`, whichever comes first. */
export function waitForIceGathering(pc, timeoutMs = ICE_GATHERING_TIMEOUT_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", onChange);
      resolve();
    };
    const onChange = () => {
      if (pc.iceGatheringState === "complete") finish();
    };
    const timer = setTimeout(finish, timeoutMs);
    pc.addEventListener("icegatheringstatechange", onChange);
  });
}

// What to say when the server gave no JSON body (a proxy in between, or no server at all).
const FALLBACK_MESSAGES = {
  400: "The server could not read the connection offer from this browser.",
  401: "This link has no valid access token. Ask the organiser for a new link.",
  403: "Your access token does not allow this. Ask the organiser for the right link.",
  404: "This session does not exist, or it has ended. Check the link.",
  409: "Someone else is already publishing the floor feed for this session.",
  413: "The connection offer was too large for the server.",
  415: "The server did not accept the format of the connection offer.",
  422: "The server and this browser have no audio or video format in common.",
  429: "The server is busy. Please wait a moment and try again.",
  502: "The server is not reachable right now (bad gateway). Try again shortly.",
  503: "The server is not ready right now. Try again shortly.",
  504: "The server took too long to answer. Try again shortly.",
};

// What a person can do about an auth failure, added under the server's own message (which
// says what is wrong with the token, not where to get a new one).
const HINTS = {
  401: "Ask the organiser for a new link with a valid token.",
  403: "Ask the organiser for a link for this session and role.",
};

const sentence = (text) => {
  const t = text.trim();
  if (!t) return t;
  const capital = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
};

async function errorFromResponse(res) {
  let code = `http_${res.status}`;
  let message = "";
  try {
    const text = await res.text();
    if (text) {
      try {
        const body = JSON.parse(text);
        if (body && typeof body === "object") {
          if (typeof body.error === "string") code = body.error;
          if (typeof body.message === "string") message = body.message;
        }
      } catch {
        // Not JSON: a proxy's HTML page, say. Never show markup; use the fallback below.
      }
    }
  } catch {
    // Body unreadable: fall through.
  }
  let hint = "";
  if (message) {
    message = sentence(message);
    hint = HINTS[res.status] || "";
  } else {
    message =
      FALLBACK_MESSAGES[res.status] ||
      `The server answered with an unexpected status (${res.status} ${res.statusText}).`;
  }
  const retryable = res.status === 429 || res.status >= 500;
  return new SignalError(message, { status: res.status, code, retryable, hint });
}

async function send(url, { method, token, headers = {}, body, keepalive = false, timeoutMs = REQUEST_TIMEOUT_MS }) {
  const all = { ...headers };
  if (token) all.Authorization = `Bearer ${token}`;
  const init = { method, headers: all, body, keepalive, cache: "no-store" };
  if (typeof AbortSignal !== "undefined" && AbortSignal.timeout && !keepalive) {
    init.signal = AbortSignal.timeout(timeoutMs);
  }
  try {
    return await fetch(url, init);
  } catch (err) {
    const timedOut = err && (err.name === "TimeoutError" || err.name === "AbortError");
    const origin = new URL(url, location.href).origin;
    throw new SignalError(
      timedOut
        ? `The server at ${origin} did not answer within ${timeoutMs / 1000} seconds.`
        : `Could not reach the server at ${origin}. Check the network connection and try again.`,
      { code: timedOut ? "timeout" : "network_error", retryable: true },
    );
  }
}

/**
 * Creates the offer, waits for ICE gathering, POSTs it to `endpoint` and applies the answer.
 * Returns `{ resourceUrl, etag }`; `resourceUrl` is absolute (or null if the server sent none).
 */
export async function negotiate(pc, endpoint, token) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await waitForIceGathering(pc);
  const res = await send(endpoint, {
    method: "POST",
    token,
    headers: { "Content-Type": "application/sdp", Accept: "application/sdp" },
    body: pc.localDescription.sdp,
  });
  if (res.status !== 201 && res.status !== 200) throw await errorFromResponse(res);
  const location = res.headers.get("Location");
  const etag = res.headers.get("ETag");
  const answer = await res.text();
  if (!answer.trim().startsWith("v=")) {
    await deleteResource(location ? new URL(location, new URL(endpoint, window.location.href)).href : null, token);
    throw new SignalError("The server's answer was not a valid session description.", {
      status: res.status,
      code: "bad_answer",
    });
  }
  const resourceUrl = location ? new URL(location, new URL(endpoint, window.location.href)).href : null;
  try {
    if (pc.signalingState === "closed") {
      throw new SignalError("Stopped before the connection was set up.", { code: "stopped" });
    }
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
  } catch (err) {
    // Never leave a resource behind on the server that this page no longer knows about.
    await deleteResource(resourceUrl, token);
    if (err instanceof SignalError) throw err;
    throw new SignalError(`This browser could not use the server's answer: ${err.message || err}`, {
      status: res.status,
      code: "bad_answer",
    });
  }
  return { resourceUrl, etag };
}

/**
 * The node's ICE servers (TURN with fresh credentials, for networks that block UDP) for the
 * session of a `/whip/{session}` or `/whep/{session}` endpoint. Never throws: without them a
 * page still tries the direct path.
 */
export async function iceServersFor(endpoint, token) {
  const m = new URL(endpoint, window.location.href).pathname.match(/^\/wh[ie]p\/([^/]+)/);
  if (!m) return [];
  try {
    const url = new URL(`/api/sessions/${m[1]}/ice-servers`, new URL(endpoint, window.location.href));
    const res = await send(url.href, { method: "GET", token, timeoutMs: 5000 });
    if (!res.ok) return [];
    const body = await res.json();
    return Array.isArray(body.ice_servers) ? body.ice_servers : [];
  } catch (err) {
    console.warn(`no ICE servers: ${err.message || err}`);
    return [];
  }
}

/** Ends a WHIP/WHEP resource. Never throws: leaving must always work from the page's view. */
export async function deleteResource(resourceUrl, token, { keepalive = false } = {}) {
  if (!resourceUrl) return;
  try {
    const res = await send(resourceUrl, { method: "DELETE", token, keepalive, timeoutMs: DELETE_TIMEOUT_MS });
    if (!res.ok && res.status !== 404) {
      console.warn(`DELETE ${resourceUrl} answered ${res.status}`);
    }
  } catch (err) {
    console.warn(`DELETE ${resourceUrl} failed: ${err.message}`);
  }
}

/** Reads `?token=` from the page URL (empty string if absent). */
export function tokenFromPage() {
  return new URLSearchParams(window.location.search).get("token") || "";
}

/** The last path segment of the page URL, decoded: `/publish/plenary` → `plenary`. */
export function sessionFromPage() {
  const parts = window.location.pathname.split("/").filter(Boolean);
  const last = parts.length > 1 ? parts[parts.length - 1] : "";
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

/**
 * Publishes a MediaStream to a WHIP endpoint.
 *
 *   const client = new WhipClient("/whip/plenary", token);
 *   client.addEventListener("state", () => console.log(client.state));
 *   await client.publish(stream);
 *   ...
 *   await client.stop();
 *
 * `state` is the RTCPeerConnection's connectionState, plus "idle" before publishing and
 * "closed" after stop. It fires a "state" event on every change.
 */
export class WhipClient extends EventTarget {
  /** `iceServers`: null asks the server (see `iceServersFor`). */
  constructor(endpoint, token, { iceServers = null } = {}) {
    super();
    this.endpoint = endpoint;
    this.token = token;
    this.iceServers = iceServers;
    this.pc = null;
    this.resourceUrl = null;
    this.state = "idle";
    this.senders = {};
  }

  async publish(stream) {
    if (this.pc) throw new Error("already publishing; call stop() first");
    const iceServers = this.iceServers ?? (await iceServersFor(this.endpoint, this.token));
    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    pc.addEventListener("connectionstatechange", () => this.#setState(pc.connectionState));
    for (const kind of ["audio", "video"]) {
      const track = stream.getTracks().find((t) => t.kind === kind);
      if (!track) continue;
      const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      this.senders[kind] = transceiver.sender;
    }
    this.#setState("connecting");
    try {
      const { resourceUrl } = await negotiate(pc, this.endpoint, this.token);
      if (this.pc !== pc) {
        // stop() was called while the offer was in flight: end what the server just made.
        await deleteResource(resourceUrl, this.token);
        throw new SignalError("Stopped before the connection was set up.", { code: "stopped" });
      }
      this.resourceUrl = resourceUrl;
    } catch (err) {
      pc.close();
      if (this.pc === pc) {
        this.pc = null;
        this.senders = {};
        this.#setState("closed");
      }
      throw err instanceof SignalError ? err : new SignalError(`Could not connect: ${err.message || err}`, { code: "webrtc_error" });
    }
  }

  /** Swaps the camera or microphone without renegotiating. */
  async replaceTrack(track) {
    const sender = this.senders[track.kind];
    if (sender) await sender.replaceTrack(track);
  }

  /** DELETEs the resource first (so the server ends it as asked), then closes the peer. */
  async stop({ keepalive = false } = {}) {
    const url = this.resourceUrl;
    const pc = this.pc;
    this.resourceUrl = null;
    this.pc = null;
    this.senders = {};
    this.#setState("closed");
    const deleted = deleteResource(url, this.token, { keepalive });
    if (!keepalive) await deleted;
    if (pc) pc.close();
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new Event("state"));
  }
}
