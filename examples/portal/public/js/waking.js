// The desktop page of a desktop asleep: its Wake button's request lasts as long as the wake
// (a fraction of a second to a few seconds), and the page says "waking" meanwhile instead of
// looking stuck.
const view = document.getElementById('desktop');
const wake = document.getElementById('start');
if (view && wake && wake.form && view.dataset.state === 'suspended') {
  wake.form.addEventListener('submit', () => {
    view.dataset.state = 'waking';
    const badge = document.querySelector('.toolbar .state');
    if (badge) {
      badge.textContent = 'waking';
      badge.className = 'state state-waking';
    }
    const card = document.getElementById('desktop-asleep');
    if (card) {
      card.replaceChildren('This desktop is ', Object.assign(document.createElement('strong'), { textContent: 'waking' }),
        ': it goes on where you left it in a moment.');
    }
    // The form is on its way; a second click would only queue a second wake.
    wake.disabled = true;
  });
}
