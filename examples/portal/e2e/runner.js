// The browser suites' way of running checks: one named check at a time, a failure counted and
// reported and the rest of its section skipped (later checks there depend on it), other
// sections still run; at the end "N passed, N failed" and the results as JSON.
'use strict';
const fs = require('fs');
const path = require('path');

class SectionStop extends Error {}

function runner(suite, shotsDir) {
  fs.mkdirSync(shotsDir, { recursive: true });
  const t0 = Date.now();
  const state = { passed: 0, failed: 0, results: [] };
  const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s]`, ...a);
  const assert = (cond, msg) => { if (!cond) throw new Error(msg); };

  async function check(name, fn) {
    const t = Date.now();
    try {
      const detail = await fn();
      state.passed++;
      state.results.push({ name, ok: true, ms: Date.now() - t });
      log('ok  ', name, detail ? `(${detail})` : '');
    } catch (e) {
      state.failed++;
      state.results.push({ name, ok: false, ms: Date.now() - t, error: String(e && e.message || e) });
      log('FAIL', name, '-', String(e && e.stack || e).split('\n').slice(0, 3).join(' | '));
      throw new SectionStop();
    }
  }

  async function section(name, fn) {
    log(`-- ${name}`);
    try { await fn(); } catch (e) { if (!(e instanceof SectionStop)) { state.failed++; log('FAIL', name, e.stack); } }
  }

  async function shot(page, name) {
    await page.screenshot({ path: path.join(shotsDir, name + '.png') }).catch(() => {});
  }

  // Write the results, print the summary line and exit (1 on any failure).
  function finish(resultsFile) {
    fs.writeFileSync(path.join(shotsDir, resultsFile), JSON.stringify(state, null, 2));
    console.log(`${suite}: ${state.passed} passed, ${state.failed} failed`);
    console.log(`${state.passed} passed, ${state.failed} failed`);
    process.exit(state.failed ? 1 : 0);
  }

  // For main().catch: a crash outside any check counts as one more failure.
  function crashed(e) {
    console.error(e);
    console.log(`${state.passed} passed, ${state.failed + 1} failed`);
    process.exit(1);
  }

  return { log, assert, check, section, shot, finish, crashed };
}

module.exports = { runner };
