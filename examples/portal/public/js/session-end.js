// The desktop page of a desktop whose pool limits sessions (max_session_s): from
// data-session-warning seconds before the end, a notice counts down and says what the end does
// (keep: the desktop goes to sleep as it is; refresh: it is replaced by a fresh one, the home
// stays). Once the end has passed, the page asks for the desktop's state until the pool has
// ended the session (its next refill), then loads again: "asleep", or the desktop list.
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
  let asking = false;
  const ask = async () => {
    if (asking) return;
    asking = true;
    try {
      const r = await fetch(view.dataset.statusUrl, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
      const s = r.ok ? await r.json() : null;
      if (!s || s.state !== 'running') window.location.reload();
    } catch (_) {
      // the next tick asks again
    } finally {
      asking = false;
    }
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
