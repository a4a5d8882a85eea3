"""The catalogue of diagnostic codes: stable code, kebab name, severity, and the doc `explain` prints."""

from __future__ import annotations

from dataclasses import dataclass

from pushlang.diagnostics.model import Severity

E, W = Severity.ERROR, Severity.WARNING


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    name: str
    severity: Severity
    summary: str
    why: str
    example: str
    fix: str


CODES: dict[str, Code] = {}


def _code(code: str, name: str, severity: Severity, summary: str, why: str, example: str, fix: str) -> Code:
    entry = Code(code, name, severity, summary, why, example, fix)
    CODES[code] = entry
    return entry


# ---- syntax ------------------------------------------------------------------------------------
SYNTAX_ERROR = _code(
    "PL100", "syntax-error", E,
    "The file does not follow the grammar of the .push language.",
    "The compiler cannot build a campaign from text it cannot parse; nothing in the file is loaded.",
    'campaign welcome {\n  on "Signed Up" where\n}',
    "Read the message: it says what was found and what was expected there, in words. "
    "Look at the end of the previous line too: a missing `}` or quote often shows up one line later.",
)
INVALID_LITERAL = _code(
    "PL101", "invalid-literal", E,
    "A date, time, number, percent or string escape is not valid.",
    "Literals are checked when the file is compiled so that a campaign never runs with a date "
    "that does not exist or a percent over 100.",
    "when {\n  start 2026-02-30 09:00\n}",
    "Write a real calendar date (YYYY-MM-DD), a time of day 00:00–23:59, a percent 0–100, and "
    "string escapes \\\" \\' \\\\ \\n \\t \\u{1F6D2}.",
)
INVALID_TEMPLATE = _code(
    "PL102", "invalid-template", E,
    "A personalisation inside a message text is malformed.",
    "A message with a broken `@{...}` would send the raw markup to users.",
    'title "Hi @{user.first_name | default: }"',
    "Close every `@{` with `}`, give filters their argument (`default: 'friend'`), and write "
    "`@@` for a literal `@` directly before `{`.",
)
INVALID_IDENTIFIER = _code(
    "PL103", "invalid-identifier", E,
    "A campaign id, segment or template name is not a lowercase identifier.",
    "Campaign ids key decisions, stats and control-group hashing; they must be stable, plain "
    "identifiers `[a-z_][a-z0-9_]*`.",
    'campaign AbandonedCart { ... }',
    "Use lowercase letters, digits and underscores, starting with a letter or underscore: "
    "`abandoned_cart`. Put the human-readable name in the display string.",
)
UNKNOWN_CHOICE = _code(
    "PL104", "unknown-choice", E,
    "A word that must be one of a fixed set (platform, weekday, urgency) is not one of them.",
    "A misspelt platform or weekday would silently target nobody or never run.",
    "platforms chrome, firefx",
    "Use one of the values the message lists; the help line suggests the closest one.",
)
INVALID_PROPERTY = _code(
    "PL105", "invalid-property", E,
    "A property reference does not start with `user.`, `event.` or `trigger.`.",
    "Every value an expression reads comes from the user's profile, the triggering event, or "
    "(in `unless ... where`) the trigger; a bare name has no meaning.",
    "who {\n  country == \"IN\"\n}",
    "Write `user.country`, `event.price` or `trigger.cart_id`.",
)

