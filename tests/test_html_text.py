"""HTML mail to visible, safe text: what a reader sees, nothing a model should not."""

from __future__ import annotations

import time

import pytest

from app.integrations.email.html_text import MAX_TAGS, html_to_text

SECRET = "SECRETTOKEN"


@pytest.mark.parametrize(
    "html",
    [
        f"<script>var a = '{SECRET}'; if (a<b) {{}}</script>",
        f"<SCRIPT type='text/javascript'>{SECRET}</SCRIPT >",
        f"<script>{SECRET}",  # never closed: the rest of the document is script
        f"<style>.x {{ content: '{SECRET}' }}</style>",
        f"<head><title>{SECRET}</title><meta name=x content={SECRET}></head>",
        f"<template><p>{SECRET}</p></template>",
        f"<noscript>{SECRET}</noscript>",
        f"<!-- {SECRET} -->",
        f"<!-- {SECRET}",  # an unterminated comment runs to the end
        f"<!DOCTYPE html {SECRET}>",
        f"<?xml {SECRET}?>",
        f"<![CDATA[{SECRET}]]>",  # html.parser raises AssertionError on "<!["
        f"<textarea>{SECRET}</textarea>",
        f"<iframe><p>{SECRET}</p></iframe>",
        f"<svg><text>{SECRET}</text></svg>",
        f"<a title='{SECRET}' href='#'></a>",
    ],
)
def test_non_content_never_leaks(html: str) -> None:
    out = html_to_text(f"<p>before</p>{html}")
    assert SECRET not in out
    assert out.startswith("before")


@pytest.mark.parametrize(
    "hidden",
    [
        f'<div style="display:none">{SECRET}</div>',
        f'<div style="DISPLAY : NONE !important">{SECRET}</div>',
        f'<span style="visibility:hidden">{SECRET}</span>',
        f"<p hidden>{SECRET}</p>",
        f'<p aria-hidden="true">{SECRET}</p>',
        f'<span style="font-size:0">{SECRET}</span>',
        f'<span style="font-size:0px;line-height:0">{SECRET}</span>',
        f'<span style="font-size: 1px">{SECRET}</span>',
        f'<span style="opacity:0">{SECRET}</span>',
        f'<span style="opacity:0.01">{SECRET}</span>',
        f'<div style="max-height:0;overflow:hidden">{SECRET}</div>',
        f'<div style="height:1px;width:1px;overflow:hidden">{SECRET}</div>',
        f'<div style="mso-hide:all">{SECRET}</div>',
        f'<div style="text-indent:-9999px">{SECRET}</div>',
        f'<div style="position:absolute;left:-5000px">{SECRET}</div>',
        f'<div style="transform:scale(0)">{SECRET}</div>',
        f'<span style="color:#ffffff">{SECRET}</span>',  # white on the default white
        f'<span style="color:white">{SECRET}</span>',
        f'<span style="color:transparent">{SECRET}</span>',
        f'<font color="#FEFEFE">{SECRET}</font>',
        f'<td bgcolor="#000000"><font color="black">{SECRET}</font></td>',
        f'<div style="background:#123456 url(x.png)"><p style="color:#123456">{SECRET}</p></div>',
        f'<div style="display:none"><p>nested <b>{SECRET}</b></p></div>',
        f'<div style="display:none"/><p>{SECRET}</p></div>',  # "/>" does not close a div
        f"<dialog>{SECRET}</dialog>",
        f'<div style="display:none"><div><div>{SECRET}',  # never closed
        # End tags a browser ignores must not close a hidden element either:
        f"<a href=x><template><b><a href=y>{SECRET}",  # <a> does not cross <template>
        f"<body><div hidden>x</body>{SECRET}",  # </body> closes nothing
        f"<span><div hidden>x</span>{SECRET}",  # </span> does not cross a <div>
        f"<table><tr><td><template><td>{SECRET}",  # nor <td> a <template>
        f"<ul><li><template><li>{SECRET}",
    ],
)
def test_hidden_text_is_dropped(hidden: str) -> None:
    out = html_to_text(f"<p>visible</p>{hidden}<p>after</p>")
    assert SECRET not in out
    assert "visible" in out


