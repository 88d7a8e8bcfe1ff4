// The queue page: ask every two seconds for our place; go to the lab once it has started.
(function () {
  "use strict";
  const url = document.currentScript.dataset.statusUrl;
  const positionEl = document.getElementById("position");
  const errorEl = document.getElementById("queue-error");

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((response) => response.json())
      .then((body) => {
        if (body.url) { location.href = body.url; return; }
        if (body.error) { errorEl.textContent = body.error; errorEl.hidden = false; return; }
        positionEl.textContent = body.position;
        setTimeout(poll, 2000);
      })
      .catch(() => setTimeout(poll, 5000));
  }
  poll();
})();
