import sys

from django.core.paginator import InvalidPage, Page
from django.core.paginator import Paginator as DjangoPaginator
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination


class _CountedPaginator(DjangoPaginator):
    """A paginator whose count is already known (the selector returned it with the page)."""

    def __init__(self, count, per_page):
        super().__init__((), per_page)
        self._known_count = count

    @property
    def count(self):
        return self._known_count


class Pagination(PageNumberPagination):
    """``?page=N&page_size=M``; the page size is capped so one request stays cheap."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_fetched(self, fetch, request, view=None) -> list:
        """paginate_queryset for a selector that reads one page and the total together
        (``fetch(offset, limit) -> (rows, total)``, e.g. ml.customer_lists.customer_page_ids):
        the same parameters, errors and response as for a queryset."""
        self.request = request
        page_size = self.get_page_size(request)
        raw = request.query_params.get(self.page_query_param) or 1
        try:
            if raw in self.last_page_strings:
                total = fetch(0, 0)[1]
                number = _CountedPaginator(total, page_size).num_pages
            else:
                number = _CountedPaginator(sys.maxsize, page_size).validate_number(raw)
            rows, total = fetch((number - 1) * page_size, page_size)
            paginator = _CountedPaginator(total, page_size)
            paginator.validate_number(number)
        except InvalidPage as exc:
            raise NotFound(self.invalid_page_message.format(page_number=raw, message=str(exc))) from None
        self.page = Page(rows, number, paginator)
        if paginator.num_pages > 1 and self.template is not None:
            self.display_page_controls = True
        return list(rows)
