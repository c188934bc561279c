"""Money as the pages show it (crm.money, the |money filter): symbol, separators, decimals, sign."""
from decimal import Decimal

import pytest
from django.template import Context, Template

from crm.money import format_money


@pytest.mark.parametrize(("value", "decimals", "shown"), [
    (1234.5, 2, "$1,234.50"),
    (Decimal("0.005"), 2, "$0.01"),  # half away from zero, not float's binary rounding
    (2.675, 2, "$2.68"),
    (-12, 2, "\u2212$12.00"),
    (-0.001, 2, "$0.00"),  # rounded to nothing: no minus sign before a zero
    (1234567.49, 0, "$1,234,567"),
    (0, 2, "$0.00"),
])
def test_format_money_writes_symbol_separators_and_decimals(value, decimals, shown):
    assert format_money(value, decimals) == shown


@pytest.mark.parametrize("value", [None, "", "n/a", float("nan"), float("inf")])
def test_format_money_leaves_what_is_not_an_amount_empty(value):
    assert format_money(value) == ""


def test_format_money_uses_the_currency_setting(settings):
    settings.CRM_CURRENCY, settings.CRM_CURRENCY_SYMBOL = "EUR", ""
    assert format_money(9.5) == "€9.50"
    settings.CRM_CURRENCY = "NOK"  # no symbol known: the code
    assert format_money(9.5) == "NOK 9.50"
    settings.CRM_CURRENCY_SYMBOL = "kr "
    assert format_money(-9.5) == "\u2212kr 9.50"


def test_money_filter_is_available_in_every_template_with_its_decimals():
    html = Template('{{ a|money }} {{ b|money:0 }} {{ c|money|default:"–" }} <b data-c="{% currency_symbol %}">').render(
        Context({"a": 1000, "b": 1999.5, "c": None}))
    assert html == '$1,000.00 $2,000 – <b data-c="$">'
