// On every page: when the page shows an error summary (#errori), focus goes to it, so a screen reader
// reads it first and a keyboard user starts from it. Pages work the same without this script.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var errors = document.getElementById("errori");
    if (errors) errors.focus();
  });
})();
