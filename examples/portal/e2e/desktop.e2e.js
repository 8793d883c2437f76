#!/usr/bin/env node
// The Xfce desktop in the browser: a portal (e2e/with-portal with E2E_IMAGE=xfce) whose pool
// hands out memory-template clones of the Xfce template built from Debian packages, driven by
// Debian's Chromium. Each user's desktop:
//   - is on the canvas (equal to QEMU's screendump, many colours: the panel and icons);
//   - is made for them: their login runs the session, their keyboard layout and time zone, and
//     the panel shows their name (OCR);
//   - follows the page's size (the guest's xrandr shows what the page asked for);
//   - shares the clipboard both ways (xclip in the guest, the page's clipboard panel);
//   - takes typing by physical key: a terminal opened with Ctrl+Alt+T, a command typed on a US
//     and on a German layout (AltGr: @ { } EUR) writes a file, read back byte-exact.
// What the guest did is read through its agent (vmpoolctl guest exec), never from the page.
// Prints "N passed, N failed"; exit 1 on any failure.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const L = require('./lib');

const SHOTS = process.env.E2E_SHOTS || path.resolve(__dirname, '../../../target/portal');
const PW = 'e2e password 1';
const VERBOSE = !!process.env.E2E_VERBOSE;
const { log, assert, check, section, shot, finish, crashed } = require('./runner').runner('desktop e2e', SHOTS);

// X in the guest, as root (lightdm's authority for display :0).
const X = ['env', 'DISPLAY=:0', 'XAUTHORITY=/var/run/lightdm/root/:0'];
const sh = (uuid, script) => L.guest(uuid, ['/bin/sh', '-c', script]);

// Where each character is on a layout: [code, ...modifier codes]. Only what the commands use.
const LOWER = 'abcdefghijklmnopqrstuvwxyz';
function layout(name) {
  const m = { ' ': ['Space'], '\n': ['Enter'] };
  for (const c of LOWER) m[c] = [`Key${c.toUpperCase()}`];
  for (let d = 0; d <= 9; d++) m[String(d)] = [`Digit${d}`];
  if (name === 'us') {
    Object.assign(m, { "'": ['Quote'], '@': ['Digit2', 'ShiftLeft'], '{': ['BracketLeft', 'ShiftLeft'],
      '}': ['BracketRight', 'ShiftLeft'], '>': ['Period', 'ShiftLeft'], '-': ['Minus'] });
  } else { // de
    Object.assign(m, { y: ['KeyZ'], z: ['KeyY'], "'": ['Backslash', 'ShiftLeft'], '@': ['KeyQ', 'AltRight'],
      '{': ['Digit7', 'AltRight'], '}': ['Digit0', 'AltRight'], '€': ['KeyE', 'AltRight'],
      '>': ['IntlBackslash', 'ShiftLeft'], '-': ['Slash'] });
  }
  return m;
}

// Physical keys through the DevTools protocol: the page's keyboard code reads only
// KeyboardEvent.code, and this way keys no US layout has (IntlBackslash) can be pressed too.
async function keys(page) {
  const cdp = await page.context().newCDPSession(page);
  const ev = (type, code) => cdp.send('Input.dispatchKeyEvent', { type, code, key: code });
  const down = (code) => ev('rawKeyDown', code);
  const up = (code) => ev('keyUp', code);
  return {
    async chord(...codes) { // press in order, release in reverse
      for (const c of codes) await down(c);
      for (const c of [...codes].reverse()) await up(c);
    },
    async type(text, lay) {
      for (const ch of text) {
        const k = lay[ch];
        if (!k) throw new Error(`no key for ${JSON.stringify(ch)}`);
        const [code, ...mods] = k;
        for (const m of mods) await down(m);
        await down(code); await up(code);
        for (const m of mods.reverse()) await up(m);
        await L.sleep(40); // a person's pace; TCG's X keeps up
      }
    },
  };
}

async function signUpAndGetDesktop(browser, name, opts) {
  const page = await L.newPage(browser, VERBOSE ? log : null, opts);
  await page.goto(L.BASE + '/signup');
  await page.fill('#user_username', name);
  await page.fill('#user_password', PW);
  await page.fill('#user_password_confirmation', PW);
  await Promise.all([page.waitForNavigation(), page.click('#signup-form input[type=submit]')]);
  await Promise.all([L.awaitDesktop(page), page.click('#pools tr[data-pool="desktop"] .get-desktop')]);
  return { page, uuid: L.desktopUuid(page) };
}

