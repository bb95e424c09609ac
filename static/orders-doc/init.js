// Starts Swagger UI (swagger-ui-dist, pinned in web/package.json) over this service's own
// OpenAPI document. Kept in a file, not inline, for the page's Content-Security-Policy.
'use strict';
window.addEventListener('DOMContentLoaded', function () {
  window.ui = window.SwaggerUIBundle({
    url: '/orders-doc/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    tryItOutEnabled: false,
    persistAuthorization: false,
    // No validator badge: it would send the document to a public validator service.
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
    // The document is a JSON object (no key order): sort for a stable, findable listing.
    tagsSorter: 'alpha',
    operationsSorter: 'alpha',
  });
});
