// Shared helpers of the portal's browser tests and perf script: Debian's Chromium through
// playwright-core, with the flags that work on these machines (shared/FACTS.md).
'use strict';
const { chromium } = require('playwright-core');
const { spawnSync } = require('child_process');
const path = require('path');

const BASE = process.env.PORTAL_URL || 'http://127.0.0.1:3000';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, timeout: 60000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// A fresh browser profile (its own cookies), like a second browser on another machine; `opts`
// may set its language (`locale`, also its Accept-Language) and time zone (`timezoneId`).
async function newPage(browser, log, opts = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true, ...opts });
  const page = await context.newPage();
  page.consoleLines = [];
  page.on('console', (m) => { page.consoleLines.push(m.text()); if (log) log('  [page] ' + m.text()); });
  page.on('pageerror', (e) => { page.consoleLines.push('pageerror: ' + e.message); if (log) log('  [pageerror] ' + e.message); });
  page.on('dialog', (d) => d.accept().catch(() => {})); // data-confirm prompts
  return page;
}

async function login(page, user, password) {
  await page.goto(BASE + '/login');
  await page.fill('#username', user);
  await page.fill('#password', password);
  await Promise.all([page.waitForNavigation(), page.click('#login-form input[type=submit]')]);
}

async function logout(page) {
  await Promise.all([page.waitForNavigation(), page.click('#logout')]);
}

function desktopUuid(page) {
  const m = /\/desktops\/([0-9a-f-]{36})/.exec(page.url());
  return m ? m[1] : null;
}

// The library, asked directly on the same store (e2e/store.rb, the same gem the portal uses).
function store(cmd, arg) {
  const args = [path.join(__dirname, 'store.rb'), cmd];
  if (arg !== undefined) args.push(arg);
  const r = spawnSync('ruby', args, { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0 && r.status !== 3) throw new Error(`store.rb ${cmd} ${arg || ''}: ${r.stderr || r.error}`);
  return JSON.parse(r.stdout);
}

// A program run in a VM's guest through its agent (vmpoolctl guest exec, same store): its
// standard output; throws when it failed.
function guest(uuid, argv, timeoutS = 60) {
  const ctl = process.env.VMPOOLCTL || path.resolve(__dirname, '../../../target/release/vmpoolctl');
  const r = spawnSync(ctl, ['guest', 'exec', '--timeout', String(timeoutS), uuid, '--', ...argv],
    { encoding: 'utf8', timeout: (timeoutS + 30) * 1000 });
  if (r.status !== 0) throw new Error(`guest ${argv.join(' ')}: exit ${r.status}: ${(r.stderr || String(r.error)).trim()}`);
  return r.stdout;
}

async function waitFor(what, fn, timeoutMs, everyMs = 500) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

// Waits until "Get a desktop" has landed on a desktop page; fails at once, with the portal's
// alert (the library's error), when it landed back on the home page instead.
async function awaitDesktop(page, timeoutMs = 120000) {
  const desk = /\/desktops\/[0-9a-f-]{36}$/;
  const alert = page.locator('p.flash.alert');
  await Promise.race([
    page.waitForURL(desk, { timeout: timeoutMs }).catch(() => {}),
    alert.waitFor({ state: 'visible', timeout: timeoutMs }).catch(() => {}),
  ]);
  if (desk.test(page.url())) return;
  const text = await alert.textContent({ timeout: 1000 }).catch(() => null);
  throw new Error(text ? `landed on ${page.url()}, not a desktop page; alert: ${text.trim()}`
                       : `no desktop page and no alert after ${timeoutMs / 1000} s; on ${page.url()}`);
}

// Epoch ms of the first non-blank frame on the SPICE canvas (set by public/js/desktop.js).
async function firstFrame(page, timeoutMs = 60000) {
  await page.waitForFunction(() => document.getElementById('desktop') &&
    document.getElementById('desktop').dataset.firstFrame, null, { timeout: timeoutMs, polling: 50 });
  return Number(await page.evaluate(() => document.getElementById('desktop').dataset.firstFrame));
}

// What is on the SPICE canvas: size, how much of it differs from its dominant grey level, and
// how many pixels equal the guest's real screen (QMP screendump through the page's own
// thumbnail URL, i.e. store.screenshot) - the proof that the canvas shows that guest.
async function canvasVsScreen(page) {
  return page.evaluate(async () => {
    const c = document.getElementById('spice_surface_0');
    if (!c) return { canvas: false };
    const w = c.width, h = c.height;
    const a = c.getContext('2d').getImageData(0, 0, w, h).data;
    const hist = new Array(256).fill(0);
    for (let i = 0; i < a.length; i += 4) hist[Math.round(0.299 * a[i] + 0.587 * a[i + 1] + 0.114 * a[i + 2])]++;
    let dom = 0; for (let v = 0; v < 256; v++) if (hist[v] > hist[dom]) dom = v;
    let differ = 0, levels = 0;
    for (let v = 0; v < 256; v++) { if (Math.abs(v - dom) > 40) differ += hist[v]; if (hist[v]) levels++; }
    const uuid = document.getElementById('desktop').dataset.uuid;
    const r = await fetch(`/desktops/${uuid}/thumbnail.png?t=${Date.now()}`, { credentials: 'same-origin' });
    let match = null, shot = null;
    if (r.status === 200) {
      const bmp = await createImageBitmap(await r.blob());
      shot = `${bmp.width}x${bmp.height}`;
      if (bmp.width === w && bmp.height === h) {
        const o = new OffscreenCanvas(w, h).getContext('2d');
        o.drawImage(bmp, 0, 0);
        const b = o.getImageData(0, 0, w, h).data;
        let same = 0;
        for (let i = 0; i < a.length; i += 4) {
          if (Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]) < 48) same++;
        }
        match = same / (w * h);
      }
    }
    return { canvas: true, size: `${w}x${h}`, shot, nonblank: differ / (w * h), levels, match };
  });
}

