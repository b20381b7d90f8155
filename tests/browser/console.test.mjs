// The web console in a real browser (Chromium through playwright-core):
// sign in with a token, test wrong and right Wiz credentials, connect,
// scan with live progress, compare the findings counts the page shows with
// the API's, filter by severity, and disconnect.
//
// Run by scripts/browser-test.sh, which starts the Wiz simulator and
// `scanner-host serve --listen` on 127.0.0.1 and passes their addresses
// and a token in the environment. Plain node, no test framework: every
// step prints `ok - ...`; the first failure prints what was expected, saves
// a screenshot and exits non-zero. Every wait is on the page's state,
// never a fixed sleep.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`console.test.mjs: the environment variable ${name} is not set (run scripts/browser-test.sh)`);
    process.exit(2);
  }
  return value;
}

const base = required("CONSOLE_URL").replace(/\/$/, "");
const token = required("CONSOLE_TOKEN");
const wiz = {
  "api-endpoint": required("WIZ_API_ENDPOINT"),
  "auth-url": required("WIZ_AUTH_URL"),
  "client-id": required("WIZ_CLIENT_ID"),
  "client-secret": required("WIZ_CLIENT_SECRET"),
};
const screenshot = resolve(process.env.CONSOLE_SCREENSHOT || "target/browser/console.png");
const tenant = "browser-acme";
// A scan of the simulator takes seconds; everything else is quick.
const SCAN_TIMEOUT_MS = 180_000;
const STEP_TIMEOUT_MS = 30_000;

/** A failed expectation, with what was expected and what was there. */
class Failure extends Error {}

function expect(condition, message) {
  if (!condition) throw new Failure(message);
}

// The API's own answer, with the same token, from node.
async function apiGet(path) {
  const response = await fetch(base + path, { headers: { Authorization: `Bearer ${token}` } });
  const text = await response.text();
  return { status: response.status, json: text && response.headers.get("content-type")?.startsWith("application/json") ? JSON.parse(text) : null, text };
}

// How many findings `query` lists, every page walked.
async function apiCount(query) {
  let count = 0;
  let cursor = null;
  for (;;) {
    const params = new URLSearchParams(query);
    params.set("limit", "1000");
    if (cursor) params.set("cursor", cursor);
    const answer = await apiGet(`/v1/findings?${params}`);
    expect(answer.status === 200, `GET /v1/findings?${params} answered ${answer.status}: ${answer.text}`);
    count += answer.json.findings.length;
    cursor = answer.json.next;
    if (!cursor) return count;
  }
}

async function waitForReady() {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  for (;;) {
    try {
      const response = await fetch(`${base}/readyz`);
      if (response.status === 200) return;
    } catch (e) {
      // Not listening yet.
    }
    expect(Date.now() < deadline, `${base}/readyz did not answer 200 within ${STEP_TIMEOUT_MS} ms`);
    // Waiting on the server, not the page: a short pause between polls.
    await new Promise((r) => setTimeout(r, 100));
  }
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  // playwright-core gives the browser a new temporary profile (user-data
  // dir) and deletes it at close: nothing carries over between runs.
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
  ],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(STEP_TIMEOUT_MS);

// Script errors and policy violations fail the test: the page must run
// under its Content-Security-Policy and Trusted Types without tripping.
const problems = [];
page.on("pageerror", (error) => problems.push(`uncaught error in the page: ${error.message}`));
page.on("console", (message) => {
  const text = message.text();
  if (message.type() === "error" && /Content Security Policy|Trusted Type|Refused to/i.test(text)) {
    problems.push(`policy violation: ${text}`);
  }
});

let current = "start";
async function step(name, work) {
  current = name;
  await work();
  expect(problems.length === 0, problems.join("\n"));
  console.log(`ok - ${name}`);
}

// Waits until `selector` (CSS with Playwright's :has-text) matches an
// element, and returns its text; on timeout, fails naming what was awaited
// and what `shownSelector` showed instead. Playwright's selector engine
// does the waiting: nothing is evaluated as a string in the page, which
// its policy would refuse.
async function waitFor(selector, what, shownSelector, timeout = STEP_TIMEOUT_MS) {
  const locator = page.locator(selector).first();
  try {
    await locator.waitFor({ state: "attached", timeout });
  } catch (e) {
    const shown = await page.locator(shownSelector).first().textContent({ timeout: 1000 }).catch(() => "(absent)");
    throw new Failure(`${what}: waited ${timeout} ms for ${selector}; ${shownSelector} shows: ${JSON.stringify(shown)}`);
  }
  return locator.textContent();
}