@pytest.mark.parametrize(
    "shown",
    [
        '<span style="color:#333">TEXT</span>',
        '<td bgcolor="#000000"><font color="#ffffff">TEXT</font></td>',
        '<div style="background-color:black;color:white">TEXT</div>',
        '<span style="font-size:14px;opacity:0.9">TEXT</span>',
        '<div style="height:0">TEXT</div>',  # overflows visibly
        '<div style="display:block;visibility:visible">TEXT</div>',
        "<dialog open>TEXT</dialog>",
        "<ul><li>a<div hidden><li>TEXT",  # as in a browser: the new <li> closes the old
        "<template>x</template>TEXT",
        "<div><span hidden>x</div>TEXT",
    ],
)
def test_visible_text_is_kept(shown: str) -> None:
    assert "TEXT" in html_to_text(shown)


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ('<a href="https://example.com/pay">Pay now</a>', "Pay now [https://example.com/pay]"),
        ('<a href="https://example.com/">https://example.com</a>', "https://example.com"),
        ('<a href="https://www.example.com">example.com</a>', "example.com"),
        ('<a href="mailto:bob@example.com">Bob</a>', "Bob [mailto:bob@example.com]"),
        ('<a href="mailto:bob@example.com">bob@example.com</a>', "bob@example.com"),
        ('<a href="javascript:alert(1)">Click</a>', "Click"),
        ('<a href="java\tscript:alert(1)">Click</a>', "Click"),
        ('<a href="  JAVASCRIPT:alert(1)">Click</a>', "Click"),
        ('<a href="data:text/html,<script>x</script>">Click</a>', "Click"),
        ('<a href="ftp://example.com">Files</a>', "Files"),
        (
            '<a href="https://evil.example">https://bank.example</a>',
            "https://bank.example [https://evil.example]",
        ),
        ('<a href="https://x.example"><img src="t.gif" width="1" height="1"></a>', ""),
        (
            '<a href="https://x.example"><img src="u.png" alt="Unsubscribe"></a>',
            "[image: Unsubscribe] [https://x.example]",
        ),
        (
            '<a href="https://a.example">one<a href="https://b.example">two</a>',
            "one [https://a.example]two [https://b.example]",
        ),
    ],
)
def test_links(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("Tom &amp; Jerry &lt;3 &gt;", "Tom & Jerry <3 >"),
        ("&#8364;5 &#x20AC;6 &euro;7", "€5 €6 €7"),
        ("caf&eacute; na&iuml;ve", "café naïve"),
        ("a&nbsp;&nbsp;b", "a b"),
        ("&unknown; &amp", "&unknown; &"),
        ("&#0;&#xD800;x", "\ufffd\ufffdx"),  # as a browser shows them; never a NUL
    ],
)
def test_entities(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


def test_lists_and_blocks() -> None:
    html = (
        "<h1>Title</h1><p>First <b>para</b>.</p><p>Second<br>line</p>"
        "<ul><li>one</li><li>two<ul><li>inner</li></ul></li></ul>"
        "<ol><li>first<li>second</ol><div>end</div>"
    )
    assert html_to_text(html) == (
        "Title\n\nFirst para.\n\nSecond\nline\n\n- one\n- two\n  - inner\n1. first\n2. second\nend"
    )


def test_tables_become_tab_separated_rows() -> None:
    html = (
        "<table><tr><th>Item</th><th>Price</th></tr>"
        "<tr><td>Tea</td><td>3 &euro;</td></tr><tr><td>Cake<td>4 &euro;</table>after"
    )
    assert html_to_text(html) == "Item\tPrice\nTea\t3 €\nCake\t4 €\n\nafter"


def test_whitespace_collapses_except_in_pre() -> None:
    html = "<p>  a \n\n  b\t c  </p><pre>x  y\n  z</pre>"
    assert html_to_text(html) == "a b c\n\nx  y\n  z"


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("pay\u200bpal", "paypal"),
        ("a\u200d\u200c\ufeffb", "ab"),
        ("file\u202egpj.exe", "filegpj.exe"),
        ("x\u2066y\u2069z", "xyz"),
        ("soft\u00adhyphen", "softhyphen"),
        ("tag\U000e0041\U000e0042s", "tags"),  # Unicode tag characters smuggle ASCII
    ],
)
def test_invisible_characters_are_removed(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ('<img src="t.gif" width="1" height="1" alt="pixel">', ""),
        ('<img src="t.gif" style="width:1px;height:1px" alt="pixel">', ""),
        ('<img src="t.gif" width="0" alt="x">', ""),
        ('<img src="logo.png" alt="ACME Corp">', "[image: ACME Corp]"),
        ('<img src="logo.png" alt="image001.png">', ""),
        ('<img src="logo.png" alt="https://tracker.example/x">', ""),
        ('<img src="logo.png" alt="">', ""),
        ('<img src="logo.png" alt="Logo" style="display:none">', ""),
        ('<div hidden><img alt="Logo"></div>', ""),
    ],
)
def test_images(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>unclosed <b>bold <i>italic", "unclosed bold italic"),
        ("</div></p>stray</span> end", "stray end"),
        ("a < b and c > d", "a < b and c > d"),
        ("<<<>>>", "<<<>>>"),
        ("<P>Upper <B>case</B></P>", "Upper case"),
        ("<a b='unclosed>text", ""),  # an open attribute value runs to the end
        ("<p>x</p><a", "x"),  # a tag cut off at the end is dropped
        ("<p>x<!--->y<!-->z", "xyz"),  # empty comments
        ("</>kept</ x>", "kept"),
        ("<div<p>>ok", ">ok"),
    ],
)
def test_malformed_markup(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


def test_head_without_end_tag_closes_at_body_content() -> None:
    assert html_to_text("<html><head><title>t</title><meta x><p>Hello") == "Hello"


def test_output_is_capped() -> None:
    out = html_to_text("<p>" + "word " * 10_000, max_chars=100)
    assert len(out) == 100
    assert html_to_text("<p>x", max_chars=0) == ""


@pytest.mark.parametrize("value", [None, 42, b"<p>bytes \xff</p>", ""])
def test_never_raises_on_odd_arguments(value: object) -> None:
    out = html_to_text(value)  # type: ignore[arg-type]
    assert isinstance(out, str)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("unit", ["<a ", "<a b='", "<a/", "<a\n", "<!--", "<p>x", "<div hidden>"])
def test_malformed_markup_is_linear(unit: str) -> None:
    """Each of these took minutes for 80 KB with html.parser alone (quadratic)."""
    html = unit * (400_000 // len(unit))
    started = time.perf_counter()
    out = html_to_text(html)
    assert isinstance(out, str)
    assert time.perf_counter() - started < 30  # generous: the point is "not minutes"


def test_markup_beyond_the_tag_budget_is_not_read() -> None:
    html = "<b>x</b>" * (MAX_TAGS // 2) + "<b>y</b>" * 10
    out = html_to_text(html)
    assert "x" in out
    assert "y" not in out
