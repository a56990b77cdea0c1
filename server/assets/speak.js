// Asking to speak from the watch page: raise a hand (for a hub, on the hub's behalf), see the
// position in the queue, withdraw; when the moderator grants the floor, publish the
// microphone (and camera if wanted) over WHIP, with a countdown and "End my turn".
//
// The queue is the server's. The page never reads it: the session's event stream starts
// with a snapshot, and every floor event after it says where this token's hand is (`you`)
// and who holds the floor (`floor`), so thousands of pages cost the server no queue reads.

import { SignalError, api, clock, followFloor, tokenClaims } from "./api.js";
import { WhipClient } from "./whip.js";

const CAN_RAISE = ["viewer", "hub", "speaker"];

/**
 * Wires the "Ask to speak" section. `ui` holds its elements (see watch.html); `onError`
 * shows a message in words.
 */
export function mountSpeak({ session, token, ui, onError, onSpeaking = () => {} }) {
  const claims = tokenClaims(token);
  const base = `/api/sessions/${encodeURIComponent(session)}`;
  const state = { hand: null, position: null, turn: null, offsetMs: 0, whip: null, stream: null, ended: false };

  if (!claims || !CAN_RAISE.includes(claims.role)) {
    ui.section.hidden = true;
    return state;
  }
  const hubMode = claims.role === "hub";
  if (hubMode) {
    ui.title.textContent = `Ask to speak for ${claims.hub || claims.name}`;
    ui.headcountField.hidden = false;
  }

  function render() {
    const mine = state.hand !== null;
    ui.form.hidden = mine || state.turn !== null;
    ui.handBox.hidden = !mine || state.turn !== null;
    ui.floorBox.hidden = state.turn === null;
    if (mine && state.turn === null) {
      ui.position.textContent = state.position === 0
        ? "Your hand is up: you are next in the queue."
        : `Your hand is up: number ${state.position + 1} in the queue.`;
    }
    if (state.turn === null && state.ended) {
      ui.ended.hidden = false;
    }
    ui.start.disabled = state.whip !== null;
    ui.start.textContent = state.whip ? "Speaking…" : "Start speaking";
  }

  function tick() {
    if (!state.turn) return;
    const left = Math.max(0, state.turn.ends_at_ms - (Date.now() + state.offsetMs));
    ui.countdown.textContent = `${clock(left)} left`;
    ui.countdown.dataset.remainingMs = String(left);
  }
  setInterval(tick, 250);

  /** A snapshot or a floor event: this token's hand, its place and its turn. */
  async function follow(view) {
    if (typeof view.server_time_ms === "number") state.offsetMs = view.server_time_ms - Date.now();
    const hadTurn = state.turn !== null;
    if (Array.isArray(view.floor)) {
      state.turn = view.floor.find((t) => t.hand && t.hand.sub === claims.sub) || null;
    }
    if (view.you) {
      state.hand = view.you.hand ?? null;
      state.position = view.you.position ?? null;
    }
    if (hadTurn && !state.turn) {
      state.ended = true;
      await stopPublishing();
    }
    if (state.turn) {
      state.ended = false;
      ui.ended.hidden = true;
    }
    render();
    tick();
  }

  async function stopPublishing() {
    const whip = state.whip;
    state.whip = null;
    if (whip) await whip.stop();
    if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
    state.stream = null;
    ui.preview.srcObject = null;
    ui.preview.hidden = true;
    onSpeaking(false);
  }

  ui.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    if (ui.topic.value.trim()) body.topic = ui.topic.value.trim();
    if (ui.language.value.trim()) body.language = ui.language.value.trim();
    if (hubMode && ui.headcount.value) body.head_count = Number(ui.headcount.value);
    try {
      const r = await api(`${base}/hands`, token, { method: "POST", body });
      state.hand = r.hand.id;
      state.position = r.position;
      state.ended = false;
      ui.ended.hidden = true;
      render();
    } catch (err) {
      onError(err.message);
    }
  });

  ui.withdraw.addEventListener("click", async () => {
    if (state.hand === null) return;
    try {
      await api(`${base}/hands/${state.hand}`, token, { method: "DELETE" });
      // The hand_withdrawn event says the same; this shows it without waiting.
      state.hand = null;
      state.position = null;
      render();
    } catch (err) {
      onError(err.message);
    }
  });

  ui.start.addEventListener("click", async () => {
    if (state.whip || !state.turn) return;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: ui.camera.checked });
      state.stream = stream;
      ui.preview.srcObject = stream;
      ui.preview.hidden = stream.getVideoTracks().length === 0;
      // The session now carries this person's voice: the player must not play it back.
      onSpeaking(true);
      const whip = new WhipClient(`/whip/${encodeURIComponent(session)}`, token);
      state.whip = whip;
      render();
      await whip.publish(stream);
    } catch (err) {
      await stopPublishing();
      render();
      onError(err instanceof SignalError ? err.message : `Could not use the microphone: ${err.message || err}`);
    }
  });

  ui.end.addEventListener("click", async () => {
    if (!state.turn) return;
    try {
      // The floor_ended event ends the turn on the page (and stops publishing).
      await api(`${base}/floor?hand=${state.turn.hand.id}`, token, { method: "DELETE" });
    } catch (err) {
      onError(err.message);
    }
  });

  // Captions on this stream are the player's business.
  const events = new EventSource(`${base}/events?token=${encodeURIComponent(token)}`);
  followFloor(events, follow);
  window.addEventListener("pagehide", () => {
    events.close();
    if (state.whip) state.whip.stop({ keepalive: true });
  });
  return state;
}
