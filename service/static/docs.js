// Swagger UI (vendored by the swagger-ui-bundle package, served under /docs/assets) on our spec.
window.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: false,
    validatorUrl: null,  // the default validator is an online service: never call out
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
