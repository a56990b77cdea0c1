// The whole conference on real pages: the venue publishes the floor from /publish (fake
// camera and microphone), two hubs watch on /watch, the venue PC shows /room, the chair runs
// /moderate. A hub raises its hand, the moderator page shows it first and grants 20 s, the hub
// publishes its fake microphone, the room page plays the speaker's audio with the name, hub
// and countdown, and the grant times out back to the floor. A CART caption reaches a hub's
// watch page within 2 s. Real binary, Debian Chromium with fake devices.
//
//   node tests/browser/conference.test.mjs

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import {
  ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, MEDIA_TIMEOUT_MS, contrastIssues, PUBLISH_TIMEOUT_MS, Server, http, inboundStats,
  mintToken, outboundStats, recordConsole, screenshots, until,
} from "./lib.mjs";

const server = new Server("floorcast-conference.log");
const consoleLines = [];
const SESSION = "main-hall";
const GRANT_S = 20;
let context = null;
let dataDir = null;
let userDataDir = null;

async function metric(name, labels) {
  const text = await (await fetch(`${server.base}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && labels.every((x) => l.includes(x)));
  return line ? Number(line.split(" ").pop()) : 0;
}

async function open(name, path) {
  const page = await context.newPage();
  recordConsole(page, name, consoleLines);
  await page.goto(`${server.base}${path}`);
  return page;
}

describe("a remote intervention across every page", { timeout: 240_000 }, () => {
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    dataDir = await mkdtemp(join(tmpdir(), "floorcast-data-"));
    userDataDir = await mkdtemp(join(tmpdir(), "floorcast-chromium-"));
    await server.start(dataDir);
    const operator = mintToken({ role: "operator", session: "*", name: "Ops" });
    const r = await http(server.base, "/api/sessions", { method: "POST", token: operator, body: { id: SESSION, title: "Main hall" } });
    assert.equal(r.status, 201, r.text);
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      // The venue PC runs its browser as a kiosk that may play sound without a click.
      args: [...CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"],
      viewport: { width: 1280, height: 800 },
    });
    context.setDefaultTimeout(10_000);
    await context.grantPermissions(["camera", "microphone"], { origin: server.base });
  });

  after(async () => {
    if (context) await context.close().catch(() => {});
    await server.stop();
    if (consoleLines.length) await writeFile(join(ARTIFACTS, "browser-console-conference.log"), `${consoleLines.join("\n")}\n`);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  });

  it("floor → hubs → hand → grant → speaker in the room → timeout → floor; CART on a watch page", async () => {
    const venue = mintToken({ role: "venue", session: SESSION, name: "Mixer" });
    const roomPc = mintToken({ role: "venue", session: SESSION, name: "Room PC", sub: "room-pc" });
    const chair = mintToken({ role: "moderator", session: SESSION, name: "Chair" });
    const dakar = mintToken({ role: "hub", session: SESSION, name: "Dakar hub", hub: "Dakar", sub: "hub-dakar" });
    const nairobi = mintToken({ role: "hub", session: SESSION, name: "Nairobi hub", hub: "Nairobi", sub: "hub-nairobi" });
    const captioner = mintToken({ role: "captioner", session: SESSION, name: "CART" });

    // The floor feed.
    const publisher = await open("publish", `/publish/${SESSION}?token=${venue}`);
    await publisher.getByRole("button", { name: "Start publishing" }).click();
    await until("the floor feed encoding", PUBLISH_TIMEOUT_MS, async () => {
      const s = await outboundStats(publisher);
      return { ...s, ok: s.framesEncoded > 10 && s.audioPackets > 10 };
    });

    // Two hubs and the room watch it.
    const hubA = await open("watch-dakar", `/watch/${SESSION}?token=${dakar}`);
    const hubB = await open("watch-nairobi", `/watch/${SESSION}?token=${nairobi}`);
    const room = await open("room", `/room/${SESSION}?token=${roomPc}`);
    for (const [name, page] of [["Dakar", hubA], ["Nairobi", hubB], ["room", room]]) {
      await until(`${name} decoding the floor feed`, MEDIA_TIMEOUT_MS, async () => {
        const s = await inboundStats(page);
        return { ...s, ok: s.framesDecoded > 0 };
      });
    }
    assert.ok(await room.locator("#lower-third").isHidden(), "no lower-third while the room has the floor");
    assert.equal(await room.evaluate(() => window.floorcast.audible), false, "the room's own sound is not played to the PA");

    const moderate = await open("moderate", `/moderate/${SESSION}?token=${chair}`);
    await until("the moderator page live", 5000, async () => ({ ok: (await moderate.locator("#state-badge").textContent()) === "Live" }));

    // Dakar raises its hand from its watch page; the moderator sees it first in line.
    await hubA.getByLabel("Topic (optional)").fill("Connectivity in rural schools");
    await hubA.getByLabel("People watching at your hub").fill("35");
    await hubA.getByRole("button", { name: "Raise hand" }).click();
    const first = moderate.locator("#queue li").first();
    await until("Dakar at position 1 on the moderator page", 5000, async () => {
      const pos = await first.locator(".pos").textContent().catch(() => "");
      const name = await first.locator(".hand-name").textContent().catch(() => "");
      return { ok: pos === "1" && name.includes("Dakar"), pos, name };
    });
    assert.match(await first.textContent(), /35 watching/);
    assert.match(await first.textContent(), /Connectivity in rural schools/);

    // Granted for 20 s from the moderator page.
    await moderate.getByLabel("Speaking time (seconds)").fill(String(GRANT_S));
    await first.getByRole("button", { name: /^Give the floor to Dakar/ }).click();
    const grantedAt = Date.now();
    await until("the hub's floor panel", 5000, async () => ({ ok: await hubA.locator("#my-floor").isVisible() }));
    await hubA.getByRole("button", { name: "Start speaking" }).click();
    await until("Dakar publishing as the speaker", PUBLISH_TIMEOUT_MS, async () => {
      const n = await metric("floorcast_publishers", ['role="speaker"', `session="${SESSION}"`]);
      return { ok: n === 1, n };
    });

    // The room shows who speaks and for how long, and plays their audio.
    await until("the room's lower-third and countdown", 5000, async () => {
      const name = await room.locator("#speaker-name").textContent();
      const hub = await room.locator("#speaker-hub").textContent();
      const ms = Number(await room.locator("#countdown").getAttribute("data-remaining-ms"));
      return { ok: name === "Dakar hub" && hub === "Dakar" && ms > 0 && ms <= GRANT_S * 1000, name, hub, ms };
    });
    await until("the room playing sound", 5000, async () => ({ ok: await room.evaluate(() => window.floorcast.audible) }));
    const a1 = (await inboundStats(room)).audioPackets;
    await room.waitForTimeout(1500);
    const a2 = (await inboundStats(room)).audioPackets;
    assert.ok(a2 > a1 + 25, `room audio packetsReceived rising: ${a1} then ${a2}`);
    const c1 = Number(await room.locator("#countdown").getAttribute("data-remaining-ms"));
    assert.ok(c1 < GRANT_S * 1000 - 1000, `room countdown running: ${c1} ms left`);

    // The moderator sees the countdown and the audience by hub.
    await until("the moderator's countdown", 3000, async () => {
      const ms = Number(await moderate.locator("#floor .countdown").getAttribute("data-remaining-ms"));
      return { ok: ms > 0 && ms < GRANT_S * 1000, ms };
    });
    const rows = await until("viewers by hub", 8000, async () => {
      const r = await moderate.locator("#viewers tr").evaluateAll((trs) => trs.map((tr) => [tr.dataset.hub, tr.children[1]?.textContent, tr.children[2]?.textContent]));
      const nairobiRow = r.find((x) => x[0] === "Nairobi");
      return { ok: Boolean(nairobiRow && nairobiRow[1] === "1" && nairobiRow[2] === "good" && r.some((x) => x[0] === "Dakar")), r };
    });
    assert.ok(rows.r.some((x) => x[0] === "" && x[1] === "1"), `the room PC watches as an individual: ${JSON.stringify(rows.r)}`);

    // A CART caption reaches a hub's watch page, the room and the moderator's monitor.
    const posted = Date.now();
    const cart = await fetch(`${server.base}/cart/${SESSION}?token=${captioner}&seq=1&lang=en-US`, {
      method: "POST",
      headers: { "Content-Type": "text/plain; charset=utf-8" },
      body: "The floor recognises the Dakar hub.",
    });
    assert.equal(cart.status, 200);
    await until("the caption on Nairobi's watch page", 2000, async () => ({
      ok: (await hubB.locator("#captions").textContent()) === "The floor recognises the Dakar hub.",
    }), 50);
    const captionMs = Date.now() - posted;
    console.log(`# CART caption on the watch page after ${captionMs} ms`);
    await until("the caption on the room screen", 2000, async () => ({ ok: (await room.locator("#captions").textContent()) === "The floor recognises the Dakar hub." }));
    await until("the caption in the moderator's monitor", 2000, async () => ({ ok: (await moderate.locator("#cart").textContent()).includes("Dakar hub") }));

    for (const [page, name] of [[publisher, "publish"], [hubA, "watch-speaking-hub"], [hubB, "watch-hub"], [moderate, "moderate"], [room, "room"]]) {
      assert.deepEqual(await contrastIssues(page), [], `WCAG AA text contrast on ${name}`);
      await screenshots(page, name);
    }

    // The grant times out: the room returns to the floor feed, quietly.
    await until("the room back on the floor", GRANT_S * 1000 + 10_000 - (Date.now() - grantedAt), async () => ({
      ok: (await room.locator("#lower-third").isHidden()) && (await room.locator("#countdown").isHidden()),
    }));
    await until("the speaker gone and the room muted", 10_000, async () => {
      const n = await metric("floorcast_publishers", ['role="speaker"', `session="${SESSION}"`]);
      const audible = await room.evaluate(() => window.floorcast.audible);
      return { ok: n === 0 && audible === false, n, audible };
    });
    const f1 = (await inboundStats(room)).framesDecoded;
    await room.waitForTimeout(1000);
    const f2 = (await inboundStats(room)).framesDecoded;
    assert.ok(f2 > f1, `the floor video plays on in the room: ${f1} then ${f2}`);
    await until("the floor log on the moderator page", 5000, async () => {
      const reason = await moderate.locator("#log tr").first().getAttribute("data-end-reason");
      return { ok: reason === "timeout", reason };
    });
    assert.match(await moderate.locator("#log tr").first().textContent(), /Dakar hub \(Dakar\).*time limit/);
    assert.ok(await moderate.locator("#queue-empty").isVisible());
    await screenshots(room, "room-floor");
  });
});
