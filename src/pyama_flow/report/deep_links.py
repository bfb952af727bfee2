"""Links into the Snakemake report: ``report.html#result=<path>`` opens that result.

:func:`add_report_deep_links` adds a small router script to a report's HTML
page (Snakemake's report has no URLs for its pages).
"""

from __future__ import annotations

#: Script appended by :func:`add_report_deep_links`: maps the URL fragment to a page.
_DEEP_LINK_SCRIPT = """
<script id="pyama-flow-deep-links">
// pyama-flow: open a page of this Snakemake report from the URL fragment, e.g.
//   report.html#result=results/demo/fov_000/qc/outlines.png
//   report.html#category=3 Segmentation and tracking&subcategory=control
(function () {
  function route() {
    if (typeof app === "undefined" || !app || typeof results === "undefined") {
      setTimeout(route, 50);
      return;
    }
    var p = new URLSearchParams(window.location.hash.slice(1));
    var cat = p.get("category"), sub = p.get("subcategory"), res = p.get("result");
    if (res && !cat) {
      Object.keys(categories).forEach(function (c) {
        Object.keys(categories[c]).forEach(function (s) {
          if (categories[c][s].indexOf(res) >= 0) { cat = c; sub = s; }
        });
      });
    }
    // one setView call: React batches state updates, separate calls would
    // each start from the old state and undo each other
    var view = {};
    if (cat && categories[cat]) {
      view.category = cat;
      if (sub && categories[cat][sub]) {
        view.navbarMode = "subcategory";
        view.subcategory = sub;
      } else if (Object.keys(categories[cat]).length === 1) {
        view.navbarMode = "subcategory";
        view.subcategory = Object.keys(categories[cat])[0];
      } else {
        view.navbarMode = "category";
      }
    }
    if (res && results[res]) {
      var mime = results[res].mime_type || "";
      var content = mime.indexOf("image/") === 0 ? "img"
        : mime === "text/html" ? "html" : mime === "application/pdf" ? "pdf" : null;
      view.resultPath = res;
      if (content) {
        view.content = content;
        view.contentPath = results[res].data_uri;
      } else {
        view.navbarMode = "resultinfo";
      }
    }
    app.setView(view);
    document.body.setAttribute("data-deep-link", window.location.hash ? "done" : "none");
  }
  window.addEventListener("hashchange", route);
  route();
})();
</script>
"""


def add_report_deep_links(report_html: str) -> str:
    """A Snakemake HTML report with a URL-fragment router added.

    Snakemake's report (9.x) is a single-page app without URLs: every page is
    internal state. The returned page opens the page named in its fragment:
    ``#result=<path of a result>`` (the result in its category and
    subcategory), or ``#category=<name>&subcategory=<name>``. Nothing else
    changes. Use as ``add_report_deep_links(Path("report.html").read_text())``
    and write the result beside the report (or in place).
    """
    marker = "</body>"
    i = report_html.rfind(marker)
    if i < 0:
        raise ValueError("not a Snakemake HTML report (no </body>)")
    return report_html[:i] + _DEEP_LINK_SCRIPT + report_html[i:]
