import sys

from django.core.paginator import InvalidPage, Page
from django.core.paginator import Paginator as DjangoPaginator
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from crm import keyset
from crm.keyset import ListPage
from web import cursors


class _CountedPaginator(DjangoPaginator):
    """A paginator whose count is already known (the selector returned it with the page)."""

    def __init__(self, count, per_page):
        super().__init__((), per_page)
        self._known_count = count

    @property
    def count(self):
        return self._known_count


class Pagination(PageNumberPagination):
    """``?page=N&page_size=M``; the page size is capped so one request stays cheap. Lists read by
    keyset (:meth:`paginate_keyset`) also take ``?cursor=`` and link their pages by cursor."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    cursor_query_param = "cursor"
    _links = None

    def paginate_fetched(self, fetch, request, view=None) -> list:
        """paginate_queryset for a selector that reads one page and the total together
        (``fetch(offset, limit) -> (rows, total)``): the same parameters, errors and response as
        for a queryset."""
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

    def paginate_keyset(self, fetch, request, ordering: str, scope: str, lengths: tuple) -> list:
        """The rows of one page of list ``scope`` read by keyset, ``fetch(**where) -> ListPage``
        (ml.customer_lists' shape; ``where``: offset, after, reverse, limit as customer_list_page
        takes them), sorted by ``ordering`` whose parts have sort keys of ``lengths`` values.

        ``?cursor=`` (a ``next`` or ``previous`` link's): the page after (or before) the row it
        names, an index range read at any depth; a cursor this server did not make for this
        ordering is a 400. Without it ``?page=N`` as for any list (``page=last``: the end read
        backwards). Either way ``next`` and ``previous`` are cursor links, so a client following
        them never skips or repeats a row while rows are added or removed between requests.
        """
        self.request = request
        page_size = self.get_page_size(request)
        raw_cursor = request.query_params.get(self.cursor_query_param)
        number = None
        if raw_cursor is not None:
            try:
                after, reverse, _ = cursors.loads(raw_cursor, scope, ordering, lengths)
            except cursors.BadCursor as exc:
                raise ValidationError({self.cursor_query_param: [
                    f"Invalid cursor ({exc}): use a next or previous link of this list as it is."]}) from None
            listed = fetch(after=after, reverse=reverse, limit=page_size)
        else:
            after, reverse = None, False
            raw = request.query_params.get(self.page_query_param) or 1
            try:
                if raw in self.last_page_strings:
                    listed, reverse = fetch(reverse=True, limit=page_size), True
                    number = _CountedPaginator(listed.total, page_size).num_pages
                    shown = listed.total - (number - 1) * page_size
                    listed.ids, listed.keys = listed.ids[len(listed.ids) - shown:], listed.keys[len(listed.keys) - shown:]
                    listed.more = number > 1
                else:
                    number = _CountedPaginator(sys.maxsize, page_size).validate_number(raw)
                    listed = fetch(offset=(number - 1) * page_size, limit=page_size)
                _CountedPaginator(listed.total, page_size).validate_number(number)
            except InvalidPage as exc:
                raise NotFound(self.invalid_page_message.format(page_number=raw, message=str(exc))) from None
        # Read forwards, more rows follow when the read said so, and precede it after a cursor or
        # page 1; read backwards, the other way round.
        later, earlier = (after is not None, listed.more) if reverse else (listed.more, after is not None or (number or 1) > 1)
        url = remove_query_param(request.build_absolute_uri(), self.page_query_param)
        self._links = {"next": None, "previous": None, "count": listed.total}
        if later and listed.keys:
            self._links["next"] = replace_query_param(url, self.cursor_query_param, cursors.dumps(scope, ordering, listed.keys[-1]))
        if earlier and listed.keys:
            self._links["previous"] = replace_query_param(
                url, self.cursor_query_param, cursors.dumps(scope, ordering, listed.keys[0], reverse=True))
        return listed.ids

    def paginate_queryset_keyset(self, queryset, terms, request, ordering: str, scope: str) -> list:
        """:meth:`paginate_keyset` for a queryset sorted by ``terms`` [(field, descending)], never
        NULL and ending unique (e.g. ``(("name", False), ("sku", False))``): its rows."""
        def fetch(*, limit, offset=0, after=None, reverse=False):
            read = keyset.reversed_terms(terms) if reverse else terms
            rows = queryset.filter(keyset.after(read, after[1])) if after is not None else queryset
            rows = list(rows.order_by(*keyset.order(read))[offset:offset + limit + 1])
            more, rows = len(rows) > limit, rows[:limit]
            if reverse:
                rows.reverse()
            keys = [(0, [getattr(row, name) for name, _ in terms]) for row in rows]
            return ListPage(rows, keys, queryset.count(), more)

        return self.paginate_keyset(fetch, request, ordering, scope, (len(terms),))

    def get_paginated_response(self, data):
        if self._links is None:
            return super().get_paginated_response(data)
        return Response({"count": self._links["count"], "next": self._links["next"],
                         "previous": self._links["previous"], "results": data})

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        if getattr(view, "keyset_pagination", False):
            parameters.append({
                "name": self.cursor_query_param, "required": False, "in": "query",
                "description": "A page of the list by keyset: the value of a `next` or `previous` link's "
                               "`cursor` (opaque; use the links as they are). Takes precedence over `page`.",
                "schema": {"type": "string"}})
        return parameters
