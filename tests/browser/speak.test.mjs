// Asking to speak from /watch/{id}: a hub raises its hand with a head-count, sees its place
// in the queue, can withdraw; granted by the moderator it sees a countdown, publishes its
// fake microphone over WHIP as the session's speaker, and ends its own turn, all from its
// event stream (the server counts no queue read by the page). Real binary, Debian Chromium
// with fake devices.
//
//   node tests/browser/speak.test.mjs

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import {
  ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, PUBLISH_TIMEOUT_MS, Server, http, mintToken, recordConsole,
  screenshots, until,
} from "./lib.mjs";

const server = new Server("floorcast-speak.log");
const consoleLines = [];
const SESSION = "plenary";
let context = null;
let dataDir = null;
let userDataDir = null;
let moderator = null;

/** `floorcast_queue_reads_total{via}`: whole queues the server built for a client. */
async function queueReads(via) {
  const res = await fetch(`${server.base}/metrics`);
  const text = await res.text();
  const line = text.split("\n").find((l) => l.startsWith(`floorcast_queue_reads_total{via="${via}"}`));
  return line ? Number(line.split(" ").pop()) : NaN;
}

async function speakerPublishers() {
  const res = await fetch(`${server.base}/metrics`);
  const text = await res.text();
  const line = text.split("\n").find((l) => l.startsWith("floorcast_publishers{") && l.includes('role="speaker"') && l.includes(`session="${SESSION}"`));
  return line ? Number(line.split(" ").pop()) : 0;
}

describe("asking to speak from the watch page", { timeout: 150_000 }, () => {
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    dataDir = await mkdtemp(join(tmpdir(), "floorcast-data-"));
    userDataDir = await mkdtemp(join(tmpdir(), "floorcast-chromium-"));
    await server.start(dataDir);
    const operator = mintToken({ role: "operator", session: "*", name: "Ops" });
    const r = await http(server.base, "/api/sessions", { method: "POST", token: operator, body: { id: SESSION, title: "Plenary" } });
    assert.equal(r.status, 201, r.text);
    moderator = mintToken({ role: "moderator", session: SESSION, name: "Chair" });
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
    if (consoleLines.length) await writeFile(join(ARTIFACTS, "browser-console-speak.log"), `${consoleLines.join("\n")}\n`);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  });

  it("a hub raises, withdraws, raises again, is granted, speaks and ends its turn", async () => {
    const hubToken = mintToken({ role: "hub", session: SESSION, name: "Dakar hub", hub: "Dakar" });
    const page = await context.newPage();
    recordConsole(page, "speak-hub", consoleLines);
    await page.goto(`${server.base}/watch/${SESSION}?token=${hubToken}`);
    assert.equal(await page.locator("#speak-title").textContent(), "Ask to speak for Dakar");
    assert.ok(await page.locator("#headcount").isVisible(), "hub mode asks for a head-count");

    // Someone else is first in the queue.
    const ana = mintToken({ role: "viewer", session: SESSION, name: "Ana" });
    const first = await http(server.base, `/api/sessions/${SESSION}/hands`, { method: "POST", token: ana, body: { topic: "First" } });
    assert.equal(first.status, 201, first.text);

    await page.getByLabel("Topic (optional)").fill("Access in rural areas");
    await page.getByLabel("People watching at your hub").fill("40");
    await page.getByRole("button", { name: "Raise hand" }).click();
    const pos = await until("the hub's place in the queue", 5000, async () => {
      const text = (await page.locator("#position").textContent()) || "";
      return { ok: /number 2/.test(text), text };
    });
    assert.ok(pos.ok);
    const q = await http(server.base, `/api/sessions/${SESSION}/queue`, { token: moderator });
    const hubHand = q.json.hands.find((h) => h.hub === "Dakar");
    assert.equal(hubHand.head_count, 40);
    assert.equal(hubHand.topic, "Access in rural areas");
    await screenshots(page, "watch-hand-raised");

    await page.getByRole("button", { name: "Withdraw my hand" }).click();
    await until("the form back after withdrawing", 5000, async () => ({ ok: await page.locator("#raise-form").isVisible() }));
    await page.getByRole("button", { name: "Raise hand" }).click();
    await until("the hand up again", 5000, async () => ({ ok: await page.locator("#hand").isVisible() }));

    // The moderator grants the hub (not the first in line) for 20 s.
    const q2 = await http(server.base, `/api/sessions/${SESSION}/queue`, { token: moderator });
    const hand = q2.json.hands.find((h) => h.hub === "Dakar").id;
    const g = await http(server.base, `/api/sessions/${SESSION}/floor`, { method: "POST", token: moderator, body: { hand, limit_s: 20 } });
    assert.equal(g.status, 201, g.text);
    await until("the floor panel", 5000, async () => ({ ok: await page.locator("#my-floor").isVisible() }));
    const a = await until("a countdown", 3000, async () => {
      const ms = Number(await page.locator("#countdown").getAttribute("data-remaining-ms"));
      return { ok: ms > 0 && ms <= 20_000, ms };
    });
    await page.waitForTimeout(1200);
    const b = Number(await page.locator("#countdown").getAttribute("data-remaining-ms"));
    assert.ok(b < a.ms - 500, `countdown runs: ${a.ms} then ${b}`);

    await page.getByRole("button", { name: "Start speaking" }).click();
    await until("the hub publishing as the speaker", PUBLISH_TIMEOUT_MS, async () => {
      const n = await speakerPublishers();
      const state = await page.evaluate(() => window.floorcast.speak.whip && window.floorcast.speak.whip.state);
      return { ok: n === 1 && state === "connected", n, state };
    });
    assert.equal(await page.evaluate(() => document.getElementById("player").muted), true, "no echo of one's own voice");
    await screenshots(page, "watch-speaking");

    await page.getByRole("button", { name: "End my turn" }).click();
    await until("the turn ended and the speaker gone", 10_000, async () => {
      const n = await speakerPublishers();
      const ended = await page.locator("#turn-ended").isVisible();
      return { ok: n === 0 && ended, n, ended };
    });
    // The page followed raise, withdraw, raise, grant, countdown and end from its event
    // stream: the only queue reads are this test's own two, and the page's one snapshot.
    assert.equal(await queueReads("get"), 2, "the watch page never reads the queue");
    assert.equal(await queueReads("snapshot"), 1);
    const log = await http(server.base, `/api/sessions/${SESSION}/floor-log`, { token: moderator });
    assert.equal(log.json.entries.length, 1);
    assert.equal(log.json.entries[0].end_reason, "done");
    assert.equal(log.json.entries[0].hub, "Dakar");
    await page.close();
  });

  it("a venue token sees no hand-raising; a refused raise is explained in words", async () => {
    const venue = mintToken({ role: "venue", session: SESSION, name: "Mixer" });
    const page = await context.newPage();
    await page.goto(`${server.base}/watch/${SESSION}?token=${venue}`);
    await until("the section hidden", 3000, async () => ({ ok: await page.locator("#speak").isHidden() }));
    await page.close();

    // Ana's hand is still open: a second raise is refused by the server.
    const ana = mintToken({ role: "viewer", session: SESSION, name: "Ana", sub: "ana-1" });
    const p2 = await context.newPage();
    await http(server.base, `/api/sessions/${SESSION}/hands`, { method: "POST", token: ana, body: {} });
    await p2.goto(`${server.base}/watch/${SESSION}?token=${ana}`);
    // The page finds the open hand and shows it rather than the form.
    await until("Ana's open hand", 5000, async () => ({ ok: await p2.locator("#hand").isVisible() }));
    await p2.close();
  });
});
