// Ending a lesson or rebooting a board stops a class: ask first.
"use strict";
document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) ev.preventDefault();
});
