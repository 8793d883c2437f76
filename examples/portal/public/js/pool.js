// Keeps a pool's spare counts live while the refiller makes spares.
const box = document.getElementById('pool');
async function poll() {
  try {
    const r = await fetch(box.dataset.statusUrl, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    if (r.ok) {
      const p = await r.json();
      const s = p.status || {};
      box.dataset.sparesReady = s.spares_ready;
      for (const k of ['spares_ready', 'spares_warming', 'spares_cold', 'owned', 'total']) {
        const el = box.querySelector('.' + k.replace('_', '-'));
        if (el) el.textContent = s[k];
      }
    }
  } finally {
    setTimeout(poll, 1000);
  }
}
poll();