// The desktop page shows the guest: a first frame, then (once the guest has drawn its text) the
// canvas equal to the guest's screen as QEMU dumps it.
async function seesGuest(page, label, timeoutMs = 120000) {
  const ff = await firstFrame(page, 90000);
  const st = await waitFor(`the canvas of ${label} to equal the guest's screen`, async () => {
    const s = await canvasVsScreen(page);
    return s.canvas && s.nonblank > 0.01 && s.levels > 2 && s.match !== null && s.match > 0.97 ? s : null;
  }, timeoutMs, 1000);
  return { firstFrame: ff, ...st };
}

async function saveCanvas(page, file) {
  const b64 = await page.evaluate(() => document.getElementById('spice_surface_0').toDataURL('image/png').split(',')[1]);
  require('fs').writeFileSync(file, Buffer.from(b64, 'base64'));
}

// Open a WebSocket to the console proxy from this page (so with this browser's cookies) and say
// whether the proxy let it through to a SPICE server: "open" (it answered the SPICE link
// message) or "refused".
async function wsProbe(page, url) {
  return page.evaluate((u) => new Promise((resolve) => {
    let done = false;
    const end = (v) => { if (!done) { done = true; try { ws.close(); } catch (e) { /* closed */ } resolve(v); } };
    const ws = new WebSocket(u, 'binary');
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      // a SPICE link message for the main channel: magic "REDQ", version 2.2, no capabilities
      const msg = new ArrayBuffer(16 + 18);
      const v = new DataView(msg);
      [0x52, 0x45, 0x44, 0x51].forEach((c, i) => v.setUint8(i, c));
      v.setUint32(4, 2, true); v.setUint32(8, 2, true); v.setUint32(12, 18, true);
      v.setUint32(16, 0, true); v.setUint8(20, 1); v.setUint8(21, 0);
      v.setUint32(22, 0, true); v.setUint32(26, 0, true); v.setUint32(30, 18, true);
      ws.send(msg);
    };
    ws.onmessage = (e) => {
      const d = new DataView(e.data);
      end(d.byteLength >= 4 && d.getUint32(0, true) === 0x51444552 ? 'open' : 'garbage');
    };
    ws.onerror = () => end('refused');
    ws.onclose = () => end('refused');
    setTimeout(() => end('timeout'), 10000);
  }), url);
}

// Open +n+ WebSockets to the console proxy from this page, one after the other, and keep the
// ones the proxy let through to the SPICE server: ["open"|"refused"|...] for each, in order.
// wsRelease closes the kept ones.
async function wsHold(page, url, n) {
  return page.evaluate(async ([u, count]) => {
    window.vmpoolHeld = window.vmpoolHeld || [];
    const one = () => new Promise((resolve) => {
      let done = false;
      const ws = new WebSocket(u, 'binary');
      const end = (v) => {
        if (done) return;
        done = true;
        if (v === 'open') window.vmpoolHeld.push(ws); else try { ws.close(); } catch (e) { /* closed */ }
        resolve(v);
      };
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => {
        const msg = new ArrayBuffer(16 + 18); // a SPICE link message for the main channel (see wsProbe)
        const v = new DataView(msg);
        [0x52, 0x45, 0x44, 0x51].forEach((c, i) => v.setUint8(i, c));
        v.setUint32(4, 2, true); v.setUint32(8, 2, true); v.setUint32(12, 18, true);
        v.setUint32(16, 0, true); v.setUint8(20, 1); v.setUint8(21, 0);
        v.setUint32(22, 0, true); v.setUint32(26, 0, true); v.setUint32(30, 18, true);
        ws.send(msg);
      };
      ws.onmessage = (e) => end(new DataView(e.data).getUint32(0, true) === 0x51444552 ? 'open' : 'garbage');
      ws.onerror = () => end('refused');
      ws.onclose = () => end('refused');
      setTimeout(() => end('timeout'), 10000);
    });
    const out = [];
    for (let i = 0; i < count; i++) out.push(await one());
    return out;
  }, [url, n]);
}

async function wsRelease(page) {
  return page.evaluate(() => {
    const held = window.vmpoolHeld || [];
    held.forEach((ws) => { try { ws.close(); } catch (e) { /* closed */ } });
    window.vmpoolHeld = [];
    return held.length;
  });
}

// A plain HTTP request with headers a browser would not let a page set (Host): {status, headers, body}.
function rawGet(url, headers) {
  return new Promise((resolve, reject) => {
    const req = require('http').get(url, { headers }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.setTimeout(20000, () => req.destroy(new Error('no answer from ' + url)));
  });
}

function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return null;
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i];
}

module.exports = { BASE, sleep, launch, newPage, login, logout, desktopUuid, store, guest, waitFor, awaitDesktop, firstFrame,
                   canvasVsScreen, seesGuest, saveCanvas, wsProbe, wsHold, wsRelease, rawGet, percentile };
