/* 指挥大屏: fetches /api/data every refresh_seconds and redraws without reloading the page. */
"use strict";

(function () {
  const REFRESH_MS = Math.max(5, Number(document.body.dataset.refresh) || 30) * 1000;
  const PALETTE = ["#38bdf8", "#f97316", "#a78bfa", "#22c55e", "#f43f5e", "#facc15",
    "#2dd4bf", "#e879f9", "#94a3b8", "#60a5fa", "#fb7185", "#84cc16"];
  const charts = {};
  // The header clock runs on the server's time in the district's zone, not the screen's own.
  const clock = { skewMs: 0, offsetMinutes: 0 };

  function $(id) { return document.getElementById(id); }

  function percent(rate) {
    return rate === null || rate === undefined ? "—" : (rate * 100).toFixed(1) + "%";
  }

  function number(value) {
    return value === null || value === undefined ? "—" : Number(value).toLocaleString("zh-CN");
  }

  function setText(id, text) { $(id).textContent = text; }

  // Every panel has a "暂无数据" note, shown instead of an empty table or chart.
  function showEmpty(id, empty) {
    $(id + "-empty").hidden = !empty;
    const canvas = $(id + "-chart");
    if (canvas) canvas.style.visibility = empty ? "hidden" : "visible";
  }

  function hasCases(d) { return d.created > 0 || d.open > 0; }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function lightDot(row, light, names) {
    const td = document.createElement("td");
    const dot = document.createElement("span");
    dot.className = "dot " + light;
    dot.title = names[light] || "";
    dot.setAttribute("aria-label", names[light] || light);
    td.appendChild(dot);
    row.appendChild(td);
  }

  function fillTable(tableId, rows, build) {
    const table = $(tableId);
    // Each cell carries its column's name: on phones the CSS shows it beside the figure.
    const labels = Array.from(table.querySelectorAll("thead th"), function (th) {
      return th.textContent;
    });
    const body = table.querySelector("tbody");
    body.replaceChildren();
    rows.forEach(function (item) {
      const tr = document.createElement("tr");
      build(tr, item);
      Array.from(tr.children).forEach(function (td, i) { td.dataset.label = labels[i] || ""; });
      body.appendChild(tr);
    });
  }

  function renderHeadline(h) {
    setText("kpi-today", number(h.today));
    setText("kpi-month", number(h.month));
    setText("kpi-open", number(h.open));
    setText("kpi-yellow", number(h.yellow));
    setText("kpi-red", number(h.red));
    setText("kpi-completion", percent(h.completion_rate));
    setText("kpi-ontime", percent(h.on_time_rate));
    setText("kpi-satisfaction", percent(h.satisfaction_rate));
    setText("kpi-enterprise", number(h.enterprise));
    setText("kpi-enterprise-completion", percent(h.enterprise_completion_rate));
  }

  function renderLeague(rows, names) {
    const empty = !rows.some(hasCases);
    showEmpty("league", empty);
    fillTable("league", empty ? [] : rows, function (tr, d) {
      tr.dataset.code = d.code;
      lightDot(tr, d.light, names);
      cell(tr, d.name);
      cell(tr, number(d.open));
      cell(tr, number(d.yellow), d.yellow ? "warn" : "");
      cell(tr, number(d.red), d.red ? "bad" : "");
      cell(tr, d.avg_handling_hours === null ? "—" : d.avg_handling_hours.toFixed(1));
      cell(tr, percent(d.completion_rate));
      cell(tr, percent(d.on_time_rate));
      cell(tr, percent(d.satisfaction_rate));
    });
  }

  function renderReds(cases, total) {
    setText("red-total", total ? "（共 " + total + " 件，显示超时最久的 " + cases.length + " 件）" : "");
    showEmpty("red", cases.length === 0);
    fillTable("red-cases", cases, function (tr, c) {
      cell(tr, c.ref);
      cell(tr, c.department);
      cell(tr, c.stage + (c.priority === "urgent" ? "·急" : ""));
      cell(tr, c.hours_overdue.toFixed(1) + " 小时");
    });
  }

  var LIGHT_DOTS = { green: "🟢", yellow: "🟡", red: "🔴" };

  function renderHard(h) {
    setText("hard-total", "（今年 " + h.year + " 件，在办 " + h.open + " 件）");
    showEmpty("hard", h.cases.length === 0);
    fillTable("hard-cases", h.cases, function (tr, c) {
      cell(tr, c.ref);
      cell(tr, (LIGHT_DOTS[c.light] || "") + c.lead + "·" + c.status);
      cell(tr, c.parts.map(function (p) {
        return p.department + " " + (LIGHT_DOTS[p.light] || "") + p.status;
      }).join("；"));
    });
  }

  function renderClassifier(c, departments) {
    setText("acceptance", percent(c.acceptance_rate));
    setText("corrected", number(c.corrected));
    setText("model-version", c.model_version || "—");
    const names = {};
    departments.forEach(function (d) { names[d.code] = d.name; });
    showEmpty("corrections", c.recent_corrections.length === 0);
    fillTable("corrections", c.recent_corrections, function (tr, r) {
      cell(tr, r.at.slice(5));
      cell(tr, r.ref);
      cell(tr, names[r.suggested] || r.suggested || "—");
      cell(tr, names[r.corrected] || r.corrected);
    });
  }

  // 学习曲线: the share of suggestions staff kept, per week, one line per model version.
  function renderLearning(curve) {
    const weeks = Array.from(new Set(curve.map(function (p) { return p.week; }))).sort();
    const versions = Array.from(new Set(curve.map(function (p) { return p.model_version; })));
    showEmpty("learning", curve.length === 0);
    drawChart("learning", "learning-chart", {
      type: "line",
      data: {
        labels: weeks.map(function (w) { return w.slice(5) + "周"; }),
        datasets: versions.map(function (v, i) {
          const rates = {};
          curve.forEach(function (p) {
            if (p.model_version === v) rates[p.week] = p.acceptance_rate;
          });
          return { label: v, borderColor: PALETTE[i % PALETTE.length], pointRadius: 3,
            backgroundColor: PALETTE[i % PALETTE.length], spanGaps: false,
            data: weeks.map(function (w) {
              return rates[w] == null ? null : Math.round(rates[w] * 1000) / 10;
            }) };
        }),
      },
      options: {
        maintainAspectRatio: false, animation: false,
        plugins: { legend: { position: "bottom", labels: { color: "#cfe3ff", boxWidth: 10,
          font: { size: 11 } } } },
        scales: { x: axisStyle(), y: Object.assign(axisStyle(), { min: 0, max: 100,
          title: { display: true, text: "采纳率 %", color: "#8fb0d9" } }) },
      },
    });
  }

  function renderRepeats(r) {
    setText("reports", number(r.reports));
    setText("distinct", number(r.distinct));
    setText("hotspots", r.hotspots.length ? r.hotspots.map(function (h) {
      return h.name + "（" + h.repeats + "）";
    }).join("、") : "—");
  }

  function axisStyle() {
    return {
      ticks: { color: "#8fb0d9", font: { size: 13 } },
      grid: { color: "rgba(29, 77, 134, 0.5)" },
    };
  }

  function drawChart(key, canvasId, config) {
    if (typeof Chart === "undefined") return;  // the page still shows every number
    if (charts[key]) {
      charts[key].data = config.data;
      charts[key].update("none");
      return;
    }
    charts[key] = new Chart($(canvasId), config);
  }

  function renderTrend(trend) {
    showEmpty("trend", !trend.series.some(function (s) {
      return s.counts.some(function (n) { return n > 0; });
    }));
    drawChart("trend", "trend-chart", {
      type: "bar",
      data: {
        labels: trend.days.map(function (d) { return d.slice(5); }),
        datasets: trend.series.map(function (s, i) {
          const color = PALETTE[i % PALETTE.length];
          return { label: s.name, data: s.counts, backgroundColor: color, borderWidth: 0,
            stack: "cases" };
        }),
      },
      options: {
        maintainAspectRatio: false, animation: false, interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom", labels: { color: "#cfe3ff", boxWidth: 12, font: { size: 13 } } },
          tooltip: { callbacks: { title: function (items) { return items[0].label + " 受理量"; } },
            filter: function (item) { return item.raw > 0; } } },
        scales: { x: Object.assign(axisStyle(), { stacked: true }),
          y: Object.assign(axisStyle(), { stacked: true, beginAtZero: true,
            ticks: { color: "#8fb0d9", precision: 0 },
            title: { display: true, text: "件", color: "#8fb0d9" } }) },
      },
    });
  }

  function renderGrids(grids) {
    const top = grids.slice(0, 12);
    showEmpty("grid", top.length === 0);
    drawChart("grids", "grid-chart", {
      type: "bar",
      data: {
        labels: top.map(function (g) { return g.name; }),
        datasets: [{ label: "受理量（件）", data: top.map(function (g) { return g.count; }),
          backgroundColor: "#38bdf8", borderRadius: 3 }],
      },
      options: {
        indexAxis: "y", maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: false } },
        scales: { x: Object.assign(axisStyle(), { beginAtZero: true,
          ticks: { color: "#8fb0d9", precision: 0 } }), y: axisStyle() },
      },
    });
  }

  function render(data) {
    setClock(data.clock.now_ms, data.clock.utc_offset_minutes);
    document.title = data.title;
    renderHeadline(data.headline);
    renderLeague(data.departments, data.light_names);
    renderReds(data.red_cases, data.headline.red);
    renderHard(data.hard_cases);
    renderClassifier(data.classifier, data.departments);
    renderLearning(data.classifier.learning_curve);
    renderRepeats(data.repeats);
    renderTrend(data.trend);
    renderGrids(data.grids);
    setText("updated", "数据更新于 " + data.updated_at);
    document.body.dataset.loaded = "true";
  }

  async function refresh() {
    try {
      const response = await fetch("/api/data", { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) { window.location.assign("/login"); return; }
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
      $("offline").hidden = true;
    } catch (err) {
      $("offline").hidden = false;
    } finally {
      window.setTimeout(refresh, REFRESH_MS);
    }
  }

  function setClock(serverMs, offsetMinutes) {
    clock.skewMs = Number(serverMs) - Date.now();
    clock.offsetMinutes = Number(offsetMinutes) || 0;
    tick();
  }

  function tick() {
    // District wall time as a UTC date, formatted in UTC: no reliance on the browser's zone.
    const local = new Date(Date.now() + clock.skewMs + clock.offsetMinutes * 60000);
    setText("clock-date", local.toLocaleDateString("zh-CN", { timeZone: "UTC", year: "numeric",
      month: "long", day: "numeric", weekday: "long" }));
    setText("clock-time", local.toLocaleTimeString("zh-CN", { timeZone: "UTC", hour12: false }));
  }

  // The export's text fields keep YYYY-MM-DD; the button borrows the browser's date picker.
  function wireDatePickers() {
    if (!("showPicker" in HTMLInputElement.prototype)) return;  // typing still works
    document.querySelectorAll(".date-field").forEach(function (field) {
      const text = field.querySelector("input[type=text]");
      const picker = field.querySelector("input[type=date]");
      const button = field.querySelector("button.calendar");
      button.hidden = false;
      button.addEventListener("click", function () {
        picker.value = /^\d{4}-\d{2}-\d{2}$/.test(text.value) ? text.value : "";
        try { picker.showPicker(); } catch (err) { text.focus(); }
      });
      picker.addEventListener("change", function () {
        if (picker.value) text.value = picker.value;
      });
    });
  }

  if (typeof Chart !== "undefined") {
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = "#cfe3ff";
  }
  setClock(document.body.dataset.nowMs || Date.now(), document.body.dataset.utcOffset);
  window.setInterval(tick, 1000);
  wireDatePickers();
  refresh();
})();
