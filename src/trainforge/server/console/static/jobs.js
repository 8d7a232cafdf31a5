/* trainforge console: the jobs list refreshes itself, and selected jobs can be compared. */
(function () {
  "use strict";
  const TF = window.TF;
  const data = TF.data();
  const tbody = document.getElementById("job-rows");
  const button = document.getElementById("compare-button");
  const hint = document.getElementById("compare-hint");

  function boxes() {
    return Array.from(tbody.querySelectorAll('input[type="checkbox"][name="job"]'));
  }

  function updateCompare() {
    const n = boxes().filter((b) => b.checked).length;
    button.disabled = n < 2;
    hint.textContent = n < 2 ? "select two or more jobs" : n + " selected";
  }

  function row(r, checked) {
    const box = TF.el("input", { type: "checkbox", name: "job", value: r.name, form: "compare-form" });
    box.setAttribute("aria-label", "select " + r.name);
    box.checked = checked;
    const link = TF.el("a", { href: TF.base + "/jobs/" + encodeURIComponent(r.name), text: r.name });
    const metrics = TF.el("td", { class: "metrics" });
    for (const [name, value] of r.metrics.slice(0, 4)) {
      metrics.append(TF.el("span", { class: "metric" }, [TF.el("span", { class: "metric-name", text: name }), " " + value]));
    }
    if (r.metrics.length > 4) metrics.append(TF.el("span", { class: "muted", text: "+" + (r.metrics.length - 4) }));
    const time = TF.el("time", { "data-epoch": String(r.created), text: r.created_text });
    const tr = TF.el("tr", {}, [
      TF.el("td", { class: "pick" }, [box]),
      TF.el("td", { class: "name" }, [link]),
      TF.el("td", { class: "state" }, [
        TF.el("span", { class: "status status-" + r.status, text: r.status }),
        " ",
        r.secondary === r.status ? null : TF.el("span", { class: "secondary", text: r.secondary }),
      ]),
      TF.el("td", { class: "nowrap", text: r.instance_type + " × " + r.instance_count }),
      TF.el("td", { class: "nowrap" }, [time]),
      TF.el("td", { class: "duration", text: r.duration }),
      TF.el("td", { class: "nowrap cost", text: r.cost }),
      metrics,
    ]);
    tr.dataset.name = r.name;
    return tr;
  }

  function render(res) {
    const checked = new Set(boxes().filter((b) => b.checked).map((b) => b.value));
    const rows = res.rows.map((r) => row(r, checked.has(r.name)));
    if (!rows.length) {
      rows.push(TF.el("tr", { class: "empty" }, [TF.el("td", { colspan: "8", text: "No training jobs match." })]));
    }
    tbody.replaceChildren(...rows);
    TF.localizeTimes(tbody);
    document.getElementById("job-count").textContent = res.total + (res.total === 1 ? " job" : " jobs");
    document.getElementById("page-info").textContent = res.total
      ? `${res.first}–${res.last} of ${res.total} · page ${res.page} of ${res.pages}`
      : "page 1 of 1";
    updateCompare();
  }

  tbody.addEventListener("change", updateCompare);
  for (const select of document.querySelectorAll("#filters select")) {
    select.addEventListener("change", () => select.form.requestSubmit());
  }
  updateCompare();
  TF.poll(async function () {
    render(await TF.getJSON(TF.base + "/api/jobs" + (data.query ? "?" + data.query : "")));
    return true;
  }, 2500);
})();
