"""Request and response shapes of the import resource: runs, their files, upload and confirm
options. Thin, as web.api.serializers."""
import json

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from crm import selectors
from crm.forms import import_upload_error
from crm.models import ImportFile, ImportRun


class ImportFileSerializer(serializers.ModelSerializer):
    rejected_rows = serializers.SerializerMethodField(
        help_text="The first 100 rejected rows and rows loaded with a warning, with every reason.")

    class Meta:
        model = ImportFile
        fields = ("kind", "filename", "encoding", "delimiter", "header", "column_mapping", "suggested_mapping",
                  "error", "rows_read", "created", "updated", "unchanged", "rejected", "warned", "seconds", "preview",
                  "rejected_rows")

    @extend_schema_field({"type": "array", "items": {"type": "object", "properties": {
        "row": {"type": "integer", "nullable": True}, "outcome": {"type": "string", "enum": ["rejected", "warning"]},
        "reason": {"type": "string"}, "values": {"type": "object", "additionalProperties": {"type": "string"}}}}})
    def get_rejected_rows(self, import_file):
        if not self.context.get("with_rejected_rows"):
            return []
        return selectors.rejected_rows(import_file)


class ImportRunSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    files = ImportFileSerializer(many=True, read_only=True)
    progress_percent = serializers.IntegerField(read_only=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    outcome = serializers.CharField(read_only=True, help_text='The status in words: "completed, 10 of 13 rows '
                                                              'rejected", "dry run: all 13 rows would load", ...')

    class Meta:
        model = ImportRun
        fields = ("id", "status", "outcome", "dry_run", "date_format", "source_name", "mapping", "stage", "source",
                  "user", "rows_done", "bytes_done", "bytes_total", "progress_percent", "error", "created_at",
                  "started_at", "finished_at", "duration_seconds", "files")
        read_only_fields = fields


def _mapping_value(value):
    """A mapping as JSON text (multipart forms) or an object: {kind: {file column: contract column}}."""
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise serializers.ValidationError("mapping is not JSON") from None
    kinds = ("customers", "products", "interactions")
    if not isinstance(value, dict) or not all(
            k in kinds and isinstance(v, dict) and all(isinstance(a, str) and isinstance(b, str) for a, b in v.items())
            for k, v in value.items()):
        raise serializers.ValidationError('mapping must be {"customers": {"file column": "contract column"}, ...} '
                                          f"with keys among {', '.join(kinds)}")
    return value


class _MappingField(serializers.JSONField):
    """An object in JSON bodies, JSON text in multipart forms."""

    def to_internal_value(self, data):
        return _mapping_value(data.decode() if isinstance(data, bytes) else data)


class ImportOptionsSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(required=False, default=False,
                                       help_text="Check only: read everything, apply the suggested column names, "
                                                 "count what would be created, updated and rejected; write no data.")
    date_format = serializers.ChoiceField(choices=["", "iso", "dmy", "mdy"], required=False, default="",
                                          help_text="How non-ISO dates read: dmy (31/12/2024) or mdy (12/31/2024); "
                                                    "ISO always reads. Empty: the source's, else iso.")
    source_name = serializers.CharField(max_length=100, required=False, default="", allow_blank=True,
                                        help_text="An upload source: its saved mapping and date format apply; a real "
                                                  "import saves its own under this name.")
    mapping = _MappingField(required=False, default=dict,
                            help_text='Column names to read as contract columns: {"customers": {"Customer ID": '
                                      '"external_id"}}; in a multipart form, JSON text.')


class ImportUploadSerializer(ImportOptionsSerializer):
    customers = serializers.FileField(required=False, help_text="customers.csv (contract section 1).")
    products = serializers.FileField(required=False, help_text="products.csv.")
    interactions = serializers.FileField(required=False, help_text="interactions.csv.")

    def validate(self, data):
        uploads = {k: data[k] for k in ("customers", "products", "interactions") if data.get(k)}
        if not uploads:
            raise serializers.ValidationError("upload at least one of customers, products, interactions")
        for kind, upload in uploads.items():
            error = import_upload_error(kind, upload)
            if error:
                raise serializers.ValidationError(error)
        return data


class ImportConfirmSerializer(ImportOptionsSerializer):
    """Import the files of a dry run; the options default to the dry run's own."""

    date_format = serializers.ChoiceField(choices=["", "iso", "dmy", "mdy"], required=False)
    source_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    mapping = _MappingField(required=False)