// The count the findings browser shows once it is done counting.
async function shownCount(what) {
  await waitFor('#findings-count:not([data-count=""])', what, "#findings-count");
  const value = await page.locator("#findings-count").getAttribute("data-count");
  expect(/^\d+$/.test(value), `${what}: the page shows ${JSON.stringify(value)}, not a count`);
  return Number(value);
}

// The field of a setting, by its key.
const setting = (key) => page.locator(`#settings-fields input[data-key="${key}"]`);
// The block of a setting: its label, input, help and error.
const settingBlock = (key) => page.locator("#settings-fields .field", { has: page.locator(`input[data-key="${key}"]`) });
// The error shown next to a setting's input.
const settingError = (key) => settingBlock(key).locator(".field-error");

try {
  await step("the host is ready", waitForReady);

  await step("the console loads and asks for a token", async () => {
    const response = await page.goto(`${base}/`);
    expect(response.status() === 200, `GET / answered ${response.status()}`);
    const policy = response.headers()["content-security-policy"] || "";
    expect(policy.includes("default-src 'self'"), `Content-Security-Policy of /: ${JSON.stringify(policy)}`);
    await page.locator("#token").waitFor({ state: "visible" });
    expect((await page.locator("#token").getAttribute("type")) === "password", "the token input is not a password input");
  });

  await step("a token signs in (keyboard only) and the plugins are listed", async () => {
    await page.locator("#token").fill(token);
    await page.locator("#token").press("Enter");
    await page.locator("#app").waitFor({ state: "visible" });
    const stored = await page.evaluate(() => sessionStorage.getItem("scanner-host-token"));
    expect(stored === token, "the token is not kept in sessionStorage");
    const plugins = await page.locator("#plugin option").evaluateAll((options) => options.map((o) => o.value));
    expect(plugins.includes("wiz"), `the plugin list holds ${JSON.stringify(plugins)}, not wiz`);
  });

  await step("picking Wiz shows its fields: secrets as passwords, switches as checkboxes, help and required marks", async () => {
    await page.locator("#plugin").selectOption("wiz");
    await setting("client-secret").waitFor();
    expect((await setting("client-secret").getAttribute("type")) === "password", "client-secret is not a password input");
    expect((await setting("scan-sca").getAttribute("type")) === "checkbox", "scan-sca is not a checkbox");
    const label = settingBlock("client-id").locator("label");
    expect((await label.textContent()).includes("(required)"), "client-id is not marked required");
    const help = settingBlock("client-id").locator(".help");
    expect((await help.textContent()).trim().length > 0, "client-id shows no help text");
    // Every input of the page has a label.
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll("input, select")]
        .filter((input) => input.labels === null || input.labels.length === 0)
        .map((input) => input.id || input.outerHTML.slice(0, 60)),
    );
    expect(unlabelled.length === 0, `inputs without a label: ${unlabelled.join(", ")}`);
  });

  await step("Test with a wrong client secret shows the credentials error next to the secret", async () => {
    await page.locator("#tenant").fill(tenant);
    for (const [key, value] of Object.entries(wiz)) {
      await setting(key).fill(key === "client-secret" ? `${value}-wrong` : value);
    }
    // The simulator listens on 127.0.0.1: its origins and the private
    // network are granted explicitly.
    await page.locator("#allow-requested").check();
    await page.locator("#allow-private-network").check();
    await page.locator("#test").click();
    const next = `#settings-fields .field:has(input[data-key="client-secret"]) .field-error`;
    const shown = await waitFor(`${next}:has-text("authentication-failed")`, "the credentials error next to the client secret", "#live");
    expect(shown.includes("authentication-failed"), `next to the secret: ${shown}`);
    const atEndpoint = await settingError("api-endpoint").textContent();
    expect(atEndpoint === "", `a credentials error is also shown next to the API endpoint: ${atEndpoint}`);
    expect(
      (await setting("client-secret").getAttribute("aria-invalid")) === "true",
      "the secret input is not marked aria-invalid",
    );
    const live = await page.locator("#live").textContent();
    expect(live.includes("authentication-failed"), `the live region says: ${live}`);
  });

  await step("the right secret connects the tenant", async () => {
    await setting("client-secret").fill(wiz["client-secret"]);
    await page.locator("#connect-button").click();
    await waitFor(`#connect-result:has-text("Connected ${tenant}")`, "the connect result", "#live");
    await page.locator(`#integrations-body tr[data-tenant="${tenant}"]`).waitFor();
    const state = await page.locator(`#integrations-body tr[data-tenant="${tenant}"] td.state`).textContent();
    expect(state.includes("connected"), `the status row says: ${state}`);
    const secretLeft = await setting("client-secret").inputValue();
    expect(secretLeft === "", "the secret stays in the form after connecting");
  });

  await step("a scan shows its progress live and finishes", async () => {
    // Every state and text the scan line goes through.
    await page.evaluate(() => {
      const line = document.getElementById("scan-state");
      window.scanSeen = [];
      new MutationObserver(() => window.scanSeen.push([line.dataset.state, line.textContent])).observe(line, {
        attributes: true,
        childList: true,
        characterData: true,
        subtree: true,
      });
    });
    await page.locator("#scan-tenant").selectOption(tenant);
    await page.locator("#start-scan").click();
    await page.locator("#scan-progress").waitFor({ state: "visible" });
    const ended = ["completed", "failed", "interrupted", "unknown"].map((s) => `[data-state="${s}"]`).join(",");
    await waitFor(`#scan-state:is(${ended})`, "the scan's end", "#scan-state", SCAN_TIMEOUT_MS);
    const state = await page.locator("#scan-state").getAttribute("data-state");
    const text = await page.locator("#scan-state").textContent();
    expect(state === "completed", `the scan ended ${state}: ${text}`);
    const seen = await page.evaluate(() => window.scanSeen);
    const live = seen.filter(([s, t]) => s === "running" && /records/.test(t));
    expect(live.length > 0, `no live progress was shown; the scan line went through ${JSON.stringify(seen)}`);
    console.log(`   ${live.length} progress updates, last: ${live[live.length - 1][1]}`);
  });

  let total;
  await step("the findings count shown equals the API's", async () => {
    await page.locator("#filter-unmapped").check();
    await page.locator("#apply-filters").click();
    const shown = await shownCount("the findings count");
    total = await apiCount({ status: "open", "include-unmapped": "true" });
    expect(total > 0, "the API lists no findings after the scan");
    expect(shown === total, `the page shows ${shown} findings, the API lists ${total}`);
    const rows = await page.locator("#findings-body tr").count();
    expect(rows === Math.min(total, 50), `the first page shows ${rows} rows of ${total}`);
  });

  await step("Next page follows the API's cursor", async () => {
    if (total <= 50) {
      console.log(`   (${total} findings: one page, no Next)`);
      expect(await page.locator("#findings-next").isHidden(), "Next page is offered on the only page");
      return;
    }
    const first = await page.locator("#findings-body tr").first().textContent();
    await page.locator("#findings-next").click();
    await waitFor('#live:has-text("Showing findings from 51")', "the second page", "#findings-error");
    const second = await page.locator("#findings-body tr").first().textContent();
    expect(second !== first, `the second page starts with the first page's row: ${first}`);
    const rows = await page.locator("#findings-body tr").count();
    expect(rows === Math.min(total - 50, 50), `the second page shows ${rows} rows of ${total}`);
  });

  await step("filtering by severity changes the count to the API's for that filter", async () => {
    await page.locator("#filter-severity").selectOption("critical");
    await page.locator("#apply-filters").click();
    const expected = await apiCount({ status: "open", severity: "critical", "include-unmapped": "true" });
    expect(expected !== total, `the simulator's findings are all critical (${total}): the filter shows nothing`);
    await waitFor(`#findings-count[data-count="${expected}"]`, `the count for critical findings (the API lists ${expected})`, "#findings-count");
    const severities = await page.locator("#findings-body td.severity").allTextContents();
    expect(severities.every((s) => s === "critical"), `rows of other severities: ${severities.join(", ")}`);
  });

  await step(`the screenshot is saved`, async () => {
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`   screenshot: ${screenshot}`);
  });

  await step("disconnect (confirmed by keyboard) removes the integration", async () => {
    await page.getByRole("button", { name: `Disconnect ${tenant}` }).click();
    const confirm = page.getByRole("button", { name: "Yes, disconnect" });
    await confirm.waitFor();
    expect(await confirm.evaluate((b) => b === document.activeElement), "the confirmation does not have the focus");
    await page.keyboard.press("Enter");
    await page.locator(`#integrations-body tr[data-tenant="${tenant}"]`).waitFor({ state: "detached" });
    const answer = await apiGet(`/v1/integrations/${tenant}`);
    expect(answer.status === 404, `GET /v1/integrations/${tenant} after disconnecting answered ${answer.status}: ${answer.text}`);
  });
} catch (error) {
  const failure = resolve(dirname(screenshot), "console-failure.png");
  try {
    mkdirSync(dirname(failure), { recursive: true });
    await page.screenshot({ path: failure, fullPage: true });
    console.error(`screenshot of the failure: ${failure}`);
  } catch (e) {
    // The page may be gone; the message below is what matters.
  }
  console.error(`not ok - ${current}`);
  console.error(`  ${error instanceof Failure ? error.message : error.stack || error}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log("browser test passed");
