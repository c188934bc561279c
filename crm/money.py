"""Money as the pages show it: the currency's symbol, thousands separators, fixed decimals.

The amounts stored and served by the API are plain numbers in one currency (``CRM_CURRENCY``);
only the pages, the charts and the spreadsheet export dress them. One home for the symbol and the
format, so a chart's tooltip and a table cell say the same thing.
"""
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.conf import settings

# Symbols of the common ISO 4217 codes; any other code is written before the amount ("NOK 12.00").
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CNY": "CN¥", "INR": "₹", "KRW": "₩",
           "CAD": "CA$", "AUD": "A$", "NZD": "NZ$", "HKD": "HK$", "SGD": "S$", "MXN": "MX$", "BRL": "R$",
           "CHF": "CHF ", "SEK": "SEK ", "NOK": "NOK ", "DKK": "DKK ", "PLN": "PLN ", "CZK": "CZK ",
           "ZAR": "R ", "ILS": "₪", "TRY": "₺", "RUB": "₽", "UAH": "₴", "VND": "₫", "PHP": "₱", "THB": "฿",
           "NGN": "₦"}
MINUS = "\u2212"  # the typographic minus: "−$12.00", the width of a digit in most fonts


def currency_symbol() -> str:
    """``CRM_CURRENCY_SYMBOL`` when set, else the symbol of ``CRM_CURRENCY`` (or its code and a space)."""
    return settings.CRM_CURRENCY_SYMBOL or SYMBOLS.get(settings.CRM_CURRENCY, settings.CRM_CURRENCY + " ")


def format_money(value, decimals: int = 2) -> str:
    """``1234.5`` -> ``"$1,234.50"``, ``-12`` -> ``"−$12.00"``; ``decimals=0`` -> ``"$1,235"``.

    Rounds half away from zero (as accountants and spreadsheets do, not float's binary rounding).
    None, "" and text that is not a number give "" (so ``|money|default:"–"`` shows a dash).
    """
    if value is None or value == "":
        return ""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return ""
    if not amount.is_finite():
        return ""
    amount = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    text = f"{currency_symbol()}{abs(amount):,.{decimals}f}"
    return MINUS + text if amount < 0 else text