# ---- names and imports -------------------------------------------------------------------------
UNKNOWN_SEGMENT = _code(
    "PL200", "unknown-segment", E,
    "A `segment NAME` refers to a segment that is not defined or imported.",
    "An audience built on a missing segment cannot be evaluated.",
    "who {\n  segment big_spender\n}",
    "Define the segment, import the file that defines it (`import \"std/segments\"`), or fix the "
    "spelling (the help line suggests the closest name).",
)
UNKNOWN_TEMPLATE = _code(
    "PL201", "unknown-template", E,
    "`message use NAME` refers to a template that is not defined or imported.",
    "The campaign's message is built from the template; without it there is no message.",
    "message use welcom",
    "Define the template, import `std/templates` or the file that has it, or fix the spelling.",
)
UNKNOWN_FUNCTION = _code(
    "PL202", "unknown-function", E,
    "An expression calls a function that does not exist.",
    "Expressions can only call pushlang's built-in functions: lower, upper, len, now, "
    "days_since, date.",
    "who {\n  lowr(user.country) == \"in\"\n}",
    "Use one of the built-in functions; the help line suggests the closest one.",
)
UNKNOWN_FILTER = _code(
    "PL203", "unknown-filter", E,
    "A personalisation uses a filter that does not exist.",
    "Filters are a fixed set: default, upper, lower, capitalize, truncate, urlencode, round.",
    'title "Hi @{user.first_name | capitalise}"',
    "Use one of the filters; the help line suggests the closest one.",
)
UNKNOWN_ICON = _code(
    "PL204", "unknown-icon", E,
    "`icon default NAME` names an icon that is not in the icon set.",
    "The built-in icons come from the standard library's icons.toml plus the `[icons]` table of "
    "pushlang.toml; an unknown name has no URL to send.",
    "icon default shoping_cart",
    "Use a name from the icon set (the help line suggests the closest), add it to `[icons]` in "
    "pushlang.toml, or give a URL with `icon \"https://...\"`.",
)
DUPLICATE_NAME = _code(
    "PL205", "duplicate-name", E,
    "Two segments or two templates have the same name.",
    "Names are global across everything one command loads, so a second definition would be "
    "ambiguous.",
    "segment vip { user.vip == true }\nsegment vip { user.tier == \"gold\" }",
    "Rename one of them; the note says where the other one is.",
)
DUPLICATE_CAMPAIGN = _code(
    "PL206", "duplicate-campaign", E,
    "Two campaigns have the same id.",
    "The campaign id is its identity: decisions, stats, control groups and de-duplication key on "
    "it.",
    "campaign welcome { ... }\ncampaign welcome { ... }",
    "Give each campaign its own id; the note says where the other one is.",
)
IMPORT_NOT_FOUND = _code(
    "PL207", "import-not-found", E,
    "An import names a file or standard-library module that does not exist.",
    "Segments and templates of a missing file cannot be brought into scope.",
    'import "std/segmnets"',
    "Standard-library modules are `std/segments` and `std/templates`; relative imports start "
    "with `./` or `../` and are resolved from the importing file.",
)
IMPORT_CYCLE = _code(
    "PL208", "import-cycle", E,
    "Files import each other in a cycle.",
    "A cycle has no order in which the files can be loaded.",
    'a.push: import "./b.push"\nb.push: import "./a.push"',
    "Move the shared segments and templates into a third file that both import.",
)
WRONG_ARGUMENTS = _code(
    "PL209", "wrong-arguments", E,
    "A function or filter gets the wrong number or kind of arguments.",
    "`len(x)` takes one value, `now()` none, `truncate: n` a number; anything else cannot run.",
    'title "@{user.first_name | truncate}"',
    "Give the arguments the message lists.",
)
SEGMENT_CYCLE = _code(
    "PL210", "segment-cycle", E,
    "A segment refers to itself, directly or through other segments.",
    "Such an audience has no value.",
    "segment a { segment b }\nsegment b { segment a }",
    "Break the cycle: write the shared condition in one of the segments.",
)
UNREADABLE_FILE = _code(
    "PL211", "unreadable-file", E,
    "A file cannot be read, or is not UTF-8.",
    ".push files are UTF-8 text.",
    "(a file saved as Latin-1 with an accented letter)",
    "Save the file as UTF-8 and check that the path exists and is readable.",
)

