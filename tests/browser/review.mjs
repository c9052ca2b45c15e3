// Opens a review page in headless Chromium and prints what a reviewer would
// meet, as JSON, for the end-to-end tests to judge (tests/e2e/review_page.rs):
//   node tests/browser/review.mjs PAGE [--click NODE_ID] [--screenshot PNG] [--no-script]
// No network: any request other than the page itself is reported.
import { chromium } from 'playwright-core';
import { pathToFileURL } from 'node:url';

const [page_path, ...rest] = process.argv.slice(2);
const option = (name) => {
  const at = rest.indexOf(name);
  return at < 0 ? undefined : rest[at + 1];
};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const out = { console_errors: [], page_errors: [], requests: [] };
try {
  const page = await browser.newPage({
    viewport: { width: 1400, height: 1000 },
    javaScriptEnabled: !rest.includes('--no-script'),
  });
  const url = pathToFileURL(page_path).href;
  page.on('console', (m) => { if (m.type() === 'error') out.console_errors.push(m.text()); });
  page.on('pageerror', (e) => out.page_errors.push(String(e)));
  page.on('request', (r) => { if (r.url() !== url) out.requests.push(r.url()); });
  const started = Date.now();
  await page.goto(url, { waitUntil: 'load' });
  out.load_ms = Date.now() - started;
  Object.assign(out, await page.evaluate(() => {
    const box = (e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
    return {
      nodes: [...document.querySelectorAll('.node')].map((n) => ({
        id: n.dataset.id, text: n.textContent, shown: box(n),
      })),
      links: [...document.querySelectorAll('.edge')].map((e) => ({
        from: e.dataset.from, to: e.dataset.to,
        kind: e.classList.contains('flow') ? 'dataflow' : 'dependency',
        stroke: getComputedStyle(e).stroke, title: e.textContent,
      })),
      text: document.body.innerText,
    };
  }));
  const click = option('--click');
  if (click) {
    await page.click(`.node[data-id="${click}"]`);
    out.inspector = await page.evaluate(() => {
      const p = document.getElementById('inspector');
      return { shown: !p.hidden && p.getBoundingClientRect().width > 0, text: p.innerText };
    });
  }
  const shot = option('--screenshot');
  if (shot) await page.screenshot({ path: shot, fullPage: false });
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
