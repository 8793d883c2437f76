#!/usr/bin/env node
// html5-check.js: real SPICE check through a browser. Starts websockify (Debian, serving
// /usr/share/spice-html5) towards the VM's SPICE socket, opens spice_auto.html in headless
// Chromium (Debian /usr/bin/chromium) via playwright-core, waits real time, screenshots the
// guest canvas and gives a verdict.
//
//   node html5-check.js (--unix PATH | --host H --port P) --password PW [--out shot.png]
//        [--expect TEXT] [--settle 4] [--timeout 40] [--page-out page.png] [--verbose]
//
// One JSON line on stdout; exit code: 0 ok, 2 refused, 3 no-connect, 4 blank, 5 no-text, 1 error
// (same meaning as rv-check).
'use strict';
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const EXIT = { ok: 0, refused: 2, 'no-connect': 3, blank: 4, 'no-text': 5, error: 1 };
const WEB = '/usr/share/spice-html5';

function parseArgs(argv) {
  const a = { settle: 4, timeout: 40, out: 'html5-check.png', minScore: 0.8,
              chromium: '/usr/bin/chromium', web: WEB };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i], v = () => argv[++i];
    if (k === '--unix') a.unix = v();
    else if (k === '--host') a.host = v();
    else if (k === '--port') a.port = +v();
    else if (k === '--password') a.password = v();
    else if (k === '--out') a.out = v();
    else if (k === '--page-out') a.pageOut = v();
    else if (k === '--expect') a.expect = v();
    else if (k === '--min-score') a.minScore = +v();
    else if (k === '--settle') a.settle = +v();
    else if (k === '--timeout') a.timeout = +v();
    else if (k === '--ws-port') a.wsPort = +v();
    else if (k === '--chromium') a.chromium = v();
    else if (k === '--verbose') a.verbose = true;
    else throw new Error('unknown argument ' + k);
  }
  if (a.password === undefined || !(a.unix || (a.host && a.port)))
    throw new Error('usage: html5-check.js (--unix PATH | --host H --port P) --password PW [...]');
  return a;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

async function waitListening(port, deadline) {
  while (Date.now() < deadline) {
    const ok = await new Promise((r) => {
      const c = net.connect(port, '127.0.0.1', () => { c.destroy(); r(true); });
      c.on('error', () => r(false));
    });
    if (ok) return true;
    await sleep(100);
  }
  return false;
}

// ---- OCR (optional, same scheme as rv-check) -------------------------------------------
// fold the VGA-font confusions tesseract makes; keep only letters and digits
const CONFUSE = { O: '0', Q: '0', D: '0', U: 'V', Y: 'V', I: '1', L: '1', '|': '1', '!': '1',
                  Z: '2', S: '5', B: '8', G: '6' };
const norm = (s) => s.toUpperCase().replace(/[OQDUYILZSBG|!]/g, (c) => CONFUSE[c]).replace(/[^A-Z0-9]/g, '');
// 1 - (edit distance of the best approximate occurrence of EXPECT in one OCR line) / length
// (Sellers' algorithm: free start and end in the line)
function textScore(ocr, expect) {
  const want = norm(expect);
  if (!want.length) return 1;
  let best = want.length;
  for (const line of ocr.split('\n')) {
    let prev = Array.from({ length: want.length + 1 }, (_, i) => i);
    for (const ch of norm(line)) {
      const cur = [0];
      for (let i = 1; i <= want.length; i++)
        cur.push(Math.min(prev[i] + 1, cur[i - 1] + 1, prev[i - 1] + (want[i - 1] === ch ? 0 : 1)));
      best = Math.min(best, cur[want.length]);
      prev = cur;
    }
  }
  return 1 - best / want.length;
}
function* ocrPasses(png, tmp) {   // inverted + 3x nearest-neighbour upscale first, then plain
  const pre = path.join(tmp, 'ocr.png');
  spawnSync('/usr/bin/convert', [png, '-colorspace', 'Gray', '-negate', '-filter', 'point',
    '-resize', '300%', '-bordercolor', 'white', '-border', '30', pre], { timeout: 20000 });
  const env = { ...process.env, OMP_THREAD_LIMIT: '1' };   // 0.6 s instead of 4-5 s here
  for (const img of [pre, png]) {
    const r = spawnSync('tesseract', [img, '-', '--psm', '6'], { timeout: 60000, env });
    if (r.error) throw new Error('tesseract: ' + r.error.message);
    yield String(r.stdout);
  }
}

