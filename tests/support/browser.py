"""A fake browser for sign-in tests: it stands in for the human and the system browser.

A real person in a real browser cannot take part in an automated test run, so this module plays
both: it opens the authorization URL, fills in the issuer's login page, follows the redirects by
hand and finally requests the loopback redirect (``http://127.0.0.1:PORT/callback``) that the
CLI's listener is waiting for. It knows two kinds of issuer pages: the built-in issuer's form
(its hidden inputs plus user name and password) and npm oidc-provider's development login and
consent pages (driven by ``tests.support.oidc_provider.next_step``).

Two ways to use it:

* from Python: ``drive(url, username, password)`` (synchronous; pass it, wrapped in a lambda,
  as ``localproxy.login.sign_in(..., open_browser=...)``, which runs it in a thread);
* as the program Python's ``webbrowser`` starts, through the BROWSER environment variable:
  ``BROWSER="<python> <path>/browser.py %s"`` (``webbrowser`` waits for it) or with a trailing
  `` &`` (``webbrowser`` starts it in a new session and does not wait). The credentials come
  from WG_TEST_BROWSER_USER and WG_TEST_BROWSER_PASSWORD. Run detached, it must not hold the
  CLI's stdout/stderr or read its stdin, so it re-points its standard streams at once: to the
  file named by WG_TEST_BROWSER_LOG (appended to) or to /dev/null. Its exit status is 0 when it
  reached the callback. ``browser_command`` and ``browser_env`` build those variables.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

if __name__ == "__main__":  # run by path (BROWSER): make `tests.support` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx

from tests.support.oidc_provider import MAX_STEPS, BrowserStep, next_step

USER_ENV = "WG_TEST_BROWSER_USER"
PASSWORD_ENV = "WG_TEST_BROWSER_PASSWORD"
LOG_ENV = "WG_TEST_BROWSER_LOG"
SCRIPT = Path(__file__).resolve()
_LOOPBACK_CALLBACK = re.compile(r"^http://127\.0\.0\.1:\d{1,5}/callback(\?|$)")


class BrowserError(RuntimeError):
    """The fake browser stopped before the callback: an error page, or a page it cannot use.

    ``status`` is the HTTP status of the page it stopped at, when that was an error page.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def is_loopback_callback(url: str) -> bool:
    """Whether ``url`` is a native client's loopback redirect (RFC 8252 7.3)."""
    return _LOOPBACK_CALLBACK.match(url) is not None


def drive(
    url: str,
    username: str,
    password: str,
    *,
    rewrite_callback: Callable[[str], str] | None = None,
    cancel: bool = False,
    timeout: float = 10.0,
) -> None:
    """Sign ``username`` in at the authorization ``url`` and deliver the answer to the callback.

    Redirects are followed by hand until one points at ``http://127.0.0.1:PORT/callback``;
    that URL (after ``rewrite_callback``, which lets a test tamper with the answer) is then
    requested, as a browser would. ``cancel`` leaves the issuer's page by its cancel link instead
    of signing in (npm oidc-provider only; the built-in issuer has none). Raises BrowserError
    when a page is an error (a wrong password gets the built-in issuer's 401 page) or is not a
    sign-in page: the callback is then never requested.
    """
    # One client per call: its cookie jar is this browser's session at the issuer.
    with httpx.Client(follow_redirects=False, timeout=timeout) as client:
        response = client.get(url)
        for _ in range(MAX_STEPS):
            step = _next(response, username, password, cancel=cancel)
            if step.method == "GET" and is_loopback_callback(step.url):
                target = rewrite_callback(step.url) if rewrite_callback else step.url
                # The listener answers with a page for the person; what it says is the
                # client's business, so any answer counts as delivered.
                client.get(target)
                return
            response = client.request(step.method, step.url, data=step.data)
    raise BrowserError(f"no redirect to a loopback callback after {MAX_STEPS} steps from {url}")


