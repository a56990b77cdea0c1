// Floorcast WHEP client: receive-only audio (and video unless disabled) from `/whep/{session}`.
//
// The HTTP exchange is the same as WHIP's (see whip.js): one offer with all candidates,
// answer applied, `Location` kept and DELETEd on stop. An audio-only viewer simply offers
// no video m-line, so the server never sends it video.
//
// Live captions come on a data channel labelled `captions` that the client opens in its
// offer (the server sends one JSON message per caption: see docs/CONTRACT.md); each is
// dispatched as a `caption` event whose `detail` is the parsed message.

import { SignalError, deleteResource, iceServersFor, negotiate } from "./whip.js";

export { SignalError, sessionFromPage, tokenFromPage } from "./whip.js";

/**
 *   const client = new WhepClient("/whep/plenary", token, { video: false });
 *   client.addEventListener("state", () => console.log(client.state));
 *   videoElement.srcObject = await client.connect();
 *   ...
 *   await client.stop();
 */
export class WhepClient extends EventTarget {
  /** `iceServers`: null asks the server (TURN credentials; see whip.js `iceServersFor`). */
  /** `relayOnly`: media only through TURN (`iceTransportPolicy: "relay"`), as behind a firewall. */
  /** `audio: false` with `video: true`: picture only (the room screen's picture-in-picture). */
  constructor(endpoint, token, { audio = true, video = true, captions = true, iceServers = null, relayOnly = false } = {}) {
    super();
    this.endpoint = endpoint;
    this.token = token;
    this.audio = audio || !video;
    this.video = video;
    this.captions = captions;
    this.iceServers = iceServers;
    this.relayOnly = relayOnly;
    this.pc = null;
    this.resourceUrl = null;
    this.state = "idle";
  }

  /** Negotiates and resolves with the MediaStream the remote tracks arrive on. */
  async connect() {
    if (this.pc) throw new Error("already connected; call stop() first");
    const iceServers = this.iceServers ?? (await iceServersFor(this.endpoint, this.token));
    if (this.pc) throw new Error("already connected; call stop() first");
    const pc = new RTCPeerConnection({
      iceServers,
      bundlePolicy: "max-bundle",
      iceTransportPolicy: this.relayOnly ? "relay" : "all",
    });
    this.pc = pc;
    const stream = new MediaStream();
    pc.addEventListener("track", (event) => {
      if (!stream.getTracks().includes(event.track)) stream.addTrack(event.track);
    });
    pc.addEventListener("connectionstatechange", () => this.#setState(pc.connectionState));
    if (this.audio) pc.addTransceiver("audio", { direction: "recvonly" });
    if (this.video) pc.addTransceiver("video", { direction: "recvonly" });
    if (this.captions) {
      const channel = pc.createDataChannel("captions");
      channel.addEventListener("message", (event) => {
        let caption;
        try {
          caption = JSON.parse(event.data);
        } catch {
          return; // not ours: ignore rather than break the player
        }
        // The SFU also says on this channel when it pauses the video for a weak link.
        const kind = caption && caption.type === "link" ? "link" : "caption";
        this.dispatchEvent(new CustomEvent(kind, { detail: caption }));
      });
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
        this.#setState("closed");
      }
      throw err instanceof SignalError ? err : new SignalError(`Could not connect: ${err.message || err}`, { code: "webrtc_error" });
    }
    return stream;
  }

  /** DELETEs the resource first (so the server ends it as asked), then closes the peer. */
  async stop({ keepalive = false } = {}) {
    const url = this.resourceUrl;
    const pc = this.pc;
    this.resourceUrl = null;
    this.pc = null;
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
