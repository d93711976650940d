import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { DASHBOARD_SCRIPT } from './dashboard-client.js';

const require = createRequire(import.meta.url);

/** `</script` or `</style` inside inlined code would end its element early. */
function inline(code: string, tag: 'script' | 'style'): string {
  return code.replace(new RegExp(`</${tag}`, 'gi'), `<\\/${tag}`);
}

const STYLE = `
  :root { color-scheme: light; font: 14px/1.4 system-ui, sans-serif; color: #111827; background: #f9fafb; }
  body { margin: 0 auto; padding: 16px 24px; max-width: 1400px; }
  header { display: flex; flex-wrap: wrap; gap: 24px; align-items: baseline; }
  h1 { font-size: 20px; margin: 0; }
  .facts span { margin-right: 18px; } .facts b { font-variant-numeric: tabular-nums; }
  table { border-collapse: collapse; width: 100%; margin: 16px 0; background: #fff; }
  th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e5e7eb; white-space: nowrap; }
  th { font-weight: 600; color: #374151; background: #f3f4f6; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.dim { color: #6b7280; white-space: normal; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 9px; font-size: 12px; font-weight: 600; background: #e5e7eb; }
  .state-up { background: #d1fae5; color: #065f46; }
  .state-starting, .state-suspect, .state-stopping { background: #fef3c7; color: #92400e; }
  .state-down, .state-backing-off, .state-stopped { background: #fee2e2; color: #991b1b; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
  .charts > div { background: #fff; padding: 8px; min-width: 0; }
  .alert { background: #fee2e2; color: #991b1b; padding: 8px 12px; margin: 8px 0; }
  footer { color: #6b7280; font-size: 12px; }
`;

/**
 * The dashboard: one page with everything inlined — its style, uPlot (a ~50 KB charting
 * library from npm, read from node_modules, no CDN) and its script — so it needs no
 * other route and works offline. Built once, on first request.
 */
export function dashboardPage(): string {
  const uplotJs = readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8');
  const uplotCss = readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CountApp dashboard</title>
<style>${inline(uplotCss, 'style')}</style>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>CountApp <small id="version"></small></h1>
  <span id="ready" class="badge">…</span>
  <div class="facts">
    <span>workers up <b id="live">–</b></span>
    <span>items/s <b id="rate">–</b></span>
    <span>items accepted <b id="accepted">–</b></span>
    <span>coordinator uptime <b id="uptime">–</b></span>
  </div>
</header>
<div id="error" class="alert" hidden></div>
<div id="config-error" class="alert" hidden></div>
<table>
  <thead><tr><th>worker</th><th>url</th><th>state</th><th>pid</th><th>uptime</th><th>restarts</th><th>pending ids</th><th>tenants</th><th>write-ahead log</th><th>last persist</th><th>last exit</th></tr></thead>
  <tbody id="workers"></tbody>
</table>
<div class="charts"><div id="chart-items"></div><div id="chart-latency"></div></div>
<footer>Refreshes every 2 s from <a href="/status">/status</a> · last update <span id="updated">–</span> · <a href="/metrics">/metrics</a> · <a href="/openapi.json">/openapi.json</a></footer>
<script>${inline(uplotJs, 'script')}</script>
<script>${inline(DASHBOARD_SCRIPT, 'script')}</script>
</body>
</html>
`;
}
