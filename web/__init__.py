"""The layer above the domain and the models: the HTML pages (web.views, web.page_urls) and the
REST API (web.api). It reads and writes through crm (selectors, services) and ml (insights,
run reports, services); neither of them imports it."""
