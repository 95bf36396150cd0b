// A small reader of a service's OpenAPI description (/openapi.json, behind
// the same log-in), for the school gateway and the city alike: Swagger UI
// would come from a CDN a school may not reach.
"use strict";
(function () {
  const holder = document.getElementById("api");
  if (!holder) return;
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }
  fetch(holder.dataset.src, { credentials: "same-origin" })
    .then((r) => { if (!r.ok) throw new Error(r.status + " " + r.statusText); return r.json(); })
    .then((spec) => {
      holder.replaceChildren(el("p", spec.info.title + " — version " + spec.info.version));
      for (const [path, methods] of Object.entries(spec.paths)) {
        for (const [method, op] of Object.entries(methods)) {
          const box = el("section", undefined, "api-route");
          box.appendChild(el("h2", method.toUpperCase() + " " + path));
          if (op.summary) box.appendChild(el("p", op.summary));
          if (op.description) box.appendChild(el("p", op.description));
          const params = (op.parameters || []).map((p) => p.name + " (" + p.in + (p.required ? ", required" : "") + ")");
          if (params.length) box.appendChild(el("p", "Parameters: " + params.join(", ")));
          if (op.requestBody) {
            const schema = (op.requestBody.content["application/json"] || {}).schema || {};
            box.appendChild(el("p", "Body: " + (schema.$ref || schema.type || "JSON").split("/").pop()));
          }
          box.appendChild(el("p", "Responses: " + Object.keys(op.responses || {}).join(", ")));
          holder.appendChild(box);
        }
      }
    })
    .catch((err) => holder.replaceChildren(el("p", "/openapi.json: " + err.message, "error")));
})();
