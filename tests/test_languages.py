"""Languages (SPEC §12.5): `lang "TAG" { ... }` blocks from the grammar to the plan."""

from __future__ import annotations

from pathlib import Path

from pushlang import plan
from pushlang.compiler import compile_text
from pushlang.runtime.pipeline import language_match, language_of
from pushlang.syntax.formatter import format_text

CART = '''
template cart_texts {
  title "Still thinking?"
  body "Your cart is waiting"
  url "https://shop.example.com/cart"
  lang "fr" {
    title "Vous hésitez ?"
    body "Votre panier vous attend"
  }
  lang "pt" {
    body "O seu carrinho"
  }
}

campaign cart {
  on "Added To Cart"
  message use cart_texts {
    body "Your cart misses you"
    lang "FR" {
      title "Toujours là ?"
      button "Voir" -> "https://shop.example.com/cart"
    }
    lang "pt-BR" {
      title "Ainda pensando?"
    }
  }
}
'''


def _texts(text: plan.Text) -> str:
    return "".join(p.text for p in text.parts if isinstance(p, plan.Literal))


def _message(source: str) -> plan.Message:
    result = compile_text("cart.push", source)
    assert not result.has_errors, [d.message for d in result.diagnostics]
    assert result.plan is not None
    return result.plan.campaigns[0].message


def test_the_template_blocks_are_merged_by_precedence() -> None:
    message = _message(CART)
    assert _texts(message.title) == "Still thinking?"
    assert _texts(message.body) == "Your cart misses you"
    langs = {lang.tag: lang.message for lang in message.langs}
    # the campaign's spelling of a tag both give, the campaign's tags first, then the template's others
    assert list(langs) == ["FR", "pt-BR", "pt"]
    fr = langs["FR"]
    # the campaign's lang block, then the campaign's field, then the template's lang block, then its field
    assert _texts(fr.title) == "Toujours là ?"
    assert _texts(fr.body) == "Your cart misses you"
    assert fr.url is not None and _texts(fr.url) == "https://shop.example.com/cart"
    assert [_texts(b.label) for b in fr.buttons] == ["Voir"]
    assert fr.langs == ()
    # the template's `pt` block is only for `pt`: the campaign's `pt-BR` block does not read it
    assert _texts(langs["pt-BR"].title) == "Ainda pensando?"
    assert _texts(langs["pt-BR"].body) == "Your cart misses you"
    assert _texts(langs["pt"].title) == "Still thinking?"
    assert _texts(langs["pt"].body) == "Your cart misses you"


def test_a_button_in_a_lang_block_replaces_the_whole_list() -> None:
    message = _message('''
campaign promo {
  on "Viewed"
  platforms chrome
  message {
    title "Sale"
    body "Now"
    button "Shop" -> "https://shop.example.com/"
    button "Later" -> "https://shop.example.com/later"
    lang "de" {
      button "Kaufen" -> "https://shop.example.com/de"
    }
  }
}
''')
    assert [_texts(b.label) for b in message.buttons] == ["Shop", "Later"]
    assert [_texts(b.label) for b in message.langs[0].message.buttons] == ["Kaufen"]


def test_variants_carry_their_own_languages() -> None:
    result = compile_text("v.push", '''
campaign split {
  on "Viewed"
  platforms chrome
  message a 50% {
    title "A"
    body "A"
    lang "es" {
      title "A es"
    }
  }
  message b 50% {
    title "B"
    body "B"
  }
}
''')
    assert result.plan is not None and not result.has_errors
    a, b = result.plan.campaigns[0].variants
    assert [lang.tag for lang in a.message.langs] == ["es"] and b.message.langs == ()


def test_a_lang_block_is_checked_like_the_message(tmp_path: Path) -> None:
    schema = tmp_path / "schema.toml"
    schema.write_text('[profile]\nfirst_name = { type = "string" }\n[events."Signed Up"]\n')
    result = compile_text("p.push", '''
campaign hello {
  on "Signed Up"
  platforms chrome
  message {
    title "Hi"
    body "Welcome"
    lang "fr" {
      title "Salut @user.first_name"
      body "Bienvenue @{user.nickname | default: 'toi'} @user.language"
    }
  }
}
''', schema_path=str(schema))
    found = sorted((d.code, d.span.line) for d in result.diagnostics)
    # a personalisation without a default in the block, and a property no profile has; `language` is known
    assert found == [("PL603", 9), ("PL603", 10), ("PL604", 10)]


def test_fmt_lays_out_lang_blocks() -> None:
    ugly = 'campaign c {\n  on "x"\n  message {\n    title "a"\n    body "b"\n    lang   "fr"{\n' \
           '    title "c"\n      }\n  }\n}\n'
    assert format_text(ugly) == 'campaign c {\n  on "x"\n  message {\n    title "a"\n    body "b"\n' \
                                '    lang "fr" {\n      title "c"\n    }\n  }\n}\n'


def _with_tags(*tags: str) -> plan.Message:
    own = plan.Message(plan.Text(()), plan.Text(()))
    return plan.Message(plan.Text(()), plan.Text(()), langs=tuple(plan.LangTexts(t, own) for t in tags))


def test_lookup_goes_to_ever_shorter_prefixes() -> None:
    message = _with_tags("zh", "zh-Hant")
    assert language_of(message, {"language": "zh-Hant-TW"}) == "zh-Hant"
    assert language_of(_with_tags("zh"), {"language": "zh-Hant-TW"}) == "zh"
    assert language_of(message, {"language": "zh-CN"}) == "zh"
    assert language_of(_with_tags("zh-Hant"), {"language": "zh-CN"}) is None


def test_pt_serves_pt_br_only_without_a_pt_br_block() -> None:
    assert language_of(_with_tags("pt"), {"language": "pt-BR"}) == "pt"
    assert language_of(_with_tags("pt", "pt-BR"), {"language": "pt-BR"}) == "pt-BR"
    assert language_of(_with_tags("pt", "pt-BR"), {"language": "pt"}) == "pt"
    assert language_of(_with_tags("pt-BR"), {"language": "pt"}) is None


def test_the_users_tag_is_read_in_any_case_with_underscores() -> None:
    message = _with_tags("pt-BR", "sr-Latn")
    assert language_of(message, {"language": "pt_br"}) == "pt-BR"  # the tag as written
    assert language_of(message, {"language": "PT-BR"}) == "pt-BR"
    assert language_of(message, {"language": "SR_latn_RS"}) == "sr-Latn"
    assert language_of(_with_tags("fr"), {"language": "fr-x-private"}) == "fr"  # a singleton goes too


def test_no_language_or_no_block_is_the_messages_own_texts() -> None:
    message = _with_tags("fr")
    for profile in ({}, {"language": None}, {"language": 7}, {"language": ""}, {"language": "de"}):
        assert language_of(message, profile) is None
    assert language_of(_with_tags(), {"language": "fr"}) is None
    # a language given (`send-test --lang`) is read instead of the profile's
    assert language_of(message, {"language": "de"}, "fr-BE") == "fr"


def test_the_lookup_says_why() -> None:
    message = _with_tags("pt", "pt-BR")
    assert language_match(message, {"language": "pt_br"})[1] == 'language "pt-BR": the user\'s "pt_br" matches exactly'
    assert language_match(message, {"language": "pt-PT"})[1] == 'language "pt": falls back to "pt" from the user\'s "pt-PT"'
    assert language_match(message, {"language": "de"})[1] == 'no block for "de": the message\'s own texts'
