// data-confirm on buttons (no inline scripts: the CSP forbids them).
document.addEventListener('submit', (e) => {
  const b = e.submitter || e.target.querySelector('[data-confirm]');
  const msg = b && b.dataset && b.dataset.confirm;
  if (msg && !window.confirm(msg)) e.preventDefault();
}, true);
