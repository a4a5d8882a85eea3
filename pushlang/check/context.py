"""What every check reads: the loaded program's definitions, grouped, and the config and schema."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pushlang import ast
from pushlang.builtins import PLATFORMS
from pushlang.config import Config
from pushlang.diagnostics import Sink
from pushlang.diagnostics.codes import Code
from pushlang.loader import Program
from pushlang.schema import Schema
from pushlang.source import Span

N = TypeVar("N")


@dataclass(frozen=True)
class Def(Generic[N]):
    node: N
    path: str


@dataclass(frozen=True)
class Scope:
    """What ``event.*`` and ``trigger.*`` mean where an expression stands."""

    event: str | None  # the event `event.*` reads; None in a scheduled campaign
    trigger: str | None = None  # set only in `unless ... where`
    scheduled: bool = False
    where: str = "campaign"


@dataclass
class CampaignView:
    """A campaign's items sorted by kind, so checks and the compiler need not re-scan them."""

    definition: Def[ast.CampaignDef]
    triggers: list[ast.OnTrigger | ast.Schedule] = field(default_factory=list)
    who: list[ast.Who] = field(default_factory=list)
    when: list[ast.When] = field(default_factory=list)
    messages: list[ast.Message] = field(default_factory=list)
    controls: list[ast.Control] = field(default_factory=list)
    conversions: list[ast.Conversion] = field(default_factory=list)
    labels: list[ast.Labels] = field(default_factory=list)
    platforms: list[ast.Platforms] = field(default_factory=list)
    tests: list[ast.WinnerTest] = field(default_factory=list)

    @property
    def node(self) -> ast.CampaignDef:
        return self.definition.node

    @property
    def path(self) -> str:
        return self.definition.path

    @property
    def trigger(self) -> ast.OnTrigger | ast.Schedule | None:
        return self.triggers[0] if len(self.triggers) == 1 else None

    @property
    def scheduled(self) -> bool:
        return isinstance(self.trigger, ast.Schedule)

    @property
    def event(self) -> str | None:
        trigger = self.trigger
        return trigger.event if isinstance(trigger, ast.OnTrigger) else None

    @property
    def variants(self) -> list[ast.Message]:
        """The variants `message ID P% ...` of an A/B test, in the order written."""
        return [m for m in self.messages if m.variant is not None]

    @property
    def plain_messages(self) -> list[ast.Message]:
        """The messages without a variant id: `message { ... }`, `message use NAME`."""
        return [m for m in self.messages if m.variant is None]

    @property
    def sent_messages(self) -> list[ast.Message]:
        """What users can get, each checked and lowered alike: every variant, else the one message."""
        return self.variants or self.messages[:1]

    def when_items(self, kind: str) -> list[ast.WhenItem]:
        return [item for block in self.when for item in block.items if item.kind == kind]

    def when_value(self, kind: str) -> ast.Literal | None:
        items = self.when_items(kind)
        return items[0].values[0] if items and items[0].values else None

    def allowed_platforms(self) -> set[str]:
        if not self.platforms:
            return set(PLATFORMS)
        return {p.value for p in self.platforms[0].platforms}

    def scope(self) -> Scope:
        return Scope(self.event, scheduled=self.scheduled)

    def own_expressions(self) -> Iterator[ast.Expr]:
        """Every expression written in the campaign itself (not in its segments or template)."""
        for t in self.triggers:
            if isinstance(t, ast.OnTrigger):
                yield from (e for e in (t.where, t.at) if e is not None)
                if t.unless is not None and t.unless.where is not None:
                    yield t.unless.where
        for who in self.who:
            yield from who.conditions
        for conv in self.conversions:
            yield from (e for e in (conv.where, conv.revenue) if e is not None)


_GROUPS = {
    ast.OnTrigger: "triggers", ast.Schedule: "triggers", ast.Who: "who", ast.When: "when",
    ast.Message: "messages", ast.Control: "controls", ast.Conversion: "conversions",
    ast.Labels: "labels", ast.Platforms: "platforms", ast.WinnerTest: "tests",
}


