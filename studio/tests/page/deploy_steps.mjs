// The studio's evaluation and deploy steps, for the end of flow.mjs's
// STEPS (`STEPS.push(...deploySteps(url, dataset))`): evaluate on test and
// read the report, export for the CPU, serve the package, try an image on
// it, stop serving. They read ctx.state.datasetId and, when a step before
// marked one, ctx.state.nickname (else the newest best.safetensors is
// used); the dataset needs a test.txt.

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

/// The checkpoints offered by the form: the large model's (the mark when
/// there is one, else the newest large best) and the small model's best.
async function checkpoints(page, form, state) {
  const values = await page.$$eval(`${form} select[name=checkpoint] option`, (os) => os.map((o) => o.value));
  const large = state.nickname
    ? values.find((v) => v === `@${state.nickname}`)
    : values.find((v) => /\/large\/checkpoints\/best\.safetensors$/.test(v)) ||
      values.find((v) => v.endsWith("/best.safetensors"));
  expect(large, `no checkpoint to choose among ${values.join(", ")}`);
  const small = values.find((v) => /\/small\/checkpoints\/best\.safetensors$/.test(v));
  return { large, small };
}

/// Waits on a job's page until it finished; throws with its log otherwise.
async function jobFinishes(page, timeout) {
  await page.waitForURL(/\/jobs\/\d+$/, { timeout: 15000 });
  await page.waitForSelector("#status .badge.finished, #status .badge.failed", { timeout });
  const failed = await page.locator("#status .badge.failed").count();
  expect(!failed, `the job failed:\n${(await page.textContent("main")).slice(-1500)}`);
}

export function deploySteps(url, dataset) {
  return [
    ["evaluate", async ({ page, state }) => {
      await page.goto(`${url}evals`);
      const { large } = await checkpoints(page, "#new-eval", state);
      await page.selectOption("#new-eval select[name=checkpoint]", large);
      await page.selectOption("#new-eval select[name=dataset]", state.datasetId);
      await page.selectOption("#new-eval select[name=source]", "test");
      await page.click("#new-eval button:has-text('Evaluate')");
      await jobFinishes(page, 60000);
      const log = await page.textContent("main");
      expect(/top-1/.test(log), `the evaluation printed no top-1:\n${log.slice(-800)}`);
      // The job's page links the report once it finished.
      await page.waitForSelector("#job-result a:has-text('evaluation report')", { timeout: 10000 });
    }],

    ["eval-report", async ({ page }) => {
      await page.goto(`${url}evals?sort=started&dir=desc`);
      await page.click("#history tbody tr:first-child td:first-child a");
      await page.waitForURL(/\/evals\/\d+$/);
      const top1 = await page.textContent("#top1");
      expect(/^\d+\.\d\d%$/.test(top1.trim()), `top-1 reads ${top1}`);
      const classes = await page.textContent("#classes");
      expect(/dark/.test(classes) && /bright/.test(classes), `the per-class table: ${classes}`);
      const drawn = await page.$$eval("img.figure", (imgs) => imgs.map((i) => i.complete && i.naturalWidth > 0));
      expect(drawn.length >= 2 && drawn.every(Boolean), `confusion matrices drawn: ${drawn}`);
    }],

    ["export", async ({ page, state }) => {
      await page.goto(`${url}deploy`);
      const { large, small } = await checkpoints(page, "#export-form", state);
      state.exported = [large, small].filter(Boolean);
      for (const checkpoint of state.exported) {
        await page.goto(`${url}deploy`);
        await page.selectOption("#export-form select[name=checkpoint]", checkpoint);
        await page.selectOption("#export-form select[name=target]", "cpu-x86_64");
        await page.click("#export-form button:has-text('Export')");
        await jobFinishes(page, 60000);
        await page.waitForSelector("#job-result a:has-text('Download')", { timeout: 10000 });
      }
    }],

    ["packages-and-serving", async ({ page, state }) => {
      await page.goto(`${url}deploy`);
      const link = await page.getAttribute("#packages a:has-text('download')", "href");
      expect(link, "the package list has no download link");
      const zip = await page.request.get(new URL(link, url).href);
      expect(zip.ok() && zip.headers()["content-type"] === "application/zip", `download: ${zip.status()}`);
      const boxes = page.locator("#serve-form input[name=package]");
      const count = await boxes.count();
      expect(count === state.exported.length, `${count} packages to serve, ${state.exported.length} exported`);
      for (let i = 0; i < count; i++) await boxes.nth(i).check();
      await page.fill("#serve-form input[name=port]", "0");
      await page.click("#serve-form button:has-text('Start serving')");
      await page.waitForSelector("#serving .badge.running", { timeout: 30000 });
    }],

    ["try-image", async ({ page, state }) => {
      await page.goto(`${url}deploy/try`);
      await page.setInputFiles("#try-form input[name=image]", `${dataset}/images/v1.png`);
      await page.click("#try-form button:has-text('Predict')");
      await page.waitForSelector("#answers .answer", { timeout: 30000 });
      const answers = await page.locator("#answers .answer").count();
      expect(answers === state.exported.length, `${answers} models answered, ${state.exported.length} served`);
      const answer = await page.textContent("#answers");
      expect(/latency \d+\.\d ms/.test(answer), `no latency: ${answer}`);
      expect(/bright/.test(answer) && /dark/.test(answer), `no classes: ${answer}`);
    }],

    ["stop-serving", async ({ page }) => {
      await page.goto(`${url}deploy`);
      await page.click("#serving button:has-text('Stop serving')");
      await page.waitForSelector("#serve-form", { timeout: 15000 });
    }],
  ];
}
