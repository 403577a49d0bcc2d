// Drives the try-out page in headless Chromium: enter the token, upload one
// image, wait for the bars of both models, check them, keep a screenshot.
// Usage: node tryout.mjs URL TOKEN IMAGE SCREENSHOT TOPK
// Exits 0 when the page behaved, 1 with the reason otherwise.
import { chromium } from "playwright-core";

const [url, token, image, screenshot, topk] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const problems = [];

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 620 } });
  const origin = new URL(url).origin;
  page.on("request", (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) {
      problems.push(`the page fetched ${r.url()} (everything must come from the server)`);
    }
  });
  page.on("console", (m) => m.type() === "error" && problems.push(`console error: ${m.text()}`));
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));

  await page.goto(url);
  await page.fill("#token", token);
  await page.click("#save-token");
  await page.waitForFunction(() => document.querySelectorAll("#large-model option").length > 0);
  await page.selectOption("#topk", topk);
  await page.setInputFiles("#file", image);
  for (const role of ["large", "small"]) {
    const list = `#${role}-result`;
    await page.waitForSelector(`${list}[data-done]`, { timeout: 15000 });
    const done = await page.getAttribute(list, "data-done");
    const bars = await page.locator(`${list} li`).count();
    const latency = await page.textContent(`#${role}-latency`);
    if (done !== "true") problems.push(`${role}: ${await page.textContent(list)}`);
    if (bars !== Number(topk)) problems.push(`${role}: ${bars} bars, expected ${topk}`);
    if (!/\d ms round trip/.test(latency)) problems.push(`${role}: latency reads ${JSON.stringify(latency)}`);
    const width = await page.locator(`${list} .fill`).first().evaluate((e) => e.getBoundingClientRect().width);
    if (!(width > 0)) problems.push(`${role}: the top bar has no width`);
  }
  const roles = await page.$$eval("select[aria-label] option:checked", (os) => os.map((o) => o.textContent));
  if (!roles[0].includes("(large)") || !roles[1].includes("(small)")) {
    problems.push(`columns show ${JSON.stringify(roles)}, expected the large then the small model`);
  }
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (err) {
  problems.push(String(err));
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`ok: screenshot in ${screenshot}`);
