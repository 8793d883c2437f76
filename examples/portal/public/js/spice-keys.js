// The keyboard of the desktop page: physical keys, not characters, on the wire.
//
// spice-html5 turns the browser's `keyCode` (a character-ish number that depends on the browser
// and the user's layout) into a US-layout scancode, so a German AltGr+Q, a French A or a Korean
// Hangul key arrive as something else or nothing. The guest has its own layout (the user's,
// set at hand-out), so what it needs is which key was pressed: `KeyboardEvent.code` names the
// physical key whatever the layout, and maps one to one onto PC scancodes (set 1). The guest's
// layout then makes the character, as it would on a real keyboard.
//
// SPICE's key message carries the scancode bytes, first byte lowest; an extended key is E0
// followed by its code, and a release sets 0x80 on the last byte.
import { Constants } from '/spice-html5/enums.js';
import * as Messages from '/spice-html5/spicemsg.js';

const E0 = 0x100; // extended key: sent as E0 xx

// KeyboardEvent.code -> set-1 scancode (| E0 for extended keys). The W3C "UI Events KeyboardEvent
// code Values" table, which Chromium, Firefox and Safari follow.
const CODES = {
  Escape: 0x01, Digit1: 0x02, Digit2: 0x03, Digit3: 0x04, Digit4: 0x05, Digit5: 0x06, Digit6: 0x07,
  Digit7: 0x08, Digit8: 0x09, Digit9: 0x0a, Digit0: 0x0b, Minus: 0x0c, Equal: 0x0d, Backspace: 0x0e,
  Tab: 0x0f, KeyQ: 0x10, KeyW: 0x11, KeyE: 0x12, KeyR: 0x13, KeyT: 0x14, KeyY: 0x15, KeyU: 0x16,
  KeyI: 0x17, KeyO: 0x18, KeyP: 0x19, BracketLeft: 0x1a, BracketRight: 0x1b, Enter: 0x1c,
  ControlLeft: 0x1d, KeyA: 0x1e, KeyS: 0x1f, KeyD: 0x20, KeyF: 0x21, KeyG: 0x22, KeyH: 0x23,
  KeyJ: 0x24, KeyK: 0x25, KeyL: 0x26, Semicolon: 0x27, Quote: 0x28, Backquote: 0x29,
  ShiftLeft: 0x2a, Backslash: 0x2b, KeyZ: 0x2c, KeyX: 0x2d, KeyC: 0x2e, KeyV: 0x2f, KeyB: 0x30,
  KeyN: 0x31, KeyM: 0x32, Comma: 0x33, Period: 0x34, Slash: 0x35, ShiftRight: 0x36,
  NumpadMultiply: 0x37, AltLeft: 0x38, Space: 0x39, CapsLock: 0x3a, F1: 0x3b, F2: 0x3c, F3: 0x3d,
  F4: 0x3e, F5: 0x3f, F6: 0x40, F7: 0x41, F8: 0x42, F9: 0x43, F10: 0x44, NumLock: 0x45,
  ScrollLock: 0x46, Numpad7: 0x47, Numpad8: 0x48, Numpad9: 0x49, NumpadSubtract: 0x4a,
  Numpad4: 0x4b, Numpad5: 0x4c, Numpad6: 0x4d, NumpadAdd: 0x4e, Numpad1: 0x4f, Numpad2: 0x50,
  Numpad3: 0x51, Numpad0: 0x52, NumpadDecimal: 0x53, IntlBackslash: 0x56, F11: 0x57, F12: 0x58,
  IntlRo: 0x73, Convert: 0x79, NonConvert: 0x7b, IntlYen: 0x7d, NumpadComma: 0x7e,
  KanaMode: 0x70,
  // Korean keyboards: Hangul (toggles Hangul input) and Hanja. They have no release code on a
  // real keyboard; QEMU takes 0x72/0x71 as its lang1/lang2 keys and gives the guest what a
  // Korean PS/2 keyboard sends.
  Lang1: 0x72, Lang2: 0x71,
  NumpadEnter: E0 | 0x1c, ControlRight: E0 | 0x1d, NumpadDivide: E0 | 0x35, PrintScreen: E0 | 0x37,
  AltRight: E0 | 0x38, Home: E0 | 0x47, ArrowUp: E0 | 0x48, PageUp: E0 | 0x49, ArrowLeft: E0 | 0x4b,
  ArrowRight: E0 | 0x4d, End: E0 | 0x4f, ArrowDown: E0 | 0x50, PageDown: E0 | 0x51,
  Insert: E0 | 0x52, Delete: E0 | 0x53, MetaLeft: E0 | 0x5b, MetaRight: E0 | 0x5c,
  ContextMenu: E0 | 0x5d, Power: E0 | 0x5e,
  AudioVolumeMute: E0 | 0x20, AudioVolumeDown: E0 | 0x2e, AudioVolumeUp: E0 | 0x30,
};

