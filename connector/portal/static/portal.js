/* Returns portal: progressive enhancement only. Every page works without this file.
   - Items step: show reason, comment and photo inputs only for chosen items, and the comment and
     photo inputs only when the chosen reason needs them (or they already hold something).
   - Forms marked data-once: disable the button after the first submit (the server is idempotent
     anyway; this only spares a second request). */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function setup(line) {
    var quantity = line.querySelector("[data-quantity]");
    var details = line.querySelector("[data-details]");
    if (!quantity || !details) return;
    var reason = details.querySelector("[data-reason]");
    var comment = details.querySelector("[data-comment]");
    var photos = details.querySelector("[data-photos]");

    function hasContent(block) {
      if (!block) return false;
      if (block.querySelector(".field__error")) return true;
      var text = block.querySelector("textarea");
      if (text && text.value.trim()) return true;
      return !!block.querySelector("input[type=checkbox]:checked");
    }

    function update() {
      var chosen = quantity.value !== "0";
      details.hidden = !chosen;
      var option = reason && reason.options[reason.selectedIndex];
      var needsComment = !!(option && option.hasAttribute("data-comment-required"));
      var needsPhoto = !!(option && option.hasAttribute("data-photo-required"));
      if (comment) {
        comment.hidden = !(needsComment || hasContent(comment));
        var area = comment.querySelector("textarea");
        if (area) area.required = chosen && needsComment;
      }
      if (photos) photos.hidden = !(needsPhoto || hasContent(photos));
    }

    quantity.addEventListener("change", update);
    if (reason) reason.addEventListener("change", update);
    update();
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-line]"), setup);

  Array.prototype.forEach.call(document.querySelectorAll("button[data-once]"), function (button) {
    var form = button.form;
    if (!form) return;
    form.addEventListener("submit", function () {
      window.setTimeout(function () { button.disabled = true; }, 0);
    });
  });

  var summary = document.querySelector(".error-summary");
  if (summary) summary.focus();
})();
