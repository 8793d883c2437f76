// What the page does through the guest's SPICE agent (spice-vdagent), beside spice-html5:
// - the clipboard both ways, as text (spice-html5 has none);
// - the guest's screen size following the page's console area (and full screen).
//
// The agent protocol (spice-protocol's vd_agent.h): every message is a 20-byte header (protocol,
// type, opaque, size) and `size` bytes; the main channel carries it in pieces of at most
// VD_AGENT_MAX_DATA_SIZE, the first with the header. We announce "clipboard by demand": whoever
// copies sends GRAB with the types it has, the other side sends REQUEST when someone pastes, the
// owner answers with CLIPBOARD (type, bytes). No selection byte: we do not announce
// CLIPBOARD_SELECTION, so both sides mean the CLIPBOARD selection (Ctrl+C / Ctrl+V).
import { Constants } from '/spice-html5/enums.js';
import * as SpiceHtml5 from '/spice-html5/main.js';

const UTF8_TEXT = 1; // VD_AGENT_CLIPBOARD_UTF8_TEXT
const HEADER = 20;
const MAX_TEXT = 1 << 20; // a page's clipboard larger than 1 MiB is not sent or taken
const MainProto = SpiceHtml5.SpiceMainConn.prototype;

// An agent message body the main channel can send (spice-html5 asks buffer_size/to_buffer).
function body(bytes) {
  return {
    buffer_size: () => bytes.length,
    to_buffer: (a, at) => { new Uint8Array(a, at || 0, bytes.length).set(bytes); },
  };
}

function u32s(...values) {
  const b = new Uint8Array(4 * values.length);
  const dv = new DataView(b.buffer);
  values.forEach((v, i) => dv.setUint32(4 * i, v, true));
  return b;
}

// The capabilities the page announces: spice-html5's (mouse state, monitors config, reply)
// and the clipboard by demand.
MainProto.announce_agent_capabilities = function announce(request) {
  const caps = (1 << Constants.VD_AGENT_CAP_MOUSE_STATE) | (1 << Constants.VD_AGENT_CAP_MONITORS_CONFIG)
    | (1 << Constants.VD_AGENT_CAP_REPLY) | (1 << Constants.VD_AGENT_CAP_CLIPBOARD_BY_DEMAND);
  this.send_agent_message(Constants.VD_AGENT_ANNOUNCE_CAPABILITIES, body(u32s(request, caps)));
};

// Agent messages for the clipboard are taken here, whole (reassembled from their pieces); the
// rest go on to spice-html5.
const processMain = MainProto.process_channel_message;
MainProto.process_channel_message = function processWithClipboard(msg) {
  const a = this.vmpoolAgent;
  if (a && msg.type === Constants.SPICE_MSG_MAIN_AGENT_DATA && a.take(msg.data)) return true;
  if (a && (msg.type === Constants.SPICE_MSG_MAIN_AGENT_CONNECTED || msg.type === Constants.SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS
    || msg.type === Constants.SPICE_MSG_MAIN_AGENT_DISCONNECTED)) a.reset();
  return processMain.call(this, msg);
};

const CLIPBOARD_TYPES = new Set([Constants.VD_AGENT_CLIPBOARD, Constants.VD_AGENT_CLIPBOARD_GRAB,
  Constants.VD_AGENT_CLIPBOARD_REQUEST, Constants.VD_AGENT_CLIPBOARD_RELEASE]);

// The agent side of one SPICE connection. `onGuestText(text)` is called with what the guest
// copied; `pageText()` gives what the page offers when the guest pastes.
export class Agent {
  constructor(sc, { onGuestText, pageText }) {
    this.sc = sc;
    this.onGuestText = onGuestText;
    this.pageText = pageText;
    this.partial = null; // { type, size, parts: [Uint8Array], got }
    this.requested = false; // the page asked the guest for its text and has not had it yet
    this.offered = false; // the page holds the clipboard (it sent GRAB) until the guest grabs
    sc.vmpoolAgent = this;
  }

  // The guest's agent (re)connected or went away: a message cut short stays cut short.
  reset() {
    this.partial = null;
    this.requested = false;
  }

  // One piece of agent data from the main channel; true if it was the clipboard's.
  take(buf) {
    const bytes = new Uint8Array(buf);
    if (this.partial) {
      this.partial.parts.push(bytes);
      this.partial.got += bytes.length;
      if (this.partial.got >= this.partial.size) {
        const p = this.partial;
        this.partial = null;
        if (p.type !== -1) this.handle(p.type, concat(p.parts, p.size));
      }
      return true;
    }
    if (bytes.length < HEADER) return false;
    const dv = new DataView(buf);
    const type = dv.getUint32(4, true);
    const size = dv.getUint32(16, true);
    if (!CLIPBOARD_TYPES.has(type)) return false;
    const data = bytes.subarray(HEADER);
    if (data.length >= size) {
      this.handle(type, data.subarray(0, size));
    } else if (size <= MAX_TEXT + 4) {
      this.partial = { type, size, parts: [data], got: data.length };
    } else {
      // Too big to take: swallow its pieces without keeping them.
      this.partial = { type: -1, size, parts: [], got: data.length };
    }
    return true;
  }

  handle(type, data) {
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    switch (type) {
      case Constants.VD_AGENT_CLIPBOARD_GRAB: { // the guest copied: take its text now
        const types = [];
        for (let i = 0; i + 4 <= data.length; i += 4) types.push(dv.getUint32(i, true));
        this.offered = false;
        if (types.includes(UTF8_TEXT)) {
          this.requested = true;
          this.send(Constants.VD_AGENT_CLIPBOARD_REQUEST, u32s(UTF8_TEXT));
        }
        break;
      }
      case Constants.VD_AGENT_CLIPBOARD: // the text we asked for; never text we did not ask for
        if (this.requested && data.length >= 4 && dv.getUint32(0, true) === UTF8_TEXT) {
          this.requested = false;
          this.onGuestText(new TextDecoder().decode(data.subarray(4)));
        }
        break;
      case Constants.VD_AGENT_CLIPBOARD_REQUEST: { // someone in the guest pastes what the page offered
        if (!this.offered) break; // the page offered nothing: the guest gets nothing of it
        const text = new TextEncoder().encode(this.pageText() || '').subarray(0, MAX_TEXT);
        const out = new Uint8Array(4 + text.length);
        out.set(u32s(UTF8_TEXT));
        out.set(text, 4);
        this.send(Constants.VD_AGENT_CLIPBOARD, out);
        break;
      }
      default: // RELEASE: the guest's clipboard is empty again; the page keeps its copy
        break;
    }
  }

  send(type, bytes) {
    if (this.sc.agent_connected) this.sc.send_agent_message(type, body(bytes));
  }

  // The page has new text for the guest's clipboard.
  offer() {
    this.offered = true;
    this.send(Constants.VD_AGENT_CLIPBOARD_GRAB, u32s(UTF8_TEXT));
  }

  // Ask the guest for a screen of this size (one monitor). QXL wants widths that are a multiple
  // of 8, so both sides are rounded down to one.
  resize(width, height) {
    const w = Math.max(640, Math.floor(width / 8) * 8);
    const h = Math.max(480, Math.floor(height / 8) * 8);
    if (!this.sc.agent_connected) return null;
    this.sc.resize_window(0, w, h, 32, 0, 0);
    return { w, h };
  }
}

function concat(parts, size) {
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    const n = Math.min(p.length, size - at);
    out.set(p.subarray(0, n), at);
    at += n;
  }
  return out;
}
