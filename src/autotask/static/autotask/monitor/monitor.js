// The monitor's live updates: server-sent events under ASGI, a poll of the same JSON under
// WSGI (body[data-live]). No framework: the overview's tables are rebuilt from each snapshot.
"use strict";

(function () {
  const live = document.body.dataset.live;
  const POLL_EVERY = 2000;

  function cell(row, text, field) {
    const td = document.createElement("td");
    td.textContent = text;
    if (field) td.dataset.field = field;
    row.appendChild(td);
    return td;
  }

  function fill(tbody, items, columns, build, emptyText) {
    const rows = items.map(build);
    if (!rows.length) {
      const row = document.createElement("tr");
      row.className = "empty";
      const td = cell(row, emptyText);
      td.colSpan = columns;
      rows.push(row);
    }
    tbody.replaceChildren(...rows);
  }

  function queueRow(runsUrl) {
    return function (q) {
      const row = document.createElement("tr");
      row.dataset.queue = q.name;
      const th = document.createElement("th");
      th.scope = "row";
      const link = document.createElement("a");
      link.href = runsUrl + "?queue=" + encodeURIComponent(q.name);
      link.textContent = q.name;
      th.appendChild(link);
      row.appendChild(th);
      for (const field of ["waiting", "due", "running", "error", "done_last_hour"]) cell(row, q[field], field);
      cell(row, q.oldest_due_seconds === null ? "–" : q.oldest_due_seconds.toFixed(1) + " s", "oldest_due_seconds");
      cell(row, q.paused ? "paused" : q.served ? "served" : "no worker", "state");
      return row;
    };
  }

  function workerRow(w) {
    const row = document.createElement("tr");
    row.dataset.worker = w.id;
    cell(row, w.host);
    cell(row, w.pid);
    cell(row, w.queues ? w.queues.join(", ") : "every queue");
    cell(row, w.running, "running");
    cell(row, w.concurrency);
    cell(row, w.heartbeat_age + " s ago");
    cell(row, w.leader ? "leader" : "");
    return row;
  }

  function drawChart(svg, chart) {
    const width = 600, height = 120, n = chart.done.length;
    const most = Math.max(1, ...chart.done.map((d, i) => d + chart.error[i]));
    const bar = width / n;
    const ns = "http://www.w3.org/2000/svg";
    const shapes = [];
    let total = 0, failed = 0;
    chart.done.forEach(function (done, i) {
      const error = chart.error[i];
      total += done + error;
      failed += error;
      const minute = new Date((chart.first_minute + 60 * i) * 1000);
      const label = minute.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
      let y = height;
      for (const [count, kind] of [[done, "done"], [error, "error"]]) {
        if (!count) continue;
        const h = (count / most) * (height - 4);
        const rect = document.createElementNS(ns, "rect");
        rect.setAttribute("x", (i * bar + 1).toFixed(1));
        rect.setAttribute("width", Math.max(bar - 2, 1).toFixed(1));
        rect.setAttribute("y", (y - h).toFixed(1));
        rect.setAttribute("height", h.toFixed(1));
        rect.setAttribute("class", kind);
        const title = document.createElementNS(ns, "title");
        title.textContent = label + ": " + count + " " + kind;
        rect.appendChild(title);
        shapes.push(rect);
        y -= h;
      }
    });
    svg.replaceChildren(...shapes);
    const summary = total + " finished in the last hour, " + failed + " with an error";
    svg.setAttribute("aria-label", "Runs finished per minute: " + summary);
    document.getElementById("chart-total").textContent = summary;
  }

  function showOverview(root, data) {
    fill(root.querySelector("#queues tbody"), data.queues, 8, queueRow(root.dataset.runs), "No runs yet.");
    fill(root.querySelector("#workers tbody"), data.workers, 7, workerRow, "No live worker.");
    const problems = root.querySelector("#problems");
    problems.replaceChildren(...data.problems.map(function (text) {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }));
    drawChart(root.querySelector("#chart"), data.chart);
    root.dataset.updatedAt = String(Date.now());
  }

  function state(text) {
    const el = document.getElementById("live-state");
    if (el) el.textContent = text;
  }

  // Calls show(data) with every update of a JSON resource, until stop() returns true.
  function follow(eventsUrl, pollUrl, eventName, show, stop) {
    if (live === "sse" && window.EventSource) {
      const source = new EventSource(eventsUrl);
      source.addEventListener(eventName, function (event) {
        const data = JSON.parse(event.data);
        show(data);
        if (stop(data)) source.close();
      });
      source.onopen = function () { state("live"); };
      source.onerror = function () { state("reconnecting…"); };
      return;
    }
    async function poll() {
      try {
        const response = await fetch(pollUrl, {headers: {Accept: "application/json"}, credentials: "same-origin"});
        if (response.ok) {
          const data = await response.json();
          show(data);
          state("refreshed " + new Date().toLocaleTimeString());
          if (stop(data)) return;
        }
      } catch (error) {
        state("offline, retrying");
      }
      setTimeout(poll, POLL_EVERY);
    }
    setTimeout(poll, POLL_EVERY);
  }

  function startOverview(root) {
    showOverview(root, JSON.parse(document.getElementById("snapshot").textContent));
    follow(root.dataset.events, root.dataset.poll, "overview", function (data) { showOverview(root, data); }, function () { return false; });
  }

  function startRun(root) {
    if (root.dataset.final === "true") return;
    const status = document.getElementById("run-status");
    const attempts = document.getElementById("run-attempts");
    follow(root.dataset.events, root.dataset.poll, "run", function (data) {
      status.textContent = data.status;
      status.className = "status " + data.status;
      attempts.textContent = data.attempts;
      if (data.final) showFinished(root);
    }, function (data) { return data.final; });
  }

  // The result or traceback: the page as it is now, swapped in without a reload.
  async function showFinished(root) {
    const response = await fetch(window.location.href, {credentials: "same-origin"});
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("run");
    if (fresh) root.replaceWith(fresh);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const overview = document.getElementById("overview");
    if (overview) startOverview(overview);
    const run = document.getElementById("run");
    if (run) startRun(run);
  });
})();