def _next(response: httpx.Response, username: str, password: str, *, cancel: bool) -> BrowserStep:
    if response.status_code >= 400:
        page = _Page.parse(response.text)
        raise BrowserError(
            f"{response.request.method} {response.url} answered {response.status_code}: "
            f"{page.summary()}",
            response.status_code,
        )
    if response.status_code == 200:
        form = _Page.parse(response.text).login_form()
        if form is not None:  # the built-in issuer's sign-in page
            if cancel:
                raise BrowserError(f"the sign-in page at {response.url} has no way to cancel")
            action, fields = form
            fields |= {"username": username, "password": password}
            return BrowserStep("POST", urljoin(str(response.url), action), fields)
    try:  # redirects, and npm oidc-provider's development pages
        return next_step(response, username, password=password, cancel=cancel)
    except RuntimeError as e:
        raise BrowserError(str(e), response.status_code) from None


class _Page(HTMLParser):
    """The forms and visible text of an HTML page; enough of a DOM for a login page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        # (action, inputs as (name, type, value)) per form
        self.forms: list[tuple[str, list[tuple[str, str, str]]]] = []
        self.text: list[str] = []
        self._skip = 0  # inside <style>/<script>/<title>

    @classmethod
    def parse(cls, html: str) -> _Page:
        page = cls()
        page.feed(html)
        page.close()
        return page

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag in ("style", "script", "title"):
            self._skip += 1
        elif tag == "form":
            self.forms.append((attr.get("action", ""), []))
        elif tag == "input" and self.forms and "name" in attr:
            field = (attr["name"], attr.get("type", "text"), attr.get("value", ""))
            self.forms[-1][1].append(field)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.text.append(data.strip())

    def login_form(self) -> tuple[str, dict[str, str]] | None:
        """(action, hidden fields) of a form asking for `username` and a password, if any.

        That is the built-in issuer's page; npm oidc-provider's dev login calls the name `login`.
        """
        for action, inputs in self.forms:
            names = {name for name, _, _ in inputs}
            if "username" in names and any(kind == "password" for _, kind, _ in inputs):
                return action, {name: value for name, kind, value in inputs if kind == "hidden"}
        return None

    def summary(self) -> str:
        return " ".join(self.text)[:300] or "(empty page)"


def browser_command(*, detached: bool = True, python: str = sys.executable) -> str:
    """A BROWSER value that makes ``webbrowser`` run this script (`` &``: without waiting)."""
    return f"{shlex.join([python, str(SCRIPT)])} %s" + (" &" if detached else "")


def browser_env(
    username: str, password: str, *, log: Path | None = None, detached: bool = True
) -> dict[str, str]:
    """The environment variables that make a process's ``webbrowser.open`` sign in here."""
    env = {
        "BROWSER": browser_command(detached=detached),
        USER_ENV: username,
        PASSWORD_ENV: password,
    }
    if log is not None:
        env[LOG_ENV] = str(log)
    return env


def _detach_stdio(log: str | None) -> None:
    """Let go of the stdin/stdout/stderr inherited from whoever started us (see the docstring)."""
    sys.stdout.flush()
    sys.stderr.flush()
    with open(os.devnull, "rb") as null_in:
        os.dup2(null_in.fileno(), 0)
    with open(log or os.devnull, "ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)


def main(argv: list[str] | None = None) -> int:
    """The BROWSER entry point; its stdio should already be detached (see `_detach_stdio`)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"fake browser: usage: {SCRIPT.name} URL (got {len(args)} arguments)", flush=True)
        return 2
    username, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    if not username or password is None:
        print(f"fake browser: set {USER_ENV} and {PASSWORD_ENV}", flush=True)
        return 2
    try:
        drive(args[0], username, password)
    except (BrowserError, httpx.HTTPError) as e:
        print(f"fake browser: {type(e).__name__}: {e}", flush=True)
        return 1
    print("fake browser: delivered the answer to the loopback callback", flush=True)
    return 0


if __name__ == "__main__":
    _detach_stdio(os.environ.get(LOG_ENV))
    sys.exit(main())