class CheckContext:
    def __init__(self, program: Program, config: Config, schema: Schema | None, sink: Sink) -> None:
        self.program = program
        self.config = config
        self.schema = schema
        self.sink = sink
        self.segments: dict[str, Def[ast.SegmentDef]] = {}
        self.templates: dict[str, Def[ast.TemplateDef]] = {}
        self.campaigns: list[CampaignView] = []
        self.all_segments: list[Def[ast.SegmentDef]] = []
        self.all_templates: list[Def[ast.TemplateDef]] = []
        for loaded in program.files.values():
            if loaded.module is None:
                continue
            path = loaded.source.path
            for item in loaded.module.items:
                if isinstance(item, ast.SegmentDef):
                    self.all_segments.append(Def(item, path))
                    self.segments.setdefault(item.name, Def(item, path))
                elif isinstance(item, ast.TemplateDef):
                    self.all_templates.append(Def(item, path))
                    self.templates.setdefault(item.name, Def(item, path))
                elif isinstance(item, ast.CampaignDef) and loaded.root:
                    self.campaigns.append(self._view(Def(item, path)))

    @staticmethod
    def _view(definition: Def[ast.CampaignDef]) -> CampaignView:
        view = CampaignView(definition)
        for item in definition.node.items:
            getattr(view, _GROUPS[type(item)]).append(item)
        return view

    def report(self, code: Code, path: str, span: Span, message: str, *, help: str | None = None,
               notes: tuple[str, ...] = ()) -> None:
        self.sink.report(code, path, span, message, help=help, notes=notes)

    # ---- walking expressions -------------------------------------------------------------------

    def campaign_expressions(self, view: CampaignView) -> Iterator[tuple[ast.Expr, Scope, str]]:
        """Every expression a campaign evaluates, with its scope and the file it is written in.

        Segments and templates are followed, so their expressions are checked in the scope of
        each campaign that uses them.
        """
        scope = view.scope()
        trigger = view.trigger
        if isinstance(trigger, ast.OnTrigger):
            if trigger.where is not None:
                yield trigger.where, Scope(trigger.event, where="on"), view.path
            if trigger.unless is not None and trigger.unless.where is not None:
                yield trigger.unless.where, Scope(trigger.unless.event, trigger.event, where="unless"), view.path
            if trigger.at is not None:
                yield trigger.at, scope, view.path
        for who in view.who:
            for cond in who.conditions:
                yield cond, scope, view.path
                yield from self.segment_expressions(cond, scope, set())
        for conversion in view.conversions:
            conv_scope = Scope(conversion.event, where="conversion")
            for expr in (conversion.where, conversion.revenue):
                if expr is not None:
                    yield expr, conv_scope, view.path
        for fields, path in self.sent_fields(view):
            for text in field_texts(fields):
                for part in text.parts:
                    if isinstance(part, ast.Interpolation):
                        yield part.expr, scope, path
                        for f in part.filters:
                            if f.arg is not None:
                                yield f.arg, scope, path

    def segment_expressions(self, expr: ast.Expr, scope: Scope, seen: set[str]
                            ) -> Iterator[tuple[ast.Expr, Scope, str]]:
        for node in walk(expr):
            if isinstance(node, ast.SegmentRef) and node.name not in seen and node.name in self.segments:
                seen.add(node.name)
                segment = self.segments[node.name]
                for cond in segment.node.conditions:
                    yield cond, scope, segment.path
                    yield from self.segment_expressions(cond, scope, seen)

    def template_of(self, message: ast.Message) -> Def[ast.TemplateDef] | None:
        return self.templates.get(message.use) if message.use is not None else None

    def message_fields(self, view: CampaignView, message: ast.Message, lang: str | None = None
                       ) -> list[tuple[tuple[ast.MessageField, ...], str]]:
        """A message's fields (the one message or a variant) in the order they apply, the last winning:
        the template's, then the campaign's; in language ``lang`` (SPEC §12.5) the template's, the
        template's `lang` block, the campaign's, the campaign's `lang` block (tags match
        case-insensitively)."""
        out: list[tuple[tuple[ast.MessageField, ...], str]] = []
        template = self.template_of(message)
        if template is not None:
            out.append((template.node.fields, template.path))
            out += [(b.fields, template.path) for b in lang_blocks(template.node.langs, lang)]
        out.append((message.fields, view.path))
        out += [(b.fields, view.path) for b in lang_blocks(message.langs, lang)]
        return out

    def message_langs(self, message: ast.Message) -> list[str]:
        """Every language tag of a message and of its template, as written (the campaign's spelling
        first), each once: the campaign's in their order, then the template's others."""
        tags: dict[str, str] = {}
        template = self.template_of(message)
        for block in (*message.langs, *(template.node.langs if template is not None else ())):
            tags.setdefault(block.tag.lower(), block.tag)
        return list(tags.values())

    def sent_fields(self, view: CampaignView) -> Iterator[tuple[tuple[ast.MessageField, ...], str]]:
        """The fields of every message the campaign sends (each variant's, else the one message's),
        templates and `lang` blocks included, with their files."""
        for message in view.sent_messages:
            yield from self.message_fields(view, message)
            template = self.template_of(message)
            if template is not None:
                yield from ((b.fields, template.path) for b in template.node.langs)
            yield from ((b.fields, view.path) for b in message.langs)

    def effective_message(self, view: CampaignView, message: ast.Message, lang: str | None = None
                          ) -> dict[str, list[tuple[ast.MessageField, str]]]:
        """Field name → the fields that take effect (buttons: all of them) with their files; with
        ``lang``, in that language (SPEC §12.5)."""
        result: dict[str, list[tuple[ast.MessageField, str]]] = {}
        for fields, path in self.message_fields(view, message, lang):
            given_buttons = [f for f in fields if isinstance(f, ast.Button)]
            if given_buttons:
                result["button"] = [(b, path) for b in given_buttons]
            for f in fields:
                if not isinstance(f, ast.Button):
                    result[f.name] = [(f, path)]
        return result

    def effective_messages(self, view: CampaignView, message: ast.Message
                           ) -> Iterator[tuple[str | None, dict[str, list[tuple[ast.MessageField, str]]]]]:
        """The message in its own texts (``None``) and in each of its languages."""
        yield None, self.effective_message(view, message)
        for tag in self.message_langs(message):
            yield tag, self.effective_message(view, message, tag)

    def written_fields(self) -> list[tuple[tuple[ast.MessageField, ...], str]]:
        """Every group of fields written anywhere: each template's and message's own, and each of their
        `lang` blocks', with their files (the checks of single fields read these)."""
        out: list[tuple[tuple[ast.MessageField, ...], str]] = []
        for tpl in self.all_templates:
            out.append((tpl.node.fields, tpl.path))
            out += [(b.fields, tpl.path) for b in tpl.node.langs]
        for view in self.campaigns:
            for m in view.messages:
                out.append((m.fields, view.path))
                out += [(b.fields, view.path) for b in m.langs]
        return out


