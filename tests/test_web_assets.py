"""Offline Data Docs: CDN URLs are rewritten to local copies (no network here: a fake cache and registry)."""

import base64
import hashlib
import io
import json
import re
import tarfile
import urllib.error
from pathlib import Path

import pytest

from gr2.platform import web_assets as wa

S3 = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com"
PAGE = f"""<html><head>
<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>
<link rel="stylesheet" href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css">
<link rel="canonical" href="https://example.org/page">
<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
<script src="https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js" integrity="sha384-abc" crossorigin="anonymous"></script>
<script src="https://example.com/unknown.js"></script>
<style>.brand {{ background: url('{S3}/full_logo_dark.png') }}</style>
</head><body>
<img class="NO-CACHE" src="{S3}/logo-long.png?d=20250101&amp;dataContextId=1234" alt="Great Expectations"/>
<a href="https://docs.greatexpectations.io/docs/terms/data_docs">docs</a>
</body></html>
"""


def fake_cache(root: Path) -> Path:
    for asset in wa.TABLE:
        path = root / asset.local
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"/* {asset.package} {asset.version} */")
        for folder in asset.folders:
            (root / asset.package / asset.version / folder).mkdir(parents=True, exist_ok=True)
            (root / asset.package / asset.version / folder / "font.woff2").write_bytes(b"\0")
    return root


def fake_site(site: Path) -> dict[str, Path]:
    pages = {"index": site / "index.html", "nested": site / "validations/suite/__none__/20250101T000000Z/run.html"}
    for page in pages.values():
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(PAGE)
    (site / "static/images").mkdir(parents=True)
    (site / "static/images/logo-long.png").write_bytes(b"\x89PNG")
    (site / "static/styles").mkdir(parents=True)
    pages["css"] = site / "static/styles/default.css"
    pages["css"].write_text(f".navbar-brand a {{ background: url('{S3}/full_logo_dark.png') 0 0 no-repeat; }}\n")
    return pages


def local_refs(text: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"'#]+)["']|url\(['"]?([^'")]+)""", text)


def test_localize_points_every_known_url_at_local_copies(tmp_path):
    cache = fake_cache(tmp_path / "cache")
    pages = fake_site(tmp_path / "site")
    result = wa.localize(tmp_path / "site", cache)

    assert "warning" not in result
    assert result["files"] == 3
    assert result["rewritten"] == 2 * 7 + 1  # per page: 5 CDN files + the logo <img> + the <style> logo; css: 1
    assert result["unresolved"] == ["https://example.com/unknown.js"]

    index, nested = pages["index"].read_text(), pages["nested"].read_text()
    assert 'src="_assets/jquery/3.7.1/dist/jquery.min.js"' in index
    assert 'src="../../../../_assets/jquery/3.7.1/dist/jquery.min.js"' in nested
    assert 'src="../../../../_assets/vega/5.33.1/build/vega.min.js"' in nested
    for text in (index, nested):
        assert "cdn.jsdelivr.net" not in text and "bootstrapcdn" not in text and "code.jquery.com" not in text
        assert "amazonaws" not in text and "dataContextId" not in text, "no tracking call to S3"
        assert "integrity=" not in text and "crossorigin" not in text
        assert "https://example.com/unknown.js" in text, "unknown URLs stay"
        assert "https://docs.greatexpectations.io/docs/terms/data_docs" in text, "links are not assets"
        assert "https://example.org/page" in text
    assert 'src="static/images/logo-long.png"' in index, "GE's own copy of the logo is used when the site has it"
    assert "url('../../_assets/gr2/logo.svg')" in pages["css"].read_text()

    # every local reference resolves to a file, seen from the page that holds it
    for page in pages.values():
        for ref in filter(None, (a or b for a, b in local_refs(page.read_text()))):
            if not ref.startswith("http"):
                assert (page.parent / ref).resolve().is_file(), f"{page}: {ref}"
    assert (tmp_path / "site/_assets/@fortawesome/fontawesome-free/6.6.0/webfonts/font.woff2").is_file()

    again = wa.localize(tmp_path / "site", cache)
    assert again["rewritten"] == 0 and again["files"] == 0


def test_localize_without_cache_changes_nothing(tmp_path):
    pages = fake_site(tmp_path / "site")
    result = wa.localize(tmp_path / "site", tmp_path / "no-cache")
    assert result["rewritten"] == 0 and result["files"] == 0
    assert "web_assets fetch" in result["warning"]
    assert pages["index"].read_text() == PAGE
    assert not (tmp_path / "site/_assets").exists()


def test_every_cdn_url_in_the_ge_templates_is_known():
    import great_expectations

    view = Path(great_expectations.__file__).parent / "render/view"
    unresolved: set[str] = set()
    for f in [*view.glob("templates/*.j2"), *view.glob("static/styles/*.css")]:
        wa._rewrite(f.read_text(), view, ".", unresolved, css_only=f.suffix == ".css")
    assert not unresolved, "a Great Expectations upgrade added CDN URLs: extend web_assets.TABLE"


def _tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture()
def fake_registry(monkeypatch):
    asset = wa.Asset(r"https://cdn\.example/x\.js", "@scope/x", "1.0.0", "dist/x.min.js", folders=("fonts",))
    monkeypatch.setattr(wa, "TABLE", (asset,))
    tarball = _tgz({"dist/x.min.js": b"x()", "dist/other.js": b"no", "fonts/a.woff2": b"A", "README.md": b"no"})
    served = {"integrity": "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()}
    calls = []

    def get(url, what, timeout):
        calls.append(url)
        if url.endswith(".tgz"):
            assert url == "https://registry.npmjs.org/@scope/x/-/x-1.0.0.tgz"
            return tarball
        return json.dumps({"dist": served}).encode()

    monkeypatch.setattr(wa, "_get", get)
    monkeypatch.delenv("GR2_NPM_REGISTRY", raising=False)
    monkeypatch.delenv("npm_config_registry", raising=False)
    return served, calls


def test_fetch_verifies_extracts_only_what_is_needed_and_is_idempotent(tmp_path, fake_registry):
    served, calls = fake_registry
    root = wa.fetch(tmp_path / "cache", quiet=True)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["@scope/x/1.0.0/dist/x.min.js", "@scope/x/1.0.0/fonts/a.woff2"]
    assert len(calls) == 2
    wa.fetch(tmp_path / "cache", quiet=True)
    assert len(calls) == 2, "a filled cache is not fetched again"

    served["integrity"] = "sha512-" + base64.b64encode(b"wrong").decode()
    with pytest.raises(wa.WebAssetsError, match="@scope/x@1.0.0.*integrity"):
        wa.fetch(tmp_path / "other", quiet=True)


def test_fetch_names_the_package_when_the_registry_is_unreachable(tmp_path, monkeypatch):
    monkeypatch.setattr(wa, "TABLE", (wa.TABLE[0],))

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(wa.urllib.request, "urlopen", refuse)
    with pytest.raises(wa.WebAssetsError, match=f"{wa.TABLE[0].package}@{wa.TABLE[0].version}.*no route to host"):
        wa.fetch(tmp_path / "cache", quiet=True)
