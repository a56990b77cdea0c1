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

/** "m:ss" for a number of milliseconds, rounded up to the second. */
export function clock(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
