// The desktop page of a desktop whose pool limits sessions (max_session_s): from
// data-session-warning seconds before the end, a notice counts down and says what the end does
// (keep: the desktop goes to sleep as it is; refresh: it is replaced by a fresh one, the home
// stays). Once the end has passed, the page asks for the desktop's state until the pool has
// ended the session (its next refill), then loads again: "asleep", or the desktop list (a
// desktop released is a 404 here).
const view = document.getElementById('desktop');
const note = document.getElementById('session-ending');
const ends = Number(view && view.dataset.sessionEnds);
if (view && note && ends > 0) {
  const warning = Number(view.dataset.sessionWarning || 300);
  const fate = view.dataset.sessionEndPolicy === 'refresh'
    ? 'this desktop is then replaced by a fresh one: save your files in your home folder'
    : 'this desktop then goes to sleep as it is; wake it to go on';
  const at = new Date(ends * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const clock = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  // After the end: ask for the desktop's state, less and less often (a portal without its
  // refill thread never ends it), and load the page again once the session has ended.
  let nextAsk = 0;
  let wait = 1000;
  const ask = async () => {
    if (Date.now() < nextAsk) return;
    nextAsk = Infinity; // one request at a time
    let ended = false;
    try {
      const r = await fetch(view.dataset.statusUrl, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
      if (r.status === 404) ended = true; // released
      else if (r.ok) ended = ['suspended', 'stopped', 'failed'].includes((await r.json()).state);
    } catch (_) {
      // asked again later
    }
    if (ended) {
      window.location.reload();
      return;
    }
    wait = Math.min(wait * 2, 30000);
    nextAsk = Date.now() + wait;
  };
  const tick = () => {
    const left = Math.round(ends - Date.now() / 1000);
    if (left > warning) return;
    note.hidden = false;
    view.dataset.session = left > 0 ? 'ending' : 'ended';
    if (left > 0) {
      note.textContent = `This session ends in ${clock(left)} (at ${at}): ${fate}.`;
    } else {
      note.textContent = `This session has ended: ${fate}.`;
      ask();
    }
  };
  tick();
  setInterval(tick, 1000);
}
