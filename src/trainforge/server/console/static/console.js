/* trainforge console: shared helpers. Data only ever reaches the page through textContent and attributes. */
(function () {
  "use strict";
  const TF = {};
  TF.base = "/console";

  /** The JSON the server put in <script type="application/json" id="page-data">. */
  TF.data = function () {
    const el = document.getElementById("page-data");
    return el ? JSON.parse(el.textContent) : {};
  };

  /** A new element; `text` sets textContent, `class` the class name, anything else an attribute. */
  TF.el = function (tag, props, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children || []) {
      if (c !== null && c !== undefined) e.append(c); // strings become text nodes
    }
    return e;
  };

  /** GET JSON from the console's API; a lost session goes back to the login page. */
  TF.getJSON = async function (url) {
    const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (r.status === 401) {
      location.href = TF.base + "/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new Error("signed out");
    }
    if (!r.ok) throw new Error("HTTP " + r.status + " for " + url);
    return r.json();
  };

  /** ``YYYY-MM-DD HH:MM:SS`` in the browser's time zone. */
  TF.localTime = function (epoch) {
    const d = new Date(epoch * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  };

  /** Show every <time data-epoch> in the browser's time zone (the UTC text stays as its tooltip). */
  TF.localizeTimes = function (root) {
    for (const t of (root || document).querySelectorAll("time[data-epoch]")) {
      const epoch = parseFloat(t.dataset.epoch);
      if (Number.isNaN(epoch) || t.dataset.local) continue;
      t.title = t.textContent;
      t.textContent = TF.localTime(epoch);
      t.setAttribute("datetime", new Date(epoch * 1000).toISOString());
      t.dataset.local = "1";
    }
  };

  /** Call `fn` every `ms` milliseconds (slower while the tab is hidden) until it returns false. */
  TF.poll = function (fn, ms) {
    let stopped = false;
    async function tick() {
      if (stopped) return;
      let again = true;
      try {
        again = await fn();
      } catch (err) {
        again = true; // the server may be restarting: keep trying
      }
      if (again !== false && !stopped) setTimeout(tick, document.hidden ? ms * 4 : ms);
    }
    setTimeout(tick, ms);
    return function () { stopped = true; };
  };

  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }
  TF.localizeTimes();
  window.TF = TF;
})();