// The bytes of a key message: first byte lowest.
function wire(scancode, up) {
  const code = (scancode & 0xff) | (up ? 0x80 : 0);
  return scancode & E0 ? 0xe0 | (code << 8) : code;
}

// Send one press or release of a key (by its `KeyboardEvent.code`) on the inputs channel.
// Answers whether the key is known and the channel was up.
export function sendKey(sc, code, up) {
  const scancode = CODES[code];
  if (scancode === undefined || !sc || !sc.inputs || sc.inputs.state !== 'ready') return false;
  const key = up ? new Messages.SpiceMsgcKeyUp() : new Messages.SpiceMsgcKeyDown();
  key.code = wire(scancode, up);
  const msg = new Messages.SpiceMiniData();
  msg.build_msg(up ? Constants.SPICE_MSGC_INPUTS_KEY_UP : Constants.SPICE_MSGC_INPUTS_KEY_DOWN, key);
  sc.inputs.send_msg(msg);
  return true;
}

// Press the keys in order and release them in reverse (Ctrl+Alt+Del from the page's button).
export function sendChord(sc, codes) {
  for (const c of codes) sendKey(sc, c, false);
  for (const c of [...codes].reverse()) sendKey(sc, c, true);
}

// Take the keyboard of `el` (the element holding spice-html5's canvas) away from spice-html5:
// listeners in the capture phase on `el` see each key before the canvas's own and stop it
// there. `current()` gives the live SPICE connection (it changes on reconnect). Keys held when
// the page loses focus are released, or the guest would see them stuck down.
//
// Browsers on Windows send AltGr as two keys, ControlLeft then AltRight with the same time
// stamp; the guest would see Ctrl+AltGr (a shortcut, not `@`). A ControlLeft is therefore held
// back until the next key: dropped (with its release) if that is AltRight at the same instant,
// sent first otherwise (or after 50 ms).
export function takeKeyboard(el, current) {
  const down = new Set();
  let heldCtrl = null; // { timeStamp, timer }
  let droppedCtrl = false;
  const press = (code, up) => {
    if (sendKey(current(), code, up)) {
      if (up) down.delete(code); else down.add(code);
    }
  };
  const flushCtrl = () => {
    if (!heldCtrl) return;
    clearTimeout(heldCtrl.timer);
    heldCtrl = null;
    press('ControlLeft', false);
  };
  const onKey = (e) => {
    // A key with no physical code (an on-screen or IME keyboard) is left to spice-html5.
    if (!e.code) return;
    const up = e.type === 'keyup';
    e.stopPropagation();
    e.preventDefault();
    // The guest repeats a held key itself; the browser's repeats would double it.
    if (!up && e.repeat) return;
    if (!up && e.code === 'ControlLeft') {
      flushCtrl();
      heldCtrl = { timeStamp: e.timeStamp, timer: setTimeout(flushCtrl, 50) };
      return;
    }
    if (heldCtrl) {
      if (!up && e.code === 'AltRight' && e.timeStamp === heldCtrl.timeStamp) {
        clearTimeout(heldCtrl.timer);
        heldCtrl = null;
        droppedCtrl = true;
      } else {
        flushCtrl();
      }
    }
    if (up && e.code === 'ControlLeft' && droppedCtrl) { droppedCtrl = false; return; }
    press(e.code, up);
  };
  const releaseAll = () => {
    if (heldCtrl) { clearTimeout(heldCtrl.timer); heldCtrl = null; }
    droppedCtrl = false;
    for (const code of down) sendKey(current(), code, true);
    down.clear();
  };
  el.addEventListener('keydown', onKey, true);
  el.addEventListener('keyup', onKey, true);
  el.addEventListener('focusout', releaseAll);
  window.addEventListener('blur', releaseAll);
  return { releaseAll };
}
