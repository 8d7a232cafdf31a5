/* trainforge console: one metric of the compared jobs overlaid on one chart. */
(function () {
  "use strict";
  const TF = window.TF;
  const data = TF.data();
  const select = document.getElementById("compare-metric");
  const holder = document.getElementById("compare-chart");
  if (!select || !holder) return;

  async function draw() {
    const metric = select.value;
    const results = await Promise.all(
      data.jobs.map((job) =>
        TF.getJSON(TF.base + "/api/jobs/" + encodeURIComponent(job) + "/metrics?metric=" + encodeURIComponent(metric))
      )
    );
    const series = [];
    results.forEach((r, i) => {
      const hosts = r.series[metric] || {};
      const names = Object.keys(hosts).sort();
      for (const h of names) {
        series.push({ label: names.length > 1 ? data.jobs[i] + " (" + h + ")" : data.jobs[i], points: hosts[h] });
      }
    });
    TF.lineChart(holder, { title: metric, series: series, legend: true });
  }
  select.addEventListener("change", draw);
  draw();
})();
