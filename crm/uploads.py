"""The upload size limit (IMPORT_MAX_UPLOAD_MB), enforced while the request body streams in.

Django stores an upload (in memory, or in a temporary file past FILE_UPLOAD_MAX_MEMORY_SIZE)
before any form or serializer sees it, so a size check there comes after the bytes are on
disk. :class:`UploadLimitHandler` goes first in FILE_UPLOAD_HANDLERS and cuts each file off at
the limit: the handlers after it (the ones that store) never get a byte past it, what they
stored of that file is closed (a temporary file is deleted), and the file reaches the form as
a :class:`RefusedUpload` whose size is over the limit, so every door (pages, admin, API)
refuses it with the one message of :func:`too_large_message`, through
``crm.forms.import_upload_error``. The rest of the request still parses, so the page can
answer with its form and the CSRF token is read.
"""
from io import BytesIO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopFutureHandlers

# Files one import request may carry (customers, products, interactions): a request longer than
# that many files at the limit, plus this much for the form fields and multipart framing,
# holds a file over the limit whatever is in it (web.middleware.UploadSizeMiddleware).
FILES_PER_REQUEST = 3
FORM_OVERHEAD_BYTES = 1024 * 1024


def limit_bytes() -> int:
    """The largest file accepted, in bytes, read from the settings at request time."""
    return settings.IMPORT_MAX_UPLOAD_MB * 1024 * 1024


def request_limit_bytes() -> int:
    """The longest import request body that can hold only files within the limit."""
    return FILES_PER_REQUEST * limit_bytes() + FORM_OVERHEAD_BYTES


def too_large_message(kind: str) -> str:
    """Why a file (``kind``: customers, products, interactions, or "uploaded") is refused for its size."""
    return f"The {kind} file is larger than the limit of {settings.IMPORT_MAX_UPLOAD_MB} MB (IMPORT_MAX_UPLOAD_MB)."


def request_too_large_message(content_length: int) -> str:
    """Why a whole upload request is refused for its declared length (bytes)."""
    return (f"The upload ({content_length / 1024 / 1024:,.1f} MB) is larger than {FILES_PER_REQUEST} files at the "
            f"limit of {settings.IMPORT_MAX_UPLOAD_MB} MB each (IMPORT_MAX_UPLOAD_MB) can be.")


class RefusedUpload(UploadedFile):
    """What is left of a file cut off at the limit: its name and ``size``, the bytes received
    before it was cut off (over the limit; the real file is at least that long), no content."""

    def __init__(self, name, content_type, size, charset=None, content_type_extra=None):
        super().__init__(BytesIO(), name, content_type, size, charset, content_type_extra)


class UploadLimitHandler(FileUploadHandler):
    """First of FILE_UPLOAD_HANDLERS: passes each file's chunks on until the next one would take
    it past the limit, then none, and completes that file as a :class:`RefusedUpload`.

    A file whose part announces a Content-Length over the limit is refused before a byte is
    stored (the storing handlers are not even told about it).
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.limit = limit_bytes()

    def new_file(self, field_name, file_name, content_type, content_length, charset=None, content_type_extra=None):
        super().new_file(field_name, file_name, content_type, content_length, charset, content_type_extra)
        self.received, self.announced = 0, content_length or 0
        self.refused = self.announced > self.limit
        if self.refused:
            raise StopFutureHandlers()  # the storing handlers never open a file for it

    def receive_data_chunk(self, raw_data, start):
        if not self.refused and start + len(raw_data) > self.limit:
            self.refused = True
            self._discard_stored()
        if self.refused:
            self.received = start + len(raw_data)
            return None  # None: the handlers after this one get nothing of the chunk
        return raw_data

    def file_complete(self, file_size):
        if not self.refused:
            return None  # a storing handler after this one completes the file
        return RefusedUpload(self.file_name, self.content_type, max(self.received, self.announced), self.charset,
                             self.content_type_extra)

    def _discard_stored(self):
        """Close what the storing handlers hold of the current file: a temporary file is deleted
        on close. They keep it as ``file``, the convention Django's own parser relies on when it
        skips a file (MultiPartParser._close_files)."""
        handlers = list(self.request.upload_handlers)
        for handler in handlers[handlers.index(self) + 1:]:
            stored = getattr(handler, "file", None)
            if stored is not None:
                stored.close()