# ---- campaign structure ------------------------------------------------------------------------
MISSING_TRIGGER = _code(
    "PL300", "missing-trigger", E,
    "A campaign has neither a live trigger (`on ...`) nor a schedule (`send ...`).",
    "Without one the campaign never makes a decision.",
    'campaign welcome {\n  message {\n    title "Hi"\n    body "Welcome"\n  }\n}',
    'Add exactly one trigger, e.g. `on "Signed Up"`, or one schedule, e.g. `send once at 2026-12-24 10:00`.',
)
MULTIPLE_TRIGGERS = _code(
    "PL301", "multiple-triggers", E,
    "A campaign has more than one trigger or schedule.",
    "Each campaign reacts to one thing; two triggers would make it unclear which event `event.*` is.",
    'on "Signed Up"\nsend every day at 09:00',
    "Split it into two campaigns, or combine the dates in one schedule (`send at A, B, C`).",
)
EVENT_IN_SCHEDULED = _code(
    "PL302", "event-in-scheduled", E,
    "A scheduled campaign reads `event.*`.",
    "Scheduled campaigns run at set times over every known user; there is no triggering event.",
    'send every day at 09:00\nmessage {\n  title "Hi"\n  body "@event.product_name"\n}',
    "Use a profile property (`user.*`), a behaviour condition (`did ...`), or make the campaign "
    "live with `on \"E\"`.",
)
TRIGGER_OUTSIDE_UNLESS = _code(
    "PL303", "trigger-outside-unless", E,
    "`trigger.*` is used outside the `where` of an `unless` clause.",
    "`trigger.*` is the event that armed an inaction timer; it exists only while matching the "
    "cancelling event. Everywhere else the triggering event is `event.*`.",
    'on "Added To Cart" where trigger.price > 20',
    "Use `event.*` here; `trigger.*` belongs in `unless \"F\" where event.x == trigger.x within D`.",
)
DUPLICATE_ITEM = _code(
    "PL304", "duplicate-item", E,
    "An item that may appear once is given twice (a second `who`, `when`, `message`, `start`, "
    "`title`, `throttle`, ...), or two `limit` lines have the same period.",
    "The second one would silently win or be ignored; either way the file does not say what runs.",
    "when {\n  start 2026-12-01 00:00\n  start 2026-12-02 00:00\n}",
    "Keep one; merge the conditions of two `who` blocks into one block. Limits over different "
    "periods combine (`limit 1 per day` and `limit 3 per week`); rolling windows of the same length "
    "are the same period (`per 1d` and `per 24h`), a calendar `per day` and a rolling `per 1d` are not.",
)
MISSING_MESSAGE_FIELD = _code(
    "PL305", "missing-message-field", E,
    "A campaign has no message, or its message (after templates) lacks `title` or `body`.",
    "A notification needs both a title and a body.",
    'message { title "Hi" }',
    "Add the missing field, or `message use TEMPLATE` with a template that has it.",
)
SCHEDULED_ONLY_OPTION = _code(
    "PL306", "scheduled-only-option", W,
    "`deliver in user timezone` or `cutoff` is given in a live campaign, where it has no effect.",
    "Both options act on scheduled send times; a live campaign decides at the event's time.",
    'on "Signed Up"\nwhen {\n  cutoff 20:00\n}',
    "Remove the option, or make the campaign scheduled.",
)
DID_NOT_WITH_COUNT = _code(
    "PL307", "did-not-with-count", E,
    "`did not \"E\"` is given a count (`at least`, `at most`, `exactly`).",
    "`did not` already means zero times; a count contradicts it.",
    'did not "Charged" at least 2 times in last 30d',
    'Write `did "E" at most 1 times in last 30d`, or drop the count.',
)
SAME_EVENT_UNLESS = _code(
    "PL308", "same-event-unless", W,
    "An inaction campaign's `unless` event is the same as its trigger event without a `where`.",
    "Every new trigger event re-arms the timer anyway, so such an `unless` cancels every timer "
    "the next trigger would otherwise re-arm; this is rarely intended.",
    'on "Viewed Product"\nunless "Viewed Product" within 1h',
    "Use a different cancelling event, or add a `where` to tell them apart.",
)

