"""OpenAPI generation: every operation documents the error responses it can give, in the one error format."""
from drf_spectacular.openapi import AutoSchema

from web.api.serializers import ErrorSerializer


class CrmAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = {"401", "403", "405", "429"}
        if self.method in ("POST", "PUT", "PATCH") or self._get_filter_parameters() or self._is_list_view() \
                or self.get_override_parameters():
            codes.add("400")
        if "{" in self.path or self._is_list_view():
            codes.add("404")  # an unknown or invisible object, or a page past the end
        if self.method in ("POST", "PUT", "PATCH"):
            codes.add("415")
        for code in sorted(codes):
            responses.setdefault(code, self._get_response_for_code(ErrorSerializer, code, direction=direction))
        return responses
