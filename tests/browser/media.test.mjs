// End-to-end media test: the real `floorcast` binary, Debian Chromium publishing the floor
// feed from /publish/{id} (fake camera and microphone, WHIP) and watching it on /watch/{id}
// (WHEP). Passes when the viewer's own getStats() shows decoded video and received audio.
//
//   node tests/browser/media.test.mjs          (or `npm test` in tests/browser)
//
// Environment: FLOORCAST_BIN (default target/debug/floorcast), CHROMIUM_BIN (default
// /usr/bin/chromium), ARTIFACTS_DIR (default test-artifacts/ at the repo root; screenshots,
// browser console and server log go there). Every wait is bounded; the server is killed at
// the end whatever happens; the process exits non-zero on any failure.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import {
  ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, MEDIA_TIMEOUT_MS, PUBLISH_TIMEOUT_MS, WHOLE_RUN_TIMEOUT_MS,
  Server, http, inboundStats, mintToken, outboundStats, recordConsole, screenshots, until,
} from "./lib.mjs";

// ---------------------------------------------------------------------------------------

const server = new Server();
let context = null;
let dataDir = null;
let userDataDir = null;
let sessionId = null;
const tokens = {};
const consoleLines = [];

// A last guard: whatever hangs, the server does not outlive the run.
const watchdog = setTimeout(() => {
  console.error(`# whole run exceeded ${WHOLE_RUN_TIMEOUT_MS} ms; killing floorcast and exiting`);
  if (server.child) server.child.kill("SIGKILL");
  process.exit(1);
}, WHOLE_RUN_TIMEOUT_MS);
watchdog.unref();
process.on("exit", () => {
  if (server.child && server.child.exitCode === null) server.child.kill("SIGKILL");
});

