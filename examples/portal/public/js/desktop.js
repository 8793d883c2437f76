// The desktop page: the guest's screen through spice-html5 (Debian's spice-html5, served at
// /spice-html5/), over a WebSocket to the portal's console proxy. The page arrives with a
// console ticket (proxy token + SPICE password, both short-lived); on a lost connection it asks
// the portal for a fresh one (POST .../console) and connects again.
import * as SpiceHtml5 from '/spice-html5/main.js';

const root = document.getElementById('desktop');
const d = root ? root.dataset : {};
const statusEl = document.getElementById('console-status');
let sc = null;
let retries = 0;

function setStatus(text, state) {
  if (statusEl) statusEl.textContent = text;
  document.body.dataset.console = state;
}

function csrf() {
  const m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.content : '';
}

// After a failed connection: a new SPICE password (fresh=1), since the one the page had may
// have been replaced (QEMU holds one per VM).
async function freshTicket() {
  const r = await fetch(d.consoleUrl + '?fresh=1', { method: 'POST', credentials: 'same-origin',
    headers: { 'X-CSRF-Token': csrf(), Accept: 'application/json' } });
  if (!r.ok) throw new Error('no console ticket (' + r.status + ')');
  return r.json();
}

function connect(t) {
  if (sc) { try { sc.stop(); } catch (e) { /* already closed */ } }
  document.getElementById('spice-screen').replaceChildren();
  const uri = t.ws_url + (t.ws_url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(t.token);
  setStatus('connecting…', 'connecting');
  sc = new SpiceHtml5.SpiceMainConn({
    uri, screen_id: 'spice-screen', message_id: 'spice-messages', password: t.password,
    onerror: onError,
    onsuccess: () => { retries = 0; setStatus('connected', 'connected'); },
  });
  window.vmpoolSpice = sc;
}

async function onError(e) {
  const msg = (e && e.message) || String(e);
  setStatus('disconnected: ' + msg, 'error');
  if (sc) { try { sc.stop(); } catch (x) { /* closed */ } }
  if (retries++ >= 3) return;
  await new Promise((r) => setTimeout(r, 1000 * retries));
  try { connect(await freshTicket()); } catch (x) { setStatus(x.message, 'error'); }
}

// Someone watching their desktop is active even without page loads: while the console is
// connected, a status request now and then keeps the login session from idling out
// (PORTAL_SESSION_IDLE); the console proxy closes a console whose session ended.
function keepAlive() {
  setInterval(() => {
    if (document.body.dataset.console !== 'connected') return;
    fetch(d.statusUrl, { headers: { Accept: 'application/json' }, credentials: 'same-origin' }).catch(() => {});
  }, 60000);
}

// Marks the moment the first non-blank frame is on the canvas (the perf script reads it).
function watchFirstFrame() {
  const tick = () => {
    const c = document.getElementById('spice_surface_0');
    if (c && c.width > 0) {
      const ctx = c.getContext('2d');
      const w = c.width, h = c.height;
      // sample a grid: any pixel differing from the top-left one means something is drawn
      const data = ctx.getImageData(0, 0, w, h).data;
      const r0 = data[0], g0 = data[1], b0 = data[2];
      for (let y = 0; y < h; y += 4) {
        for (let x = 0; x < w; x += 4) {
          const i = (y * w + x) * 4;
          if (Math.abs(data[i] - r0) + Math.abs(data[i + 1] - g0) + Math.abs(data[i + 2] - b0) > 60) {
            const at = performance.timeOrigin + performance.now();
            root.dataset.firstFrame = String(Math.round(at));
            window.vmpoolFirstFrameAt = at;
            return;
          }
        }
      }
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

if (root && d.token) {
  document.getElementById('fullscreen').addEventListener('click', () => {
    document.getElementById('spice-area').requestFullscreen().catch((e) => setStatus(e.message, 'error'));
  });
  document.getElementById('ctrl-alt-del').addEventListener('click', () => {
    if (sc) SpiceHtml5.sendCtrlAltDel(sc);
  });
  watchFirstFrame();
  keepAlive();
  connect({ ws_url: d.wsUrl, token: d.token, password: d.password });
}
