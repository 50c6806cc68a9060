"""The built-in issuer's HTML: a sign-in form and an error page. Every value is escaped."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

_STYLE = """
:root { color-scheme: light dark; --accent: #2f6feb; }
body { font: 15px/1.45 system-ui, sans-serif; display: grid; place-items: center;
       min-height: 100vh; margin: 0; background: Canvas; color: CanvasText; }
main { width: min(360px, 90vw); padding: 28px; border-radius: 12px;
       box-shadow: 0 4px 24px rgb(0 0 0 / 18%); }
h1 { font-size: 20px; margin: 0 0 4px; } p.sub { margin: 0 0 20px; opacity: .7; }
label { display: block; margin: 12px 0 4px; font-weight: 600; }
input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: 8px;
       border-radius: 6px; border: 1px solid #8888; font: inherit; }
button { margin-top: 20px; width: 100%; padding: 9px; border: 0; border-radius: 6px;
       background: var(--accent); color: white; font: inherit; font-weight: 600; }
.error { color: #d1242f; margin: 8px 0 0; }
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def login_page(params: Mapping[str, str], *, username: str = "", error: str | None = None) -> str:
    hidden = "".join(
        f'<input type=hidden name="{escape(k)}" value="{escape(v)}">' for k, v in params.items()
    )
    err = f"<p class=error role=alert>{escape(error)}</p>" if error else ""
    return _page(
        "Sign in — Watchgate",
        "<h1>Sign in to Watchgate</h1><p class=sub>Built-in identity provider</p>"
        f'<form method=post action="authorize">{hidden}'
        "<label for=username>User name</label>"
        f"<input id=username name=username type=text autocomplete=username required autofocus "
        f'value="{escape(username)}">'
        "<label for=password>Password</label>"
        "<input id=password name=password type=password autocomplete=current-password required>"
        f"{err}<button type=submit>Sign in</button></form>",
    )


def error_page(message: str) -> str:
    return _page(
        "Sign-in error — Watchgate",
        f"<h1>Sign-in cannot continue</h1><p class=error>{escape(message)}</p>",
    )
