// Polls an import's progress (written by the library's progress callback) into the bar.
const box = document.getElementById('import');
const bar = document.getElementById('import-progress');
const text = document.getElementById('import-text');
const mib = (b) => (b / 1048576).toFixed(1) + ' MiB';

async function poll() {
  const r = await fetch(box.dataset.url, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  if (!r.ok) { text.textContent = 'error ' + r.status; return; }
  const s = await r.json();
  bar.value = s.fraction;
  box.dataset.status = s.status;
  box.dataset.updates = s.progress_updates;
  text.textContent = s.status === 'failed' ? 'failed: ' + s.error
    : s.status === 'done' ? `done: ${mib(s.total_bytes)}, image ${s.image_uuid}`
    : `${s.status}: ${mib(s.done_bytes)} of ${mib(s.total_bytes)} (${Math.round(s.fraction * 100)} %)`;
  if (s.status !== 'done' && s.status !== 'failed') setTimeout(poll, 250);
}
poll();
