// The operations page `/ops`: node figures from /metrics and the session list, live. A real
// publisher page and viewer page make the figures move. Real binary, Debian Chromium.
//
//   node tests/browser/ops.test.mjs

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import {
  ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, MEDIA_TIMEOUT_MS, PUBLISH_TIMEOUT_MS, Server, http, mintToken,
  contrastIssues, recordConsole, screenshots, until,
} from "./lib.mjs";

const server = new Server("floorcast-ops.log");
const consoleLines = [];
let context = null;
let dataDir = null;
let userDataDir = null;
const SESSION = "hall-b";

async function row(page) {
  return page.evaluate((id) => {
    const tr = document.querySelector(`#sessions tr[data-session="${id}"]`);
    return tr ? [...tr.querySelectorAll("td")].map((td) => td.textContent) : null;
  }, SESSION);
}

describe("the operations page", { timeout: 150_000 }, () => {
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    dataDir = await mkdtemp(join(tmpdir(), "floorcast-data-"));
    userDataDir = await mkdtemp(join(tmpdir(), "floorcast-chromium-"));
    await server.start(dataDir);
    const operator = mintToken({ role: "operator", session: "*", name: "Ops" });
    const r = await http(server.base, "/api/sessions", { method: "POST", token: operator, body: { id: SESSION, title: "Hall B" } });
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
    if (consoleLines.length) await writeFile(join(ARTIFACTS, "browser-console-ops.log"), `${consoleLines.join("\n")}\n`);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  });

  it("shows viewers and media flowing as they happen", async () => {
    const ops = await context.newPage();
    recordConsole(ops, "ops", consoleLines);
    const operator = mintToken({ role: "operator", session: "*", name: "Ops desk" });
    await ops.goto(`${server.base}/ops?token=${operator}`);
    const idle = await until("the session row", 5000, async () => {
      const r = await row(ops);
      return { ok: r !== null, r };
    });
    assert.equal(idle.r[1], "0", "no viewers yet");

    const publisher = await context.newPage();
    recordConsole(publisher, "ops-publish", consoleLines);
    const venue = mintToken({ role: "venue", session: SESSION, name: "Hall B mixer" });
    await publisher.goto(`${server.base}/publish/${SESSION}?token=${venue}`);
    await publisher.getByRole("button", { name: "Start publishing" }).click();
    const viewer = await context.newPage();
    recordConsole(viewer, "ops-watch", consoleLines);
    const v = mintToken({ role: "hub", session: SESSION, name: "Kigali hub", hub: "Kigali" });
    await viewer.goto(`${server.base}/watch/${SESSION}?token=${v}`);

    const busy = await until("one viewer, one publisher and media in", PUBLISH_TIMEOUT_MS + MEDIA_TIMEOUT_MS, async () => {
      const r = await row(ops);
      const tiles = await ops.$$eval(".tile", (ts) => Object.fromEntries(ts.map((t) => [t.querySelector(".name").textContent, t.querySelector(".value").textContent])));
      const mediaIn = parseFloat(tiles["Media in"]);
      // Columns: session, viewers, hubs, worst loss, publishers, …; the loss is known once
      // the viewer's first receiver report is in.
      return { ok: r && r[1] === "1" && r[2] === "1" && r[3] === "0.0 %" && r[4] === "1" && mediaIn > 0.05, r, tiles };
    }, 500);
    assert.ok(busy.ok);
    assert.match(busy.tiles["Media out"], /Mbit\/s/);
    assert.equal(busy.tiles["Hubs watching"], "1");
    for (const colorScheme of ["light", "dark"]) {
      await ops.emulateMedia({ colorScheme });
      assert.deepEqual(await contrastIssues(ops), [], `WCAG AA text contrast, ${colorScheme} scheme`);
    }
    await ops.emulateMedia({ colorScheme: "light" });
    await screenshots(ops, "ops");
    await viewer.close();
    await publisher.close();
    await ops.close();
  });

  it("explains a missing or wrong token in words", async () => {
    const page = await context.newPage();
    await page.goto(`${server.base}/ops`);
    assert.match(await page.locator("#error").textContent(), /operator token/);
    const expired = mintToken({ role: "operator", session: "*", name: "Old", ttlSeconds: -60 });
    await page.goto(`${server.base}/ops?token=${expired}`);
    const msg = await until("the server's words", 5000, async () => {
      const visible = await page.locator("#error").isVisible();
      return { ok: visible, text: await page.locator("#error").textContent() };
    });
    assert.match(msg.text, /expired/i);
    await page.close();
  });
});
