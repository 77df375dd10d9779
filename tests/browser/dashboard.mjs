// Browser tests of the node dashboard: playwright-core driving Chromium headless.
//
// Run by crates/cli/tests/dashboard.rs against a serving `jingteng demo`; by hand:
//
//   npm ci --prefix tests/browser
//   JT_DASHBOARDS='{"host":"retail","nodes":{"retail":{"url":"http://127.0.0.1:PORT/",
//     "operator":"op_…","analyst":"an_…"}, …}}' JT_SCREENSHOTS=/tmp/shots \
//     node tests/browser/dashboard.mjs
//
// JT_CHROMIUM names the browser (default /usr/bin/chromium, Debian's `chromium`).
// Checks: no token, a wrong token or an analyst token on an action are refused; every
// page of every node renders, each chart is an ECharts instance with data on a canvas;
// the language toggle switches every label to Chinese and back; the operator's action
// (verify the audit log) works from the page and the analyst's button is disabled; the
// brand's operator creates an audience from the Audiences page (through the host), sees
// it listed with its released size, delivers it, and the media node's page lists the
// version it received; the analyst cannot create one.
// Screenshots of every page go to JT_SCREENSHOTS. Exits 1 on the first failure.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const PAGES = ['overview', 'match', 'insight', 'campaigns', 'budget', 'jobs', 'audit', 'datasets', 'audiences'];
// Charts each page must show at the host (members host no match runs and ask the host
// for insight; campaign reports are the host's). Insight: overlap, profile,
// cross-purchase, 4A funnel, month-to-month flows. Campaigns: attribution (spend and
// attributed GMV), reach (a tiny world under DP releases no lift or breakdown: the
// page says so). Budget: per analyst, over time (at a member: what the host reported).
// The audiences page has its chart once an audience exists (checked after one is
// created).
const HOST_CHARTS = { overview: 0, match: 3, insight: 5, campaigns: 2, budget: 2, jobs: 1, audit: 1, datasets: 1, audiences: 0 };
const MEMBER_CHARTS = { overview: 0, match: 0, insight: 5, campaigns: 2, budget: 1, jobs: 0, audit: 1, datasets: 1, audiences: 0 };

function fail(message) {
  throw new Error(message);
}

function need(cond, message) {
  if (!cond) fail(message);
}

const config = JSON.parse(process.env.JT_DASHBOARDS || fail('JT_DASHBOARDS is not set'));
const shots = process.env.JT_SCREENSHOTS || fail('JT_SCREENSHOTS is not set');
const executablePath = process.env.JT_CHROMIUM || '/usr/bin/chromium';
fs.mkdirSync(shots, { recursive: true });
const log = (line) => console.log(line);

async function httpChecks(party, node) {
  const url = (p) => new URL(p, node.url).toString();
  for (const p of ['/', '/api/node', '/api/session', '/assets/app.js', '/api/nowhere']) {
    const r = await fetch(url(p));
    need(r.status === 401, `${party}: GET ${p} without a token answered ${r.status}, not 401`);
    const r2 = await fetch(url(p), { headers: { Authorization: 'Bearer op_not-the-token' } });
    need(r2.status === 401, `${party}: GET ${p} with a wrong token answered ${r2.status}, not 401`);
  }
  const wrong = await fetch(url('/?token=op_wrong'));
  need(wrong.status === 401, `${party}: a wrong ?token= answered ${wrong.status}`);
  for (const role of ['operator', 'analyst']) {
    const r = await fetch(url('/api/session'), { headers: { Authorization: 'Bearer ' + node[role] } });
    need(r.ok, `${party}: /api/session as ${role} answered ${r.status}`);
    const s = await r.json();
    need(s.role === role && s.party === party, `${party}: session ${JSON.stringify(s)} for the ${role} token`);
  }
  const asAnalyst = await fetch(url('/api/audit/verify'), {
    method: 'POST', headers: { Authorization: 'Bearer ' + node.analyst },
  });
  need(asAnalyst.status === 403, `${party}: the analyst's POST /api/audit/verify answered ${asAnalyst.status}, not 403`);
  const byCookie = await fetch(url('/api/audit/verify'), {
    method: 'POST', headers: { Cookie: `jingteng_dashboard_${party}=${node.operator}` },
  });
  need(byCookie.status === 401, `${party}: an action with the token in a cookie only answered ${byCookie.status}, not 401`);
  const audienceAsAnalyst = await fetch(url('/api/audiences'), {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + node.analyst, 'Content-Type': 'application/json' },
    body: JSON.stringify({ collaboration: 'x', definition: { name: 'x', activate: 'social' } }),
  });
  need(audienceAsAnalyst.status === 403, `${party}: the analyst's POST /api/audiences answered ${audienceAsAnalyst.status}, not 403`);
  const noToken = await fetch(url('/api/audit/verify'), { method: 'POST' });
  need(noToken.status === 401, `${party}: an action without a token answered ${noToken.status}, not 401`);
  log(`ok  ${party}: 401 without or with a wrong token on pages, assets and API; 403 for the analyst's action`);
}

