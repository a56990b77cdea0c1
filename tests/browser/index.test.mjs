// The home page `/`: the sessions a visitor's token is for, with a link for each page their
// role may open; errors in words. Real binary, Debian Chromium.
//
//   node tests/browser/index.test.mjs

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import {
  ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Server, http, mintToken, contrastIssues, recordConsole, screenshots, until,
} from "./lib.mjs";

const server = new Server("floorcast-index.log");
const consoleLines = [];
let context = null;
let dataDir = null;
let userDataDir = null;

async function linksOf(page) {
  return page.$$eval(".sessions li", (items) =>
    items.map((li) => ({
      id: li.querySelector("code").textContent,
      links: [...li.querySelectorAll(".links a")].map((a) => a.textContent),
    })),
  );
}

describe("the home page", { timeout: 120_000 }, () => {
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    dataDir = await mkdtemp(join(tmpdir(), "floorcast-data-"));
    userDataDir = await mkdtemp(join(tmpdir(), "floorcast-chromium-"));
    await server.start(dataDir);
    const operator = mintToken({ role: "operator", session: "*", name: "Ops" });
    for (const [id, title] of [["plenary", "Opening plenary"], ["ws-7", "Workshop 7: Open data"]]) {
      const r = await http(server.base, "/api/sessions", { method: "POST", token: operator, body: { id, title } });
      assert.equal(r.status, 201, r.text);
    }
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 800 },
    });
    context.setDefaultTimeout(10_000);
  });

  after(async () => {
    if (context) await context.close().catch(() => {});
    await server.stop();
    if (consoleLines.length) await writeFile(join(ARTIFACTS, "browser-console-index.log"), `${consoleLines.join("\n")}\n`);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  });

  it("an operator sees every session with every page", async () => {
    const page = await context.newPage();
    recordConsole(page, "index-operator", consoleLines);
    const operator = mintToken({ role: "operator", session: "*", name: "Ops desk" });
    await page.goto(`${server.base}/?token=${operator}`);
    const got = await until("two sessions listed", 5000, async () => {
      const l = await linksOf(page);
      return { ok: l.length === 2, l };
    });
    assert.deepEqual(got.l.map((s) => s.id), ["plenary", "ws-7"]);
    assert.deepEqual(got.l[0].links, ["Watch", "Room screen", "Transcript", "Captions (WebVTT)"]);
    assert.match(await page.locator("#who").textContent(), /Ops desk \(operator\)/);
    for (const colorScheme of ["light", "dark"]) {
      await page.emulateMedia({ colorScheme });
      assert.deepEqual(await contrastIssues(page), [], `WCAG AA text contrast, ${colorScheme} scheme`);
    }
    await page.emulateMedia({ colorScheme: "light" });
    await screenshots(page, "index-operator");
    await page.close();
  });

  it("a hub sees its one session and may watch; a moderator may moderate", async () => {
    const page = await context.newPage();
    recordConsole(page, "index-hub", consoleLines);
    const hub = mintToken({ role: "hub", session: "ws-7", name: "Nairobi hub", hub: "nairobi" });
    await page.goto(`${server.base}/?token=${hub}`);
    const got = await until("one session listed", 5000, async () => {
      const l = await linksOf(page);
      return { ok: l.length === 1, l };
    });
    assert.equal(got.l[0].id, "ws-7");
    assert.deepEqual(got.l[0].links, ["Watch", "Transcript", "Captions (WebVTT)"]);
    // The watch link carries the token and opens the watch page.
    const href = await page.locator(".links a", { hasText: "Watch" }).getAttribute("href");
    assert.equal(href, `/watch/ws-7?token=${encodeURIComponent(hub)}`);
    await screenshots(page, "index-hub");

    const moderator = mintToken({ role: "moderator", session: "plenary", name: "Chair" });
    await page.goto(`${server.base}/?token=${moderator}`);
    const mod = await until("the moderator's session", 5000, async () => {
      const l = await linksOf(page);
      return { ok: l.length === 1, l };
    });
    assert.deepEqual(mod.l[0].links, ["Watch", "Room screen", "Moderate", "Transcript", "Captions (WebVTT)"]);
    await page.close();
  });

  it("a captioner gets the URL for their CART software", async () => {
    const page = await context.newPage();
    const cart = mintToken({ role: "captioner", session: "plenary", name: "CART writer" });
    await page.goto(`${server.base}/?token=${cart}`);
    const url = await until("the caption URL", 5000, async () => {
      const text = (await page.locator(".cart-url").textContent().catch(() => "")) || "";
      return { ok: text.includes("/cart/plenary?token="), text };
    });
    assert.ok(url.text.startsWith(server.base));
    await page.close();
  });

  it("explains a bad or expired token in words", async () => {
    const page = await context.newPage();
    await page.goto(`${server.base}/?token=not-a-token`);
    const bad = await until("an error for garbage", 5000, async () => {
      const visible = await page.locator("#error").isVisible();
      return { ok: visible, text: await page.locator("#error").textContent() };
    });
    assert.match(bad.text, /not an access token/);
    const expired = mintToken({ role: "viewer", session: "plenary", name: "Late", ttlSeconds: -60 });
    await page.goto(`${server.base}/?token=${expired}`);
    const msg = await until("the server's words for an expired token", 5000, async () => {
      const visible = await page.locator("#error").isVisible();
      return { ok: visible, text: await page.locator("#error").textContent() };
    });
    assert.match(msg.text, /expired/i);
    assert.equal(await page.locator(".sessions li").count(), 0);
    for (const colorScheme of ["light", "dark"]) {
      await page.emulateMedia({ colorScheme });
      assert.deepEqual(await contrastIssues(page), [], `WCAG AA text contrast, ${colorScheme} scheme`);
    }
    await page.emulateMedia({ colorScheme: "light" });
    await screenshots(page, "index-error");
    await page.close();
  });
});