describe("floorcast in a real browser", { timeout: WHOLE_RUN_TIMEOUT_MS - 10_000 }, () => {
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    dataDir = await mkdtemp(join(tmpdir(), "floorcast-data-"));
    userDataDir = await mkdtemp(join(tmpdir(), "floorcast-chromium-"));
    await server.start(dataDir);

    const operator = mintToken({ role: "operator", session: "*", name: "Browser test operator" });
    const created = await http(server.base, "/api/sessions", {
      method: "POST",
      token: operator,
      body: { id: "browser-test", title: "Browser test plenary" },
    });
    assert.equal(created.status, 201, `POST /api/sessions: ${created.status} ${created.text}`);
    sessionId = created.json && created.json.id ? created.json.id : "browser-test";

    tokens.venue = mintToken({ role: "venue", session: sessionId, name: "Main hall mixer" });
    tokens.viewer = mintToken({ role: "viewer", session: sessionId, name: "Remote viewer" });
    tokens.captioner = mintToken({ role: "captioner", session: sessionId, name: "CART writer" });

    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
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
    if (consoleLines.length) await writeFile(join(ARTIFACTS, "browser-console.log"), `${consoleLines.join("\n")}\n`);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
    clearTimeout(watchdog);
  });

  let publisher = null;
  let earlyViewer = null;

  it("a viewer who opens /watch/{id} before the floor feed starts is told to wait", async () => {
    earlyViewer = await context.newPage();
    recordConsole(earlyViewer, "watch-early", consoleLines);
    await earlyViewer.goto(`${server.base}/watch/${encodeURIComponent(sessionId)}?token=${tokens.viewer}`);
    await until("the early viewer to connect", PUBLISH_TIMEOUT_MS, async () => {
      const s = await earlyViewer.evaluate(() => (window.floorcast ? window.floorcast.state : "no page script"));
      return { ok: s === "connected", state: s };
    });
    const overlay = await until("the waiting notice", 3000, async () => {
      const text = (await earlyViewer.locator("#overlay").textContent()) || "";
      return { ok: /Waiting/.test(text), text };
    });
    assert.match(overlay.text, /Waiting/);
    await screenshots(earlyViewer, "watch-waiting");
  });

  it("publishes camera and microphone from /publish/{id} over WHIP", async () => {
    publisher = await context.newPage();
    recordConsole(publisher, "publish", consoleLines);
    await publisher.goto(`${server.base}/publish/${encodeURIComponent(sessionId)}?token=${tokens.venue}`);
    await publisher.getByRole("button", { name: "Start publishing" }).click();
    try {
      const state = await until("the publisher to connect", PUBLISH_TIMEOUT_MS, async () => {
        const s = await publisher.evaluate(() => (window.floorcast ? window.floorcast.state : "no page script"));
        return { ok: s === "connected", state: s };
      });
      assert.equal(state.state, "connected");
      const sent = await until("the publisher to send media", 5000, async () => {
        const s = await outboundStats(publisher);
        return { ...s, ok: s.framesEncoded > 10 && s.audioPackets > 10 };
      });
      assert.ok(sent.ok);
    } finally {
      await screenshots(publisher, "publish");
    }
  });

  it("the early viewer plays the feed once it starts", async () => {
    assert.ok(earlyViewer, "early viewer page must be up");
    try {
      const stats = await until("early viewer: framesDecoded > 30 and audio packetsReceived > 50", MEDIA_TIMEOUT_MS, async () => {
        const s = await inboundStats(earlyViewer);
        return { ...s, ok: s.framesDecoded > 30 && s.audioPackets > 50 };
      }, 500);
      assert.ok(stats.ok);
      await until("the early viewer's notice to clear", 5000, async () => {
        const hidden = await earlyViewer.locator("#overlay").isHidden();
        return { ok: hidden };
      });
    } catch (err) {
      await screenshots(earlyViewer, "watch-early");
      throw err;
    }
  });

  it("plays the floor feed on /watch/{id} over WHEP (video and audio)", async () => {
    assert.ok(publisher, "publisher page must be up");
    const viewer = await context.newPage();
    recordConsole(viewer, "watch", consoleLines);
    try {
      await viewer.goto(`${server.base}/watch/${encodeURIComponent(sessionId)}?token=${tokens.viewer}`);
      const stats = await until(
        "video framesDecoded > 30 and audio packetsReceived > 50",
        MEDIA_TIMEOUT_MS,
        async () => {
          const s = await inboundStats(viewer);
          return { ...s, ok: s.framesDecoded > 30 && s.audioPackets > 50 };
        },
        500,
      );
      assert.ok(stats.framesDecoded > 30, `framesDecoded ${stats.framesDecoded}`);
      assert.ok(stats.audioPackets > 50, `audio packetsReceived ${stats.audioPackets}`);
      // The page tells a person the same thing, and how the media arrives (plain UDP here).
      await until("the page's stats line", 3000, async () => {
        const text = await viewer.locator("#stats").textContent();
        return { ok: /frames decoded/.test(text || "") && /Via: UDP/.test(text || ""), text };
      });
    } finally {
      await screenshots(viewer, "watch");
    }
    // Leaving ends the WHEP resource on the server.
    const deleted = viewer.waitForResponse(
      (res) => res.request().method() === "DELETE" && /\/whep\//.test(res.url()),
      { timeout: 10_000 },
    );
    await viewer.getByRole("button", { name: "Stop watching" }).click();
    const res = await deleted;
    assert.ok(res.status() >= 200 && res.status() < 300, `DELETE answered ${res.status()}`);
    await viewer.close();
  });

  it("shows a CART caption on /watch/{id} within 2 s, over the captions data channel", async () => {
    assert.ok(publisher, "publisher page must be up");
    const viewer = await context.newPage();
    recordConsole(viewer, "watch-captions", consoleLines);
    try {
      await viewer.goto(`${server.base}/watch/${encodeURIComponent(sessionId)}?token=${tokens.viewer}`);
      await until("the viewer's captions channel to open", MEDIA_TIMEOUT_MS, async () => {
        const open = await viewer.evaluate(() => {
          const pc = window.floorcast && window.floorcast.pc;
          return Boolean(pc && pc.sctp && pc.sctp.state === "connected");
        });
        return { ok: open };
      }, 200);
      const text = "Good morning, delegates. The session is now open.";
      const posted = Date.now();
      const res = await fetch(
        new URL(`/cart/${encodeURIComponent(sessionId)}?token=${tokens.captioner}&seq=1&lang=en-US`, server.base),
        { method: "POST", headers: { "Content-Type": "text/plain" }, body: text },
      );
      assert.equal(res.status, 200, await res.text());
      const shown = await until("the caption on the page", 2000, async () => {
        const line = (await viewer.locator("#captions").textContent()) || "";
        return { ok: line === text, line };
      }, 50);
      const delay = Date.now() - posted;
      console.log(`# CART POST → caption on the watch page: ${delay} ms`);
      assert.ok(shown.ok);
      // It came over the data channel (this page has no other caption source).
      const received = await viewer.evaluate(() => window.floorcast.captionsReceived);
      assert.ok(received >= 1, `captionsReceived ${received}`);
      const source = await viewer.locator("#captions").getAttribute("data-source");
      assert.equal(source, "cart");
      await screenshots(viewer, "watch-captions");
    } finally {
      await viewer.close();
    }
  });

  it("plays audio only with ?video=0", async () => {
    const viewer = await context.newPage();
    recordConsole(viewer, "watch-audio", consoleLines);
    try {
      await viewer.goto(`${server.base}/watch/${encodeURIComponent(sessionId)}?token=${tokens.viewer}&video=0`);
      const stats = await until("audio packetsReceived > 50 with no video", MEDIA_TIMEOUT_MS, async () => {
        const s = await inboundStats(viewer);
        return { ...s, ok: s.audioPackets > 50 };
      }, 500);
      assert.equal(stats.videoTracks, 0, "an audio-only viewer must receive no video");
      const offer = await viewer.evaluate(() => window.floorcast.pc.localDescription.sdp);
      assert.ok(!/^m=video/m.test(offer), "the audio-only offer has no video m-line");
    } finally {
      await screenshots(viewer, "watch-audio-only");
      await viewer.close();
    }
  });

  it("shows the server's error in words for a bad token", async () => {
    const viewer = await context.newPage();
    recordConsole(viewer, "watch-bad-token", consoleLines);
    try {
      await viewer.goto(`${server.base}/watch/${encodeURIComponent(sessionId)}?token=not-a-valid-token`);
      const alert = viewer.locator("#error");
      await alert.waitFor({ state: "visible", timeout: 10_000 });
      const text = (await alert.textContent()) || "";
      assert.ok(text.trim().length > 10, `error text too short: ${JSON.stringify(text)}`);
      assert.ok(!/[{}]/.test(text), `error text must be words, not JSON: ${JSON.stringify(text)}`);
    } finally {
      await screenshots(viewer, "watch-bad-token");
      await viewer.close();
    }
  });

  it("tells a second floor publisher in words that the floor feed is taken", async () => {
    const second = await context.newPage();
    recordConsole(second, "publish-second", consoleLines);
    try {
      await second.goto(`${server.base}/publish/${encodeURIComponent(sessionId)}?token=${tokens.venue}`);
      const answered = second.waitForResponse(
        (res) => res.request().method() === "POST" && /\/whip\//.test(res.url()),
        { timeout: 10_000 },
      );
      await second.getByRole("button", { name: "Start publishing" }).click();
      assert.equal((await answered).status(), 409);
      const alert = second.locator("#error");
      await alert.waitFor({ state: "visible", timeout: 5000 });
      const text = (await alert.textContent()) || "";
      assert.ok(text.trim().length > 10 && !/[{}]/.test(text), `error text: ${JSON.stringify(text)}`);
      // The first publisher is still live.
      assert.equal(await publisher.evaluate(() => window.floorcast.state), "connected");
    } finally {
      await screenshots(second, "publish-conflict");
      await second.close();
    }
  });

  it("stops publishing with the Stop button (DELETE on the WHIP resource)", async () => {
    assert.ok(publisher, "publisher page must be up");
    const deleted = publisher.waitForResponse(
      (res) => res.request().method() === "DELETE" && /\/whip\//.test(res.url()),
      { timeout: 10_000 },
    );
    await publisher.getByRole("button", { name: "Stop" }).click();
    const res = await deleted;
    assert.ok(res.status() >= 200 && res.status() < 300, `DELETE answered ${res.status()}`);
    const state = await publisher.evaluate(() => window.floorcast.state);
    assert.equal(state, "idle");
    await publisher.close();
    // A viewer still on the page is told the feed is gone, and stays ready for the next one.
    if (earlyViewer) {
      const overlay = await until("the early viewer to show the waiting notice again", 8000, async () => {
        const text = (await earlyViewer.locator("#overlay").textContent()) || "";
        const visible = await earlyViewer.locator("#overlay").isVisible();
        return { ok: visible && /Waiting/.test(text), text };
      });
      assert.match(overlay.text, /Waiting/);
      await screenshots(earlyViewer, "watch-after-stop");
      await earlyViewer.close();
    }
  });
});
