// The desktop page: the guest's screen through spice-html5 (Debian's spice-html5, served at
// /spice-html5/), over WebSockets to the portal's console proxy. The page arrives with a console
// ticket (proxy token + SPICE password, both short-lived). spice-html5 opens one WebSocket per
// SPICE channel: main first, then display, inputs, cursor, ... once main is in.
//
// One connection at a time, and each failure handled once:
// - A connection that fails while it is being made (any of main, display, inputs) is made again
//   with a fresh ticket, three times at most. spice-html5 reports only main's failures itself;
//   the others (a display channel whose link was refused) would leave a page that says
//   "connected" and never shows a picture, so they are reported here too.
// - A connection that was up and drops is not made again by itself: SPICE serves one client per
//   VM, and the newest one wins, so the usual reason is that another window or browser opened
//   this desktop. Taking it back at once would make that window take it back too, for ever. The
//   page says so and offers "Reconnect".
//
// Beside spice-html5: the keyboard by physical key (spice-keys.js), the clipboard and the
// screen size through the guest's agent (spice-agent.js).
import * as SpiceHtml5 from '/spice-html5/main.js';
import { takeKeyboard, sendChord } from '/js/spice-keys.js';
import { Agent } from '/js/spice-agent.js';

const root = document.getElementById('desktop');
const d = root ? root.dataset : {};
const statusEl = document.getElementById('console-status');
const reconnectEl = document.getElementById('reconnect');
const MAX_TRIES = 3;

// Every spice-html5 channel (main and the others) is a SpiceConn; this is their prototype.
const SpiceConnProto = Object.getPrototypeOf(SpiceHtml5.SpiceMainConn.prototype);

// spice-html5 0.3 sends the RSA-encrypted password as the bytes of a big integer, so a ciphertext
// whose first byte is 0 (1 in 256) goes out one byte short, left-aligned in the 128-byte field:
// the server cannot decrypt it and refuses the link ("Permission denied"), at random, on any
// channel. Right-align it in the field, as RSA wants.
const TICKET_BYTES = 1024 / 8; // SPICE_TICKET_KEY_PAIR_LENGTH / 8
const sendTicket = SpiceConnProto.send_ticket;
SpiceConnProto.send_ticket = function sendPaddedTicket(ticket) {
  if (Array.isArray(ticket) && ticket.length < TICKET_BYTES) {
    ticket = new Array(TICKET_BYTES - ticket.length).fill(0).concat(ticket);
  }
  return sendTicket.call(this, ticket);
};

// The channels a working console needs (SPICE channel types).
const NEEDED = { 2: 'display', 3: 'inputs' };
// spice-html5 gives only main an onerror; the other channels find this one on the prototype, and
// report to the connection attempt of their main channel.
SpiceConnProto.onerror = function channelError(e) {
  const a = this.parent && this.parent.vmpoolAttempt;
  if (a && NEEDED[this.type]) failed(a, new Error(`${NEEDED[this.type]} channel: ${(e && e.message) || e}`));
};

let current = null; // the connection attempt: { sc, up, over }
let tries = 0;

function setStatus(text, state) {
  if (statusEl) statusEl.textContent = text;
  document.body.dataset.console = state;
  const up = state === 'connected';
  document.querySelectorAll('[data-needs-console]').forEach((b) => { b.disabled = !up; });
  if (reconnectEl) reconnectEl.hidden = state !== 'disconnected' && state !== 'error';
}

function csrf() {
  const m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.content : '';
}

// A ticket from the portal: the VM's current password again, or a new one (fresh: after a failed
// attempt, since the password the page had may have been replaced; QEMU holds one per VM).
async function ticket(fresh) {
  const r = await fetch(d.consoleUrl + (fresh ? '?fresh=1' : ''), { method: 'POST', credentials: 'same-origin',
    headers: { 'X-CSRF-Token': csrf(), Accept: 'application/json' } });
  if (!r.ok) throw new Error('no console ticket (' + r.status + ')');
  return r.json();
}

function stop(a) {
  a.over = true;
  try { a.sc.stop(); } catch (e) { /* already closed */ }
}

