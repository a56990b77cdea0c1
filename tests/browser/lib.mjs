// Shared by the browser tests: the `floorcast` binary started on ephemeral ports, Chromium
// flags, tokens signed like the server's, bounded waits, WebRTC stats read from a page and
// screenshots at 1280 and 360 px. Every wait has a deadline.

import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { createWriteStream, existsSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = process.env.FLOORCAST_BIN
  ? resolve(process.env.FLOORCAST_BIN)
  : join(ROOT, "target/debug/floorcast");
export const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
export const ARTIFACTS = process.env.ARTIFACTS_DIR
  ? resolve(process.env.ARTIFACTS_DIR)
  : join(ROOT, "test-artifacts");
export const JWT_SECRET = `browser-test-${randomBytes(16).toString("hex")}`;

export const STARTUP_TIMEOUT_MS = 30_000;
export const PUBLISH_TIMEOUT_MS = 15_000;
export const MEDIA_TIMEOUT_MS = 10_000;
export const WHOLE_RUN_TIMEOUT_MS = 240_000;

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
  "--allow-loopback-in-peer-connection",
  "--disable-features=WebRtcHideLocalIpsWithMdns",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// ---------------------------------------------------------------------------------------
// Tokens: HS256 JWT with the claims of docs/CONTRACT.md, signed with node's own crypto.

export const b64url = (data) => Buffer.from(data).toString("base64url");

export function mintToken({ role, session, name, ttlSeconds = 3600, hub, sub }) {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const claims = {
    sub: sub || `${role}-${randomBytes(4).toString("hex")}`,
    name,
    exp: Math.floor(Date.now() / 1000) + ttlSeconds,
    session,
    role,
  };
  if (hub) claims.hub = hub;
  const payload = b64url(JSON.stringify(claims));
  const signature = createHmac("sha256", JWT_SECRET).update(`${header}.${payload}`).digest("base64url");
  return `${header}.${payload}.${signature}`;
}

// ---------------------------------------------------------------------------------------
// Small helpers with deadlines.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function until(what, timeoutMs, probe, intervalMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last && last.ok) return last;
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
    }
    await sleep(intervalMs);
  }
}

export async function http(base, path, { method = "GET", token, body, timeoutMs = 5000 } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(new URL(path, base), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, text, json };
}

// ---------------------------------------------------------------------------------------
// The server process.

export class Server {
  constructor(logName = "floorcast.log") {
    this.logName = logName;
    this.child = null;
    this.base = null;
    this.exited = null;
  }

  /** `httpAddr`/`mediaAddr` (default: ephemeral ports) let a restart come back on the same addresses; `args` are added to `serve`'s. */
  async start(dataDir, { httpAddr = "127.0.0.1:0", mediaAddr = "127.0.0.1:0", env = {}, args: extraArgs = [] } = {}) {
    if (!existsSync(BIN)) {
      throw new Error(`floorcast binary not found at ${BIN}: run \`make build\` (cargo test --workspace --no-run) or set FLOORCAST_BIN`);
    }
    const args = [
      "serve",
      "--http-addr", httpAddr,
      "--media-udp-addr", mediaAddr,
      "--data-dir", dataDir,
      "--jwt-secret", JWT_SECRET,
      ...extraArgs,
    ];
    const log = createWriteStream(join(ARTIFACTS, this.logName), { flags: this.starts ? "a" : "w" });
    this.starts = (this.starts || 0) + 1;
    log.write(`$ ${BIN} ${args.join(" ").replace(JWT_SECRET, "<secret>")}\n`);
    const child = spawn(BIN, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info", ...env },
    });
    this.child = child;
    this.exited = new Promise((resolveExit) => child.once("exit", (code, signal) => resolveExit({ code, signal })));
    child.stderr.pipe(log, { end: false });

    this.base = await new Promise((resolveBase, reject) => {
      let buffered = "";
      const timer = setTimeout(
        () => reject(new Error(`floorcast printed no "floorcast listening on" line within ${STARTUP_TIMEOUT_MS} ms (see ${join(ARTIFACTS, this.logName)})`)),
        STARTUP_TIMEOUT_MS,
      );
      child.stdout.on("data", (chunk) => {
        log.write(chunk);
        buffered += chunk.toString();
        const m = buffered.match(/floorcast listening on (https?:\/\/\S+)/);
        if (m) {
          clearTimeout(timer);
          resolveBase(m[1].replace(/\/+$/, ""));
        }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`floorcast exited early (code ${code}, signal ${signal}); see ${join(ARTIFACTS, this.logName)}`));
      });
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });

    await until("/readyz to answer 200", 10_000, async () => {
      try {
        const res = await http(this.base, "/readyz", { timeoutMs: 1000 });
        return { ok: res.status === 200, status: res.status };
      } catch (err) {
        return { ok: false, error: String(err) };
      }
    });
  }

  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const done = await Promise.race([this.exited, sleep(5000).then(() => null)]);
    if (!done) {
      child.kill("SIGKILL");
      await Promise.race([this.exited, sleep(2000)]);
    }
  }
}