// Waits for the page to finish rendering `page`, then checks its charts.
async function checkPage(p, party, page, minCharts) {
  await p.waitForSelector(`main[data-page="${page}"][data-ready="ok"], main[data-ready="error"]`, { timeout: 20000 });
  const ready = await p.$eval('main', (m) => m.dataset.ready);
  if (ready !== 'ok') {
    const text = await p.$eval('main', (m) => m.innerText);
    fail(`${party} #/${page}: the page failed to render: ${text}`);
  }
  // Let the charts' (short) animation finish before screenshots.
  await p.waitForTimeout(500);
  const charts = await p.$$eval('.chart', (els) => els.map((el) => {
    const inst = window.echarts && window.echarts.getInstanceByDom(el);
    if (!inst) return { ok: false, why: 'no ECharts instance' };
    const canvas = el.querySelector('canvas');
    if (!canvas || canvas.width === 0 || canvas.height === 0) return { ok: false, why: 'no canvas drawn' };
    const series = inst.getOption().series || [];
    // A point is a number, {value}, or [x, y, …, value] (heat map, time axis, whiskers);
    // a sankey's figures are its links'.
    const value = (d) => (Array.isArray(d) ? d[d.length - 1] : d !== null && typeof d === 'object' ? d.value : d);
    const values = series.flatMap((s) => (s.data || []).concat(s.links || []).map(value)).filter((v) => v !== undefined);
    if (!series.length) return { ok: false, why: 'no series' };
    if (!values.length) return { ok: false, why: 'series without data' };
    if (!values.some((v) => Number(v) > 0)) return { ok: false, why: 'every value is 0' };
    return { ok: true, series: series.length, points: values.length };
  }));
  need(charts.length >= minCharts, `${party} #/${page}: ${charts.length} charts, expected ${minCharts}`);
  charts.forEach((c, i) => need(c.ok, `${party} #/${page}: chart ${i + 1}: ${c.why}`));
  need(!p.url().includes('token='), `${party} #/${page}: the token is still in the address bar (${p.url()})`);
  return charts;
}

async function shot(p, name) {
  const file = path.join(shots, name + '.png');
  await p.screenshot({ path: file, fullPage: true });
  return file;
}

async function navigate(p, page) {
  await p.click(`nav a[data-page="${page}"]`);
}

// ε charged to `analyst` in the host's ledger (read with the host's analyst token).
async function charged(hostNode, analyst) {
  const r = await fetch(new URL('/api/budget', hostNode.url), { headers: { Authorization: 'Bearer ' + hostNode.analyst } });
  need(r.ok, `GET /api/budget at the host answered ${r.status}`);
  const b = await r.json();
  const a = b.analysts.find((x) => x.analyst === analyst);
  return a ? a.charged : 0;
}

