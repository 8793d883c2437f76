// Polls an import's progress (written by the library's progress callback) into the bar, until
// the import is done or failed, or the portal stops answering (a few errors in a row).
const box = document.getElementById('import');
const bar = document.getElementById('import-progress');
const text = document.getElementById('import-text');
const mib = (b) => (b / 1048576).toFixed(1) + ' MiB';
const MAX_ERRORS = 5;
let errors = 0;

function again(failedNow) {
  errors = failedNow ? errors + 1 : 0;
  if (errors >= MAX_ERRORS) {
    text.textContent += ' (stopped asking: reload the page to try again)';
    return;
  }
  setTimeout(poll, failedNow ? 1000 * errors : 250);
}

async function poll() {
  let s;
  try {
    const r = await fetch(box.dataset.url, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    if (!r.ok) throw new Error('error ' + r.status);
    s = await r.json();
  } catch (e) {
    text.textContent = e.message;
    again(true);
    return;
  }
  bar.value = s.fraction;
  box.dataset.status = s.status;
  box.dataset.updates = s.progress_updates;
  text.textContent = s.status === 'failed' ? 'failed: ' + s.error
    : s.status === 'done' ? `done: ${mib(s.total_bytes)}, image ${s.image_uuid}`
    : `${s.status}: ${mib(s.done_bytes)} of ${mib(s.total_bytes)} (${Math.round(s.fraction * 100)} %)`;
  if (s.status !== 'done' && s.status !== 'failed') again(false);
}
if (box) poll(); // once even for a finished import: the numbers come from the JSON
