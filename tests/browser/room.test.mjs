// /room/{id}, the venue PC's screen: a link without a token is explained on screen; the page
// connects by itself, shows the lower-third and countdown of a granted speaker, and when the
// server restarts under it, it reconnects with no one touching it and picks the floor state
// up again. (Playing the speaker's audio is in conference.test.mjs.) Real binary, Chromium.
//
//   node tests/browser/room.test.mjs

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import {
  ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Server, freeAddrs, http, inboundStats, mintToken, recordConsole, screenshots, until,
} from "./lib.mjs";

const server = new Server("floorcast-room.log");
const consoleLines = [];
const SESSION = "room-b";
let browser = null;
let dataDir = null;

describe("the room page", { timeout: 150_000 }, () => {
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    dataDir = await mkdtemp(join(tmpdir(), "floorcast-data-"));
    server.addrs = await freeAddrs();
    await server.start(dataDir, server.addrs);
    const operator = mintToken({ role: "operator", session: "*", name: "Ops" });
    const r = await http(server.base, "/api/sessions", { method: "POST", token: operator, body: { id: SESSION, title: "Room B" } });
    assert.equal(r.status, 201, r.text);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    await server.stop();
    if (consoleLines.length) await writeFile(join(ARTIFACTS, "browser-console-room.log"), `${consoleLines.join("\n")}\n`);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it("says on screen what is wrong with a link without a token", async () => {
    const page = await browser.newPage();
    await page.goto(`${server.base}/room/${SESSION}`);
    assert.match(await page.locator("#idle").textContent(), /no access token/);
    await page.close();
  });

  it("shows the speaker, and reconnects by itself after a server restart", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    recordConsole(page, "room", consoleLines);
    const venue = mintToken({ role: "venue", session: SESSION, name: "Room B PC" });
    await page.goto(`${server.base}/room/${SESSION}?token=${venue}`);
    await until("connected", 15_000, async () => {
      const s = await page.evaluate(() => ({ n: window.floorcast.connections, state: window.floorcast.pc && window.floorcast.pc.connectionState }));
      return { ok: s.n === 1 && s.state === "connected", ...s };
    });
    // No floor feed is published: the screen says so rather than staying black and silent.
    await until("the waiting notice", 10_000, async () => ({ ok: (await page.locator("#idle").textContent()) === "Waiting for the floor feed…" }));

    const chair = mintToken({ role: "moderator", session: SESSION, name: "Chair" });
    const amina = mintToken({ role: "viewer", session: SESSION, name: "Amina Diallo", sub: "amina" });
    const raised = await http(server.base, `/api/sessions/${SESSION}/hands`, { method: "POST", token: amina, body: { topic: "Open data" } });
    assert.equal(raised.status, 201, raised.text);
    const g = await http(server.base, `/api/sessions/${SESSION}/floor`, { method: "POST", token: chair, body: { limit_s: 120 } });
    assert.equal(g.status, 201, g.text);
    await until("the lower-third and countdown", 5000, async () => {
      const name = await page.locator("#speaker-name").textContent();
      const hub = await page.locator("#speaker-hub").textContent();
      const ms = Number(await page.locator("#countdown").getAttribute("data-remaining-ms"));
      return { ok: name === "Amina Diallo" && hub === "Open data" && ms > 100_000, name, hub, ms };
    });
    // Granted but not yet publishing: the PA stays quiet (the floor audio would feed back).
    assert.equal(await page.evaluate(() => window.floorcast.speakerLive), false);
    assert.equal(await page.evaluate(() => window.floorcast.audible), false);
    await screenshots(page, "room-speaker-granted");

    // The server goes away and comes back on the same addresses with the same data.
    await server.stop();
    await until("the page noticing", 15_000, async () => ({ ok: !(await page.locator("#notice").isHidden()) }));
    await server.start(dataDir, server.addrs);
    const back = await until("a new connection without a touch", 40_000, async () => {
      const s = await page.evaluate(() => ({ n: window.floorcast.connections, state: window.floorcast.pc && window.floorcast.pc.connectionState }));
      return { ok: s.n >= 2 && s.state === "connected", ...s };
    });
    console.log(`# room page reconnected (${back.n} connections)`);
    // The turn survived the restart; the page shows it again from the fresh event stream.
    const end = await http(server.base, `/api/sessions/${SESSION}/floor`, { method: "DELETE", token: chair });
    assert.equal(end.status, 200, end.text);
    await until("the lower-third gone after the turn ends", 10_000, async () => ({ ok: await page.locator("#lower-third").isHidden() }));
    await page.close();
  });

  it("keeps the room in a corner while a remote speaker's camera fills the screen", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    await context.grantPermissions(["camera", "microphone"], { origin: server.base });
    try {
      const venue = mintToken({ role: "venue", session: SESSION, name: "Room B AV" });
      const publisher = await context.newPage();
      recordConsole(publisher, "room-floor", consoleLines);
      await publisher.goto(`${server.base}/publish/${SESSION}?token=${venue}`);
      await publisher.getByRole("button", { name: "Start publishing" }).click();

      const room = await context.newPage();
      recordConsole(room, "room-pip", consoleLines);
      await room.goto(`${server.base}/room/${SESSION}?token=${venue}`);
      await until("the floor feed on the room screen", 20_000, async () => {
        const s = await inboundStats(room);
        return { ok: s.framesDecoded > 0, ...s };
      });
      assert.equal(await room.evaluate(() => window.floorcast.pip), null, "no picture-in-picture without a speaker");

      const chair = mintToken({ role: "moderator", session: SESSION, name: "Chair" });
      const sami = mintToken({ role: "viewer", session: SESSION, name: "Sami Haddad", sub: "sami" });
      const raised = await http(server.base, `/api/sessions/${SESSION}/hands`, { method: "POST", token: sami, body: { topic: "Broadband" } });
      assert.equal(raised.status, 201, raised.text);
      const g = await http(server.base, `/api/sessions/${SESSION}/floor`, { method: "POST", token: chair, body: { hand: raised.json.id, limit_s: 120 } });
      assert.equal(g.status, 201, g.text);

      const speaker = await context.newPage();
      recordConsole(speaker, "room-speaker", consoleLines);
      await speaker.goto(`${server.base}/watch/${SESSION}?token=${sami}`);
      await until("the speaker's floor panel", 10_000, async () => ({ ok: await speaker.locator("#my-floor").isVisible() }));
      await speaker.locator("#with-camera").check();
      await speaker.getByRole("button", { name: "Start speaking" }).click();

      const shown = await until("the floor feed in the corner, decoding", 20_000, async () => {
        const s = await room.evaluate(async () => {
          const pc = window.floorcast.pip;
          if (!pc) return { pc: false };
          let frames = 0;
          let audio = 0;
          (await pc.getStats()).forEach((r) => {
            if (r.type !== "inbound-rtp") return;
            if (r.kind === "video") frames += r.framesDecoded || 0;
            else audio += 1;
          });
          return { pc: true, frames, audio, visible: !document.getElementById("pip").hidden };
        });
        return { ok: s.pc && s.frames > 10 && s.visible, ...s };
      });
      assert.equal(shown.audio, 0, "the corner picture carries no sound");
      const box = await room.locator("#pip").boundingBox();
      assert.ok(box && box.width < 1280 / 2 && box.x > 1280 / 2, `in a corner, not full screen: ${JSON.stringify(box)}`);
      await screenshots(room, "room-pip");

      const end = await http(server.base, `/api/sessions/${SESSION}/floor`, { method: "DELETE", token: chair });
      assert.equal(end.status, 200, end.text);
      await until("the corner picture gone after the turn", 10_000, async () => {
        const gone = await room.evaluate(() => window.floorcast.pip === null && document.getElementById("pip").hidden);
        return { ok: gone };
      });
    } finally {
      await context.close().catch(() => {});
    }
  });
});
