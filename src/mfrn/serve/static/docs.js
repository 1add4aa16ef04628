// /docs: the OpenAPI schema as a readable list of operations (FastAPI's Swagger UI needs a CDN).
"use strict";

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

async function render() {
  const box = document.getElementById("api-docs");
  const spec = await (await fetch("/openapi.json")).json();
  box.textContent = "";
  box.append(el("h2", null, spec.info.title + " " + spec.info.version));
  box.append(el("p", null, spec.info.description || ""));
  if (spec.components && spec.components.securitySchemes) {
    box.append(el("p", "warning", "The API needs a bearer token: Authorization: Bearer <token>."));
  }
  for (const [path, operations] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(operations)) {
      const section = el("section", "operation");
      section.append(el("h3", null, method.toUpperCase() + " " + path));
      if (op.summary) section.append(el("p", null, op.summary));
      if (op.description) section.append(el("p", "muted", op.description));
      const params = (op.parameters || []).map((p) => p.name + " (" + p.in + (p.required ? ", required" : "") + ")");
      if (params.length) section.append(el("p", "muted", "parameters: " + params.join(", ")));
      if (op.requestBody) section.append(el("p", "muted", "body: " + Object.keys(op.requestBody.content).join(", ")));
      const codes = Object.entries(op.responses || {}).map(([code, r]) => code + " " + (r.description || ""));
      section.append(el("p", "muted", "responses: " + codes.join("; ")));
      box.append(section);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  render().catch((error) => { document.getElementById("api-docs").textContent = "could not read /openapi.json: " + error; });
});
