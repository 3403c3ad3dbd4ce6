// Progressive enhancement of the application forms: a field that applies only to some answers of
// another field on the same page is hidden until they are chosen. Without this script the field
// stays visible with a note saying when to fill it; the server ignores it when it does not apply.
(function () {
  "use strict";
  function valueOf(controlId) {
    var el = document.getElementById(controlId);
    if (el && el.type === "checkbox") return el.checked ? "si" : "no";
    if (el && el.tagName === "SELECT") return el.value;
    var radios = document.querySelectorAll('input[type="radio"][id^="' + controlId + '-"]');
    for (var i = 0; i < radios.length; i++) if (radios[i].checked) return radios[i].value;
    return "";
  }
  function update() {
    document.querySelectorAll("[data-show-if-field]").forEach(function (wrapper) {
      var values = wrapper.getAttribute("data-show-if-values").split(",");
      var shown = values.indexOf(valueOf(wrapper.getAttribute("data-show-if-field"))) !== -1;
      wrapper.hidden = !shown;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".sportello-show-if-hint").forEach(function (h) { h.hidden = true; });
    document.querySelectorAll(".sportello-form").forEach(function (form) {
      form.addEventListener("change", update);
    });
    update();
  });
})();
