// Kinship staff console: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  // Nothing lost, nothing doubled on a double click: a form submits once, then its buttons
  // are disabled until the next page load.  (The server is idempotent as well.)
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var confirmer = event.submitter && event.submitter.getAttribute("data-confirm");
    if (confirmer && !window.confirm(confirmer)) {
      event.preventDefault();
      return;
    }
    if (form.dataset.submitted === "1" && form.method.toLowerCase() === "post") {
      event.preventDefault();
      return;
    }
    form.dataset.submitted = "1";
    if (form.method.toLowerCase() === "post") {
      // Disable after this tick so the clicked button's name/value is still sent.
      window.setTimeout(function () {
        form.querySelectorAll("button, input[type=submit]").forEach(function (b) { b.disabled = true; });
      }, 0);
    }
  }, true);

  // Review queue keyboard shortcuts: j / k select the next / previous item, and a key given in
  // an item's button ``data-shortcut`` presses that button of the selected item.
  var items = Array.prototype.slice.call(document.querySelectorAll("[data-queue-item]"));
  var current = -1;
  function select(i) {
    if (!items.length) { return; }
    current = Math.max(0, Math.min(items.length - 1, i));
    items.forEach(function (el, n) { el.classList.toggle("selected", n === current); });
    items[current].focus();
  }
  document.addEventListener("keydown", function (event) {
    if (!items.length || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select") { return; }
    if (event.key === "j") { select(current + 1); event.preventDefault(); return; }
    if (event.key === "k") { select(current - 1); event.preventDefault(); return; }
    if (current < 0) { return; }
    var button = items[current].querySelector('[data-shortcut="' + event.key + '"]');
    if (button && !button.disabled) { event.preventDefault(); button.click(); }
  });

  // "Select all" for bulk actions.
  document.querySelectorAll("[data-select-all]").forEach(function (box) {
    box.addEventListener("change", function () {
      document.querySelectorAll('input[name="' + box.getAttribute("data-select-all") + '"]').forEach(function (b) {
        b.checked = box.checked;
      });
    });
  });

  // The language switch applies on change as well as with its button.
  var lang = document.getElementById("lang-select");
  if (lang) { lang.addEventListener("change", function () { lang.form.requestSubmit(); }); }
})();