// The size the page asked the guest for, once the guest shows it (xrandr) and the canvas too.
async function screenFollows(page, uuid, what) {
  return L.waitFor(`the guest's screen to take the page's size (${what})`, async () => {
    const want = await page.evaluate(() => document.getElementById('desktop').dataset.screenRequest);
    if (!want) return null;
    const xr = L.guest(uuid, [...X, 'xrandr', '--current']);
    const cur = /current (\d+) x (\d+)/.exec(xr);
    const canvas = await page.evaluate(() => {
      const c = document.getElementById('spice_surface_0');
      return c ? `${c.width}x${c.height}` : null;
    });
    return cur && `${cur[1]}x${cur[2]}` === want && canvas === want ? want : null;
  }, 90000, 1000);
}

// Ctrl+Alt+T opens Xfce's terminal; the command typed there writes FILE in the user's home.
async function typeInTerminal(page, uuid, login, lay, command, file) {
  const k = await keys(page);
  const before = sh(uuid, `pgrep -u ${login} -x bash | wc -l`).trim();
  await page.mouse.click(400, 500); // the console has the keyboard (a click on the desktop)
  await k.chord('ControlLeft', 'AltLeft', 'KeyT');
  await L.waitFor('a shell in a new terminal', () => sh(uuid, `pgrep -u ${login} -x bash | wc -l`).trim() !== before, 60000, 1000);
  await L.sleep(3000); // the terminal window maps and takes the focus
  await k.type(command + '\n', lay);
  try {
    return await L.waitFor(`${file} written by the typed command`, () => {
      // Read where the terminal's shell is: its home (in a restored session the account was
      // renamed in place, and its home directory kept).
      try { return sh(uuid, `cat /proc/$(pgrep -n -u ${login} -x bash)/cwd/${file}`); } catch (e) { return null; }
    }, 60000, 1000);
  } catch (e) {
    await shot(page, `xfce-terminal-${file}-failed`);
    throw e;
  }
}

