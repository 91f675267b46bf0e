// Small enhancements where JavaScript runs; every page works without them.
(function () {
  "use strict";

  // The shortcode list becomes buttons that insert a shortcode at the text's cursor.
  function enhanceShortcodes(root) {
    var body = document.getElementById("body");
    if (!body) return;
    root.querySelectorAll("code.shortcode").forEach(function (code) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "shortcode";
      button.textContent = code.textContent;
      button.setAttribute("aria-label", "Insert " + code.textContent);
      button.addEventListener("click", function () {
        var start = body.selectionStart, end = body.selectionEnd;
        body.value = body.value.slice(0, start) + code.textContent + body.value.slice(end);
        body.focus();
        body.selectionStart = body.selectionEnd = start + code.textContent.length;
        body.dispatchEvent(new Event("keyup", { bubbles: true }));
      });
      code.replaceWith(button);
    });
  }

  // A campaign's actions follow its state as the live progress changes it.
  function syncActions() {
    var state = document.getElementById("campaign-state");
    if (!state) return;
    document.querySelectorAll("form[data-states]").forEach(function (form) {
      form.hidden = form.dataset.states.split(" ").indexOf(state.textContent.trim()) < 0;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.documentElement.classList.add("js");
    enhanceShortcodes(document);
  });
  document.addEventListener("htmx:afterSwap", syncActions);
  document.addEventListener("htmx:sseMessage", syncActions);
})();
