// TURN for hubs behind firewalls: a real coturn (Debian `turnserver`, use-auth-secret) on
// loopback, Floorcast configured with its URL and shared secret. The watch page with
// `?relay=1` may only use relay candidates (as a browser behind a UDP-blocking firewall with
// a TURN server reachable); it gets credentials from /api/sessions/{id}/ice-servers and
// decodes the floor feed through coturn. A second hub sits behind a firewall that drops all
// UDP to the TURN server (an nftables rule on loopback) and gets the floor over TURN/TCP.
// Real binary, Debian Chromium with fake devices.
//
//   node tests/browser/turn.test.mjs

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import {
  ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, MEDIA_TIMEOUT_MS, PUBLISH_TIMEOUT_MS, Server, freeAddrs, http, inboundStats,
  mintToken, outboundStats, recordConsole, sleep, until,
} from "./lib.mjs";

const server = new Server("floorcast-turn.log");
const consoleLines = [];
const SESSION = "firewalled";
const TURN_SECRET = `turn-${Math.random().toString(36).slice(2)}`;
let turn = null;
let turnPort = 0;
let context = null;
let dataDir = null;
let userDataDir = null;

/** The selected candidate pair of the page's peer connection: local type, TURN protocol, bytes. */
async function mediaPath(page) {
  return page.evaluate(async () => {
    const report = await window.floorcast.pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    let pair = null;
    report.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
    });
    if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
    const local = pair && byId.get(pair.localCandidateId);
    return { local: local && local.candidateType, protocol: local && local.relayProtocol, bytes: pair && pair.bytesReceived };
  });
}

/** The venue's /publish page sending the floor feed (fake camera and microphone). */
async function startFloorFeed(name) {
  const venue = mintToken({ role: "venue", session: SESSION, name: "Mixer" });
  const publisher = await context.newPage();
  recordConsole(publisher, name, consoleLines);
  await publisher.goto(`${server.base}/publish/${SESSION}?token=${venue}`);
  await publisher.getByRole("button", { name: "Start publishing" }).click();
  await until("the floor feed encoding", PUBLISH_TIMEOUT_MS, async () => {
    const s = await outboundStats(publisher);
    return { ...s, ok: s.framesEncoded > 10 };
  });
  return publisher;
}

/** A /watch page that may use relay candidates only, once it decodes video and audio. */
async function watchRelayOnly(token, name, timeoutMs) {
  const viewer = await context.newPage();
  recordConsole(viewer, name, consoleLines);
  await viewer.goto(`${server.base}/watch/${SESSION}?token=${token}&relay=1`);
  await until(`${name} decoding through the relay`, timeoutMs, async () => {
    const s = await inboundStats(viewer);
    return { ...s, ok: s.framesDecoded > 10 && s.audioPackets > 20 };
  });
  // The page says the media comes through a relay (what a hub's IT contact needs to know).
  await until(`${name} saying it uses the relay`, 3000, async () => {
    const text = (await viewer.locator("#stats").textContent()) || "";
    return { ok: /Via: TURN relay \((UDP|TCP)\)/.test(text), text };
  });
  return viewer;
}

const NFT_TABLE = "floorcast_turn_test";

