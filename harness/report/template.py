"""The HTML report template (one self-contained page: inline CSS, images as data: URIs, no network)."""

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; margin: 0; color: #1d2327;
       background: #fafafa; font-size: 14px; line-height: 1.45; }
main { max-width: 1360px; margin: 0 auto; padding: 16px 28px 60px; }
h1 { font-size: 24px; margin: 12px 0 4px; } h2 { font-size: 19px; margin: 30px 0 8px; border-bottom: 2px solid #ddd;
  padding-bottom: 4px; } h3 { font-size: 15px; margin: 18px 0 6px; }
.sub { color: #555; margin: 0 0 10px; }
.banner { padding: 12px 16px; border-radius: 6px; margin: 12px 0; font-size: 16px; }
.banner.incomplete { background: #fde2e1; border: 2px solid #c0392b; color: #7b1d14; }
.banner.incomplete strong { font-size: 20px; letter-spacing: 1px; }
.banner.ok { background: #e6f4ea; border: 1px solid #8bc79a; }
nav { font-size: 13px; margin: 6px 0 12px; } nav a { margin-right: 12px; color: #1f5fa8; }
table { border-collapse: collapse; background: white; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid #d6d6d6; padding: 5px 9px; text-align: left; vertical-align: top; }
th { background: #eef1f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.headline td:first-child { font-weight: 600; white-space: nowrap; }
table.headline th.eng { min-width: 230px; font-size: 14px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.unreliable { background: #fff4d6; } .unreliable::after { content: " †"; color: #a66b00; font-weight: 700; }
.partial { background: repeating-linear-gradient(45deg, #fff, #fff 6px, #f0f0f0 6px, #f0f0f0 12px); color: #555; }
.partial::after { content: " ‡"; color: #777; } .unreliable.partial::after { content: " † ‡"; }
.bad { background: #fde2e1; color: #7b1d14; font-weight: 600; } .warn { background: #fff4d6; }
.verdict { display: inline-block; white-space: nowrap; padding: 1px 8px; border-radius: 10px; font-weight: 700; font-size: 12px; }
.v-pass { background: #d4efdc; color: #1e6b34; } .v-fail { background: #f8d0cc; color: #8a1f12; }
.v-not-measured { background: #e3e3e3; color: #444; }
.v-meets { background: #d4efdc; color: #1e6b34; } .v-misses { background: #f8d0cc; color: #8a1f12; }
.notes { color: #555; font-size: 12px; }
.plots { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px; }
figure { margin: 0; background: white; border: 1px solid #ddd; border-radius: 6px; padding: 8px; }
figure img { width: 100%; height: auto; display: block; } figcaption { font-size: 12px; color: #555; margin-top: 4px; }
.nodata { padding: 40px 10px; text-align: center; color: #777; background: #f3f3f3; }
pre#decision-record { max-height: 460px; overflow-y: auto; }
.glance { background: white; border: 1px solid #cfd8e3; border-left: 5px solid #1f5fa8; border-radius: 6px;
          padding: 8px 16px; margin: 10px 0; } .glance ul { margin: 4px 0; padding-left: 20px; }
pre { background: #f4f6f8; border: 1px solid #d6dbe0; padding: 12px; overflow-x: auto; font-size: 12.5px;
      white-space: pre-wrap; }
.legend-note { font-size: 12px; color: #555; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; }
.defs li { margin-bottom: 3px; }
"""

HTML = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{% if incomplete %}[INCOMPLETE] {% endif %}{{ title }}</title>
<style>{{ css }}</style>
</head>
<body>
<main>
<h1>{% if incomplete %}INCOMPLETE: {% endif %}{{ title }}</h1>
<p class="sub">{{ subtitle }}</p>
{% if incomplete %}
<div class="banner incomplete" id="incomplete"><strong>INCOMPLETE</strong> {{ incomplete }}</div>
{% endif %}
{% if banner_ok %}<div class="banner ok">{{ banner_ok }}</div>{% endif %}
{% if glance %}<div class="glance" id="glance"><b>At a glance</b><ul>{% for g in glance %}<li>{{ g }}</li>{% endfor %}</ul></div>{% endif %}
<nav>{% for id, name in nav %}<a href="#{{ id }}">{{ name }}</a>{% endfor %}</nav>

<section id="headline-section">
{% for hl in headlines %}
<h2>{{ hl.title }}</h2>
{% if hl.intro %}<p class="sub">{{ hl.intro }}</p>{% endif %}
<table class="headline"{% if loop.first %} id="headline"{% endif %}>
<thead><tr>{% for c in hl.table.columns %}<th class="{{ 'eng' if not loop.first else '' }}">{% if not loop.first %}<span class="swatch" style="background: {{ hl.colours.get(c, '#999') }}"></span>{% endif %}{{ c }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in hl.table.rows %}<tr><td{% if row.note %} title="{{ row.note }}"{% endif %}>{{ row.label }}</td>{% for cell in row.cells %}<td class="{{ cell.flag }}"{% if cell.tip %} title="{{ cell.tip }}"{% endif %}>{{ cell.text }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% endfor %}
<p class="legend-note">† unreliable percentile: its 95% interval over window closes is wider than &plusmn;10% of
it (n counts window closes). ‡ figure from an engine run that did not complete. Several repeats: median (min..max, n).
Hover a cell for details.</p>
</section>

{% if decision %}
<section id="decision">
<h2>Decision summary</h2>
<p>{{ decision.spread_note }}</p>
<h3>Engines against the SLOs</h3>
{% if not decision.slo %}<p><span class="verdict v-not-measured">no SLOs</span> The scenario sets no <code>slo:</code>
section, so no engine can be said to meet or miss one.</p>{% endif %}
<ul>
{% for v in decision.verdicts %}<li><span class="swatch" style="background: {{ colours.get(v.engine, '#999') }}"></span><b>{{ v.engine }}</b>:
<span class="verdict {{ v.css }}">{{ v.status }}</span>{% if v.missed %} ({{ v.missed|join(', ') }}){% endif %}
{% if v.reasons %}<span class="notes">{{ v.reasons|join('; ') }}</span>{% endif %}</li>
{% endfor %}</ul>
{% if decision.checks %}
<table id="slo-table">
<thead><tr><th>SLO</th><th>checks</th><th>engine</th><th>verdict</th><th>figure</th><th>threshold</th><th>margin</th><th>notes</th></tr></thead>
<tbody>
{% for c in decision.checks %}<tr><td><code>{{ c.field }}</code></td><td><code>{{ c.path }}</code></td><td>{{ c.engine }}</td>
<td><span class="verdict {{ c.css }}">{{ c.verdict }}</span></td><td class="num">{{ c.figure }}</td><td class="num">{{ c.threshold }}</td>
<td class="num">{{ c.margin }}</td><td class="notes">{{ c.notes }}</td></tr>
{% endfor %}</tbody></table>
{% endif %}
{% if decision.unknown %}<p class="notes">Unknown SLO fields, not checked: {{ decision.unknown|join(', ') }}</p>{% endif %}
<h3>Which engine is ahead, figure by figure</h3>
{% if decision.engines|length == 1 %}<p>Only {{ decision.engines[0] }} was measured in this run: there is nothing to
compare it with. Its figures are in the headline table.</p>
{% elif decision.rankings %}
<table id="rankings">
<thead><tr><th>figure</th>{% for e in decision.engines %}<th>{{ e }}</th>{% endfor %}<th>result</th><th>why</th></tr></thead>
<tbody>
{% for r in decision.rankings %}<tr><td>{{ r.label }}</td>{% for v in r.cells %}<td class="num">{{ v }}</td>{% endfor %}
<td><b>{{ r.result }}</b></td><td class="notes">{{ r.why }}</td></tr>
{% endfor %}</tbody></table>
{% else %}<p>No engine was measured, so nothing can be compared.</p>{% endif %}
<h3>Decision record (draft, Markdown: paste into your decision log and edit)</h3>
<pre id="decision-record">{{ decision.record }}</pre>
</section>
{% endif %}

<section id="plots">
<h2>Plots</h2>
<p class="legend-note">Colours: {% for e, c in colours.items() %}<span class="swatch" style="background: {{ c }}"></span>{{ e }} &nbsp; {% endfor %}{% if styles_note %}{{ styles_note }}{% endif %}</p>
<div class="plots">
{% for p in plots %}<figure>{% if p.uri %}<img src="{{ p.uri }}" alt="{{ p.title }}">{% else %}<div class="nodata">{{ p.title }}: no data ({{ p.why }})</div>{% endif %}
<figcaption>{{ p.caption }}</figcaption></figure>
{% endfor %}</div>
</section>

{% for sec in sections %}
<section id="{{ sec.id }}">
<h2>{{ sec.title }}</h2>
{% if sec.intro %}<p class="sub">{{ sec.intro }}</p>{% endif %}
{% for t in sec.tables %}
{% if t.caption %}<h3>{{ t.caption }}</h3>{% endif %}
<table><thead><tr>{% for c in t.table.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{% for row in t.table.rows %}<tr><td><b>{{ row.label }}</b></td>{% for cell in row.cells %}<td class="{{ cell.flag }}"{% if cell.tip %} title="{{ cell.tip }}"{% endif %}>{{ cell.text }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% endfor %}
{% if sec.html %}{{ sec.html|safe }}{% endif %}
</section>
{% endfor %}

<p class="sub">Generated {{ generated }} by harness.report from {{ source }}. Self-contained: opens without a network.</p>
</main>
<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.dataset.imagesTotal = String(imgs.length);
  document.body.dataset.imagesLoaded = String(imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length);
});
</script>
</body>
</html>
"""
