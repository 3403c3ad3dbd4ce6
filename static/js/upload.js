// Uploads with a progress bar. Without this script the form is sent as it is and the page comes
// back with the result; with it, the bar shows how much has gone, a failed upload can simply be
// tried again, and the list is reloaded when the file has been checked.
(function () {
  "use strict";
  document.querySelectorAll("form.sportello-upload").forEach(function (form) {
    var bar = form.querySelector(".progress");
    var fill = form.querySelector(".progress-bar");
    var status = form.querySelector(".upload-status");
    form.addEventListener("submit", function (event) {
      var input = form.querySelector("input[type=file]");
      if (!input || !input.files || input.files.length === 0) {
        return;
      }
      event.preventDefault();
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      bar.classList.remove("d-none");
      fill.style.width = "0%";
      status.textContent = "Caricamento in corso…";
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) {
          var pct = Math.round((e.loaded / e.total) * 100);
          fill.style.width = pct + "%";
          status.textContent = pct < 100 ? "Caricamento: " + pct + "%" : "Caricato: verifica in corso…";
        }
      });
      xhr.addEventListener("load", function () {
        var answer = {};
        try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = {}; }
        if (answer.stato === "accettato" || answer.stato === "rifiutato") {
          var url = new URL(window.location.href);
          url.searchParams.set("esito", answer.stato);
          window.location.assign(url.toString());
        } else {
          status.textContent = (answer.motivo || "Il caricamento non è riuscito.") + " Puoi riprovare.";
        }
      });
      xhr.addEventListener("error", function () {
        status.textContent = "Il caricamento si è interrotto (connessione assente?). Puoi riprovare.";
      });
      xhr.send(new FormData(form));
    });
  });
})();
