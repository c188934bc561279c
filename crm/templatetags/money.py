"""``{% load money %}``: ``{{ amount|money }}`` ("$1,234.50"), ``{{ total|money:0 }}`` ("$1,235") and
``{% currency_symbol %}`` (for the charts, through a data attribute: the CSP allows no inline script)."""
from django import template

from crm.money import currency_symbol as _currency_symbol
from crm.money import format_money

register = template.Library()


@register.filter
def money(value, decimals=2):
    try:
        decimals = int(decimals)
    except (TypeError, ValueError):
        decimals = 2
    return format_money(value, decimals)


@register.simple_tag
def currency_symbol():
    return _currency_symbol()
