// Live updates: the page's parts, pushed again by the server when they change (SSE).
(function () {
  const source = document.body.dataset.live;
  if (!source || !window.EventSource) return;
  const status = document.getElementById("live-status");
  const stream = new EventSource(source);
  stream.addEventListener("open", function () { status.textContent = "Live"; });
  stream.addEventListener("fragment", function (e) {
    const part = JSON.parse(e.data);
    const target = document.getElementById(part.id);
    if (!target) return;
    const focused = document.activeElement;
    if (focused && target.contains(focused) && focused.matches("input, select, textarea")) return;
    target.innerHTML = part.html;
  });
  stream.addEventListener("signed-out", function () {
    stream.close();
    window.location.assign("/ui/login?next=" + encodeURIComponent(window.location.pathname));
  });
  stream.addEventListener("problem", function (e) {
    stream.close();
    status.textContent = JSON.parse(e.data).message;
  });
  stream.addEventListener("error", function () { status.textContent = "Reconnecting…"; });
})();
