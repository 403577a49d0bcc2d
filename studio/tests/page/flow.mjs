// The studio's workflow in headless Chromium, as a user goes through it:
// log in with the printed URL, add a dataset and read its check report,
// queue a joint training with tiny settings, watch its progress and curves
// arrive over the event stream, see it finish, mark the best checkpoint;
// then evaluate it on test, export it, serve it and try an image
// (deploy_steps.mjs).
// Each step leaves a screenshot NN-step.png in ARTIFACTS.
//
// Usage: node flow.mjs URL TOKEN DATASET ARTIFACTS (DATASET needs a test.txt)
// Exits 0 when every step behaved, 1 with the reasons otherwise.
//
// More steps (evaluate on test, export, try an image) go at the end of
// STEPS: each is [name, async (ctx) => {...}], may read what earlier steps
// left in ctx.state (datasetId, jobId, nickname), and should throw (or
// push to ctx.problems) when the page misbehaves.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

import { deploySteps } from "./deploy_steps.mjs";

const [url, token, dataset, artifacts] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const problems = [];

/// The form's tiny settings: a joint run of a few seconds on a CPU.
const TINY = {
  "large.epochs": "2",
  "large.ssl.epochs": "1",
  "large.batch_size": "8",
  "large.ssl.mu": "1",
  "large.log_interval": "1",
  "large.ssl.p_cutoff": "0.5",
  "small.epochs": "2",
  "small.batch_size": "8",
  "small.log_interval": "1",
  "data.workers": "1",
  "run.device": "cpu",
};

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

/// The curves' row counts the page has drawn (the script keeps them current).
async function curveRows(page) {
  const rows = await page.getAttribute("#curves", "data-rows");
  return (rows || "").split(",").filter(Boolean).map(Number).reduce((a, b) => a + b, 0);
}

const STEPS = [
  ["login", async ({ page }) => {
    await page.goto(`${url}?token=${token}`);
    expect(!page.url().includes(token), `the token stayed in the address bar: ${page.url()}`);
    await page.waitForSelector("h1:has-text('Datasets')");
  }],

  ["check-report", async ({ page, state }) => {
    await page.fill("input[name=path]", dataset);
    await page.click("button:has-text('Add and check')");
    await page.waitForURL(/\/datasets\/\d+$/, { timeout: 30000 });
    state.datasetId = page.url().split("/").pop();
    await page.waitForSelector(".badge.ok:has-text('passed')");
    const text = await page.textContent("main");
    expect(/dark/.test(text) && /bright/.test(text), "the report names no classes");
  }],

  ["new-training", async ({ page, state }) => {
    await page.goto(`${url}train/new?dataset=${state.datasetId}`);
    await page.selectOption("select[name=mode]", "joint");
    for (const [key, value] of Object.entries(TINY)) await page.fill(`input[name="${key}"]`, value);
    await page.waitForFunction(() => /batch_size: 8/.test(document.querySelector("#preview")?.textContent || ""));
    const yaml = await page.textContent("#preview");
    expect(yaml.includes("log_interval: 1"), `the resolved YAML lacks the form's values:\n${yaml}`);
    // The same YAML as a file to save.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.click("button:has-text('Download the YAML')"),
    ]);
    const saved = readFileSync(await download.path(), "utf8");
    expect(download.suggestedFilename() === "semiclass-joint.yaml", `saved as ${download.suggestedFilename()}`);
    const shown = await page.textContent("#preview pre.yaml");
    expect(saved.trim() === shown.trim(), `the downloaded YAML is not the one shown:\n${saved}`);
  }],

  ["run-in-progress", async ({ page, state }) => {
    await page.click("button:has-text('Queue the training')");
    await page.waitForURL(/\/jobs\/\d+$/, { timeout: 15000 });
    state.jobId = page.url().split("/").pop();
    await page.evaluate(() => (window.__notReloaded = true));
    state.rowsAtLoad = await curveRows(page);
    // Rows and stages arrive over the stream: the page is not reloaded.
    await page.waitForSelector("#curves .chart .uplot", { timeout: 90000 });
    await page.waitForSelector("#run tr[data-stage]", { timeout: 30000 });
  }],

  ["run-finished", async ({ page, state }) => {
    await page.waitForSelector("#status .badge.finished", { timeout: 100000 });
    for (const stage of ["large/supervised", "large/ssl", "small/distill", "small/finetune"]) {
      await page.waitForSelector(`#run tr[data-stage="${stage}"][data-done=true]`, { timeout: 15000 });
    }
    await page.waitForSelector(".summary[data-model=small]");
    const rows = await curveRows(page);
    expect(rows > state.rowsAtLoad, `the curves did not grow: ${state.rowsAtLoad} rows at load, ${rows} now`);
    const charts = await page.locator("#curves .chart").count();
    expect(charts === 6, `${charts} charts, expected loss, accuracy and mask ratio of both models`);
    expect(await page.evaluate(() => window.__notReloaded === true), "the page was reloaded");
    const log = await page.textContent("#log");
    expect(/small: best/.test(log), `the log did not reach the end:\n${log.slice(-800)}`);
    await page.evaluate(() => window.scrollTo(0, 0));
  }],

  ["marks", async ({ page, state }) => {
    state.nickname = "flow-best";
    await page.click('tr[data-file="large/checkpoints/best.safetensors"] a:has-text("Mark")');
    await page.waitForURL(/\/marks\?checkpoint=\d+$/);
    await page.fill("#mark-form input[name=nickname]", state.nickname);
    await page.fill("#mark-form input[name=note]", "the browser test's best large model");
    await page.click("#mark-form button:has-text('Mark')");
    await page.waitForSelector(`tr[data-nickname="${state.nickname}"]`, { timeout: 15000 });
    const history = await page.textContent(`details[data-nickname="${state.nickname}"]`);
    expect(/mark/.test(history), `no history for @${state.nickname}: ${history}`);
  }],
];

STEPS.push(...deploySteps(url, dataset));

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const origin = new URL(url).origin;
  page.on("request", (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) {
      problems.push(`the page fetched ${r.url()} (everything must come from the studio)`);
    }
  });
  page.on("console", (m) => m.type() === "error" && problems.push(`console error on ${page.url()}: ${m.text()}`));
  page.on("pageerror", (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
  const ctx = { page, state: {}, problems };
  for (const [i, [name, step]] of STEPS.entries()) {
    const started = Date.now();
    try {
      await step(ctx);
    } catch (err) {
      problems.push(`step ${name}: ${err.message || err}`);
    }
    const shot = `${artifacts}/${String(i + 1).padStart(2, "0")}-${name}.png`;
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`step ${name}: ${((Date.now() - started) / 1000).toFixed(1)} s, ${shot}`);
    if (problems.length) break;
  }
} catch (err) {
  problems.push(String(err));
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log("ok: every step behaved");
