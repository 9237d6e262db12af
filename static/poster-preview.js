// The poster template form's live preview: when a field changes, ask for the preview image of
// what the form now holds (its fields as the query of /posters/preview.jpg). A new background
// file is shown once the form is saved or previewed with the button, which also works without
// this script. Static file: the Content-Security-Policy allows no inline script.
(function () {
  var form = document.getElementById("poster-form"), img = document.getElementById("poster-preview");
  var error = document.getElementById("preview-error");
  if (!form || !img) return;
  var timer = null, base = img.getAttribute("data-base"), template = img.getAttribute("data-template");
  function url() {
    var q = new URLSearchParams();
    var data = new FormData(form);
    data.forEach(function (v, k) {
      if (typeof v !== "string" || k === "_csrf" || k === "name" || k === "group_id" || k === "intent" || v === "") return;
      q.append(k, v);
    });
    if (template) q.append("template", template);
    return base + "?" + q.toString();
  }
  function refresh() {
    clearTimeout(timer);
    timer = setTimeout(function () { img.src = url(); }, 400);
  }
  img.addEventListener("error", function () { if (error) error.hidden = false; });
  img.addEventListener("load", function () { if (error) error.hidden = true; });
  form.addEventListener("input", refresh);
  form.addEventListener("change", refresh);
})();
