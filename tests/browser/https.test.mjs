// HTTPS in the binary: `floorcast serve --tls-cert --tls-key` with a certificate generated
// here (openssl), and Debian Chromium publishing camera and microphone from /publish/{id}
// over https://. Browsers grant capture only to secure pages: this is the remote speaker's
// and the venue's path without a TLS proxy in front.
//
//   node tests/browser/https.test.mjs
//
// Environment as in media.test.mjs. Every wait is bounded; the server is killed at the end.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import {
  ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, PUBLISH_TIMEOUT_MS, WHOLE_RUN_TIMEOUT_MS,
  Server, http, mintToken, outboundStats, recordConsole, screenshots, until,
} from "./lib.mjs";

// The certificate is self-signed: this process's own fetch() (session set-up, /readyz) must
// accept it, as Chromium does below with ignoreHTTPSErrors.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

const server = new Server("floorcast-https.log");
let context = null;
let workDir = null;
const consoleLines = [];

const watchdog = setTimeout(() => {
  console.error(`# whole run exceeded ${WHOLE_RUN_TIMEOUT_MS} ms; killing floorcast and exiting`);
  if (server.child) server.child.kill("SIGKILL");
  process.exit(1);
}, WHOLE_RUN_TIMEOUT_MS);
watchdog.unref();
process.on("exit", () => {
  if (server.child && server.child.exitCode === null) server.child.kill("SIGKILL");
});

describe("floorcast over HTTPS in a real browser", { timeout: WHOLE_RUN_TIMEOUT_MS - 10_000 }, () => {
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    workDir = await mkdtemp(join(tmpdir(), "floorcast-https-"));
    const cert = join(workDir, "cert.pem");
    const key = join(workDir, "key.pem");
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ], { stdio: "ignore" });
    await server.start(join(workDir, "data"), { args: ["--tls-cert", cert, "--tls-key", key] });
    assert.match(server.base, /^https:\/\//, "the start-up line names https://");

    context = await chromium.launchPersistentContext(join(workDir, "chromium"), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      ignoreHTTPSErrors: true,
      viewport: { width: 1280, height: 800 },
      timeout: 30_000,
    });
    context.setDefaultTimeout(10_000);
    context.setDefaultNavigationTimeout(15_000);
    await context.grantPermissions(["camera", "microphone"], { origin: server.base });
  });

  after(async () => {
    if (context) await context.close().catch(() => {});
    await server.stop();
    if (consoleLines.length) await writeFile(join(ARTIFACTS, "browser-console-https.log"), `${consoleLines.join("\n")}\n`);
    if (workDir) await rm(workDir, { recursive: true, force: true });
    clearTimeout(watchdog);
  });

  it("publishes camera and microphone from an https:// page", async () => {
    const operator = mintToken({ role: "operator", session: "*", name: "HTTPS test operator" });
    const created = await http(server.base, "/api/sessions", {
      method: "POST",
      token: operator,
      body: { id: "https-test", title: "HTTPS test" },
    });
    assert.equal(created.status, 201, `POST /api/sessions: ${created.status} ${created.text}`);
    const venue = mintToken({ role: "venue", session: "https-test", name: "Main hall mixer" });

    const page = await context.newPage();
    recordConsole(page, "publish-https", consoleLines);
    await page.goto(`${server.base}/publish/https-test?token=${venue}`);
    assert.equal(await page.evaluate(() => window.isSecureContext), true, "the page is a secure context");
    assert.equal(new URL(page.url()).protocol, "https:");
    await page.getByRole("button", { name: "Start publishing" }).click();
    const state = await until("the publisher to connect", PUBLISH_TIMEOUT_MS, async () => {
      const s = await page.evaluate(() => (window.floorcast ? window.floorcast.state : "no page script"));
      return { ok: s === "connected", state: s };
    });
    assert.equal(state.state, "connected");
    const sent = await until("the microphone and camera to be sent", 8000, async () => {
      const s = await outboundStats(page);
      return { ...s, ok: s.audioPackets > 20 && s.framesEncoded > 10 };
    });
    assert.ok(sent.ok, JSON.stringify(sent));
    await screenshots(page, "publish-https");

    // The node receives the audio set up through HTTPS (its metrics, read over HTTPS too).
    const received = await until("the node to receive audio", 5000, async () => {
      const r = await http(server.base, "/metrics");
      const m = r.text.match(/^floorcast_rtp_packets_total\{direction="in",kind="audio"\} (\d+)/m);
      return { ok: !!m && Number(m[1]) > 20, line: m && m[0] };
    });
    assert.ok(received.ok, JSON.stringify(received));
  });
});
