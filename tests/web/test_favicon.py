"""The site's icon: linked from every page, and /favicon.ico (which browsers ask for anyway) is no 404."""
from django.templatetags.static import static


def test_favicon_page_links_the_svg_icon(rep_client, world):
    body = rep_client.get("/").content.decode()

    assert f'<link rel="icon" href="{static("crm/favicon.svg")}" type="image/svg+xml">' in body


def test_favicon_ico_redirects_to_the_icon_signed_in_or_not(client, rep):
    anonymous = client.get("/favicon.ico")
    client.force_login(rep)
    signed_in = client.get("/favicon.ico")

    assert anonymous.status_code == signed_in.status_code == 302
    assert anonymous.url == signed_in.url == static("crm/favicon.svg")


def test_favicon_ico_open_before_the_second_factor(client, manager):
    client.post("/login/", {"username": "boss", "password": "pw-boss-Secret1"})  # a password login: not verified

    assert client.get("/").status_code == 302  # the gate holds the pages
    assert client.get("/favicon.ico").url == static("crm/favicon.svg")
