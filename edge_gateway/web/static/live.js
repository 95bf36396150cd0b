// The live classroom grid: each room's card is replaced as the gateway
// pushes it (server-sent events from /live); the countdowns tick here.
"use strict";
(function () {
  const status = document.getElementById("live-status");
  const grid = document.getElementById("grid");
  const events = document.getElementById("events");
  if (!status || !grid) return;
  // the gateway's clock (a school clock in tests and the demo) minus ours
  let offset = parseFloat(status.dataset.now) - Date.now() / 1000;

  function format(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (h) return h + " h " + String(m).padStart(2, "0") + " min";
    return m ? m + " min " + String(s).padStart(2, "0") + " s" : s + " s";
  }
  function tick() {
    const now = Date.now() / 1000 + offset;
    for (const el of grid.querySelectorAll("[data-ends]")) {
      el.textContent = el.dataset.tpl.replace("{t}", format(parseFloat(el.dataset.ends) - now));
    }
  }
  function say(on) {
    status.textContent = on ? status.dataset.on : status.dataset.off;
    status.classList.toggle("off", !on);
  }
  const source = new EventSource("/live");
  source.onopen = () => say(true);
  source.onerror = () => {
    say(false);
    if (source.readyState === EventSource.CLOSED) window.location.assign("/login?next=/");
  };
  source.addEventListener("session", () => {
    source.close();
    window.location.assign("/login?next=/");
  });
  source.addEventListener("room", (msg) => {
    const data = JSON.parse(msg.data);
    offset = data.now - Date.now() / 1000;
    const holder = document.createElement("div");
    holder.innerHTML = data.html; // rendered and escaped by the gateway
    const card = holder.firstElementChild;
    const old = document.getElementById(card.id);
    if (old) old.replaceWith(card); else grid.appendChild(card);
    tick();
  });
  source.addEventListener("event", (msg) => {
    const holder = document.createElement("ol");
    holder.innerHTML = JSON.parse(msg.data).html;
    const empty = events.querySelector(".empty");
    if (empty) empty.remove();
    events.prepend(holder.firstElementChild);
    while (events.children.length > 30) events.lastElementChild.remove();
  });
  tick();
  setInterval(tick, 1000);
})();
