// TURN for hubs behind firewalls: a real coturn (Debian `turnserver`, use-auth-secret) on
// loopback, Floorcast configured with its URL and shared secret. The watch page with
// `?relay=1` may only use relay candidates (as a browser behind a UDP-blocking firewall with
// a TURN server reachable); it gets credentials from /api/sessions/{id}/ice-servers and
// decodes the floor feed through coturn. A second hub sits behind a firewall that drops all
// UDP to the TURN server (an nftables rule on loopback) and gets the floor over TURN/TCP.
// A third may reach the relay only over TLS (`turns:`, as through a firewall that lets only
// TLS to 443 out): coturn serves TLS with a certificate issued here by a test CA (openssl).
// Chromium checks a TURN server's certificate like a web server's (an untrusted one gives no
// relay candidate, error 701; the last case shows it), so the CA is added to the NSS database
// Chromium reads on Linux ($HOME/.pki/nssdb, with certutil), under a HOME of the test's own.
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
  mintToken, outboundStats, recordConsole, screenshots, sleep, until,
} from "./lib.mjs";

const server = new Server("floorcast-turn.log");
const consoleLines = [];
const SESSION = "firewalled";
const TURN_SECRET = `turn-${Math.random().toString(36).slice(2)}`;
let turn = null;
let turnPort = 0;
let tlsPort = 0;
let workDir = null;
let caCert = null;
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