// The text of the desktop's top panel (tesseract on the canvas's top strip, enlarged) when it
// names alice: the panel's user button shows the account's full name.
async function panelText(page, who = 'alice') {
  const b64 = await page.evaluate(() => {
    const c = document.getElementById('spice_surface_0');
    const strip = document.createElement('canvas');
    strip.width = c.width * 2; strip.height = 28 * 2;
    strip.getContext('2d').drawImage(c, 0, 0, c.width, 28, 0, 0, strip.width, strip.height);
    return strip.toDataURL('image/png').split(',')[1];
  });
  const file = path.join(SHOTS, 'xfce-panel-strip.png');
  fs.writeFileSync(file, Buffer.from(b64, 'base64'));
  const r = spawnSync('tesseract', [file, '-', '--psm', '11'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tesseract: ${r.stderr || r.error}`);
  return new RegExp(`\\b${who}\\b`, 'i').test(r.stdout) ? r.stdout : null;
}

async function main() {
  const browser = await L.launch();
  const ctx = {};

  await section('alice (en-US, New York): her Xfce desktop in the browser', async () => {
    await check('"Get a desktop" hands out a clone of the Xfce template', async () => {
      const t = Date.now();
      Object.assign(ctx, { alice: await signUpAndGetDesktop(browser, 'alice', { locale: 'en-US', timezoneId: 'America/New_York' }) });
      const vm = L.store('vm', ctx.alice.uuid);
      assert(vm.state === 'running' && vm.pool === 'desktop', `VM ${vm.state} in ${vm.pool}`);
      return `${Date.now() - t} ms to the page`;
    });
    const { page, uuid } = ctx.alice;
    await check('the desktop (panel, icons) is on the canvas, equal to the guest\'s screen', async () => {
      const s = await L.seesGuest(page, 'alice\'s Xfce');
      const colours = await page.evaluate(() => {
        const c = document.getElementById('spice_surface_0');
        const a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < a.length; i += 16) seen.add((a[i] << 16) | (a[i + 1] << 8) | a[i + 2]);
        return seen.size;
      });
      // The test guest's text console has a handful of colours; a desktop with icons hundreds.
      assert(colours > 200, `${colours} colours on the canvas`);
      await L.saveCanvas(page, path.join(SHOTS, 'xfce-desktop.png'));
      await shot(page, 'xfce-desktop-page');
      return `${s.size}, ${colours} colours, ${(s.match * 100).toFixed(1)}% equal to the screendump`;
    });
    await check('the desktop is hers: her login runs the session, US keyboard, her time zone', async () => {
      const who = sh(uuid, 'ps -o user= -C xfce4-session').trim();
      assert(who === 'alice', `xfce4-session runs as ${JSON.stringify(who)}`);
      const kb = L.guest(uuid, [...X, 'setxkbmap', '-query']);
      assert(/layout:\s+us\b/.test(kb), kb);
      const tz = sh(uuid, 'readlink /etc/localtime').trim();
      assert(tz.endsWith('America/New_York'), tz);
      return `${who}, ${/layout:\s+(\S+)/.exec(kb)[1]}, ${tz}`;
    });
    await check('her panel greets her by name (OCR of the panel, once it read her account)', async () => {
      const text = await L.waitFor('her name on the panel', () => panelText(page), 60000, 2000);
      return JSON.stringify(text.replace(/\s+/g, ' ').trim());
    });
    await check('the guest\'s screen follows the page: its size, then a smaller window', async () => {
      const first = await screenFollows(page, uuid, '1280x900 window');
      await page.setViewportSize({ width: 1024, height: 768 });
      await L.waitFor('the page to ask for a new size', () => page.evaluate((f) =>
        document.getElementById('desktop').dataset.screenRequest !== f, first), 10000, 100);
      const second = await screenFollows(page, uuid, '1024x768 window');
      assert(first !== second, `the size did not change: ${first}`);
      return `${first}, then ${second}`;
    });
    await check('clipboard, guest to page: what the guest copies is in the page\'s clipboard panel', async () => {
      const text = 'Grüße from the guest: 5 € – ok';
      sh(uuid, `printf %s '${text}' | ${X.join(' ')} setsid xclip -selection clipboard -t UTF8_STRING -i >/dev/null 2>&1 &`);
      await L.waitFor('the page\'s clipboard panel to have the guest\'s text',
        () => page.evaluate(() => document.getElementById('clipboard').value), 30000, 250);
      const got = await page.evaluate(() => document.getElementById('clipboard').value);
      assert(got === text, `the panel has ${JSON.stringify(got)}`);
      return JSON.stringify(got);
    });
    await check('clipboard, page to guest: what the page offers is what the guest pastes', async () => {
      const text = 'from the page: ß, 日本語, ✓';
      await page.click('#clipboard-panel summary').catch(() => {});
      await page.fill('#clipboard', text);
      const got = await L.waitFor('the guest to paste the page\'s text', () => {
        try {
          const out = L.guest(uuid, [...X, 'timeout', '10', 'xclip', '-o', '-selection', 'clipboard', '-t', 'UTF8_STRING'], 20);
          return out === text ? out : null;
        } catch (e) { return null; }
      }, 30000, 1000);
      return JSON.stringify(got);
    });
    await check('a terminal opened with Ctrl+Alt+T; a command typed on the US layout writes its file byte-exact', async () => {
      const got = await typeInTerminal(page, uuid, 'alice', layout('us'), "echo 'x@{}x-us' >kbus", 'kbus');
      await shot(page, 'xfce-terminal-us');
      assert(got === 'x@{}x-us\n', `the file has ${JSON.stringify(got)}`);
      return JSON.stringify(got);
    });
  });

  await section('bob (de-DE, Berlin): a German keyboard', async () => {
    await check('bob gets his own desktop, made for him: German keyboard, Berlin time', async () => {
      ctx.bob = await signUpAndGetDesktop(browser, 'bob', { locale: 'de-DE', timezoneId: 'Europe/Berlin' });
      assert(ctx.bob.uuid !== (ctx.alice && ctx.alice.uuid), 'bob got alice\'s VM');
      const { uuid } = ctx.bob;
      await L.seesGuest(ctx.bob.page, 'bob\'s Xfce');
      const who = sh(uuid, 'ps -o user= -C xfce4-session').trim();
      const kb = L.guest(uuid, [...X, 'setxkbmap', '-query']);
      const tz = sh(uuid, 'readlink /etc/localtime').trim();
      assert(who === 'bob' && /layout:\s+de\b/.test(kb) && tz.endsWith('Europe/Berlin'), `${who}; ${kb}; ${tz}`);
      return `${who}, de, ${tz}`;
    });
    await check('a command typed on the German layout (AltGr @ { } €, Shift <>, y/z) writes its file byte-exact', async () => {
      const { page, uuid } = ctx.bob;
      const got = await typeInTerminal(page, uuid, 'bob', layout('de'), "echo 'x@{€}yz-de' >kbde", 'kbde');
      await shot(page, 'xfce-terminal-de');
      assert(got === 'x@{€}yz-de\n', `the file has ${JSON.stringify(got)}`);
      return JSON.stringify(got);
    });
  });

  await browser.close();
  finish('desktop-e2e-results.json');
}

main().catch(crashed);
