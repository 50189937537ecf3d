/**
 * The status page in a real headless Chromium (Debian's, driven by playwright-core), against a
 * real appliance watching a veth with real traffic. Chromium runs inside the test namespace,
 * where the appliance's API listens. Saves a screenshot to test-artifacts/.
 * MAPE-K runs in its default observe mode with a low flood floor, so that a short UDP flood from
 * the other namespace makes a decision the page must show.
 */
import assert from "node:assert/strict";
import { type Browser, chromium } from "playwright-core";
import { Daemon } from "../helpers/daemon.ts";
import { trafficCommand, udpSend, VethPair } from "../helpers/netns.ts";

const ARTIFACTS = new URL("../../test-artifacts/", import.meta.url).pathname;

/** Debian's Chromium inside a namespace (a wrapper playwright starts as if it were the
 * browser), closed and its wrapper removed on dispose. */
async function chromiumIn(ns: string): Promise<Browser & AsyncDisposable> {
  const dir = Deno.makeTempDirSync({ prefix: "x0t-chromium-" });
  const wrapper = `${dir}/chromium`;
  Deno.writeTextFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${ns} /usr/bin/chromium "$@"\n`);
  Deno.chmodSync(wrapper, 0o755);
  try {
    const browser = await chromium.launch({
      executablePath: wrapper,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    return Object.assign(browser, {
      async [Symbol.asyncDispose]() {
        await browser.close();
        Deno.removeSync(dir, { recursive: true });
      },
    });
  } catch (e) {
    Deno.removeSync(dir, { recursive: true });
    throw e;
  }
}

Deno.test("status page: live charts and flows, MAPE-K decisions, three languages, reasons, nothing external", async () => {
  using v = new VethPair(90);
  await using d = new Daemon(v.b, [
    "--interface",
    v.b.dev,
    "--interface",
    "x0absent",
    "--mapek.flood-pps",
    "2000",
  ]);
  await d.start();
  await using browser = await chromiumIn(v.b.ns);
  {
    const page = await browser.newPage({ locale: "en-US", viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    const requests: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") errors.push(`${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
    page.on("request", (r) => requests.push(r.url()));
    await page.goto(d.base + "/");
    const fcp = await page.evaluate(() =>
      new Promise<number>((resolve) => {
        const e = performance.getEntriesByName("first-contentful-paint")[0];
        if (e) return resolve(e.startTime);
        new PerformanceObserver((l) => resolve(l.getEntries()[0].startTime)).observe({
          type: "paint",
          buffered: true,
        });
      })
    );
    // Page weight: the document, script and style as decoded (uncompressed); the API's answers
    // (events, MAPE-K polls) left out.
    const bytes = await page.evaluate(() =>
      [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
        .filter((e) => !e.name.includes("/api/v1/"))
        .reduce((a, e) => a + (e as unknown as { decodedBodySize: number }).decodedBodySize, 0)
    );
    console.log(`page weight ${bytes} bytes, first contentful paint ${fcp.toFixed(0)} ms`);
    assert.ok(bytes <= 100 * 1024, `page weight ${bytes} bytes`);

    // The interface chart and the flows table move with traffic.
    const path = page.locator(`svg[data-iface="${v.b.dev}"] path[data-series="rx"]`);
    await path.waitFor({ timeout: 10_000 });
    await page.waitForTimeout(1500);
    const before = await path.getAttribute("d");
    udpSend(v.a.ns, v.b.ip4, 7000, 2000, 1000);
    for (let i = 0; (await path.getAttribute("d")) === before; i++) {
      assert.ok(i < 100, "the rx chart did not move with the traffic");
      await page.waitForTimeout(100);
    }
    await page.locator("#flows").getByText("7000").first().waitFor({ timeout: 10_000 });

    // MAPE-K: the mode up front, then a UDP flood's decision and its planned (not executed) action.
    const modeName = page.locator("#mapek-mode-name");
    await modeName.waitFor({ timeout: 10_000 });
    assert.equal(await page.locator("#mapek-mode").getAttribute("data-mode"), "observe");
    assert.equal((await modeName.textContent())?.trim(), "observe");
    assert.match(
      (await page.locator("#mapek-mode-hint").textContent()) ?? "",
      /nothing is executed/,
    );
    const flood = trafficCommand(v.a.ns, "udp-rate", v.a.ip4, v.b.ip4, 9999, 20000, 3).output();
    const decision = page
      .locator('#mapek-decisions > li[data-symptom="source_flood"][data-outcome="observed"]')
      .first();
    try {
      await decision.waitFor({ timeout: 15_000 });
    } finally {
      const out = await flood;
      assert.ok(out.success, `udp-rate: ${new TextDecoder().decode(out.stderr)}`);
    }
    assert.equal((await decision.locator(".outcome").textContent())?.trim(), "observed");
    const decided = await decision.innerText();
    assert.ok(decided.includes("source flood") && decided.includes(v.a.ip4), decided);
    assert.match(decided, /would rate-limit/, "the reason sentence");
    assert.match(
      decided,
      /packets\/s \(threshold [\d,.]+; (baseline learning|baseline median [\d,.]+ over [\d,]+ samples); window /,
      "the evidence line",
    );
    const planned = page
      .locator('#mapek-actions-body tr[data-kind="rate_limit"][data-state="observed"]')
      .filter({ hasText: v.a.ip4 });
    await planned.waitFor({ timeout: 10_000 });
    assert.match(await planned.innerText(), /observed[\s\S]*\d+:\d\d/, "state and time left");

    // A degraded component shows its reason.
    await page.getByText(/not present/).first().waitFor({ timeout: 5000 });

    // Switching language changes the texts.
    const en = await page.locator("#title").textContent();
    for (const lang of ["es", "ru"]) {
      await page.selectOption("#lang", lang);
      const t = await page.locator("#title").textContent();
      assert.notEqual(t, en, `title in ${lang}`);
      assert.equal(await page.locator("html").getAttribute("lang"), lang);
      // The MAPE-K mode and the decision's outcome badge: [mode, outcome].
      const mapekText: Record<string, [string, string]> = {
        es: ["observación", "observada"],
        ru: ["наблюдение", "наблюдение"],
      };
      assert.equal((await modeName.textContent())?.trim(), mapekText[lang][0], `mode in ${lang}`);
      const badge = await decision.locator(".outcome").textContent();
      assert.equal(badge?.trim(), mapekText[lang][1], `outcome in ${lang}`);
    }
    await page.selectOption("#lang", "en");
    Deno.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}status-page.png`, fullPage: true });

    assert.deepEqual(errors, [], "console errors");
    assert.equal(await page.locator("[data-error]").count(), 0, "a section failed to render");
    const outside = requests.filter((u) => !u.startsWith(d.base));
    assert.deepEqual(outside, [], "requests outside the appliance");
  }
});

Deno.test("status page: when reads need the token, it asks once and keeps it for the tab only", async () => {
  using v = new VethPair(84);
  await using d = new Daemon(v.b, ["--interface", v.b.dev, "--api.auth", "all"]);
  await d.start();
  await d.until("ready", () => d.request("/readyz").status === 200 || undefined);
  await using browser = await chromiumIn(v.b.ns);
  const context = await browser.newContext({ locale: "en-US" });
  const page = await context.newPage();
  const urls: string[] = [];
  page.on("request", (r) => urls.push(r.url()));
  await page.goto(d.base + "/");
  const form = page.locator("#token-form");
  await form.waitFor({ state: "visible", timeout: 10_000 });
  assert.match((await page.locator("#conn-text").textContent()) ?? "", /needs its API token/);
  await page.fill("#token", d.token);
  await page.click("#token-form button");
  await page.locator(`svg[data-iface="${v.b.dev}"]`).waitFor({ timeout: 10_000 });
  assert.equal(await form.isVisible(), false);
  assert.equal(await page.locator("#conn").getAttribute("data-state"), "open");
  // Kept for this tab: a reload asks nothing; the token never appears in the page's address.
  await page.reload();
  await page.locator(`svg[data-iface="${v.b.dev}"]`).waitFor({ timeout: 10_000 });
  assert.equal(await form.isVisible(), false);
  assert.ok(!page.url().includes(d.token));
  // Not for another tab's session: a new context asks again.
  const other = await (await browser.newContext()).newPage();
  await other.goto(d.base + "/");
  await other.locator("#token-form").waitFor({ state: "visible", timeout: 10_000 });
  // Only the event stream carried the token in its address (EventSource sends no header).
  const inUrl = urls.filter((u) => u.includes(d.token));
  assert.ok(inUrl.length > 0 && inUrl.every((u) => u.includes("/api/v1/events?")), inUrl.join());
});