// The insight, campaign and budget pages: real released figures, each saying how it was
// released; opening a page again spends nothing; a new choice is a new query.
async function capabilities(p, party, node, isHost, hostNode) {
  const analyst = party + ':operator';
  const before = await charged(hostNode, analyst);
  need(before > 0, `${party}: the insight page charged nothing to ${analyst} in the host's ledger`);
  await navigate(p, 'insight');
  await checkPage(p, party, 'insight', 5);
  let text = await p.$eval('main', (m) => m.innerText);
  for (const s of ['retail ∩ social', 'Aurora', 'Noised: discrete Laplace', 'from the cache: no budget spent',
    isHost ? 'Computed by this node, the host' : 'Asked of the host retail over mutual TLS']) {
    need(text.includes(s), `${party} #/insight: no "${s}" on the page`);
  }
  const again = await charged(hostNode, analyst);
  need(again === before, `${party}: opening the insight page again spent ε ${again - before}`);
  // A new profile: retail's member levels, everyone.
  await p.selectOption('#insight-dimension', 'retail.users.level');
  await p.selectOption('#insight-of', '');
  await p.click('#insight-apply');
  await p.waitForFunction(() => document.querySelector('main').dataset.ready === 'ok'
    && (document.querySelector('main').innerText || '').includes('people by retail.users.level'), null, { timeout: 30000 });
  await checkPage(p, party, 'insight', 5);
  const after = await charged(hostNode, analyst);
  need(Math.abs(after - before - 0.5) < 1e-9, `${party}: a new profile charged ε ${after - before}, not 0.5`);
  await shot(p, `${party}-insight-level-en`);
  log(`ok  ${party} #/insight: DP figures with their noise, free on reopening, ε 0.5 for a new profile (${analyst}: ${after})`);

  await navigate(p, 'campaigns');
  await checkPage(p, party, 'campaigns', 2);
  text = await p.$eval('main', (m) => m.innerText);
  if (isHost) {
    for (const s of ['Attribution per campaign', 'Reach per campaign', 'Incremental lift from the holdout', 'C01', 'Stands on']) {
      need(text.includes(s), `${party} #/campaigns: no "${s}" on the page`);
    }
    // Another campaign's breakdowns and frequency, from the same reports (free).
    const spent = await charged(hostNode, analyst);
    await p.selectOption('#campaign-picker', 'C07');
    await p.waitForFunction(() => document.querySelector('main').dataset.ready === 'ok'
      && (document.querySelector('main').innerText || '').includes('Frequency of C07'), null, { timeout: 30000 });
    need(await charged(hostNode, analyst) === spent, `${party}: picking a campaign spent budget`);
    await shot(p, `${party}-campaigns-C07-en`);
  } else {
    // A member's reports come from the host, computed there over its joined view.
    for (const s of ['Attribution per campaign', 'Reach per campaign']) {
      need(text.includes(s), `${party} #/campaigns: no "${s}" on the page`);
    }
  }
  await navigate(p, 'budget');
  await checkPage(p, party, 'budget', isHost ? 2 : 1);
  text = await p.$eval('main', (m) => m.innerText);
  need(text.includes(analyst), `${party} #/budget: ${analyst} is not shown`);
  log(`ok  ${party} #/campaigns and #/budget`);
}

