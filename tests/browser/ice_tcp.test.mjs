// ICE-TCP for hubs whose firewall drops UDP: an nftables rule on loopback drops every UDP
// datagram to the node's media port, so the browsers' UDP candidate pairs fail, and the
// publisher and the viewer both connect to the passive TCP candidate the node announces on
// the same port number (RFC 6544). The viewer decodes the floor feed, its selected pair is
// TCP, and the watch page says "Via: TCP". Real binary, Debian Chromium with fake devices.
// Needs root (nft); skipped otherwise.
//
//   node tests/browser/ice_tcp.test.mjs

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import {
  ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, MEDIA_TIMEOUT_MS, PUBLISH_TIMEOUT_MS, Server, freeAddrs, http, inboundStats,
  mintToken, outboundStats, recordConsole, screenshots, until,
} from "./lib.mjs";

const server = new Server("floorcast-ice-tcp.log");
const consoleLines = [];
const SESSION = "udp-blocked";
let mediaPort = 0;
let context = null;
let dataDir = null;
let userDataDir = null;
// One table per run, named after the port, so parallel runs never touch each other's rule.
let table = "";

function nft(...args) {
  return execFileSync("nft", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
}

const isRoot = !process.getuid || process.getuid() === 0;

/** The selected candidate pair of a page's peer connection: local type and protocol, bytes. */
async function mediaPath(page) {
  return page.evaluate(async () => {
    const report = await window.floorcast.pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    let pair = null;
    report.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
    });
    const local = pair && byId.get(pair.localCandidateId);
    const remote = pair && byId.get(pair.remoteCandidateId);
    return {
      local: local && local.candidateType,
      protocol: local && local.protocol,
      remote: remote && `${remote.protocol} ${remote.address}:${remote.port} ${remote.tcpType || ""}`.trim(),
      bytes: pair && pair.bytesReceived,
    };
  });
}

describe("media over ICE-TCP when UDP is blocked", { timeout: 120_000 }, () => {
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    const free = await freeAddrs();
    mediaPort = Number(free.mediaAddr.split(":")[1]);
    table = `floorcast_ice_tcp_${mediaPort}`;
    dataDir = await mkdtemp(join(tmpdir(), "floorcast-data-"));
    userDataDir = await mkdtemp(join(tmpdir(), "floorcast-chromium-"));
    // No --media-tcp-addr: ICE-TCP is on by default, on the media port number.
    await server.start(dataDir, { mediaAddr: free.mediaAddr });
    const operator = mintToken({ role: "operator", session: "*", name: "Ops" });
    const r = await http(server.base, "/api/sessions", { method: "POST", token: operator, body: { id: SESSION, title: "UDP blocked" } });
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
    if (table && isRoot) {
      try {
        nft("delete", "table", "inet", table);
      } catch {
        // already removed by the test
      }
    }
    if (context) await context.close().catch(() => {});
    await server.stop();
    if (consoleLines.length) await writeFile(join(ARTIFACTS, "browser-console-ice-tcp.log"), `${consoleLines.join("\n")}\n`);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  });

  it("a viewer whose UDP to the media port is dropped plays over TCP and the page says so", async (t) => {
    if (!isRoot) {
      t.skip("needs root to add an nftables rule");
      return;
    }
    try {
      nft("delete", "table", "inet", table);
    } catch {
      // none left by an interrupted run: the usual case
    }
    nft("add", "table", "inet", table);
    try {
      nft("add", "chain", "inet", table, "out", "{ type filter hook output priority 0 ; }");
      nft("add", "rule", "inet", table, "out", "ip", "daddr", "127.0.0.1", "udp", "dport", String(mediaPort), "counter", "drop");

      const venue = mintToken({ role: "venue", session: SESSION, name: "Mixer" });
      const publisher = await context.newPage();
      recordConsole(publisher, "tcp-publish", consoleLines);
      await publisher.goto(`${server.base}/publish/${SESSION}?token=${venue}`);
      await publisher.getByRole("button", { name: "Start publishing" }).click();
      await until("the floor feed encoding over TCP", PUBLISH_TIMEOUT_MS + 10_000, async () => {
        const s = await outboundStats(publisher);
        return { ...s, ok: s.framesEncoded > 10 && s.state === "connected" };
      });

      const hub = mintToken({ role: "hub", session: SESSION, name: "Firewalled hub", hub: "Nairobi" });
      const viewer = await context.newPage();
      recordConsole(viewer, "tcp-watch", consoleLines);
      await viewer.goto(`${server.base}/watch/${SESSION}?token=${hub}`);
      await until("the viewer decoding over TCP", MEDIA_TIMEOUT_MS + 20_000, async () => {
        const s = await inboundStats(viewer);
        return { ...s, ok: s.framesDecoded > 30 && s.audioPackets > 50 };
      });
      const path = await mediaPath(viewer);
      assert.equal(path.protocol, "tcp", `the media path: ${JSON.stringify(path)}`);
      // Not a relay; Chromium reports its active TCP candidate as host or prflx (the port it
      // connected from, learnt in the check).
      assert.notEqual(path.local, "relay", `the media path: ${JSON.stringify(path)}`);
      assert.match(path.remote, new RegExp(`^tcp 127\\.0\\.0\\.1:${mediaPort} passive$`), JSON.stringify(path));
      assert.ok(path.bytes > 0, `bytes over TCP: ${path.bytes}`);
      await until("the page saying it uses TCP", 5000, async () => {
        const text = (await viewer.locator("#stats").textContent()) || "";
        return { ok: /Via: TCP\b/.test(text), text };
      });
      const dropped = Number((nft("list", "table", "inet", table).match(/packets (\d+)/) || [])[1] || 0);
      assert.ok(dropped > 0, "the browsers did try UDP first, and the firewall dropped it");
      const tcpOut = await http(server.base, "/metrics");
      const frames = Number((tcpOut.text.match(/^floorcast_tcp_frames_total\{direction="out"\} (\d+)/m) || [])[1] || 0);
      assert.ok(frames > 100, `frames the node sent over ICE-TCP: ${frames}`);
      console.log(`# viewer with UDP blocked: ${JSON.stringify(path)}, ${dropped} UDP packets dropped, ${frames} TCP frames sent`);
      await screenshots(viewer, "ice-tcp-watch");
      await viewer.close();
      await publisher.close();
    } finally {
      nft("delete", "table", "inet", table);
    }
  });
});
