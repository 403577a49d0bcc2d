// The evaluation and deploy steps in headless Chromium, standing alone
// until flow.mjs (the workflow up to a marked checkpoint) takes them at
// the end of its STEPS: this script only logs in, adds the dataset and
// trains a tiny joint run through the pages first. Each deploy step
// leaves a screenshot NN-step.png in ARTIFACTS.
//
// Usage: node deploy_flow.mjs URL TOKEN DATASET ARTIFACTS
// (DATASET needs a test.txt.) Exits 0 when every step behaved, 1 with the
// reasons otherwise.
import { chromium } from "playwright-core";

import { deploySteps } from "./deploy_steps.mjs";

const [url, token, dataset, artifacts] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const problems = [];

/// flow.mjs's tiny settings: a joint run of a few seconds on a CPU whose
/// teacher is good enough to distill.
const TINY = {
  mode: "joint",
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

/// What flow.mjs's own steps leave: a dataset and a finished joint run.
async function trained({ page, state }) {
  await page.goto(`${url}?token=${token}`);
  await page.fill("input[name=path]", dataset);
  await page.click("button:has-text('Add and check')");
  await page.waitForURL(/\/datasets\/\d+$/, { timeout: 30000 });
  state.datasetId = page.url().split("/").pop();
  await page.goto(`${url}train/new?dataset=${state.datasetId}`);
  for (const [key, value] of Object.entries(TINY)) {
    if (key === "mode") await page.selectOption("select[name=mode]", value);
    else await page.fill(`input[name="${key}"]`, value);
  }
  await page.click("button:has-text('Queue the training')");
  await page.waitForURL(/\/jobs\/\d+$/, { timeout: 15000 });
  await page.waitForSelector("#status .badge.finished, #status .badge.failed", { timeout: 100000 });
  const failed = await page.locator("#status .badge.failed").count();
  if (failed) throw new Error(`the training failed:\n${(await page.textContent("main")).slice(-1500)}`);
}

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
  page.on("response", (r) => r.status() >= 400 && console.log(`${r.status()} ${r.url()}`));
  page.on("pageerror", (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
  page.on("download", (d) => d.cancel());
  const ctx = { page, state: {}, problems };
  const started = Date.now();
  try {
    await trained(ctx);
  } finally {
    await page.screenshot({ path: `${artifacts}/00-trained.png`, fullPage: true });
  }
  console.log(`trained: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  for (const [i, [name, step]] of deploySteps(url, dataset).entries()) {
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
