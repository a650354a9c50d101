/* The admin inside the Shopify admin (embedded mode). No cookies work in this iframe, so every
   request carries an App Bridge session token: on submit, forms get a fresh one in a hidden
   `id_token` field; on click, same-origin links get one in their URL (no bounce page needed);
   images that failed with an expired token are fetched again with a fresh one. Without App
   Bridge (offline) nothing is changed and the server's bounce page takes over. */
(function () {
  "use strict";

  function appBridge() {
    return window.shopify && typeof window.shopify.idToken === "function" ? window.shopify : null;
  }

  function sameOrigin(url) {
    try {
      return new URL(url, window.location.href).origin === window.location.origin;
    } catch (e) {
      return false;
    }
  }

  function freshToken() {
    var bridge = appBridge();
    return bridge ? Promise.resolve(bridge.idToken()) : Promise.reject(new Error("App Bridge is not loaded"));
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !appBridge()) return;
    if (!sameOrigin(form.getAttribute("action") || window.location.href)) return;
    if (form.dataset.tokenReady === "1") {  // the second pass, token in place: let it go
      delete form.dataset.tokenReady;
      return;
    }
    event.preventDefault();
    if (form.dataset.pending === "1") return;  // a double click waits for the first submit
    form.dataset.pending = "1";
    var submitter = event.submitter || null;
    freshToken().then(function (token) {
      var field = form.querySelector('input[name="id_token"]');
      if (!field) {
        field = document.createElement("input");
        field.type = "hidden";
        field.name = "id_token";
        form.appendChild(field);
      }
      field.value = token;
    }).catch(function () {
      /* no token: the server answers with the bounce page (GET) or asks to reload (POST) */
    }).then(function () {
      // A task later, not in this microtask: while the first submit event is still being
      // dispatched, the browser ignores a new submission of the same form.
      window.setTimeout(function () {
        form.dataset.tokenReady = "1";
        if (typeof form.requestSubmit === "function") {
          form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
        } else {
          form.submit();
        }
        delete form.dataset.tokenReady;
        window.setTimeout(function () { delete form.dataset.pending; }, 3000);
      }, 0);
    });
  }, true);

  document.addEventListener("click", function (event) {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    var link = event.target.closest ? event.target.closest("a[href]") : null;
    if (!link || (link.target && link.target !== "_self") || !appBridge()) return;
    var url = new URL(link.href, window.location.href);
    if (url.origin !== window.location.origin || url.hash && url.pathname === window.location.pathname) return;
    event.preventDefault();
    freshToken().then(function (token) {
      url.searchParams.set("id_token", token);
    }).catch(function () {}).then(function () {
      window.location.assign(url.toString());
    });
  });

  function retryImage(img) {
    if (img.dataset.tokenRetried === "1" || !appBridge() || !sameOrigin(img.src)) return;
    img.dataset.tokenRetried = "1";
    freshToken().then(function (token) {
      var url = new URL(img.src, window.location.href);
      url.searchParams.set("id_token", token);
      img.src = url.toString();
    }).catch(function () {});
  }

  document.addEventListener("error", function (event) {
    if (event.target instanceof HTMLImageElement) retryImage(event.target);
  }, true);

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.images, function (img) {
      if (img.complete && img.naturalWidth === 0 && img.getAttribute("loading") !== "lazy") retryImage(img);
    });
  });
})();