// ---- main ---------------------------------------------------------------------------------
async function main() {
  const a = parseArgs(process.argv.slice(2));
  fs.rmSync(a.out, { force: true });   // never report a stale screenshot
  const t0 = Date.now();
  const deadline = t0 + a.timeout * 1000;
  const res = { client: 'spice-html5', verdict: 'error' };
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'html5-check.'));
  const console_ = [];
  let ws = null, browser = null, wsLog = '';

  const cleanup = async () => {
    if (browser) await browser.close().catch(() => {});
    browser = null;
    if (ws && ws.exitCode === null && ws.signalCode === null) {
      const gone = new Promise((r) => ws.once('exit', r));
      try { process.kill(-ws.pid, 'SIGTERM'); } catch (e) {}
      if (await Promise.race([gone.then(() => true), sleep(3000).then(() => false)]) === false) {
        try { process.kill(-ws.pid, 'SIGKILL'); } catch (e) {}
      }
    }
    ws = null;
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  const finish = async (code) => {
    await cleanup();
    res.elapsed_s = +((Date.now() - t0) / 1000).toFixed(2);
    res.screenshot = fs.existsSync(a.out) ? path.resolve(a.out) : null;
    res.console = console_.slice(-15);
    if (a.verbose) res.websockify_log = wsLog.slice(-3000);
    process.stdout.write(JSON.stringify(res) + '\n');
    process.exit(code);
  };
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'])
    process.on(sig, () => { res.verdict = 'error'; res.detail = 'killed by ' + sig; finish(1); });
  const hard = setTimeout(() => { res.verdict = 'error'; res.detail = 'hard timeout'; finish(1); },
                          (a.timeout + 15) * 1000);
  hard.unref();

  try {
    // 1. websockify: serves the spice-html5 files and bridges WebSocket <-> SPICE socket
    const wsPort = a.wsPort || await freePort();
    const target = a.unix ? ['--unix-target=' + a.unix] : [];
    const wsArgs = ['--web', a.web, ...target, '127.0.0.1:' + wsPort];
    if (!a.unix) wsArgs.push(a.host + ':' + a.port);
    ws = spawn('websockify', wsArgs, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    ws.stdout.on('data', (d) => { wsLog += d; });
    ws.stderr.on('data', (d) => { wsLog += d; });
    if (!await waitListening(wsPort, Math.min(deadline, Date.now() + 10000)))
      throw new Error('websockify did not listen: ' + wsLog.slice(-500));

    // 2. headless chromium
    browser = await chromium.launch({
      executablePath: a.chromium, headless: true, timeout: 30000,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });   // playwright gives every launch a fresh temporary --user-data-dir
    const page = await browser.newPage({ viewport: { width: 1280, height: 1024 } });
    let refused = false, dialogs = 0, wsError = false;
    page.on('console', (m) => {
      const t = m.text();
      console_.push(t);
      if (/Permission denied/.test(t)) refused = true;
      // no SPICE server behind websockify: it closes at once -> protocol mismatch / ws error
      if (/WebSocket error|Unexpected link error|protocol mismatch/.test(t)) wsError = true;
    });
    page.on('pageerror', (e) => console_.push('pageerror: ' + e.message));
    // spice_auto.html answers "Permission denied." with prompt("Password"): note it, dismiss it
    page.on('dialog', (d) => { dialogs++; console_.push('dialog: ' + d.type() + ' ' + d.message());
                               if (/Password/.test(d.message())) refused = true;
                               d.dismiss().catch(() => {}); });
    const q = new URLSearchParams({ host: '127.0.0.1', port: String(wsPort), password: a.password });
    const url = `http://127.0.0.1:${wsPort}/spice_auto.html?${q}`;
    await page.goto(url, { timeout: 15000 });

    // 3. wait for an outcome: canvas, refusal, or a dead connection
    let outcome = null;
    while (Date.now() < deadline) {
      if (refused) { outcome = 'refused'; break; }
      if (wsError) { outcome = 'no-connect'; break; }
      if (await page.$('#spice_surface_0')) { outcome = 'display'; break; }
      await sleep(100);
    }
    res.t_outcome_s = +((Date.now() - t0) / 1000).toFixed(2);
    if (outcome !== 'display') {
      await sleep(500);
      await page.screenshot({ path: a.out }).catch(() => {});
      res.verdict = outcome || 'blank';
      if (!outcome) res.detail = 'no canvas before deadline';
      res.password_prompts = dialogs;
      return finish(EXIT[res.verdict]);
    }

    // 4. real wait, then screenshot the canvas (+ OCR) until satisfied or deadline
    await sleep(Math.max(0, Math.min(a.settle * 1000, deadline - Date.now() - 3000)));
    res.ocr_score = null;
    for (;;) {
      const tIter = Date.now();
      // exact pixels the client drew (an element screenshot would add the CSS border)
      const b64 = await page.evaluate(() =>
        document.getElementById('spice_surface_0').toDataURL('image/png').split(',')[1]);
      fs.writeFileSync(a.out, Buffer.from(b64, 'base64'));
      const st = await page.evaluate(() => {
        const c = document.getElementById('spice_surface_0');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const h = new Array(256).fill(0);
        for (let i = 0; i < d.length; i += 4) h[Math.round(0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2])]++;
        const n = d.length / 4; let dom = 0;
        for (let v = 0; v < 256; v++) if (h[v] > h[dom]) dom = v;
        let differ = 0, levels = 0;
        for (let v = 0; v < 256; v++) { if (Math.abs(v - dom) > 40) differ += h[v]; if (h[v]) levels++; }
        return { w: c.width, h: c.height, frac: differ / n, levels };
      });
      Object.assign(res, { guest_size: `${st.w}x${st.h}`, nonblank_frac: +st.frac.toFixed(4),
                           gray_levels: st.levels, nonblank: st.frac > 0.001 && st.levels > 1 });
      if (res.nonblank && a.expect) {
        for (const txt of ocrPasses(a.out, tmp)) {
          const s = textScore(txt, a.expect);
          if (res.ocr_score === null || s > res.ocr_score) { res.ocr_score = +s.toFixed(2); res.ocr_text = txt.trim().slice(0, 2000); }
          if (s >= a.minScore) break;
        }
      }
      const done = res.nonblank && (!a.expect || res.ocr_score >= a.minScore);
      if (done || Date.now() + 1500 + (Date.now() - tIter) > deadline || refused) break;
      await sleep(1500);
    }
    if (a.pageOut) await page.screenshot({ path: a.pageOut }).catch(() => {});
    res.verdict = refused ? 'refused' : !res.nonblank ? 'blank'
      : (a.expect && res.ocr_score < a.minScore) ? 'no-text' : 'ok';
    return finish(EXIT[res.verdict]);
  } catch (e) {
    res.verdict = 'error'; res.detail = String(e && e.message || e).slice(0, 500);
    return finish(1);
  }
}

main();
