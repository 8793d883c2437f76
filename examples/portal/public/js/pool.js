// Keeps spare counts live while the refiller makes spares: one pool's page (#pool) or the pool
// list (#pool-list). Asks for JSON with an Accept header: pool names may contain dots, so the
// routes take no ".json" suffix.
const one = document.getElementById('pool');
const list = document.getElementById('pool-list');
const KEYS = ['spares_ready', 'spares_warming', 'spares_cold', 'owned', 'total'];

function show(el, s) {
  el.dataset.sparesReady = s.spares_ready;
  for (const k of KEYS) {
    const c = el.querySelector('.' + k.replace('_', '-'));
    if (c) c.textContent = s[k];
  }
}

async function poll() {
  try {
    const r = await fetch((one || list).dataset.statusUrl, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    if (r.ok) {
      const body = await r.json();
      if (one) show(one, body.status || {});
      else {
        for (const p of body) {
          const row = list.querySelector(`tr[data-pool="${CSS.escape(p.name)}"]`);
          if (row) show(row, p.status || {});
        }
      }
    }
  } finally {
    setTimeout(poll, one ? 1000 : 2000);
  }
}
if (one || list) poll();