async function browse(browser, party, node, isHost, hostNode) {
  const expected = isHost ? HOST_CHARTS : MEMBER_CHARTS;
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, locale: 'en-US' });
  const p = await context.newPage();
  const problems = [];
  p.on('pageerror', (e) => problems.push('page error: ' + e.message));
  p.on('console', (m) => {
    if (m.type() === 'error') problems.push('console error: ' + m.text());
  });
  const first = await p.goto(`${node.url}?token=${node.operator}#/overview`);
  need(first.status() === 200, `${party}: the page with the operator token answered ${first.status()}`);
  for (const lang of ['en', 'zh']) {
    for (const page of PAGES) {
      if (!(lang === 'en' && page === 'overview')) await navigate(p, page);
      const charts = await checkPage(p, party, page, expected[page]);
      const file = await shot(p, `${party}-${page}-${lang}`);
      log(`ok  ${party} #/${page} (${lang}): ${charts.length} chart(s) with data; ${file}`);
    }
    if (lang === 'en') {
      await p.click('#lang');
      await p.waitForFunction(() => document.documentElement.lang === 'zh-CN'
        && document.querySelector('nav a[data-page="overview"]').textContent === '概览');
      log(`ok  ${party}: language toggled to Chinese`);
    }
  }
  // Every label switched: the navigation and the page's headings are Chinese.
  const nav = await p.$$eval('nav a', (as) => as.map((a) => a.textContent));
  need(nav.join(',') === '概览,匹配,洞察,营销活动,隐私预算,任务,审计日志,数据集,人群', `${party}: navigation in Chinese is ${nav}`);
  await p.click('#lang');
  await p.waitForFunction(() => document.documentElement.lang === 'en'
    && document.querySelector('nav a[data-page="overview"]').textContent === 'Overview');

  await capabilities(p, party, node, isHost, hostNode);

  if (isHost) {
    // The match page names the collaboration's members and every set of parties.
    await navigate(p, 'match');
    await checkPage(p, party, 'match', 3);
    const text = await p.$eval('main', (m) => m.innerText);
    for (const s of ['social ∩ retail', 'retail ∩ brand', 'social ∩ retail ∩ brand']) {
      need(text.includes(s), `${party} #/match: no row for ${s}`);
    }
    // The operator's action from the page: verify the audit log, recorded in it.
    await navigate(p, 'audit');
    await checkPage(p, party, 'audit', 1);
    await p.click('#audit-verify');
    await p.waitForFunction(() => (document.querySelector('#audit-note') || {}).textContent === 'Verified and recorded in the log.');
    await checkPage(p, party, 'audit', 1);
    const rows = await p.$$eval('table.audit tbody tr', (trs) => trs.map((tr) => tr.innerText));
    need(rows.some((r) => r.includes('audit-verify')), `${party} #/audit: no audit-verify entry after verifying`);
    await shot(p, `${party}-audit-after-verify-en`);
    log(`ok  ${party}: the operator verified the audit log from the page; the entry is in the log`);
  } else {
    await navigate(p, 'match');
    await checkPage(p, party, 'match', 0);
    const text = await p.$eval('main', (m) => m.innerText);
    need(text.includes('hosts no match runs'), `${party} #/match: no note that the host keeps the runs`);
  }
  need(!problems.length, `${party}: ${problems.join('; ')}`);
  await context.close();
}

async function analyst(browser, party, node) {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, locale: 'en-US' });
  const p = await context.newPage();
  await p.goto(`${node.url}?token=${node.analyst}#/audit`);
  await checkPage(p, party, 'audit', 1);
  const role = await p.$eval('#role', (e) => e.textContent);
  need(role.includes('analyst'), `${party}: the analyst's role pill says ${role}`);
  const disabled = await p.$eval('#audit-verify', (b) => b.disabled);
  need(disabled, `${party}: the analyst can press the operator's button`);
  await shot(p, `${party}-audit-analyst-en`);
  // The analyst sees insight too, charged to the analyst's own budget.
  await p.click('nav a[data-page="insight"]');
  await checkPage(p, party, 'insight', 5);
  const text = await p.$eval('main', (m) => m.innerText);
  need(text.includes(party + ':analyst'), `${party} #/insight: the analyst's budget key is not shown`);
  need(await charged(node, party + ':analyst') > 0, `${party}: nothing charged to ${party}:analyst`);
  await context.close();
  // A browser that never had the token (no cookie): no page.
  const fresh = await browser.newContext({ viewport: { width: 1360, height: 600 } });
  const denied = await fresh.newPage();
  const r = await denied.goto(`${node.url}#/overview`);
  need(r.status() === 401, `${party}: a page without the token answered ${r.status()}`);
  await shot(denied, `${party}-no-token`);
  await fresh.close();
  log(`ok  ${party}: the analyst sees the views read-only; no token, no page`);
}

