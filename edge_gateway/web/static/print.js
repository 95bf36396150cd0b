// The radio report's "Print" button (an inline onclick would break the Content-Security-Policy).
"use strict";
document.addEventListener("click", (ev) => {
  const button = ev.target.closest("[data-print]");
  if (button) window.print();
});
