// ccs_dist report: head cards, label search, table sorting. Data arrive as JSON and are inserted with
// textContent only (never innerHTML), so no label or description can become markup.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("ccs-data").textContent);
  var dlg = document.getElementById("head-card");
  var body = document.getElementById("head-card-body");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function pct(v) { return (v === null || v === undefined) ? "–" : (100 * v).toFixed(1) + "%"; }

  function verdict(v, err) {
    if (v === true || v === 1) return el("span", "v v-yes", "✓ aligned");
    if (v === false || v === 0) return el("span", "v v-no", "✗ not aligned");
    var s = el("span", "v v-fail", "⚠ failed");
    if (err) { s.title = String(err); s.appendChild(el("small", "err", String(err))); }
    return s;
  }

  function openCard(mi, hk) {
    var m = data.models[mi];
    if (!m) return;
    var h = m.heads[hk];
    if (!h) return;
    while (body.firstChild) body.removeChild(body.firstChild);
    var head = el("div", "card-head");
    head.appendChild(el("div", "card-model", m.key));
    var title = el("h3", "card-title");
    title.appendChild(el("span", "card-hk", hk));
    if (h.unit) title.appendChild(el("span", "badge plain", h.unit === "pool_mlp" ? "pooling MLP" : "pooling head"));  // SigLIP's pooling units
    head.appendChild(title);
    var lab = el("p", "card-label", h.label === null ? "(no label)" : h.label);
    head.appendChild(lab);
    var badges = el("div", "badges");
    if (h.ccs !== null && h.ccs !== undefined) badges.appendChild(el("span", "badge ccs c" + h.ccs, "CCS " + h.ccs + "/" + (h.n || 5)));
    if (h.cat) badges.appendChild(el("span", "badge cat-" + h.cat, h.cat));
    if (h.nf) badges.appendChild(el("span", "badge flag", h.nf + " failed verdict" + (h.nf > 1 ? "s" : "")));
    if (h.backend) badges.appendChild(el("span", "badge plain", "labelled by " + h.backend));
    if (h.stab !== null && h.stab !== undefined) {
      badges.appendChild(el("span", "badge stab" + (h.stab < 0.5 ? " unstable" : ""),
        "span stability " + h.stab.toFixed(2) + " · span 1 kept " + Math.round((h.s1 || 0) * 100) + "%"));
    }
    if (h.er) badges.appendChild(el("span", "badge plain", "rank " + h.er + (h.rr ? " of " + h.rr + " requested" : "")));
    head.appendChild(badges);
    body.appendChild(head);

    var t = el("table", "data card-table");
    var thead = el("thead"); var tr = el("tr");
    ["#", "description", "variance explained"].forEach(function (x) { tr.appendChild(el("th", null, x)); });
    (m.judges.length ? m.judges : []).forEach(function (j) { tr.appendChild(el("th", "judge", j)); });
    if (m.judges.length > 1) tr.appendChild(el("th", null, "majority"));
    thead.appendChild(tr); t.appendChild(thead);
    var tb = el("tbody");
    var vmax = 0;
    h.d.forEach(function (d) { if (d.v !== null && d.v > vmax) vmax = d.v; });
    h.d.forEach(function (d) {
      var row = el("tr", "desc");
      row.appendChild(el("td", "num", d.r + 1));
      var dc = el("td", "desc-text", d.t);
      if (d.f) {  // a long description: the full text on demand, in a textarea (cheap to lay out)
        var more = el("button", "show-all", "show all " + d.n + " characters");
        more.type = "button";
        more.addEventListener("click", function () {
          dc.textContent = "";
          var ta = el("textarea", "fulltext");
          ta.readOnly = true; ta.rows = 8; ta.value = d.f;
          dc.appendChild(ta);
          if (d.n > d.f.length) dc.appendChild(el("p", "muted", "cut at " + d.f.length + " characters here; the whole text is in tables/spans.csv"));
        });
        dc.appendChild(el("br")); dc.appendChild(more);
      }
      row.appendChild(dc);
      var vc = el("td", "var");
      var bar = el("span", "varbar");
      bar.style.width = (vmax > 0 && d.v !== null ? Math.round(80 * d.v / vmax) : 0) + "px";
      vc.appendChild(bar); vc.appendChild(el("span", "varnum", pct(d.v)));
      row.appendChild(vc);
      m.judges.forEach(function (_, ji) {
        var c = el("td", "judge");
        var got = d.j ? d.j[ji] : undefined;
        if (got === undefined) c.appendChild(el("span", "v", "–"));
        else c.appendChild(verdict(got[0], got[1]));
        row.appendChild(c);
      });
      if (m.judges.length > 1) { var mc = el("td", "judge"); mc.appendChild(d.maj === undefined ? el("span", "v", "–") : verdict(d.maj, null)); row.appendChild(mc); }
      tb.appendChild(row);
    });
    t.appendChild(tb);
    body.appendChild(t);
    if (!h.d.length) body.appendChild(el("p", "muted", "No descriptions recorded for this head."));
    body.appendChild(images(m, h));
    if (typeof dlg.showModal === "function") { if (!dlg.open) dlg.showModal(); } else { dlg.setAttribute("open", ""); }
    dlg.setAttribute("data-head", hk);
  }

  // the head's top (+) and bottom (-) probe images along each principal direction; src is a data: URI only
  function images(m, h) {
    var box = el("div", "imgs");
    if (!h.img || !h.img.length) {
      box.appendChild(el("p", "muted noimgs", m.img_note || "No top/bottom images for this head."));
      return box;
    }
    h.img.forEach(function (d) {
      box.appendChild(el("h4", null, "Images along principal direction " + (d.k + 1) +
        (d.k === 0 ? " (the head's largest variance)" : "")));
      [["top", "top (+)"], ["bot", "bottom (−)"]].forEach(function (side) {
        var row = el("div", "imgrow " + side[0]);
        row.appendChild(el("span", "side", side[1]));
        d[side[0]].forEach(function (it) {
          var th = data.thumbs[it[0]] || [String(it[0]), null];
          var fig = el("figure", "headimg");
          var tip = th[0] + " · projection " + (it[1] === null ? "–" : it[1].toFixed(3));
          if (th[1] && th[1].indexOf("data:image/") === 0) {
            var img = el("img"); img.src = th[1]; img.alt = th[0]; img.title = tip; img.width = 56; img.height = 56;
            fig.appendChild(img);
          } else {
            var ph = el("span", "noimg"); ph.title = tip + " (no thumbnail)"; fig.appendChild(ph);
          }
          fig.appendChild(el("figcaption", null, th[0]));
          row.appendChild(fig);
        });
        box.appendChild(row);
      });
    });
    return box;
  }

  document.addEventListener("click", function (e) {
    var t = e.target.closest ? e.target.closest("[data-h]") : null;
    if (t && t.getAttribute("data-m") !== null) { openCard(+t.getAttribute("data-m"), t.getAttribute("data-h")); return; }
    if (e.target === dlg) dlg.close();
  });
  document.getElementById("head-card-close").addEventListener("click", function () { dlg.close(); });

  Array.prototype.forEach.call(document.querySelectorAll("input.head-search"), function (inp) {
    inp.addEventListener("input", function () {
      var q = inp.value.trim().toLowerCase();
      var mi = +inp.getAttribute("data-m");
      var m = data.models[mi];
      var n = 0;
      Array.prototype.forEach.call(document.querySelectorAll('.cell[data-m="' + mi + '"]'), function (c) {
        var h = m.heads[c.getAttribute("data-h")];
        var hay = ((h && h.label) || "") + " " + ((h && h.d) || []).map(function (d) { return d.t; }).join(" ");
        var hit = !q || hay.toLowerCase().indexOf(q) >= 0;
        c.classList.toggle("dim", !hit);
        if (hit && q) n++;
      });
      var out = document.getElementById("search-count-" + mi);
      if (out) out.textContent = q ? n + " matching head" + (n === 1 ? "" : "s") : "";
    });
  });

  // click a header of a .sortable table to sort by that column (numbers numerically)
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (tbl) {
    Array.prototype.forEach.call(tbl.tHead.rows[0].cells, function (th, ci) {
      th.addEventListener("click", function () {
        var asc = th.getAttribute("data-dir") !== "asc";
        Array.prototype.forEach.call(tbl.tHead.rows[0].cells, function (x) { x.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", asc ? "asc" : "desc");
        var rows = Array.prototype.slice.call(tbl.tBodies[0].rows);
        rows.sort(function (a, b) {
          var x = a.cells[ci].getAttribute("data-sort") || a.cells[ci].textContent;
          var y = b.cells[ci].getAttribute("data-sort") || b.cells[ci].textContent;
          var nx = parseFloat(x), ny = parseFloat(y);
          if (isNaN(nx) !== isNaN(ny) && (isNaN(nx) ? x : y).trim() === "–") return isNaN(nx) ? 1 : -1;  // "–" (missing) last
          var r = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
          return asc ? r : -r;
        });
        rows.forEach(function (r) { tbl.tBodies[0].appendChild(r); });
      });
    });
  });
  document.documentElement.setAttribute("data-ready", "1");
})();
