"""The service's front page and OpenAPI `info` describe this product, not BentoML's boilerplate, and load
nothing from the network."""

import re
from importlib.metadata import version

from .conftest import serving


def test_the_front_page_shows_the_product_its_version_and_how_to_authenticate(champion_store):
    with serving(champion_store) as client:
        page = client.get("/")
        document = client.get("/docs.json").json()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<title>abm-tiering " + version("abm-tiering") + "</title>" in html
    assert "Authorization: Bearer $TIERING_API_KEY" in html
    for route in ("/score", "/tier", "/alerts"):
        assert f"<code>POST {route}</code>" in html
    assert "BentoML Team" not in html and "Machine Learning Service created with BentoML" not in html
    # Self-contained: no script, style sheet, image or font is fetched from anywhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html
    info = document["info"]
    assert info["title"] == "abm-tiering" and info["version"] == version("abm-tiering")
    assert "Authorization: Bearer" in info["description"] and "BentoML" not in info["description"]
    assert "contact" not in info


def test_the_front_page_needs_the_key_like_every_other_page(champion_store):
    with serving(champion_store, TIERING_API_KEY="s3cret-key-for-tests") as client:
        assert client.get("/").status_code == 401
        assert client.get("/", headers={"Authorization": "Bearer s3cret-key-for-tests"}).status_code == 200
