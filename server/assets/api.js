// The JSON API as the pages call it: Bearer token, no caching, errors turned into a
// SignalError carrying the server's message in words (`{"error","message"}` bodies).

import { SignalError } from "./whip.js";

export { SignalError };

/** The token's claims (to find one's own hand, show hub mode, greet by name); never trusted for access. */
export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

export async function api(path, token, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch {
    throw new SignalError("Could not reach the server. Check the network connection and try again.", { retryable: true });
  }
  const json = await res.json().catch(() => null);
  if (!res.ok) {
    throw new SignalError((json && json.message) || `The server answered ${res.status}.`, { status: res.status, code: json && json.error });
  }
  return json;
}

/**
 * The floor event types on a session's SSE stream (captions come as `caption`). `you` comes
 * without an id after the server replayed missed events: it says where things stand now.
 */
export const FLOOR_EVENTS = ["snapshot", "hand_raised", "hand_withdrawn", "queue_reordered", "policy_changed",
  "panel_changed", "default_limit_changed", "floor_granted", "floor_extended", "floor_warning", "floor_ended", "you"];

/**
 * Follows the floor from a session's event stream, never reading the queue: `onView(data)`
 * gets the `snapshot` (the whole queue), then every newer floor event. Each carries `floor`
 * (the turns after it), `you` (this token's `hand` and 0-based `position`, null when none)
 * and `server_time_ms`. Events the snapshot already holds (a resumed stream replays them)
 * are skipped.
 */
export function followFloor(events, onView) {
  let lastId = 0;
  const handle = (event) => {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    if (event.type === "snapshot" || event.type === "you") {
      lastId = Math.max(lastId, Number(data.last_event_id) || 0);
    } else {
      const id = Number(event.lastEventId) || 0;
      if (id && id <= lastId) return;
      lastId = Math.max(lastId, id);
    }
    onView(data, event.type);
  };
  for (const type of FLOOR_EVENTS) events.addEventListener(type, handle);
}

/**
 * Applies a live floor event to a whole-queue view (the `snapshot`'s or `GET …/queue`'s
 * shape) from the event's `patch`, so a page that shows the whole queue (the moderator's)
 * never reads it again on an event. The patch lists only the hands the event moved: take
 * `removed` out in order, then put `inserted` in; a raised hand comes with its event, a
 * moved one is the one taken out. Returns false when the event cannot say where the hands
 * are (one replayed without a patch, a reordering of most of the queue, a view out of step):
 * then read the queue once. The view may be half-changed then; it is to be replaced.
 */
export function applyQueueEvent(view, type, data) {
  const id = Number(data.id) || 0;
  if (id && id <= (view.last_event_id || 0)) return true;
  const patch = data.patch;
  if (!patch || patch.kind !== "moved" || !Array.isArray(data.floor)) return false;
  const hands = view.hands || [];
  const taken = new Map();
  for (const p of patch.removed) {
    const h = hands[p.at];
    if (!h || h.id !== p.hand) return false;
    hands.splice(p.at, 1);
    taken.set(h.id, h);
  }
  for (const p of patch.inserted) {
    let h = taken.get(p.hand);
    if (!h && type === "hand_raised" && data.hand && data.hand.id === p.hand) h = { ...data.hand };
    if (!h || p.at > hands.length) return false;
    hands.splice(p.at, 0, h);
  }
  if (type === "queue_reordered") view.pinned = data.pinned;
  if (type === "policy_changed") view.policy = data.policy;
  if (type === "panel_changed") view.panel_size = data.size;
  if (type === "default_limit_changed") view.default_limit_ms = data.limit_ms;
  // A pinned hand that is granted or withdrawn leaves the pins without an event of its own.
  const present = new Set(hands.map((h) => h.id));
  view.pinned = (view.pinned || []).filter((h) => present.has(h));
  const pinned = new Set(view.pinned);
  hands.forEach((h, i) => {
    h.position = i;
    h.pinned = pinned.has(h.id);
  });
  view.hands = hands;
  view.floor = data.floor;
  view.server_time_ms = data.server_time_ms;
  if (id) view.last_event_id = id;
  return hands.length === data.queue_length;
}

/** "m:ss" for a number of milliseconds, rounded up to the second. */
export function clock(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
