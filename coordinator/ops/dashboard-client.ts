/**
 * The dashboard's script, as the browser runs it (plain JavaScript, no build step). It
 * reads `GET /status` every 2 s and draws the workers' table and two uPlot charts from
 * it. Everything from the server goes into the page as text (textContent), never as HTML:
 * an exit reason or a URL cannot inject anything.
 */
export const DASHBOARD_SCRIPT = String.raw`
'use strict';
(function () {
  var REFRESH_MS = 2000;
  var $ = function (id) { return document.getElementById(id); };
  var charts = {};

  function text(tag, value, className) {
    var el = document.createElement(tag);
    el.textContent = value === null || value === undefined ? '–' : String(value);
    if (className) el.className = className;
    return el;
  }
  function seconds(s) {
    if (s === null || s === undefined) return null;
    if (s < 60) return s.toFixed(0) + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }
  function bytes(n) {
    if (n === null || n === undefined) return null;
    if (n < 1024) return n + ' B';
    if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1048576).toFixed(1) + ' MiB';
  }
  function ago(iso) {
    if (!iso) return null;
    return seconds(Math.max(0, (Date.now() - Date.parse(iso)) / 1000)) + ' ago';
  }

  function renderWorkers(workers) {
    var body = $('workers');
    var rows = [];
    workers.forEach(function (w) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-worker', w.id);
      tr.setAttribute('data-state', w.state);
      tr.setAttribute('data-pid', w.pid === null ? '' : String(w.pid));
      tr.appendChild(text('td', w.id));
      tr.appendChild(text('td', w.url, 'dim'));
      var state = document.createElement('td');
      state.appendChild(text('span', w.state, 'badge state-' + w.state));
      tr.appendChild(state);
      tr.appendChild(text('td', w.pid, 'num'));
      tr.appendChild(text('td', seconds(w.uptime), 'num'));
      tr.appendChild(text('td', w.restarts, 'num'));
      tr.appendChild(text('td', w.pendingIds, 'num'));
      tr.appendChild(text('td', w.tenants, 'num'));
      tr.appendChild(text('td', bytes(w.walBytes), 'num'));
      var persist = w.lastPersist ? ago(w.lastPersist.at) + ' (' + w.lastPersist.ms + ' ms, ' + w.lastPersist.tenants + ' tenants)' : null;
      tr.appendChild(text('td', persist));
      var exit = w.lastExit ? w.lastExit.reason + ', ' + ago(w.lastExit.at) : null;
      if (w.nextRespawnAt) exit = (exit ? exit + '; ' : '') + 'respawn at ' + new Date(w.nextRespawnAt).toLocaleTimeString();
      tr.appendChild(text('td', exit, 'dim'));
      rows.push(tr);
    });
    body.replaceChildren.apply(body, rows);
  }

  function chart(id, title, series, data) {
    var el = $(id);
    var width = Math.max(300, el.clientWidth);
    if (!charts[id]) {
      charts[id] = new uPlot({
        title: title,
        width: width,
        height: 220,
        scales: { x: { time: true } },
        series: [{}].concat(series),
        axes: [{}, { size: 60 }],
      }, data, el);
    } else {
      if (Math.abs(charts[id].width - width) > 2) charts[id].setSize({ width: width, height: 220 });
      charts[id].setData(data);
    }
  }

  function renderCharts(history) {
    var t = [], items = [], p50 = [], p99 = [];
    history.points.forEach(function (p) {
      t.push(p.t / 1000);
      items.push(p.itemsPerSecond);
      p50.push(p.countP50Ms);
      p99.push(p.countP99Ms);
    });
    chart('chart-items', 'items/s (acknowledged)', [{ label: 'items/s', stroke: '#2563eb', width: 2 }], [t, items]);
    chart('chart-latency', 'count latency (ms)', [
      { label: 'p50', stroke: '#059669', width: 2, spanGaps: false },
      { label: 'p99', stroke: '#dc2626', width: 2, spanGaps: false },
    ], [t, p50, p99]);
  }

  function render(status) {
    $('version').textContent = 'v' + status.version;
    var ready = $('ready');
    ready.textContent = status.ready ? 'ready' : 'not ready: ' + status.notReadyReason;
    ready.className = 'badge ' + (status.ready ? 'state-up' : 'state-down');
    $('uptime').textContent = seconds(status.uptime);
    var up = status.workers.filter(function (w) { return w.state === 'up'; }).length;
    $('live').textContent = up + ' of ' + status.workers.length;
    var last = status.history.points[status.history.points.length - 1];
    $('rate').textContent = last ? last.itemsPerSecond.toFixed(0) : '–';
    $('accepted').textContent = String(status.itemsAccepted);
    var problem = $('config-error');
    problem.textContent = status.configError ? 'config rejected ' + ago(status.configError.at) + ': ' + status.configError.message : '';
    problem.hidden = !status.configError;
    renderWorkers(status.workers);
    renderCharts(status.history);
  }

  function refresh() {
    fetch('/status', { cache: 'no-store' }).then(function (res) {
      if (!res.ok) throw new Error('HTTP ' + res.status);
      return res.json();
    }).then(function (status) {
      render(status);
      $('error').hidden = true;
      $('updated').textContent = new Date().toLocaleTimeString();
    }).catch(function (err) {
      $('error').hidden = false;
      $('error').textContent = 'cannot read /status: ' + err.message + ' (retrying)';
    }).then(function () {
      setTimeout(refresh, REFRESH_MS);
    });
  }
  refresh();
})();
`;