# ---- timing and delivery controls --------------------------------------------------------------
END_NOT_AFTER_START = _code(
    "PL400", "end-not-after-start", E,
    "`end` is not after `start`.",
    "Decisions happen only in [start, end); an empty window never sends.",
    "when {\n  start 2026-12-10 00:00\n  end 2026-12-01 00:00\n}",
    "Swap the two, or move `end` after `start`.",
)
UNKNOWN_TIMEZONE = _code(
    "PL401", "unknown-timezone", E,
    "A timezone is not an IANA zone name.",
    "Local times, DND hours and calendar days are computed in this zone.",
    'timezone "Asia/Calcutta_"',
    'Use an IANA name such as "Europe/Berlin", "America/New_York" or "UTC".',
)
RECURRING_WITHOUT_START = _code(
    "PL402", "recurring-without-start", E,
    "A recurring schedule has no `start`.",
    "The first occurrence is the first matching instant at or after `start`, so that a "
    "campaign never sends for a day before it was meant to begin.",
    "send every month on day 7 at 10:00",
    "Add `when { start YYYY-MM-DD HH:MM }`.",
)
TTL_TOO_LONG = _code(
    "PL403", "ttl-too-long", E,
    "`ttl` is over 28 days.",
    "Push services keep a message at most 4 weeks; a longer TTL is refused or cut.",
    "ttl 30d",
    "Use at most `28d` (or `4w`).",
)
ZERO_LIMIT = _code(
    "PL404", "zero-limit", E,
    "`limit 0 per ...` would block every send.",
    "A campaign that may never send is a mistake; to pause it, set `end`.",
    "limit 0 per day",
    "Use a limit of 1 or more, or remove the line for no limit.",
)
SKIPPED_MONTHS = _code(
    "PL405", "skipped-months", W,
    "A monthly schedule on day 29, 30 or 31 skips months without that day.",
    "February (and the 30-day months, for day 31) have no such day; pushlang skips them rather "
    "than moving the send.",
    "send every month on day 31 at 10:00",
    "Pick day 28 or earlier if every month should get a send.",
)
INVALID_DAY = _code(
    "PL406", "invalid-day", E,
    "A monthly schedule names a day outside 1–31.",
    "No month has that day, so the campaign would never run.",
    "send every month on day 32 at 10:00",
    "Use a day from 1 to 31.",
)
SCHEDULE_OUTSIDE_WINDOW = _code(
    "PL407", "schedule-outside-window", W,
    "A scheduled date falls outside the campaign's [start, end) window.",
    "Decisions happen only inside the window; this date will never send.",
    "send once at 2026-11-01 10:00\nwhen {\n  start 2026-12-01 00:00\n}",
    "Move the date into the window, or widen the window.",
)
ZERO_DURATION = _code(
    "PL408", "zero-duration", E,
    "A duration of zero is used for a window (`within 0m`, `in last 0d`, `limit 1 per 0h`).",
    "An empty window matches nothing.",
    'unless "Charged" within 0m',
    "Use a positive duration.",
)

DUPLICATE_TIME = _code(
    "PL409", "duplicate-time", W,
    "A recurring schedule lists the same time of day twice.",
    "Each time of day is one occurrence; two equal times are one occurrence, not two sends, so the "
    "second is probably a typo for another time.",
    "send every day at 09:00, 09:00",
    "Remove the repeated time, or write the time that was meant (`at 09:00, 19:00`).",
)
ZERO_INTERVAL = _code(
    "PL410", "zero-interval", E,
    "`send every 0 days` has no interval.",
    "`send every N days` sends on the start date and every N days after it; N must be 1 or more.",
    "send every 0 days at 09:00",
    "Use 1 or more days (`send every 1 day` is every day), or `send once at ...` for a single send.",
)
ZERO_THROTTLE = _code(
    "PL411", "zero-throttle", E,
    "`throttle 0 per ...` would delay every send for ever.",
    "A throttle lets at most N sends of the campaign out per UTC minute or hour (SPEC §12.1); with "
    "N = 0 no period ever has room.",
    "throttle 0 per minute",
    "Use a throttle of 1 or more, or remove the line for no throttle; to stop a campaign, set `end`.",
)
PRIORITY_OUT_OF_RANGE = _code(
    "PL412", "priority-out-of-range", E,
    "A `priority` is outside −100..100.",
    "Priorities order the decisions of one record, and of one instant's timers, when they collide "
    "on a limit (SPEC §12.2); the range is −100 to 100, default 0.",
    "priority 500",
    "Use a number from -100 to 100: higher wins.",
)
BEST_TIME_ON_LIVE = _code(
    "PL413", "best-time-on-live", E,
    "`deliver at best time` is given in a live campaign.",
    "Best time moves each user's decision of a scheduled occurrence s to the hour s + k that their "
    "history favours (SPEC §12.6); a live campaign decides each user at their own event, with no "
    "occurrence to move.",
    'on "Signed Up"\nwhen {\n  deliver at best time\n}',
    "Remove the line, or make the campaign scheduled with `send ...`.",
)
BEST_TIME_WINDOW_TOO_SHORT = _code(
    "PL414", "best-time-window-too-short", E,
    "The `between FROM and TO` window of `deliver at best time` is shorter than one hour.",
    "Best time tries the hours s, s + 1h, ..., s + 23h of an occurrence s and keeps those whose local "
    "time of day lies in [FROM, TO) (SPEC §12.6). Only a window of an hour or more is sure to hold one "
    "of them; a shorter one may hold none, and then every user is decided at s. TO before FROM spans "
    "midnight; FROM equal to TO is a window of no length.",
    "deliver at best time between 09:00 and 09:30",
    "Make the window at least an hour long (`between 09:00 and 10:00`), or remove `between` to let "
    "every hour of the day compete.",
)
DUPLICATE_BEST_TIME_EVENT = _code(
    "PL415", "duplicate-best-time-event", W,
    "`deliver at best time by ...` lists the same event twice.",
    "An hour's score counts the user's events of the names listed (SPEC §12.6); a name listed twice is "
    "counted once, so the repeat is probably a typo for another event.",
    'deliver at best time by "Viewed Product", "Viewed Product"',
    "Remove the repeated event, or write the event that was meant.",
)