/** Loopback addresses free right now (TCP for HTTP, UDP for media), for a server to restart on. */
export async function freeAddrs() {
  const tcp = await new Promise((res, rej) => {
    const srv = createServer();
    srv.once("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
  const udp = await new Promise((res, rej) => {
    const sock = createSocket("udp4");
    sock.once("error", rej);
    sock.bind(0, "127.0.0.1", () => {
      const { port } = sock.address();
      sock.close(() => res(port));
    });
  });
  return { httpAddr: `127.0.0.1:${tcp}`, mediaAddr: `127.0.0.1:${udp}` };
}

// ---------------------------------------------------------------------------------------
// Reading media figures from a page's own RTCPeerConnection (exposed as window.floorcast.pc).

export async function inboundStats(page) {
  return page.evaluate(async () => {
    const pc = window.floorcast && window.floorcast.pc;
    if (!pc) return { pc: false };
    const report = await pc.getStats();
    const out = { pc: true, state: pc.connectionState, framesDecoded: 0, audioPackets: 0, videoTracks: 0 };
    report.forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      if (s.kind === "video") {
        out.videoTracks += 1;
        out.framesDecoded += s.framesDecoded || 0;
      }
      if (s.kind === "audio") out.audioPackets += s.packetsReceived || 0;
    });
    return out;
  });
}

export async function outboundStats(page) {
  return page.evaluate(async () => {
    const pc = window.floorcast && window.floorcast.pc;
    if (!pc) return { pc: false };
    const report = await pc.getStats();
    const out = { pc: true, state: pc.connectionState, framesEncoded: 0, audioPackets: 0 };
    report.forEach((s) => {
      if (s.type !== "outbound-rtp") return;
      if (s.kind === "video") out.framesEncoded += s.framesEncoded || 0;
      if (s.kind === "audio") out.audioPackets += s.packetsSent || 0;
    });
    return out;
  });
}

// Screenshots at desktop and phone width. Never fatal: a failing screenshot (of a crashed
// page, say) must not hide the assertion that failed before it.
export async function screenshots(page, name) {
  try {
    for (const width of [1280, 360]) {
      await page.setViewportSize({ width, height: width === 360 ? 780 : 800 });
      await sleep(150);
      await page.screenshot({ path: join(ARTIFACTS, `${name}-${width}.png`), fullPage: true, timeout: 10_000 });
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  } catch (err) {
    console.error(`# screenshot ${name} failed: ${err.message}`);
  }
}

export function recordConsole(page, name, lines) {
  page.on("console", (msg) => lines.push(`[${name}] ${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => lines.push(`[${name}] pageerror: ${err.message}`));
  page.on("requestfailed", (req) => lines.push(`[${name}] requestfailed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`));
}


// ---------------------------------------------------------------------------------------
// WCAG AA text contrast, measured on the rendered page: every visible text node's colour
// against the backgrounds under it (composited up the ancestor chain onto the page's base
// colour), ≥ 4.5:1, or ≥ 3:1 for large text (24 px, or 18.66 px bold). Disabled controls are
// exempt, as WCAG says. Text over video is measured against the page background, so pages
// put such text on their own backdrop.

export async function contrastIssues(page) {
  return page.evaluate(() => {
    const parse = (c) => {
      const m = c.match(/rgba?\(([^)]+)\)/);
      if (!m) return [0, 0, 0, 0];
      const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
      return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    };
    const over = (top, under) => {
      const a = top[3];
      return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat(1);
    };
    const lum = (c) => {
      const ch = c.slice(0, 3).map((v) => {
        const s = v / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2];
    };
    const ratio = (a, b) => {
      const [l1, l2] = [lum(a), lum(b)].sort((x, y) => y - x);
      return (l1 + 0.05) / (l2 + 0.05);
    };
    const rootBg = parse(getComputedStyle(document.documentElement).backgroundColor);
    const base = rootBg[3] > 0 ? over(rootBg, [255, 255, 255, 1]) : [255, 255, 255, 1];
    const issues = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const seen = new Set();
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!el || seen.has(el) || !n.textContent.trim()) continue;
      seen.add(el);
      if (el.closest("[hidden], script, style, option") || el.closest(":disabled")) continue;
      const rect = el.getBoundingClientRect();
      const style = getComputedStyle(el);
      if (rect.width === 0 || rect.height === 0 || style.visibility === "hidden" || Number(style.opacity) === 0) continue;
      const chain = [];
      for (let a = el; a; a = a.parentElement) chain.push(parse(getComputedStyle(a).backgroundColor));
      let bg = base;
      for (const c of chain.reverse()) if (c[3] > 0) bg = over(c, bg);
      const fg = over(parse(style.color), bg);
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
      const need = large ? 3 : 4.5;
      const r = ratio(fg, bg);
      if (r < need) issues.push({ text: n.textContent.trim().slice(0, 40), ratio: Math.round(r * 100) / 100, need, fg: style.color, bg: `rgb(${bg.slice(0, 3).map(Math.round).join(",")})` });
    }
    return issues;
  });
}