function connect(t) {
  if (current) stop(current);
  document.getElementById('spice-screen').replaceChildren();
  const uri = t.ws_url + (t.ws_url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(t.token);
  const a = { up: false, over: false };
  current = a;
  setStatus('connecting…', 'connecting');
  a.sc = new SpiceHtml5.SpiceMainConn({
    uri, screen_id: 'spice-screen', message_id: 'spice-messages', password: t.password,
    onerror: (e) => failed(a, e),
    onsuccess: () => waitUp(a),
    onagent: () => fitScreen(),
  });
  a.sc.vmpoolAttempt = a;
  a.agent = new Agent(a.sc, { onGuestText: guestCopied, pageText: () => clipEl.value });
  window.vmpoolSpice = a.sc;
}

// Main is in; the console is up once the channels it needs are too (spice-html5 reports their
// failures, timeouts included, through SpiceConnProto.onerror above).
function waitUp(a) {
  const check = () => {
    if (a !== current || a.over) return;
    const sc = a.sc;
    if (sc.display && sc.display.state === 'ready' && sc.inputs && sc.inputs.state === 'ready') {
      a.up = true;
      tries = 0;
      setStatus('connected', 'connected');
    } else {
      setTimeout(check, 50);
    }
  };
  check();
}

function failed(a, e) {
  if (a !== current || a.over) return; // an earlier attempt, or this failure already handled
  const msg = (e && e.message) || String(e);
  stop(a);
  if (a.up) {
    setStatus(`disconnected (${msg}): the desktop may be open in another window`, 'disconnected');
    return;
  }
  if (++tries > MAX_TRIES) {
    setStatus(`could not connect: ${msg}`, 'error');
    return;
  }
  setStatus(`connecting again (${msg})…`, 'connecting');
  setTimeout(async () => {
    if (a !== current) return;
    try { connect(await ticket(true)); } catch (x) { setStatus(x.message, 'error'); }
  }, 1000 * tries);
}

async function reconnect() {
  tries = 0;
  try { connect(await ticket(false)); } catch (x) { setStatus(x.message, 'error'); }
}

// --- the clipboard: the panel's text is what the guest pastes; what the guest copies lands in
// the panel and, when the browser allows it, in the computer's own clipboard, but only right
// after the person worked in the console (a guest copying by itself does not reach the
// computer's clipboard). The computer's clipboard is read only when the person asks
// ("Paste from this computer"), never by itself: a password copied for something else stays
// out of the guest.
const clipEl = document.getElementById('clipboard');
let offerTimer = null;
let lastInputAt = 0;

function offerPageText() {
  clearTimeout(offerTimer);
  offerTimer = setTimeout(() => { if (current && current.agent) current.agent.offer(); }, 150);
}

function guestCopied(text) {
  clipEl.value = text;
  root.dataset.guestClipboard = String(Date.now());
  const recent = performance.now() - lastInputAt < 2000;
  if (recent && navigator.clipboard && document.hasFocus()) navigator.clipboard.writeText(text).catch(() => {});
}

async function pasteFromComputer() {
  try {
    clipEl.value = await navigator.clipboard.readText();
    offerPageText();
  } catch (e) { setStatus(`the browser did not let the page read the clipboard (${e.message}); paste into the panel`, document.body.dataset.console); }
}

// --- the guest's screen follows the console area: on connect, when the window changes size
// and in full screen.
let fitTimer = null;

function fitScreen() {
  clearTimeout(fitTimer);
  fitTimer = setTimeout(() => {
    if (!current || !current.agent) return;
    const area = document.getElementById('spice-area');
    const full = document.fullscreenElement === area;
    const pad = full ? 0 : 16;
    const width = area.clientWidth - pad;
    const height = full ? area.clientHeight : window.innerHeight - area.getBoundingClientRect().top - pad - 8;
    const sent = current.agent.resize(width, height);
    if (sent) root.dataset.screenRequest = `${sent.w}x${sent.h}`;
  }, 300);
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
  const area = document.getElementById('spice-area');
  document.getElementById('fullscreen').addEventListener('click', () => {
    area.requestFullscreen().then(() => {
      // In full screen the browser can hand every key to the page (Ctrl+W, Alt+Tab, ...).
      if (navigator.keyboard && navigator.keyboard.lock) navigator.keyboard.lock().catch(() => {});
    }).catch((e) => setStatus(e.message, 'error'));
  });
  document.addEventListener('fullscreenchange', fitScreen);
  window.addEventListener('resize', fitScreen);
  const screen = document.getElementById('spice-screen');
  takeKeyboard(screen, () => current && current.sc);
  ['keydown', 'mousedown'].forEach((t) => screen.addEventListener(t, () => { lastInputAt = performance.now(); }, true));
  clipEl.addEventListener('input', offerPageText);
  const pasteEl = document.getElementById('paste-from-computer');
  if (navigator.clipboard && navigator.clipboard.readText) pasteEl.addEventListener('click', pasteFromComputer);
  else pasteEl.hidden = true;
  document.getElementById('ctrl-alt-del').addEventListener('click', () => {
    // Through the page's own key path: spice-html5's sendCtrlAltDel releases Ctrl and Alt only
    // by the modifier state its own key handlers keep, which no longer see the keys.
    if (current && current.up) sendChord(current.sc, ['ControlLeft', 'AltLeft', 'NumpadDecimal']);
  });
  if (reconnectEl) reconnectEl.addEventListener('click', reconnect);
  watchFirstFrame();
  keepAlive();
  connect({ ws_url: d.wsUrl, token: d.token, password: d.password });
}
