"""HTML pages for sales staff. Thin: reads come from the selectors, writes from the services.
Every page requires login; every customer is fetched through ``visible_customers(user)`` (404
for one the user may not see); manager-only actions answer 403 to other roles.

One module per page family; the URLs are in web.page_urls."""
