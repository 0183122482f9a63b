/* 网格分布: the grid league with drill-down and the map (Leaflet, bundled, no tiles).
   /api/grids?code= gives one level's figures, /api/grid_shapes?code= its boundaries. */
"use strict";

(function () {
  const REFRESH_MS = Math.max(5, Number(document.body.dataset.refresh) || 30) * 1000;
  // Sequential colours for 0 … the level's largest count; 0 has its own dim colour.
  const RAMPS = {
    open: ["#164e63", "#0e7490", "#0891b2", "#22d3ee", "#a5f3fc"],
    red: ["#7f1d1d", "#b91c1c", "#dc2626", "#f87171", "#fecaca"],
  };
  const ZERO = "#10243f";
  const LABELLED = 20;  // up to this many grids on the map are labelled with their names
  const MEASURE_NAMES = { open: "在办", red: "红灯" };
  const LIGHT_NAMES = { green: "绿灯", yellow: "黄灯", red: "红灯" };
  const state = { code: null, colour: "open", step: null, map: null, shapes: null,
    points: null, timer: null, loading: 0 };

  function $(id) { return document.getElementById(id); }

  function percent(rate) {
    return rate === null || rate === undefined ? "—" : (rate * 100).toFixed(1) + "%";
  }

  function number(value) {
    return value === null || value === undefined ? "—" : Number(value).toLocaleString("zh-CN");
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) throw new Error(body.error || "数据暂时无法读取，请稍后重试。");
        return body;
      });
    });
  }

  function query(code) { return code ? "?code=" + encodeURIComponent(code) : ""; }

  // ---------------------------------------------------------------- views (tabs)

  function showView(name) {
    const grids = name === "grids";
    $("overview-view").hidden = grids;
    $("grids-view").hidden = !grids;
    $("tab-overview").setAttribute("aria-selected", String(!grids));
    $("tab-grids").setAttribute("aria-selected", String(grids));
    if (grids) {
      if (!state.map) createMap();
      state.map.invalidateSize();
      if (!state.step) load(codeFromHash()); else schedule();
    } else if (state.timer) {
      clearTimeout(state.timer);
    }
  }

  function codeFromHash() {
    const match = /^#grids\/(.+)$/.exec(location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }

  function setHash(code) {
    const hash = "#grids" + (code ? "/" + encodeURIComponent(code) : "");
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  // ---------------------------------------------------------------- loading

  function load(code) {
    const ticket = ++state.loading;  // a later click wins over a slow earlier answer
    return Promise.all([getJSON("/api/grids" + query(code)),
      getJSON("/api/grid_shapes" + query(code))])
      .then(function (answers) {
        if (ticket !== state.loading) return;
        state.code = code;
        setHash(code);
        render(answers[0], answers[1]);
      })
      .catch(function (error) {
        if (ticket !== state.loading) return;
        if (code) { load(null); return; }  // a grid that is gone: back to the district
        $("grid-node").textContent = error.message;
      })
      .finally(schedule);
  }

  function refresh() {
    getJSON("/api/grids" + query(state.code)).then(function (body) {
      renderFigures(body);
      paint();
    }).catch(function () { /* keep what is shown; the main view reports being offline */ })
      .finally(schedule);
  }

  function schedule() {
    if (state.timer) clearTimeout(state.timer);
    if (!$("grids-view").hidden) state.timer = setTimeout(refresh, REFRESH_MS);
  }

  // ---------------------------------------------------------------- league and extras

  function render(body, shapes) {
    renderFigures(body);
    drawShapes(shapes);
    document.body.dataset.gridsLoaded = state.code || "district";
  }

  function renderFigures(body) {
    state.step = body.step;
    const step = body.step;
    renderPath(step.path);
    $("grid-level-title").textContent = step.level_title || "下级网格";
    renderNode(step.node);
    renderLeague(step.rows);
    renderChannels(body.channels);
    renderReportTimes(body.report_times);
  }

  function renderPath(path) {
    const nav = $("grid-path");
    nav.replaceChildren();
    const chain = [{ code: null, name: "全区" }].concat(path);
    chain.forEach(function (item, i) {
      if (i) {
        const sep = document.createElement("span");
        sep.className = "sep";
        sep.textContent = "›";
        nav.appendChild(sep);
      }
      const last = i === chain.length - 1;
      const el = document.createElement(last ? "span" : "button");
      el.textContent = item.name;
      if (last) el.className = "here";
      else { el.type = "button"; el.addEventListener("click", function () { load(item.code); }); }
      nav.appendChild(el);
    });
  }

  function renderNode(node) {
    const parts = [["本月受理", number(node.created)], ["在办", number(node.open)],
      ["黄灯", number(node.yellow)], ["红灯", number(node.red)],
      ["办结率", percent(node.completion_rate)], ["按时率", percent(node.on_time_rate)],
      ["满意率", percent(node.satisfaction_rate)],
      // Over the cases that started in a grid and are done (grid_done), see models/gridstats.py.
      ["小事不出网格率", percent(node.in_grid_rate)], ["大事不出街镇率", percent(node.in_street_rate)]];
    if (node.unplaced) {
      parts.push([node.unplaced.name, number(node.unplaced.received) + " 件（在办 " +
        number(node.unplaced.open) + "）"]);
    }
    const p = $("grid-node");
    p.replaceChildren();
    parts.forEach(function (part, i) {
      p.appendChild(document.createTextNode((i ? " · " : "") + part[0] + " "));
      const b = document.createElement("b");
      b.textContent = part[1];
      p.appendChild(b);
    });
  }

  function cell(tr, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  }

  function renderLeague(rows) {
    const body = $("grid-league").querySelector("tbody");
    body.replaceChildren();
    rows.forEach(function (row) {
      const tr = document.createElement("tr");
      tr.dataset.code = row.code;
      const light = document.createElement("td");
      const dot = document.createElement("span");
      dot.className = "dot " + row.light;
      dot.title = LIGHT_NAMES[row.light] || "";
      light.appendChild(dot);
      tr.appendChild(light);
      const name = document.createElement("td");
      const label = document.createElement(row.has_children ? "button" : "span");
      label.textContent = row.name;
      if (row.has_children) {
        label.type = "button";
        label.title = "查看" + row.name + "的下一级";
        label.addEventListener("click", function () { load(row.code); });
      }
      name.appendChild(label);
      tr.appendChild(name);
      cell(tr, number(row.created));
      cell(tr, number(row.open));
      cell(tr, number(row.yellow), row.yellow ? "warn" : "");
      cell(tr, number(row.red), row.red ? "bad" : "");
      cell(tr, percent(row.completion_rate));
      cell(tr, percent(row.on_time_rate));
      cell(tr, percent(row.satisfaction_rate));
      cell(tr, percent(row.in_grid_rate)).title = "始于网格且已办结 " + number(row.grid_done) + " 件";
      cell(tr, percent(row.in_street_rate));
      body.appendChild(tr);
    });
    $("grid-league-empty").hidden = rows.length > 0;
  }

  function renderChannels(channels) {
    const body = $("grid-channels").querySelector("tbody");
    body.replaceChildren();
    channels.forEach(function (c) {
      const tr = document.createElement("tr");
      cell(tr, c.name);
      cell(tr, number(c.count));
      body.appendChild(tr);
    });
    $("grid-channels-empty").hidden = channels.length > 0;
  }

  function renderReportTimes(rows) {
    const body = $("report-times").querySelector("tbody");
    body.replaceChildren();
    rows.forEach(function (r) {
      const tr = document.createElement("tr");
      cell(tr, r.name);
      cell(tr, number(r.reported));
      cell(tr, number(r.whistled));
      cell(tr, r.avg_report_hours === null ? "—" : r.avg_report_hours.toFixed(1));
      cell(tr, percent(r.report_on_time_rate), r.report_on_time_rate !== null &&
        r.report_on_time_rate < 0.9 ? "warn" : "");
      body.appendChild(tr);
    });
    $("report-times-empty").hidden = rows.length > 0;
  }

  // ---------------------------------------------------------------- map

  function createMap() {
    // No animations: each drill-down redraws the map at once (a wall screen needs no zoom
    // effect), so what is shown is settled as soon as the data is.
    state.map = L.map("grid-map", { attributionControl: false, zoomSnap: 0.25,
      scrollWheelZoom: false, zoomAnimation: false, fadeAnimation: false,
      markerZoomAnimation: false });
    state.map.setView([0, 0], 2);  // until the first boundaries arrive
    document.querySelectorAll(".map-tools .colour").forEach(function (button) {
      button.addEventListener("click", function () {
        state.colour = button.dataset.colour;
        document.querySelectorAll(".map-tools .colour").forEach(function (b) {
          b.setAttribute("aria-pressed", String(b === button));
        });
        paint();
      });
    });
  }

  function figuresCount(figures) { return Object.keys(figures).length; }

  function figuresByCode() {
    const out = {};
    (state.step ? state.step.rows : []).forEach(function (r) { out[r.code] = r; });
    return out;
  }

  // Colour classes for the level's counts: up to five equal steps to the largest, each step
  // {high, colour}; the largest count always gets the brightest colour of the ramp.
  function classes() {
    const values = (state.step ? state.step.rows : []).map(function (r) { return r[state.colour]; });
    const top = Math.max(1, Math.max.apply(null, values.concat([0])));
    const ramp = RAMPS[state.colour];
    const out = [];
    for (let i = 1; i <= ramp.length; i++) {
      const high = Math.ceil(top * i / ramp.length);
      if (out.length && out[out.length - 1].high === high) out[out.length - 1].colour = ramp[i - 1];
      else out.push({ high: high, colour: ramp[i - 1] });
    }
    return out;
  }

  function colourOf(value, steps) {
    if (!value) return ZERO;
    for (let i = 0; i < steps.length; i++) if (value <= steps[i].high) return steps[i].colour;
    return steps[steps.length - 1].colour;
  }

  function drawShapes(collection) {
    const map = state.map;
    if (state.shapes) state.shapes.remove();
    const empty = $("grid-map-empty");
    empty.hidden = collection.features.length > 0;
    empty.textContent = collection.message || "没有可显示的网格边界";
    state.shapes = L.geoJSON(collection, {
      onEachFeature: function (feature, layer) {
        const p = feature.properties;
        layer.on("click", function () { if (p.has_children) load(p.code); });
        layer.on("add", function () {
          const el = layer.getElement();
          if (el) { el.dataset.code = p.code; el.classList.add("grid-shape"); }
        });
      },
    }).addTo(map);
    if (collection.features.length) {
      map.fitBounds(state.shapes.getBounds(), { padding: [12, 12], animate: false });
    }
    paint();
  }

  function paint() {
    if (!state.shapes) return;
    const figures = figuresByCode();
    const steps = classes();
    state.shapes.eachLayer(function (layer) {
      const p = layer.feature.properties;
      const row = figures[p.code] || { open: 0, red: 0, created: 0 };
      const value = row[state.colour];
      layer.setStyle({ color: "#7dd3fc", weight: 1.2, fillColor: colourOf(value, steps),
        fillOpacity: 0.85 });
      layer.unbindTooltip();
      // A few grids carry their name and figure on the map (a wall screen has no mouse);
      // many get it when pointed at.
      const few = figuresCount(figures) <= LABELLED;
      const text = few ? p.name + " " + number(value)
        : p.name + "：在办 " + number(row.open) + "，红灯 " + number(row.red) +
          "，本月受理 " + number(row.created);
      layer.bindTooltip(text, few ? { permanent: true, direction: "center",
        className: "grid-label" } : { sticky: true });
      const el = layer.getElement();
      if (el) el.dataset.value = String(value);
    });
    drawLegend(steps);
    drawPoints();
    $("grid-map-title").textContent = "（按" + MEASURE_NAMES[state.colour] + "案件着色）";
  }

  function drawLegend(steps) {
    const legend = $("grid-legend");
    legend.replaceChildren();
    const swatch = function (colour, text) {
      const i = document.createElement("i");
      i.style.background = colour;
      legend.appendChild(i);
      const s = document.createElement("span");
      s.textContent = text;
      legend.appendChild(s);
    };
    swatch(ZERO, "0");
    let low = 1;
    steps.forEach(function (step) {
      swatch(step.colour, low === step.high ? String(low) : low + "–" + step.high);
      low = step.high + 1;
    });
  }

  function drawPoints() {
    if (state.points) state.points.remove();
    state.points = L.layerGroup((state.step ? state.step.red_points : []).map(function (p) {
      return L.circleMarker([p.lat, p.lon], { radius: 5, color: "#ffffff", weight: 1,
        fillColor: "#ef4444", fillOpacity: 0.95, className: "red-case" })
        .bindTooltip(p.ref + " · " + p.department + " · 超时 " + p.hours_overdue + " 小时");
    })).addTo(state.map);
  }

  // ---------------------------------------------------------------- start

  document.querySelectorAll(".views button").forEach(function (button) {
    button.addEventListener("click", function () {
      if (button.dataset.view === "grids") {
        if (!location.hash.startsWith("#grids")) history.replaceState(null, "", "#grids");
      } else {
        history.replaceState(null, "", location.pathname);
      }
      showView(button.dataset.view);
    });
  });
  // A link typed or followed while the page is open changes only the hash: follow it too.
  window.addEventListener("hashchange", function () {
    if (!location.hash.startsWith("#grids")) { showView("overview"); return; }
    const code = codeFromHash();
    showView("grids");
    if (code !== state.code) load(code);
  });
  if (location.hash.startsWith("#grids")) showView("grids");
})();