// The brand's operator creates an audience from the page; the host evaluates it and
// releases its size; it is listed with that size; delivering it from the page puts the
// media node's own users at the media node, whose page lists the version.
async function audiences(browser, brand, media) {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, locale: 'en-US' });
  const p = await context.newPage();
  const problems = [];
  p.on('pageerror', (e) => problems.push('page error: ' + e.message));
  await p.goto(`${brand.url}?token=${brand.operator}#/audiences`);
  await checkPage(p, 'brand', 'audiences', 0);
  // A refused rule: the policy's reason is shown on the form.
  await p.fill('#aud-name', 'by-phone');
  await p.fill('#aud-include', "social.users.phone_md5 = 'x'");
  await p.click('#aud-create');
  await p.waitForFunction(() => /refused \[identifier\]/.test((document.querySelector('#aud-note') || {}).textContent || ''),
    null, { timeout: 60000 });
  log('ok  brand #/audiences: a rule over an identifier is refused on the form, by name');
  await p.fill('#aud-name', 'ui-hair-care');
  await p.fill('#aud-include', "retail.orders.category = 'hair_care'");
  await p.fill('#aud-exclude', 'brand.crm');
  await p.fill('#aud-min', '100');
  await p.click('#aud-create');
  await p.waitForSelector('#aud-flash', { timeout: 60000 });
  const flash = await p.$eval('#aud-flash', (e) => e.textContent);
  need(/ui-hair-care created: .* people \(dp\)/.test(flash), `brand #/audiences: after creating, the page says ${flash}`);
  await checkPage(p, 'brand', 'audiences', 1);
  const listed = await p.$$eval('table.audiences tbody tr', (trs) => trs.map((tr) => tr.innerText));
  need(listed.some((r) => r.includes('ui-hair-care') && r.includes('social') && r.includes('brand')),
    `brand #/audiences: the new audience is not listed: ${listed}`);
  log(`ok  brand #/audiences: created from the page (${flash}); listed; ${await shot(p, 'brand-audiences-created-en')}`);
  await p.click('button[data-deliver="ui-hair-care"]');
  await p.waitForFunction(() => /Version 1 delivered to social/.test((document.querySelector('#aud-flash') || {}).textContent || ''),
    null, { timeout: 60000 });
  await checkPage(p, 'brand', 'audiences', 1);
  const after = await p.$$eval('table.audiences tbody tr', (trs) => trs.map((tr) => tr.innerText));
  need(after.some((r) => r.includes('ui-hair-care') && /\t1\t/.test(r)), `brand #/audiences: one version not shown: ${after}`);
  await shot(p, 'brand-audiences-delivered-en');
  await p.click('#lang');
  await p.waitForFunction(() => document.querySelector('nav a[data-page="audiences"]').textContent === '人群');
  await checkPage(p, 'brand', 'audiences', 1);
  await shot(p, 'brand-audiences-zh');
  await p.click('#lang');
  await p.waitForFunction(() => document.documentElement.lang === 'en');
  need(!problems.length, `brand #/audiences: ${problems.join('; ')}`);
  await context.close();
  log('ok  brand #/audiences: delivered from the page');

  const m = await browser.newContext({ viewport: { width: 1360, height: 900 }, locale: 'en-US' });
  const mp = await m.newPage();
  await mp.goto(`${media.url}?token=${media.analyst}#/audiences`);
  await checkPage(mp, 'social', 'audiences', 1);
  const text = await mp.$eval('main', (e) => e.innerText);
  need(text.includes('Delivered to this node (social)') && text.includes('ui-hair-care'),
    `social #/audiences: the delivered version is not listed: ${text}`);
  const disabled = await mp.$eval('#aud-create', (b) => b.disabled);
  need(disabled, 'social: the analyst can press Create');
  log(`ok  social #/audiences: lists the version it received; read-only for the analyst; ${await shot(mp, 'social-audiences-received-en')}`);
  await m.close();
}

async function main() {
  for (const [party, node] of Object.entries(config.nodes)) await httpChecks(party, node);
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--lang=en-US'],
  });
  try {
    for (const [party, node] of Object.entries(config.nodes)) {
      await browse(browser, party, node, party === config.host, config.nodes[config.host]);
    }
    await analyst(browser, config.host, config.nodes[config.host]);
    await audiences(browser, config.nodes.brand, config.nodes.social);
  } finally {
    await browser.close();
  }
  log(`all dashboard checks passed; screenshots in ${shots}`);
}

main().catch((e) => {
  console.error('FAILED: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
