"""The stylesheet and the one small script every page loads (no build step)."""

CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
header { background: #24324a; color: #fff; padding: 0.5em 1.5em; }
header a { color: #cfe0ff; margin-right: 1.2em; text-decoration: none; }
main { margin: 1em auto; max-width: 75em; padding: 0 1.5em; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
.sub { color: #666; } .grid { display: flex; gap: 2em; flex-wrap: wrap; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 0.15em 0.6em; }
th { text-align: left; border-bottom: 1px solid #ccc; } th a { color: inherit; }
.ex { font-family: ui-monospace, monospace; font-size: 0.85em; line-height: 1.8;
      border-bottom: 1px solid #eee; padding: 0.2em 0; white-space: pre-wrap; }
.ex .v { color: #888; display: inline-block; width: 5em; }
.tok { border-radius: 2px; } .peak { outline: 1px solid #c40; } .special { color: #aaa; }
.pos { color: #060; } .neg { color: #a00; } .error { color: #a00; font-weight: 600; }
.status { color: #555; font-style: italic; } textarea, input[type=text] { width: 100%; }
textarea { font-family: ui-monospace, monospace; } form label { display: block; margin: 0.4em 0; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5em; }
.box { border: 1px solid #ddd; padding: 0.6em; border-radius: 4px; }
#tip { position: fixed; background: #fff; border: 1px solid #888; padding: 2px 6px;
       font-size: 0.85em; pointer-events: none; display: none; }
.metrics { max-height: 12em; overflow: auto; border: 1px solid #eee; }
.grid > div { min-width: 0; } .grid td { overflow-wrap: anywhere; } .grid > div:first-child { max-width: 38em; }
.feats a { margin-right: 0.5em; } canvas { image-rendering: pixelated; border: 1px solid #ccc; }
"""

JS = r"""
// Model requests: POST JSON, poll the queue position while waiting, show the HTML returned.
function saescopeTicket() { return Math.random().toString(36).slice(2, 14); }
async function saescopePost(url, body, target) {
  const ticket = saescopeTicket();
  const status = document.createElement('p');
  status.className = 'status'; status.textContent = 'sending...';
  target.replaceChildren(status);
  let done = false;
  const poll = async () => {
    while (!done) {
      try {
        const q = await (await fetch('/api/queue?ticket=' + ticket)).json();
        if (!done && q.ahead !== null)
          status.textContent = q.ahead > 0 ? 'waiting (' + q.ahead + ' ahead)' : 'running...';
      } catch (e) {}
      await new Promise(r => setTimeout(r, 300));
    }
  };
  poll();
  try {
    const r = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json',
      'X-Ticket': ticket}, body: JSON.stringify(body)});
    const data = await r.json();
    done = true;
    if (!r.ok) { target.innerHTML = '<p class="error"></p>';
                 target.firstChild.textContent = data.error; return null; }
    target.innerHTML = data.html; saescopeDraw(target); return data;
  } catch (e) {
    done = true; target.innerHTML = '<p class="error"></p>';
    target.firstChild.textContent = 'the request failed: ' + e; return null;
  }
}
// Pictures of a feature vector: values in data-picture, drawn on a canvas (blue -, red +).
function saescopeDraw(root) {
  root.querySelectorAll('canvas[data-picture]').forEach(c => {
    const p = JSON.parse(c.dataset.picture); c.width = p.cols; c.height = p.rows;
    const ctx = c.getContext('2d'); const img = ctx.createImageData(p.cols, p.rows);
    p.values.forEach((v, i) => { const a = Math.min(Math.abs(v) / p.limit, 1);
      img.data.set(v >= 0 ? [255, 255 * (1 - a), 255 * (1 - a), 255]
                          : [255 * (1 - a), 255 * (1 - a), 255, 255], 4 * i); });
    ctx.putImageData(img, 0, 0);
  });
}
// The feature map: hover names a feature, click opens it.
function saescopeMap(svg, base) {
  const tip = document.getElementById('tip');
  svg.addEventListener('mousemove', e => {
    const f = e.target.dataset && e.target.dataset.f;
    if (!f) { tip.style.display = 'none'; return; }
    tip.textContent = 'feature ' + f + ': ' + e.target.dataset.t;
    tip.style.left = (e.clientX + 12) + 'px'; tip.style.top = (e.clientY + 12) + 'px';
    tip.style.display = 'block';
  });
  svg.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
  svg.addEventListener('click', e => {
    const f = e.target.dataset && e.target.dataset.f;
    if (f) window.location = base + '/feature/' + f;
  });
}
// Live "test text" box: re-run after a pause in typing.
function saescopeLive(input, url, target) {
  let timer = null;
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (input.value.trim()) saescopePost(url, {text: input.value}, target);
    }, 300);
  });
}
function saescopeForm(form) {
  const body = {};
  new FormData(form).forEach((v, k) => { body[k] = v; });
  form.querySelectorAll('input[type=checkbox]').forEach(c => { body[c.name] = c.checked; });
  return body;
}
document.addEventListener('DOMContentLoaded', () => saescopeDraw(document));
"""
