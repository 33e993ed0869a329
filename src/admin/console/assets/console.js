// permgate console: the live parts. The pages are complete without this script; it keeps the header's
// generation and content hash current, re-fetches the page's live part (#pg-live) when the config (or, on
// Recent denials, the newest denial) changes, and draws the Traffic chart. It never builds markup from
// data: the live part is the server's own escaped HTML, and everything else is set with textContent.
'use strict';

(() => {
  const POLL_MS = 2000;
  const page = document.body.dataset.page;
  const generation = document.getElementById('pg-generation');
  const hash = document.getElementById('pg-hash');
  const notice = document.getElementById('pg-notice');
  let stamp = null;

  async function getJson(url) {
    const response = await fetch(url, { cache: 'no-store', credentials: 'same-origin' });
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    return response.json();
  }

  function say(text) {
    notice.textContent = text;
    notice.hidden = text === '';
  }

  // The page again, from the server; its #pg-live replaces ours (forms outside it keep what is typed).
  async function refreshLive() {
    const live = document.getElementById('pg-live');
    if (!live) return;
    const response = await fetch(window.location.href, { cache: 'no-store', credentials: 'same-origin' });
    if (!response.ok) return;
    const parsed = new DOMParser().parseFromString(await response.text(), 'text/html');
    const next = parsed.getElementById('pg-live');
    if (next) live.replaceWith(document.adoptNode(next));
  }

  function stampOf(live) {
    const parts = [live.generation, live.content_hash, live.last_reload_at, live.last_change_generation, live.in_sync];
    if (page === '/console/denials') parts.push(live.newest_denial);
    return JSON.stringify(parts);
  }

  // ---- the Traffic chart ----------------------------------------------------------------------------
  const SERIES = [
    { name: 'requests', color: '#2563eb' },
    { name: 'denied', color: '#dc2626' },
    { name: 'upstream_errors', color: '#d97706' },
  ];

  function rates(samples) {
    const points = [];
    for (let i = 1; i < samples.length; i += 1) {
      const a = samples[i - 1];
      const b = samples[i];
      const seconds = (b.at_ms - a.at_ms) / 1000;
      if (seconds <= 0) continue;
      const point = { at: b.at_ms };
      for (const series of SERIES) point[series.name] = Math.max(0, (b[series.name] - a[series.name]) / seconds);
      const decisions = b.decisions - a.decisions;
      point.latency_us = decisions > 0 ? ((b.decision_seconds - a.decision_seconds) / decisions) * 1e6 : null;
      points.push(point);
    }
    return points;
  }

  async function drawChart() {
    const canvas = document.getElementById('pg-chart');
    if (!canvas) return;
    const traffic = await getJson('/console/api/traffic');
    const points = rates(traffic.samples);
    const context = canvas.getContext('2d');
    const width = canvas.width;
    const height = canvas.height;
    const left = 56;
    const bottom = height - 24;
    context.clearRect(0, 0, width, height);
    context.font = '12px system-ui, sans-serif';
    context.fillStyle = '#475569';
    context.strokeStyle = '#cbd5e1';
    context.lineWidth = 1;
    context.beginPath();
    context.moveTo(left, 8);
    context.lineTo(left, bottom);
    context.lineTo(width - 8, bottom);
    context.stroke();
    let top = 1;
    for (const point of points) for (const series of SERIES) top = Math.max(top, point[series.name]);
    context.fillText(`${top.toFixed(top < 10 ? 1 : 0)}/s`, 4, 16);
    context.fillText('0', 40, bottom);
    const span = 10 * 60 * 1000;
    const end = points.length ? points[points.length - 1].at : Date.now();
    context.fillText('10 min ago', left, height - 6);
    context.fillText('now', width - 36, height - 6);
    const x = (at) => left + ((at - (end - span)) / span) * (width - 8 - left);
    const y = (value) => bottom - (value / top) * (bottom - 12);
    for (const series of SERIES) {
      context.strokeStyle = series.color;
      context.lineWidth = 2;
      context.beginPath();
      points.forEach((point, index) => {
        if (index === 0) context.moveTo(x(point.at), y(point[series.name]));
        else context.lineTo(x(point.at), y(point[series.name]));
      });
      context.stroke();
    }
    const latency = document.getElementById('pg-latency');
    const last = points.length ? points[points.length - 1] : null;
    if (latency) {
      latency.textContent = last && last.latency_us !== null
        ? `decision latency now: ${last.latency_us.toFixed(1)} µs (mean over the last interval)`
        : 'no decisions in the last interval';
    }
  }

  async function poll() {
    try {
      const live = await getJson('/console/api/live');
      generation.textContent = String(live.generation);
      hash.textContent = live.content_hash.slice(0, 16);
      hash.title = live.content_hash;
      const next = stampOf(live);
      if (page === '/console/traffic') {
        await drawChart();
        await refreshLive();
      } else if (stamp !== null && next !== stamp) {
        await refreshLive();
      }
      stamp = next;
      say(live.in_sync ? '' : 'the files on disk are a rejected config: see Overview');
    } catch (error) {
      say(`cannot reach the gateway (${error.message}); retrying`);
    }
  }

  poll();
  window.setInterval(poll, POLL_MS);
})();