def lang_blocks(blocks: tuple[ast.LangBlock, ...], lang: str | None) -> list[ast.LangBlock]:
    """The blocks of ``blocks`` for tag ``lang`` (case-insensitive); none for ``None``."""
    if lang is None:
        return []
    key = lang.lower()
    return [b for b in blocks if b.tag.lower() == key][:1]


def message_words(message: ast.Message) -> str:
    """How a diagnostic names a message: `the message`, or `variant `a``."""
    return "the message" if message.variant is None else f"variant `{message.variant}`"


def field_texts(fields: tuple[ast.MessageField, ...]) -> Iterator[ast.Text]:
    for f in fields:
        if isinstance(f, ast.TextField):
            yield f.text
        elif isinstance(f, ast.Button):
            yield f.label
            yield f.url


def walk(expr: ast.Expr, *, into_did: bool = True) -> Iterator[ast.Expr]:
    """Every node of an expression, parents first; ``into_did=False`` stays out of
    ``did ... where`` (its ``event`` is another event)."""
    stack: list[ast.Expr] = [expr]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.Binary):
            stack.extend((node.right, node.left))
        elif isinstance(node, ast.Unary):
            stack.append(node.operand)
        elif isinstance(node, ast.Call):
            stack.extend(reversed(node.args))
        elif isinstance(node, ast.ListExpr):
            stack.extend(reversed(node.items))
        elif isinstance(node, ast.Exists):
            stack.append(node.prop)
        elif isinstance(node, ast.IfThen):
            stack.extend((node.else_, node.then, node.cond))
        elif isinstance(node, ast.Did) and node.where is not None and into_did:
            stack.append(node.where)


def scoped_props(expr: ast.Expr, scope: Scope) -> Iterator[tuple[ast.Prop, Scope]]:
    """Every property an expression reads, with what ``event``/``trigger`` mean there."""
    for node in walk(expr, into_did=False):
        if isinstance(node, ast.Prop):
            yield node, scope
        elif isinstance(node, ast.Did) and node.where is not None:
            yield from scoped_props(node.where, Scope(node.event, where="did"))


_Item = TypeVar("_Item")


def repeats(items: Iterable[_Item], key: Callable[[_Item], object]) -> Iterator[tuple[_Item, _Item]]:
    """Each item whose key an earlier item already had, with that first item: what a "given twice"
    check reports (a variant id, a time of day, a language tag)."""
    seen: dict[object, _Item] = {}
    for item in items:
        first = seen.setdefault(key(item), item)
        if first is not item:
            yield item, first