function nft(...args) {
  return execFileSync("nft", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
}

describe("media through TURN", { timeout: 120_000 }, () => {
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    // A free UDP/TCP port for coturn's listener (the media address of freeAddrs is UDP-free).
    turnPort = Number((await freeAddrs()).mediaAddr.split(":")[1]);
    const log = createWriteStream(join(ARTIFACTS, "coturn.log"));
    turn = spawn("turnserver", [
      "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", `--listening-port=${turnPort}`,
      "--use-auth-secret", `--static-auth-secret=${TURN_SECRET}`, "--realm=floorcast.test",
      "--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli", "--fingerprint",
      "--min-port=49200", "--max-port=49400", "--log-file=stdout", "--simple-log", "--verbose",
    ], { stdio: ["ignore", "pipe", "pipe"] });
    turn.stdout.pipe(log);
    turn.stderr.pipe(log);
    await sleep(500);
    assert.equal(turn.exitCode, null, "turnserver started (see test-artifacts/coturn.log)");

    dataDir = await mkdtemp(join(tmpdir(), "floorcast-data-"));
    userDataDir = await mkdtemp(join(tmpdir(), "floorcast-chromium-"));
    await server.start(dataDir, {
      env: {
        FLOORCAST_TURN_URLS: `["turn:127.0.0.1:${turnPort}?transport=udp","turn:127.0.0.1:${turnPort}?transport=tcp"]`,
        FLOORCAST_TURN_SECRET: TURN_SECRET,
      },
    });
    const operator = mintToken({ role: "operator", session: "*", name: "Ops" });
    const r = await http(server.base, "/api/sessions", { method: "POST", token: operator, body: { id: SESSION, title: "Behind a firewall" } });
    assert.equal(r.status, 201, r.text);
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 800 },
    });
    context.setDefaultTimeout(10_000);
    await context.grantPermissions(["camera", "microphone"], { origin: server.base });
  });

  after(async () => {
    if (context) await context.close().catch(() => {});
    await server.stop();
    if (turn && turn.exitCode === null) turn.kill("SIGTERM");
    if (consoleLines.length) await writeFile(join(ARTIFACTS, "browser-console-turn.log"), `${consoleLines.join("\n")}\n`);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  });

  it("hands out TURN credentials and a relay-only viewer gets the floor through coturn", async () => {
    const viewerToken = mintToken({ role: "hub", session: SESSION, name: "Firewalled hub", hub: "Kampala" });
    const ice = await http(server.base, `/api/sessions/${SESSION}/ice-servers`, { token: viewerToken });
    assert.equal(ice.status, 200, ice.text);
    const [entry] = ice.json.ice_servers;
    assert.deepEqual(entry.urls, [`turn:127.0.0.1:${turnPort}?transport=udp`, `turn:127.0.0.1:${turnPort}?transport=tcp`]);
    assert.match(entry.username, /^\d+:/);
    assert.ok(Number(entry.username.split(":")[0]) > Date.now() / 1000, "the credential expires in the future");
    assert.ok(entry.credential.length > 20);

    const publisher = await startFloorFeed("turn-publish");
    const viewer = await watchRelayOnly(viewerToken, "turn-watch", MEDIA_TIMEOUT_MS + 10_000);
    const path = await mediaPath(viewer);
    assert.equal(path.local, "relay", `the media path: ${JSON.stringify(path)}`);
    assert.ok(path.bytes > 0, `bytes through the relay: ${path.bytes}`);
    console.log(`# relay-only viewer: ${JSON.stringify(path)}`);
    await viewer.close();
    await publisher.close();
  });

  it("a hub whose firewall drops all UDP to the TURN server gets the floor over TURN/TCP", async (t) => {
    if (process.getuid && process.getuid() !== 0) {
      t.skip("needs root to add an nftables rule");
      return;
    }
    const publisher = await startFloorFeed("turn-tcp-publish");

    // The firewall: nothing over UDP reaches the TURN server's port (TCP still does). A table
    // left by an interrupted run is replaced.
    try {
      nft("delete", "table", "inet", NFT_TABLE);
    } catch {
      // none left: the usual case
    }
    nft("add", "table", "inet", NFT_TABLE);
    try {
      nft("add", "chain", "inet", NFT_TABLE, "out", "{ type filter hook output priority 0 ; }");
      nft("add", "rule", "inet", NFT_TABLE, "out", "ip", "daddr", "127.0.0.1", "udp", "dport", String(turnPort), "counter", "drop");
      const hub = mintToken({ role: "hub", session: SESSION, name: "Firewalled hub", hub: "Lusaka" });
      const viewer = await watchRelayOnly(hub, "turn-tcp-watch", MEDIA_TIMEOUT_MS + 20_000);
      const path = await mediaPath(viewer);
      assert.equal(path.local, "relay", `the media path: ${JSON.stringify(path)}`);
      assert.equal(path.protocol, "tcp", `the media path: ${JSON.stringify(path)}`);
      assert.ok(path.bytes > 0, `bytes through the relay: ${path.bytes}`);
      const dropped = Number((nft("list", "table", "inet", NFT_TABLE).match(/packets (\d+)/) || [])[1] || 0);
      assert.ok(dropped > 0, "the browser did try UDP first, and the firewall dropped it");
      console.log(`# viewer behind a UDP-blocking firewall: ${JSON.stringify(path)}, ${dropped} UDP packets dropped`);
      await viewer.close();
    } finally {
      nft("delete", "table", "inet", NFT_TABLE);
    }
    await publisher.close();
  });
});
