// /moderate/{id}: the live queue and every control on it (policy, pin, move, grant with a
// limit from the keyboard, extend, end the turn, remove a hand), the floor log, the caption
// monitor, and errors in words for the wrong link. Hands come from the API as other people's
// pages would send them. The page keeps the queue from its event stream (the snapshot, then
// each event's patch) and reads it only when an event says most of it moved (a policy
// change): counted from the page's own requests, through 300 raises, withdrawals, pins, a
// move and a grant. Real binary, Debian Chromium.
//
//   node tests/browser/moderate.test.mjs

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import {
  ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Server, contrastIssues, http, mintToken, recordConsole, screenshots, until,
} from "./lib.mjs";

const server = new Server("floorcast-moderate.log");
const consoleLines = [];
const SESSION = "forum";
let browser = null;
let dataDir = null;
let chair = null;

const raise = async (token, body) => {
  const r = await http(server.base, `/api/sessions/${SESSION}/hands`, { method: "POST", token, body });
  assert.equal(r.status, 201, r.text);
  return r.json.hand.id;
};
const queue = async () => (await http(server.base, `/api/sessions/${SESSION}/queue`, { token: chair })).json;
const names = (page) => page.locator("#queue .hand-name").allTextContents();
/** Counts the page's own reads of the whole queue (the test's reads are not the page's). */
const countQueueReads = (page) => {
  const reads = { n: 0 };
  page.on("request", (r) => {
    if (r.method() === "GET" && new URL(r.url()).pathname.endsWith("/queue")) reads.n += 1;
  });
  return reads;
};