# ---- audience, control group, experiments --------------------------------------------------------
CONTROL_GROUP_ALL = _code(
    "PL500", "control-group-all", E,
    "The control group is 100% (or more).",
    "Every user would be held out; the campaign would never send.",
    "control group 100%",
    "Use a small control group (5–20% is usual).",
)
CONTROL_GROUP_LARGE = _code(
    "PL501", "control-group-large", W,
    "The control group is over 50%.",
    "More users are held out than receive the push; this is rarely intended.",
    "control group 60%",
    "Use a smaller control group unless the experiment needs this split.",
)
TYPE_MISMATCH = _code(
    "PL502", "type-mismatch", E,
    "An operator is applied to values of types it cannot combine.",
    "Such a comparison or arithmetic is always false or missing at run time (no implicit "
    "coercion between strings and numbers).",
    'who {\n  user.age + "1" > 18\n}',
    "Compare numbers with numbers and strings with strings; durations add to date-times.",
)
VARIANT_WEIGHTS = _code(
    "PL503", "variant-weights", E,
    "The weights of a campaign's variants do not add up to exactly 100%.",
    "Each user gets one variant by a hash of the user: the variants take consecutive ranges of "
    "10000 basis points (a weight P% is round(P × 100) of them). Weights that add up to less leave "
    "users with no message; more cannot be split (SPEC §12.3).",
    'message a 50% { ... }\nmessage b 40% { ... }',
    "Make the weights add up to 100%: `33.33%`, `33.33%` and `33.34%` split three ways.",
)
VARIANT_COUNT = _code(
    "PL504", "variant-count", E,
    "A campaign has one variant `message ID P%`, or more than 8.",
    "An A/B test compares 2 to 8 variants (SPEC §12.3); one variant is a plain message, and "
    "more than 8 split the audience too thin to tell them apart.",
    'message a 100% {\n  title "Hi"\n  body "Welcome"\n}',
    "Add a second variant, or write the one message as `message { ... }`; keep at most 8 variants.",
)
DUPLICATE_VARIANT = _code(
    "PL505", "duplicate-variant", E,
    "Two variants of a campaign have the same id.",
    "Decisions, stats and the winner name a variant by its id; two with one id cannot be told apart.",
    'message a 50% { ... }\nmessage a 50% { ... }',
    "Give each variant its own id: `message a ...`, `message b ...`.",
)
MESSAGE_AND_VARIANTS = _code(
    "PL506", "message-and-variants", E,
    "A campaign has both a plain `message` and variants `message ID P%`.",
    "A campaign sends one message, or one of 2 to 8 variants (SPEC §12.3): a plain message beside "
    "variants has no weight, so no user could get it.",
    'message { ... }\nmessage b 50% { ... }',
    "Give the plain message an id and a weight (`message a 50% { ... }`), or drop the variants.",
)
WINNER_ON_LIVE = _code(
    "PL507", "winner-on-live", E,
    "`test P% then winner ...` is given in a live campaign.",
    "A winner test decides a test group at a scheduled occurrence and everybody else once the "
    "winner is known (SPEC §12.4); a live campaign decides each user at their own event, with no "
    "occurrence to hold the others back for.",
    'on "Added To Cart"\ntest 10% then winner by clicks after 2h',
    "Remove the `test` line (the variants still split the users by weight), or make the campaign "
    "scheduled with `send ...`.",
)
WINNER_WITHOUT_VARIANTS = _code(
    "PL508", "winner-without-variants", E,
    "`test P% then winner ...` is given in a campaign without variants.",
    "With one message there is nothing to choose between.",
    'message { ... }\ntest 10% then winner by clicks after 2h',
    "Write 2 to 8 variants `message ID P% { ... }`, or remove the `test` line.",
)
WINNER_WITH_USER_TIMES = _code(
    "PL509", "winner-with-user-times", E,
    "`test P% then winner ...` is given with `deliver in user timezone`.",
    "A winner test needs one instant s for the whole occurrence: the test group goes at s and the "
    "others at s + D. With each user at their own local time there is no such instant (SPEC §12.4).",
    'when {\n  deliver in user timezone\n}\ntest 10% then winner by clicks after 2h',
    "Remove `deliver in user timezone`, or the `test` line (the variants still split the users).",
)
WINNER_NEEDS_CONVERSION = _code(
    "PL510", "winner-needs-conversion", E,
    "`then winner by conversions` is given in a campaign without a `conversion`.",
    "A variant's conversion rate counts the campaign's own conversions (SPEC §8); without a "
    "`conversion` line there are none, so every rate would be 0 and the first variant would win.",
    'test 10% then winner by conversions after 1d',
    'Add `conversion "E" within D`, or choose the winner `by clicks`.',
)
TEST_PERCENT_OUT_OF_RANGE = _code(
    "PL511", "test-percent-out-of-range", E,
    "The test group of a winner test is 0% or 100%.",
    "With 0% no user tests the variants, so every rate is 0; with 100% every user is in the test "
    "and nobody is left to get the winner.",
    'test 100% then winner by clicks after 2h',
    "Use a share between 0% and 100%, exclusive: 10–20% is usual.",
)
WINNER_TOO_LATE = _code(
    "PL512", "winner-too-late", W,
    "A winner test's `after D` reaches the campaign's next occurrence, its `end` or its cut-off.",
    "The users outside the test group are decided at s + D (SPEC §12.4). At or after the next "
    "occurrence they would get the last occurrence's winner once the next one has begun; at or after "
    "`end` they are `campaign_ended` and at or after the cut-off `cutoff`: the winner reaches nobody. "
    "The next occurrence is the shortest gap between two (`send at` dates: the closest two; daily: a "
    "day, weekly: a week, `every N days`: N days, monthly: 28 days, between their times of day), in "
    "local clock time.",
    'send every day at 09:00\ntest 10% then winner by clicks after 1d',
    "Use a shorter `after`, or move `end` or `cutoff` later.",
)
CONDITION_NEVER_BOOLEAN = _code(
    "PL513", "condition-never-boolean", W,
    "The condition of an `if` can never be `true`: it is a string, a number, a list or arithmetic.",
    "Only a condition that is `true` takes the `then` branch (SPEC §6); any other value takes `else`, "
    "so the `then` branch is never used.",
    "title \"@{if 'vip' then 'Your VIP deal' else 'A deal for you'}\"",
    "Write a comparison: `if user.vip == true then ... else ...`.",
)
WINNER_WITH_BEST_TIME = _code(
    "PL514", "winner-with-best-time", E,
    "`test P% then winner ...` is given with `deliver at best time`.",
    "A winner test needs one instant s for the whole occurrence: the test group goes at s and the "
    "others at s + D (SPEC §12.4). Best time decides each user at their own hour s + k (§12.6), so "
    "there is no such instant.",
    'when {\n  deliver at best time\n}\ntest 10% then winner by clicks after 2h',
    "Remove `deliver at best time`, or the `test` line (the variants still split the users).",
)

