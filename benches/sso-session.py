#!/usr/bin/env python3
"""Signs in at mlflow-gateway through its OpenID Connect issuer and prints the session cookie.

    sso-session.py GATEWAY_URL LOGIN      e.g. http://127.0.0.1:8080 alice

For scripts/bench-http (section k): GET /_gateway/login, the redirects to the issuer, its login
form (tests/peers/oidc-login-server.mjs: `login`, any `password`) and consent form, the
callback and its redirect back to the gateway, with one cookie jar (`requests`, from the
provisioned venv). Prints the gateway's session cookie pairs (`mlflow_gateway_session` and its
chunks `mlflow_gateway_session.N`) as one `Cookie` header value, `name=value; name=value`.
Exits 1 naming the step and what the server answered when the sign-in does not succeed.
"""

import sys
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import requests

SESSION_COOKIE = "mlflow_gateway_session"
# The test provider asks for a login and then a consent; more forms than this is a loop.
MAX_FORMS = 5
TIMEOUT = 30
# A browser's top-level page load.
NAVIGATION = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate"}


class FirstForm(HTMLParser):
    """The first <form> of a page: its action, method and named inputs with their values."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.method = "get"
        self.inputs = {}
        self._inside = False
        self._done = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and not self._done:
            self.action = attrs.get("action") or ""
            self.method = (attrs.get("method") or "get").lower()
            self._inside = True
        elif tag == "input" and self._inside and attrs.get("name"):
            self.inputs[attrs["name"]] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form" and self._inside:
            self._inside = False
            self._done = True


def fail(step, page):
    body = page.text[:600].replace("\n", " ")
    sys.exit(f"sso-session: {step}: {page.status_code} at {page.url}: {body}")


def session_cookie(jar):
    """The session cookie pairs, the first chunk first."""
    pairs = [
        (cookie.name, cookie.value)
        for cookie in jar
        if cookie.name == SESSION_COOKIE or cookie.name.startswith(SESSION_COOKIE + ".")
    ]
    pairs.sort(key=lambda pair: (pair[0] != SESSION_COOKIE, pair[0]))
    return "; ".join(f"{name}={value}" for name, value in pairs)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: " + __doc__.strip().splitlines()[2].strip())
    gateway, login = sys.argv[1].rstrip("/"), sys.argv[2]
    gateway_host = urlsplit(gateway).netloc
    http = requests.Session()
    http.headers.update(NAVIGATION)
    page = http.get(f"{gateway}/_gateway/login?rd=/", timeout=TIMEOUT)
    for _ in range(MAX_FORMS):
        at = urlsplit(page.url)
        if at.netloc == gateway_host and not at.path.startswith("/_gateway/"):
            # Back at the gateway, past the callback: signed in, or refused by the upstream.
            if not page.ok:
                fail("the page after the callback", page)
            break
        if at.netloc == gateway_host:
            # Still under /_gateway/: the callback's error page (403 access denied, 400 state).
            fail("the gateway's callback", page)
        form = FirstForm()
        form.feed(page.text)
        if form.action is None or not page.ok:
            fail("no form at the issuer", page)
        data = dict(form.inputs)
        if "login" in data:
            data.update(login=login, password="any-password")
        url = urljoin(page.url, form.action)
        if form.method == "post":
            page = http.post(url, data=data, timeout=TIMEOUT)
        else:
            page = http.get(url, params=data, timeout=TIMEOUT)
    else:
        fail(f"still at the issuer after {MAX_FORMS} forms", page)
    cookie = session_cookie(http.cookies)
    if not cookie:
        fail(f"no {SESSION_COOKIE} cookie after the sign-in", page)
    print(cookie)


if __name__ == "__main__":
    main()