describe("the moderator page", { timeout: 120_000 }, () => {
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    dataDir = await mkdtemp(join(tmpdir(), "floorcast-data-"));
    await server.start(dataDir);
    const operator = mintToken({ role: "operator", session: "*", name: "Ops" });
    const r = await http(server.base, "/api/sessions", { method: "POST", token: operator, body: { id: SESSION, title: "Forum" } });
    assert.equal(r.status, 201, r.text);
    chair = mintToken({ role: "moderator", session: SESSION, name: "Chair" });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    await server.stop();
    if (consoleLines.length) await writeFile(join(ARTIFACTS, "browser-console-moderate.log"), `${consoleLines.join("\n")}\n`);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it("runs the queue: policy, pin, move, grant from the keyboard, extend, end, remove", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    recordConsole(page, "moderate", consoleLines);
    const reads = countQueueReads(page);
    await page.goto(`${server.base}/moderate/${SESSION}?token=${chair}`);
    await until("live", 5000, async () => ({ ok: (await page.locator("#state-badge").textContent()) === "Live" }));
    assert.ok(await page.locator("#queue-empty").isVisible());

    const ana = await raise(mintToken({ role: "viewer", session: SESSION, name: "Ana", sub: "ana" }), { topic: "Budget" });
    await raise(mintToken({ role: "hub", session: SESSION, name: "Lagos hub", hub: "Lagos", sub: "lagos" }), { head_count: 12 });
    const dakar = await raise(mintToken({ role: "hub", session: SESSION, name: "Dakar hub", hub: "Dakar", sub: "dakar" }), { language: "fr" });
    await until("three hands in order", 5000, async () => {
      const n = await names(page);
      return { ok: n.length === 3 && n[0] === "Ana" && n[2] === "Dakar hub (Dakar)", n };
    });
    assert.match(await page.locator("#queue li").nth(1).textContent(), /hub, 12 watching/);
    assert.equal(await page.locator("#queue-count").textContent(), "(3)");

    assert.equal(reads.n, 0, "raises come with their hand and patch: no queue read");
    await page.getByLabel("Order").selectOption("hub_round_robin");
    await until("the policy on the server", 5000, async () => ({ ok: (await queue()).policy === "hub_round_robin" }));
    // A policy change may reorder the whole queue: its event says so, and the page reads
    // the queue once.
    await until("the one read after the policy change", 5000, async () => ({ ok: reads.n === 1, n: reads.n }));

    // Pin Dakar: first in line, marked.
    await page.getByRole("button", { name: "Pin Dakar hub (Dakar)" }).click();
    await until("Dakar pinned first", 5000, async () => {
      const q = await queue();
      const n = await names(page);
      return { ok: q.pinned.includes(dakar) && q.hands[0].id === dakar && n[0].startsWith("Dakar hub (Dakar)") && n[0].includes("pinned"), n };
    });
    // The last in line moves up one place (and is pinned there); Dakar then moves down.
    const hands = (await queue()).hands;
    const last = hands[hands.length - 1];
    const lastName = last.hub ? `${last.name} (${last.hub})` : last.name;
    assert.ok(await page.getByRole("button", { name: `Move ${lastName} down` }).isDisabled(), "an unpinned hand cannot go down");
    await page.getByRole("button", { name: `Move ${lastName} up` }).click();
    await until(`${lastName} one place up`, 5000, async () => {
      const q = await queue();
      const at = q.hands.findIndex((h) => h.id === last.id);
      return { ok: at === hands.length - 2 && q.pinned.includes(last.id), at };
    });
    await until("Dakar movable down", 3000, async () => ({ ok: await page.getByRole("button", { name: "Move Dakar hub (Dakar) down" }).isEnabled() }));
    await page.getByRole("button", { name: "Move Dakar hub (Dakar) down" }).click();
    await until("Dakar second", 5000, async () => {
      const q = await queue();
      return { ok: q.hands[1].id === dakar, order: q.hands.map((h) => h.name) };
    });
    await page.getByRole("button", { name: "Move Dakar hub (Dakar) up" }).click();
    await until("Dakar first again", 5000, async () => ({ ok: (await queue()).hands[0].id === dakar }));

    // Grant the next for 45 s without a mouse.
    await page.getByLabel("Speaking time (seconds)").fill("45");
    await page.locator("#grant-next").focus();
    await page.keyboard.press("Enter");
    const turn = await until("Dakar granted for 45 s", 5000, async () => {
      const q = await queue();
      const t = q.floor[0];
      return { ok: Boolean(t && t.hand.id === dakar && t.ends_at_ms - t.granted_at_ms === 45_000), t };
    });
    await until("the countdown on the page", 3000, async () => {
      const ms = Number(await page.locator("#floor .countdown").getAttribute("data-remaining-ms"));
      return { ok: ms > 40_000 && ms <= 45_000, ms };
    });
    assert.equal(await page.locator("#floor .who").textContent(), "Dakar hub (Dakar)");
    assert.ok(await page.locator("#grant-next").isDisabled(), "no second grant while the floor is busy");

    await page.getByRole("button", { name: "Give Dakar hub (Dakar) 30 more seconds" }).click();
    await until("30 s more", 5000, async () => {
      const t = (await queue()).floor[0];
      return { ok: t.ends_at_ms === turn.t.ends_at_ms + 30_000, t };
    });
    for (const colorScheme of ["light", "dark"]) {
      await page.emulateMedia({ colorScheme });
      assert.deepEqual(await contrastIssues(page), [], `WCAG AA text contrast, ${colorScheme} scheme`);
    }
    await page.emulateMedia({ colorScheme: "light" });
    await screenshots(page, "moderate-queue");

    await page.getByRole("button", { name: "End the turn of Dakar hub (Dakar)" }).click();
    await until("the floor back with the room and the log row", 5000, async () => {
      const reason = await page.locator("#log tr").first().getAttribute("data-end-reason");
      return { ok: (await queue()).floor.length === 0 && reason === "revoked", reason };
    });
    assert.match(await page.locator("#log tr").first().textContent(), /Dakar hub \(Dakar\).*moderator/);
    const csv = await page.locator("#log-csv").getAttribute("href");
    const res = await fetch(`${server.base}${csv}`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /revoked/);

    await page.getByRole("button", { name: "Remove the hand of Ana" }).click();
    await until("Ana's hand gone", 5000, async () => {
      const n = await names(page);
      return { ok: n.length === 1 && n[0].startsWith("Lagos"), n };
    });
    assert.equal((await queue()).hands.length, 1);

    // The caption monitor shows the human captioner's text and says it is on air.
    const captioner = mintToken({ role: "captioner", session: SESSION, name: "CART" });
    const cart = await fetch(`${server.base}/cart/${SESSION}?token=${captioner}&seq=1`, { method: "POST", body: "Thank you, Dakar." });
    assert.equal(cart.status, 200);
    await until("the caption in the monitor", 3000, async () => ({
      ok: (await page.locator("#cart").textContent()) === "Thank you, Dakar." && (await page.locator("#on-air").textContent()).includes("human captioner"),
    }));
    await screenshots(page, "moderate");
    // Every other change above came to the page as an event with its patch (issue 17).
    assert.equal(reads.n, 1, "no queue read but the one after the policy change");
    await page.close();
  });

  it("follows a storm of hands from the event stream alone, never reading the queue", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    recordConsole(page, "moderate-storm", consoleLines);
    const reads = countQueueReads(page);
    await page.goto(`${server.base}/moderate/${SESSION}?token=${chair}`);
    await until("live", 5000, async () => ({ ok: (await page.locator("#state-badge").textContent()) === "Live" }));
    const STORM = 300;
    const ids = [];
    for (let i = 0; i < STORM; i += 25) {
      ids.push(...(await Promise.all(Array.from({ length: Math.min(25, STORM - i) }, (_, k) => {
        const n = i + k;
        const hub = n % 3 ? `Hub ${n % 7}` : undefined;
        const token = mintToken({ role: "viewer", session: SESSION, name: `P${n}`, sub: `storm-${n}`, hub });
        return raise(token, { topic: `Point ${n}` });
      }))));
    }
    // Withdrawals, pins and a move: each event moves a few hands.
    for (const id of ids.filter((_, i) => i % 10 === 5)) {
      const r = await http(server.base, `/api/sessions/${SESSION}/hands/${id}`, { method: "DELETE", token: chair });
      assert.equal(r.status, 200, r.text);
    }
    for (const body of [{ pin: ids[200] }, { pin: ids[12] }, { move: { hand: ids[150], position: 1 } }, { unpin: ids[200] }]) {
      const r = await http(server.base, `/api/sessions/${SESSION}/queue`, { method: "PATCH", token: chair, body });
      assert.equal(r.status, 200, r.text);
    }
    const granted = await http(server.base, `/api/sessions/${SESSION}/floor`, { method: "POST", token: chair, body: {} });
    assert.equal(granted.status, 201, granted.text);
    await until("the page's queue is the server's", 15_000, async () => {
      const q = await queue();
      const shown = await page.evaluate(() => {
        const q = window.floorcast.queue;
        return { hands: q.hands.map((h) => [h.id, h.position, h.pinned]), floor: q.floor.map((t) => t.hand.id) };
      });
      const expected = q.hands.map((h) => [h.id, h.position, h.pinned]);
      const rows = await page.locator("#queue li").count();
      const ok = JSON.stringify(shown.hands) === JSON.stringify(expected)
        && JSON.stringify(shown.floor) === JSON.stringify(q.floor.map((t) => t.hand.id))
        && rows === expected.length;
      return { ok, shown: shown.hands.length, expected: expected.length, rows };
    });
    await screenshots(page, "moderate-storm");
    assert.equal(reads.n, 0, "no queue read: the snapshot, then each event's patch");
    await page.close();
  });

  it("explains a link that is not a moderator's for this session", async () => {
    const page = await browser.newPage();
    await page.goto(`${server.base}/moderate/${SESSION}?token=${mintToken({ role: "moderator", session: "other", name: "Elsewhere" })}`);
    await until("the error", 5000, async () => {
      const text = await page.locator("#error").textContent();
      return { ok: (await page.locator("#error").isVisible()) && /other/.test(text), text };
    });
    await page.goto(`${server.base}/moderate/${SESSION}?token=${mintToken({ role: "viewer", session: SESSION, name: "V" })}`);
    await until("the wrong-role error", 5000, async () => {
      const text = await page.locator("#error").textContent();
      return { ok: /needs a moderator link/.test(text), text };
    });
    await page.goto(`${server.base}/moderate/${SESSION}`);
    await until("the missing-token error", 5000, async () => ({ ok: /no access token/.test(await page.locator("#error").textContent()) }));
    await page.close();
  });
});