# ---- message and platforms ---------------------------------------------------------------------
SAFARI_WITHOUT_URL = _code(
    "PL600", "safari-without-url", W,
    "The campaign allows Safari but its message has no `url`.",
    "Safari does not show a notification without a deep link; Safari subscribers are skipped "
    "(a user reachable only on Safari is suppressed with `safari_requires_url`).",
    'message {\n  title "Hi"\n  body "Welcome"\n}',
    "Add `url \"https://...\"`, or leave Safari out: `platforms chrome, firefox, edge`.",
)
SAFARI_DROPS_MEDIA = _code(
    "PL601", "safari-drops-media", W,
    "An icon, image or button is given while Safari is allowed; Safari drops them.",
    "Safari shows the icon of its push package and no images or buttons.",
    'image "https://cdn.example.com/p.jpg"',
    "Accept that Safari users see a plain notification, or leave Safari out with `platforms`.",
)
TOO_MANY_BUTTONS = _code(
    "PL602", "too-many-buttons", W,
    "The message has more than 2 buttons.",
    "Chrome shows at most two actions; the others are dropped.",
    'button "A" -> "https://a"\nbutton "B" -> "https://b"\nbutton "C" -> "https://c"',
    "Keep the two most important buttons.",
)
PERSONALISATION_WITHOUT_DEFAULT = _code(
    "PL603", "personalisation-without-default", W,
    "A personalisation reads a property that the schema does not guarantee, without a `default`.",
    "A user without the property gets no push at all (`suppress`/`missing_property`).",
    'title "Hi @user.first_name"',
    "Add a default: `@{user.first_name | default: 'there'}`, or mark the property `required` "
    "in the schema.",
)
UNKNOWN_PROPERTY = _code(
    "PL604", "unknown-property", W,
    "A property is not in the schema for that event or for profiles.",
    "It is probably misspelt: it would always be missing at run time.",
    "on \"Added To Cart\" where event.prise > 20",
    "Fix the spelling (the help line suggests the closest), or add the property to the schema.",
)
UNKNOWN_EVENT = _code(
    "PL605", "unknown-event", W,
    "An event name is not in the schema.",
    "It is probably misspelt: the campaign would never trigger or the condition never hold.",
    'on "Added to Cart"',
    "Fix the spelling (event names are case-sensitive), or add the event to the schema.",
)
INVALID_TAG = _code(
    "PL606", "invalid-tag", E,
    "A `tag` is not 1–32 URL-safe base64 characters (A–Z a–z 0–9 - _).",
    "The tag becomes the Web Push Topic header, which push services reject otherwise.",
    'tag "summer sale 2026!"',
    'Use a short tag like "summer-sale".',
)
INVALID_SCHEMA = _code(
    "PL607", "invalid-schema", E,
    "The schema file given with `--schema` is not valid.",
    "Property checks need a schema of the documented shape.",
    '[events."Charged"]\namount = { type = "money" }',
    "Use types string, number, boolean, datetime, list or object; see the README's schema section.",
)
INVALID_LANG_TAG = _code(
    "PL608", "invalid-lang-tag", E,
    "A `lang` block's tag is not shaped like a BCP 47 language tag.",
    "Users get a `lang` block when their profile `language` matches its tag by RFC 4647 lookup "
    "(SPEC §12.5): a primary language of 2–3 letters, then subtags of 2–8 letters or digits, joined "
    "by `-`. A tag of another shape (`en_US`, `english`, `fr-`) matches nobody.",
    'lang "en_US" {\n  title "Hi"\n}',
    'Write the tag as BCP 47 does: `lang "en-US"`, `lang "pt-BR"`, `lang "zh-Hant-TW"`.',
)
DUPLICATE_LANG = _code(
    "PL609", "duplicate-lang", E,
    "A message (a variant, a template) has two `lang` blocks with one tag.",
    "Tags match case-insensitively, so `lang \"pt-BR\"` and `lang \"pt-br\"` are the same language: "
    "which block's texts a user would get is unclear.",
    'lang "fr" { title "Salut" }\nlang "FR" { body "Votre panier" }',
    "Keep one block per tag and put all of that language's fields in it.",
)
INVALID_CONFIG = _code(
    "PL700", "invalid-config", E,
    "pushlang.toml has a value pushlang cannot use.",
    "The config's timezone, limits, default TTL and icons change what campaigns do.",
    'timezone = "Berlin"',
    "Fix the value the message names.",
)


def lookup(code_or_name: str) -> Code | None:
    """A code by its code (`PL200`, any case) or its name (`unknown-segment`)."""
    wanted = code_or_name.strip()
    if wanted.upper() in CODES:
        return CODES[wanted.upper()]
    return next((c for c in CODES.values() if c.name == wanted.lower()), None)
