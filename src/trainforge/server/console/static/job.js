/* trainforge console: a job page's live status, timeline, log tail and metric charts. */
(function () {
  "use strict";
  const TF = window.TF;
  const data = TF.data();
  const api = TF.base + "/api/jobs/" + encodeURIComponent(data.name);
  let terminal = data.terminal;

  // -- status and timeline ----------------------------------------------------------------------------
  function bar(step) {
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("class", "bar");
    svg.setAttribute("viewBox", "0 0 100 8");
    svg.setAttribute("preserveAspectRatio", "none");
    const rect = document.createElementNS(NS, "rect");
    rect.setAttribute("x", step.offset);
    rect.setAttribute("width", step.width);
    rect.setAttribute("height", "8");
    svg.append(rect);
    return svg;
  }

  function renderStatus(s) {
    const badge = document.getElementById("job-status");
    badge.textContent = s.status;
    badge.className = "status status-" + s.status;
    const secondary = document.getElementById("job-secondary");
    secondary.textContent = s.secondary;
    secondary.classList.toggle("hidden", s.secondary === s.status);
    document.getElementById("job-message").textContent = s.message;
    document.getElementById("job-duration").textContent = s.duration;
    if (s.failure_reason) {
      document.getElementById("failure-reason").textContent = s.failure_reason;
      document.getElementById("failure").classList.remove("hidden");
    }
    const rows = s.timeline.map((step) => {
      const time = TF.el("time", { "data-epoch": String(step.start), text: step.start_text });
      return TF.el("tr", step.current ? { class: "current" } : {}, [
        TF.el("td", { text: step.status }),
        TF.el("td", {}, [time]),
        TF.el("td", { text: step.duration }),
        TF.el("td", { class: "bar-col" }, [bar(step)]),
        TF.el("td", { text: step.message }),
      ]);
    });
    const tbody = document.getElementById("timeline-rows");
    tbody.replaceChildren(...rows);
    TF.localizeTimes(tbody);
  }

  // The status is polled (durations tick), and refreshed at once when the log stream reports a transition.
  let reloading = false;
  async function refreshStatus() {
    const s = await TF.getJSON(api);
    renderStatus(s);
    if (s.terminal) {
      terminal = true;
      if (!reloading) {
        reloading = true;
        // Everything else on the page (artifacts, final metrics, buttons) is final now: render it afresh.
        setTimeout(() => location.reload(), 1500);
      }
      return false;
    }
    return true;
  }
  if (!terminal) TF.poll(refreshStatus, 1500);

  // -- log ----------------------------------------------------------------------------------------------
  const MAX_LINES = 20000;
  const logEl = document.getElementById("log");
  const hostSel = document.getElementById("log-host");
  const attemptSel = document.getElementById("log-attempt");
  const follow = document.getElementById("log-follow");
  const state = document.getElementById("log-state");
  let generation = 0;

  function startLog() {
    const mine = ++generation;
    let cursor = 0;
    let lineCount = 0;
    let trimmed = false;
    let finalReads = 0;
    logEl.textContent = "";
    const host = hostSel.value;
    const showHost = data.multi_host && !host;
    const attempt = attemptSel.value;
    let lastAttempt = null;

    function append(lines) {
      const frag = document.createDocumentFragment();
      for (const l of lines) {
        if (!attempt && l.attempt !== lastAttempt && (lastAttempt !== null || l.attempt > 1)) {
          frag.append(TF.el("div", { class: "line attempt", text: "-------- attempt " + l.attempt + " --------" }));
          lineCount += 1;
        }
        lastAttempt = l.attempt;
        const div = document.createElement("div");
        div.className = l.stream === "stderr" ? "line stderr" : "line";
        if (showHost) div.append(TF.el("span", { class: "host", text: l.host }));
        div.append(document.createTextNode(l.message));
        frag.append(div);
      }
      logEl.append(frag);
      lineCount += lines.length;
      while (lineCount > MAX_LINES && logEl.firstChild) {
        logEl.firstChild.remove();
        lineCount -= 1;
        trimmed = true;
      }
      if (follow.checked && lines.length) logEl.scrollTop = logEl.scrollHeight;
    }

    function showState() {
      const live = !terminal;
      state.textContent = (live ? "live · " : "") + lineCount + " lines" + (trimmed ? " (older lines: see full log)" : "");
    }

    function query(path) {
      return `${api}/${path}?cursor=${cursor}` + (host ? "&host=" + encodeURIComponent(host) : "") +
        (attempt ? "&attempt=" + encodeURIComponent(attempt) : "");
    }

    // Fallback where the browser cannot read a response as a stream: read new lines every second.
    async function tick() {
      if (mine !== generation) return;
      let again = true;
      try {
        for (;;) {
          const r = await TF.getJSON(query("logs") + "&limit=2000");
          if (mine !== generation) return;
          append(r.lines);
          cursor = r.next_cursor;
          if (!r.more) {
            // After the job ends, read once more for lines stored just after the final status.
            if (r.terminal) again = finalReads++ < 1;
            break;
          }
        }
        showState();
      } catch (err) {
        state.textContent = "reconnecting…";
      }
      if (again) setTimeout(tick, document.hidden ? 4000 : 1000);
    }

    // Read the follow stream (NDJSON) as the server writes it; true once it said "end", false if it dropped.
    async function stream() {
      const r = await fetch(query("log-stream"), {
        credentials: "same-origin",
        headers: { Accept: "application/x-ndjson" },
      });
      if (r.status === 401) {
        location.href = TF.base + "/login?next=" + encodeURIComponent(location.pathname + location.search);
        throw new Error("signed out");
      }
      if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const chunk = await reader.read();
        if (mine !== generation) {
          reader.cancel();
          return true;
        }
        if (chunk.done) return false;
        buffer += decoder.decode(chunk.value, { stream: true });
        const lines = [];
        let ended = false;
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const text = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          if (!text.trim()) continue;
          const event = JSON.parse(text);
          if (event.type === "log") {
            lines.push(event);
            cursor = Math.max(cursor, event.cursor);
          } else if (event.type === "status") {
            if (!terminal) refreshStatus().catch(() => {});
          } else if (event.type === "end") {
            ended = true;
          }
        }
        append(lines);
        if (ended) {
          if (!terminal) refreshStatus().catch(() => {});
          terminal = true;
          showState();
          reader.cancel();
          return true;
        }
        showState();
      }
    }

    async function follow() {
      let failures = 0;
      while (mine === generation) {
        try {
          if (await stream()) return;
          failures = 0; // dropped after it worked: reopen from the last cursor, soon
          await new Promise((resolve) => setTimeout(resolve, 250));
        } catch (err) {
          if (mine !== generation) return;
          state.textContent = "reconnecting…";
          failures += 1;
          await new Promise((resolve) => setTimeout(resolve, Math.min(1000 * failures, 5000)));
        }
      }
    }

    const streams = typeof ReadableStream !== "undefined" && typeof TextDecoder !== "undefined" &&
      typeof Response !== "undefined" && "body" in Response.prototype;
    if (streams && !terminal) follow();
    else tick();
  }
  hostSel.addEventListener("change", startLog);
  attemptSel.addEventListener("change", startLog);
  startLog();

  // -- metric charts ------------------------------------------------------------------------------------
  const charts = new Map();
  const boxes = { metric: document.getElementById("metric-charts"), system: document.getElementById("system-charts") };

  async function loadMetrics() {
    const r = await TF.getJSON(api + "/metrics");
    const names = Object.keys(r.series).sort();
    for (const name of names) {
      const kind = name.startsWith("system/") ? "system" : "metric";
      let holder = charts.get(name);
      if (!holder) {
        holder = TF.el("div", { class: "chart-holder" });
        charts.set(name, holder);
        boxes[kind].append(holder);
      }
      const hosts = Object.keys(r.series[name]).sort();
      const series = hosts.map((h) => ({ label: hosts.length > 1 ? h : name, points: r.series[name][h] }));
      TF.lineChart(holder, { title: name, series: series });
    }
    document.getElementById("no-metrics").classList.toggle("hidden", boxes.metric.childElementCount > 0);
    document.getElementById("no-system-metrics").classList.toggle("hidden", boxes.system.childElementCount > 0);
    return !r.terminal;
  }
  loadMetrics().then((again) => { if (again) TF.poll(loadMetrics, 4000); }, () => TF.poll(loadMetrics, 4000));
})();
