// The API page: Swagger UI fetching /openapi.json (and every "Try it out") with the session token,
// taken from #token=… (never sent to the server) or from the console tab's sessionStorage.
"use strict";
(() => {
  const KEY = "exposure-console-token";
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
  const token = sessionStorage.getItem(KEY);
  window.addEventListener("load", () => {
    if (typeof SwaggerUIBundle === "undefined") {
      document.getElementById("swagger-ui").textContent =
        "Swagger UI could not be loaded. The API description is at /openapi.json " +
        "(send Authorization: Bearer TOKEN).";
      return;
    }
    SwaggerUIBundle({
      url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: false,
      requestInterceptor: (req) => { if (token) req.headers.Authorization = "Bearer " + token; return req; },
    });
  });
})();