/** A CA, and a certificate it issues for coturn (localhost, 127.0.0.1), in `dir`. */
function issueCertificates(dir) {
  const ossl = (...args) => execFileSync("openssl", args, { stdio: ["ignore", "pipe", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  ossl("req", "-x509", ...ec, "-keyout", join(dir, "ca.key"), "-out", join(dir, "ca.pem"), "-days", "1",
    "-subj", "/CN=Floorcast TURN test CA", "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign");
  ossl("req", ...ec, "-keyout", join(dir, "turn.key"), "-out", join(dir, "turn.csr"), "-subj", "/CN=localhost");
  execFileSync("sh", ["-c", `printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > '${join(dir, "ext")}'`]);
  ossl("x509", "-req", "-in", join(dir, "turn.csr"), "-CA", join(dir, "ca.pem"), "-CAkey", join(dir, "ca.key"),
    "-CAcreateserial", "-out", join(dir, "turn.pem"), "-days", "1", "-extfile", join(dir, "ext"));
  return { ca: join(dir, "ca.pem"), cert: join(dir, "turn.pem"), key: join(dir, "turn.key") };
}

/** A HOME whose NSS database trusts `ca` for TLS servers (Chromium on Linux reads it). */
async function homeTrusting(home, ca) {
  const db = join(home, ".pki", "nssdb");
  await mkdir(db, { recursive: true });
  execFileSync("certutil", ["-N", "-d", `sql:${db}`, "--empty-password"], { stdio: "ignore" });
  if (ca) execFileSync("certutil", ["-A", "-d", `sql:${db}`, "-n", "Floorcast TURN test CA", "-t", "C,,", "-i", ca], { stdio: "ignore" });
  return home;
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
async function watchRelayOnly(token, name, timeoutMs, { before = async () => {} } = {}) {
  const viewer = await context.newPage();
  recordConsole(viewer, name, consoleLines);
  await before(viewer);
  await viewer.goto(`${server.base}/watch/${SESSION}?token=${token}&relay=1`);
  await until(`${name} decoding through the relay`, timeoutMs, async () => {
    const s = await inboundStats(viewer);
    return { ...s, ok: s.framesDecoded > 10 && s.audioPackets > 20 };
  });
  // The page says the media comes through a relay (what a hub's IT contact needs to know).
  await until(`${name} saying it uses the relay`, 3000, async () => {
    const text = (await viewer.locator("#stats").textContent()) || "";
    return { ok: /Via: TURN relay \((UDP|TCP|TLS)\)/.test(text), text };
  });
  return viewer;
}

/**
 * Before the page's scripts run: its RTCPeerConnection keeps only the ICE server URLs that
 * match `pattern` (what the server hands out is checked separately), and records the
 * configuration it was built with in `window.iceConfig`.
 */
async function keepIceServers(page, pattern) {
  await page.addInitScript((source) => {
    const keep = new RegExp(source);
    const Native = window.RTCPeerConnection;
    window.RTCPeerConnection = class extends Native {
      constructor(config = {}, ...rest) {
        const iceServers = (config.iceServers || [])
          .map((s) => ({ ...s, urls: [].concat(s.urls).filter((u) => keep.test(u)) }))
          .filter((s) => s.urls.length > 0);
        super({ ...config, iceServers }, ...rest);
        window.iceConfig = { policy: config.iceTransportPolicy, urls: iceServers.flatMap((s) => s.urls) };
      }
    };
  }, pattern.source);
}

/** The `Link` header values of the page's WHEP POST answer, once it has come. */
function whepLinks(page) {
  const links = { values: null };
  page.on("response", async (res) => {
    if (res.request().method() !== "POST" || !new URL(res.url()).pathname.startsWith("/whep/")) return;
    links.values = (await res.headersArray()).filter((h) => h.name.toLowerCase() === "link").map((h) => h.value);
  });
  return links;
}

const TURN_URLS = () => [
  `turn:127.0.0.1:${turnPort}?transport=udp`,
  `turn:127.0.0.1:${turnPort}?transport=tcp`,
  `turns:localhost:${tlsPort}?transport=tcp`,
];

const NFT_TABLE = "floorcast_turn_test";

function nft(...args) {
  return execFileSync("nft", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
}

describe("media through TURN", { timeout: 180_000 }, () => {
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    // A free UDP/TCP port for coturn's listener (the media address of freeAddrs is UDP-free).
    // and a free TCP port for its TLS listener.
    const free = await freeAddrs();
    turnPort = Number(free.mediaAddr.split(":")[1]);
    tlsPort = Number(free.httpAddr.split(":")[1]);
    workDir = await mkdtemp(join(tmpdir(), "floorcast-turn-"));
    const tls = issueCertificates(workDir);
    caCert = tls.ca;
    const log = createWriteStream(join(ARTIFACTS, "coturn.log"));
    turn = spawn("turnserver", [
      "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", `--listening-port=${turnPort}`,
      `--tls-listening-port=${tlsPort}`, `--cert=${tls.cert}`, `--pkey=${tls.key}`,
      "--use-auth-secret", `--static-auth-secret=${TURN_SECRET}`, "--realm=floorcast.test",
      "--allow-loopback-peers", "--no-dtls", "--no-cli", "--fingerprint",
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
        FLOORCAST_TURN_URLS: JSON.stringify(TURN_URLS()),
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
      env: { ...process.env, HOME: await homeTrusting(join(workDir, "home"), caCert) },
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
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it("hands out TURN credentials and a relay-only viewer gets the floor through coturn", async () => {
    const viewerToken = mintToken({ role: "hub", session: SESSION, name: "Firewalled hub", hub: "Kampala" });
    const ice = await http(server.base, `/api/sessions/${SESSION}/ice-servers`, { token: viewerToken });
    assert.equal(ice.status, 200, ice.text);
    const [entry] = ice.json.ice_servers;
    assert.deepEqual(entry.urls, TURN_URLS());
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
      const viewer = await watchRelayOnly(hub, "turn-tcp-watch", MEDIA_TIMEOUT_MS + 20_000, {
        before: (page) => keepIceServers(page, /^turn:/),
      });
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
  it("a hub that may reach the relay only over TLS gets the floor through coturn's turns: listener", async () => {
    const publisher = await startFloorFeed("turns-publish");
    const hub = mintToken({ role: "hub", session: SESSION, name: "Hub behind a TLS-only firewall", hub: "Accra" });
    let links = null;
    const viewer = await watchRelayOnly(hub, "turns-watch", MEDIA_TIMEOUT_MS + 20_000, {
      before: async (page) => {
        await keepIceServers(page, /^turns:/);
        links = whepLinks(page);
      },
    });
    const turnsUrl = `turns:localhost:${tlsPort}?transport=tcp`;
    assert.deepEqual(await viewer.evaluate(() => window.iceConfig), { policy: "relay", urls: [turnsUrl] });
    const path = await mediaPath(viewer);
    assert.equal(path.local, "relay", `the media path: ${JSON.stringify(path)}`);
    assert.equal(path.protocol, "tls", `the media path: ${JSON.stringify(path)}`);
    assert.ok(path.bytes > 0, `bytes through the relay: ${path.bytes}`);
    assert.match((await viewer.locator("#stats").textContent()) || "", /Via: TURN relay \(TLS\)/);

    // The WHEP answer names the same relay for clients that do not fetch /ice-servers
    // (RFC 9725 4.6), with time-limited credentials.
    assert.ok(links.values, "the page's WHEP POST was answered");
    const turns = links.values.find((v) => v.startsWith(`<${turnsUrl}>`));
    assert.ok(turns, `a Link header for ${turnsUrl} among ${JSON.stringify(links.values)}`);
    const m = turns.match(/^<[^>]+>; rel="ice-server"; username="(\d+):[^"]*"; credential="[A-Za-z0-9+/=]{28}"; credential-type="password"$/);
    assert.ok(m, `RFC 9725 4.6 shape: ${turns}`);
    const expires = Number(m[1]);
    assert.ok(expires > Date.now() / 1000 && expires <= Date.now() / 1000 + 12 * 3600 + 60, `expiry ${expires}`);
    console.log(`# viewer through TURN over TLS: ${JSON.stringify(path)}`);
    await screenshots(viewer, "turn-tls-watch");
    await viewer.close();
    await publisher.close();
  });

  it("Chromium checks the TURN server's certificate: without the test CA it gets no relay over TLS", async () => {
    const viewerToken = mintToken({ role: "hub", session: SESSION, name: "Untrusting hub", hub: "Lomé" });
    const ice = await http(server.base, `/api/sessions/${SESSION}/ice-servers`, { token: viewerToken });
    assert.equal(ice.status, 200, ice.text);
    const [entry] = ice.json.ice_servers;
    const turnsOnly = { ...entry, urls: entry.urls.filter((u) => u.startsWith("turns:")) };
    assert.equal(turnsOnly.urls.length, 1);

    /** Relay candidates gathered through `server` by a page of `ctx` (errors too). */
    const gather = async (ctx) => {
      const page = await ctx.newPage();
      await page.goto(`${server.base}/`);
      return page.evaluate(async (iceServer) => {
        const pc = new RTCPeerConnection({ iceServers: [iceServer], iceTransportPolicy: "relay" });
        const candidates = [];
        const errors = [];
        pc.onicecandidate = (e) => { if (e.candidate && e.candidate.candidate) candidates.push(e.candidate.candidate); };
        pc.onicecandidateerror = (e) => errors.push(`${e.errorCode} ${e.errorText}`);
        pc.createDataChannel("probe");
        await pc.setLocalDescription(await pc.createOffer());
        await new Promise((done) => {
          const timer = setTimeout(done, 10_000);
          pc.onicegatheringstatechange = () => {
            if (pc.iceGatheringState === "complete") {
              clearTimeout(timer);
              done();
            }
          };
        });
        pc.close();
        return { candidates, errors };
      }, turnsOnly);
    };

    const untrusting = await chromium.launchPersistentContext(join(workDir, "chromium-untrusting"), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      env: { ...process.env, HOME: await homeTrusting(join(workDir, "home-untrusting"), null) },
    });
    try {
      const refused = await gather(untrusting);
      assert.deepEqual(refused.candidates, [], "no relay candidate through a TURN server whose certificate is not trusted");
      assert.ok(refused.errors.some((e) => e.startsWith("701")), `error 701 reported: ${JSON.stringify(refused.errors)}`);
      // The same gathering with the test CA trusted: a relay candidate (so the refusal above is
      // the certificate, not the server).
      const trusted = await gather(context);
      assert.ok(trusted.candidates.some((c) => / typ relay /.test(c)), `a relay candidate: ${JSON.stringify(trusted)}`);
      console.log(`# without the CA: ${JSON.stringify(refused.errors)}; with it: ${trusted.candidates.length} relay candidate(s)`);
    } finally {
      await untrusting.close();
    }
  });
});
